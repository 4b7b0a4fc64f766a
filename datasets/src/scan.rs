//! The layouts the worker's loaders read (`worker/src/data/layout.rs` and `cifar.rs`), scanned
//! without libtorch: which files make up each split and how many classes there are. The rules are
//! the loader's: classes are subfolders sorted by name, hidden files and files that are not
//! images by extension are skipped, an empty class folder is an error, the split formats put
//! `clamp(round(n * val_fraction), 1, n - 1)` images of each class into validation. What the
//! loader would refuse, this refuses in the same words, so that `data check` finds it first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::dataset::{parse_options, FolderOptions, Format, SplitOptions};
use common::trial::DatasetSpec;

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];

/// CIFAR-10's binary record: a label byte and 32x32x3 bytes.
pub const CIFAR_RECORD: u64 = 1 + 3 * 32 * 32;

/// A dataset root as the loader would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub classes: Vec<String>,
    /// Image files (for CIFAR-10: the batch files).
    pub files: Vec<PathBuf>,
    pub train: usize,
    pub val: usize,
}

/// A layout problem: the path it is about and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

fn problem(path: impl Into<PathBuf>, message: impl Into<String>) -> Problem {
    Problem { path: path.into(), message: message.into() }
}

/// Scans `spec.root` in `spec.format`'s layout.
pub fn scan(spec: &DatasetSpec) -> Result<Scan, Problem> {
    let format = Format::parse(&spec.format).map_err(|e| problem("dataset.format", e.to_string()))?;
    let Some(root) = spec.root.as_deref() else {
        return Err(problem("dataset.root", format!("format `{}` needs a root folder", spec.format)));
    };
    if !root.is_dir() {
        return Err(problem(root, "dataset root is not a folder (missing?)"));
    }
    let options_error = |e: common::error::SpecError| problem(root, e.to_string());
    match format {
        Format::Synthetic => Err(problem(root, "the synthetic format has no files")),
        Format::ImageFolder => {
            let options: FolderOptions = parse_options(spec).map_err(options_error)?;
            image_folder(root, &options)
        }
        Format::TinyImageNet => tiny_imagenet(root),
        Format::Cifar10Bin => cifar(root),
        Format::EuroSat | Format::Pacs | Format::Corel1k => {
            let options: SplitOptions = parse_options(spec).map_err(options_error)?;
            options.validate(format).map_err(options_error)?;
            let (classes, files) = match format {
                Format::EuroSat => class_folders(root)?,
                Format::Pacs => pacs(root, options.holdout_domain.as_deref())?,
                _ => corel1k(root)?,
            };
            if let Some((_, train, val)) = files.holdout {
                return Ok(Scan { classes, files: files.all, train, val });
            }
            let (mut train, mut val) = (0, 0);
            for (class, n) in classes.iter().zip(&files.per_class) {
                if *n < 2 {
                    return Err(problem(
                        root,
                        format!("class `{class}` has {n} image(s); a train/val split needs at least 2"),
                    ));
                }
                let v = ((*n as f64 * options.val_fraction).round() as usize).clamp(1, n - 1);
                val += v;
                train += n - v;
            }
            Ok(Scan { classes, files: files.all, train, val })
        }
    }
}

/// Files of a split layout, per class, and (PACS with a held-out domain) the train/val counts.
struct ClassFiles {
    all: Vec<PathBuf>,
    per_class: Vec<usize>,
    holdout: Option<(String, usize, usize)>,
}

fn image_folder(root: &Path, options: &FolderOptions) -> Result<Scan, Problem> {
    let (classes, train) = class_folders(&root.join(&options.train_dir))?;
    let val_root = root.join(&options.val_dir);
    let (val_classes, val) = class_folders(&val_root)?;
    if let Some(missing) = classes.iter().find(|c| !val_classes.contains(c)) {
        return Err(problem(&val_root, format!("class `{missing}` is missing from val")));
    }
    if let Some(extra) = val_classes.iter().find(|c| !classes.contains(c)) {
        return Err(problem(&val_root, format!("class `{extra}` is in val but not in train")));
    }
    let (train_n, val_n) = (train.all.len(), val.all.len());
    let mut files = train.all;
    files.extend(val.all);
    Ok(Scan { classes, files, train: train_n, val: val_n })
}

fn tiny_imagenet(root: &Path) -> Result<Scan, Problem> {
    let wnids_path = root.join("wnids.txt");
    let text = std::fs::read_to_string(&wnids_path).map_err(|e| problem(&wnids_path, e.to_string()))?;
    let classes: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.is_empty() {
        return Err(problem(&wnids_path, "lists no classes"));
    }
    let mut files = Vec::new();
    for wnid in &classes {
        let folder = root.join("train").join(wnid).join("images");
        let images = image_files(&folder)?;
        if images.is_empty() {
            return Err(problem(&folder, "empty class folder"));
        }
        files.extend(images);
    }
    let train = files.len();
    let annotations = root.join("val").join("val_annotations.txt");
    let text = std::fs::read_to_string(&annotations).map_err(|e| problem(&annotations, e.to_string()))?;
    let mut seen = BTreeSet::new();
    let mut val = 0;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
            return Err(problem(
                &annotations,
                format!("line {}: expected `<file>\\t<wnid>\\t...`", number + 1),
            ));
        };
        if !classes.iter().any(|c| c == wnid.trim()) {
            return Err(problem(
                &annotations,
                format!("line {}: class `{wnid}` is not in wnids.txt", number + 1),
            ));
        }
        let path = root.join("val").join("images").join(file.trim());
        if !path.is_file() {
            return Err(problem(
                &path,
                format!("listed on line {} of {} but missing", number + 1, annotations.display()),
            ));
        }
        seen.insert(wnid.trim().to_string());
        files.push(path);
        val += 1;
    }
    if let Some(missing) = classes.iter().find(|c| !seen.contains(*c)) {
        return Err(problem(&annotations, format!("class `{missing}` is missing from val")));
    }
    Ok(Scan { classes, files, train, val })
}

fn cifar(root: &Path) -> Result<Scan, Problem> {
    let meta = root.join("batches.meta.txt");
    let text =
        std::fs::read_to_string(&meta).map_err(|_| problem(&meta, "missing (CIFAR-10 binary layout)"))?;
    let classes: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if classes.is_empty() {
        return Err(problem(&meta, "lists no classes"));
    }
    let train_files: Vec<PathBuf> = (1..=5).map(|i| root.join(format!("data_batch_{i}.bin"))).collect();
    let test = root.join("test_batch.bin");
    let records = |path: &Path| -> Result<usize, Problem> {
        let len =
            std::fs::metadata(path).map_err(|_| problem(path, "missing (CIFAR-10 binary layout)"))?.len();
        if len == 0 || len % CIFAR_RECORD != 0 {
            return Err(problem(
                path,
                format!("{len} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records"),
            ));
        }
        Ok((len / CIFAR_RECORD) as usize)
    };
    let mut train = 0;
    for path in &train_files {
        train += records(path)?;
    }
    let val = records(&test)?;
    let mut files = train_files;
    files.push(test);
    Ok(Scan { classes, files, train, val })
}

fn pacs(root: &Path, holdout: Option<&str>) -> Result<(Vec<String>, ClassFiles), Problem> {
    let domains = subfolders(root)?;
    if domains.is_empty() {
        return Err(problem(root, "no domain folders"));
    }
    let mut per_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut all = Vec::new();
    let (mut train, mut val) = (0, 0);
    let mut held_classes = BTreeSet::new();
    for (domain, folder) in &domains {
        let (classes, files) = class_folders(folder)?;
        for (class, n) in classes.iter().zip(&files.per_class) {
            *per_class.entry(class.clone()).or_default() += n;
            if holdout == Some(domain.as_str()) {
                val += n;
                held_classes.insert(class.clone());
            } else {
                train += n;
            }
        }
        all.extend(files.all);
    }
    let classes: Vec<String> = per_class.keys().cloned().collect();
    let counts = per_class.values().copied().collect();
    let held = match holdout {
        Some(domain) => {
            if !domains.iter().any(|(d, _)| d == domain) {
                let known: Vec<&str> = domains.iter().map(|(d, _)| d.as_str()).collect();
                return Err(problem(root, format!("no domain `{domain}` (found: {})", known.join(", "))));
            }
            if let Some(missing) = classes.iter().find(|c| !held_classes.contains(*c)) {
                return Err(problem(root.join(domain), format!("class `{missing}` is missing from val")));
            }
            Some((domain.to_string(), train, val))
        }
        None => None,
    };
    Ok((classes, ClassFiles { all, per_class: counts, holdout: held }))
}

fn corel1k(root: &Path) -> Result<(Vec<String>, ClassFiles), Problem> {
    if !subfolders(root)?.is_empty() {
        return class_folders(root);
    }
    let mut by_class: BTreeMap<usize, usize> = BTreeMap::new();
    let images = image_files(root)?;
    for path in &images {
        let number: usize =
            path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).ok_or_else(|| {
                problem(path, "flat Corel-1k images must be named <number>.jpg (class = number / 100)")
            })?;
        *by_class.entry(number / 100).or_default() += 1;
    }
    let Some(&last) = by_class.keys().next_back() else {
        return Err(problem(root, "no images and no class folders"));
    };
    let mut per_class = Vec::new();
    for i in 0..=last {
        match by_class.get(&i) {
            Some(&n) => per_class.push(n),
            None => {
                return Err(problem(
                    root,
                    format!("class {i} (images {}..{}) has no images", i * 100, i * 100 + 99),
                ))
            }
        }
    }
    let classes = (0..=last).map(|i| format!("class{i}")).collect();
    Ok((classes, ClassFiles { all: images, per_class, holdout: None }))
}

fn class_folders(dir: &Path) -> Result<(Vec<String>, ClassFiles), Problem> {
    let folders = subfolders(dir)?;
    if folders.is_empty() {
        return Err(problem(dir, "no class folders"));
    }
    let (mut classes, mut all, mut per_class) = (Vec::new(), Vec::new(), Vec::new());
    for (name, folder) in folders {
        let images = image_files(&folder)?;
        if images.is_empty() {
            return Err(problem(&folder, "empty class folder"));
        }
        classes.push(name);
        per_class.push(images.len());
        all.extend(images);
    }
    Ok((classes, ClassFiles { all, per_class, holdout: None }))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, Problem> {
    let entries = std::fs::read_dir(dir).map_err(|e| problem(dir, e.to_string()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| problem(dir, e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, Problem> {
    Ok(read_dir_sorted(dir)?.into_iter().filter(|(_, _, d)| *d).map(|(n, p, _)| (n, p)).collect())
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>, Problem> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|(_, path, is_dir)| {
            !is_dir
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .map(|(_, path, _)| path)
        .collect())
}
