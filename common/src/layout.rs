//! The on-disk layouts of the dataset formats: which files make up each split, with their labels.
//! The worker's loader decodes what [`list`] returns, and `sal-data check` counts the same
//! listing, so the two cannot disagree on what a dataset holds or on why it is refused.
//!
//! The rules: classes are subfolders sorted by name (as torchvision's `ImageFolder` and Keras'
//! `image_dataset_from_directory` do), so a class index means the same on every node; hidden files
//! and files that are not images by extension (`.DS_Store`, `Thumbs.db`, text beside the images)
//! are skipped; an empty class folder is an error; the split formats put `clamp(round(n *
//! val_fraction), 1, n - 1)` images of each class, shuffled by the split seed and the class name,
//! into validation. Reading the files is left to the caller.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::dataset::{parse_options, FolderOptions, Format, NoOptions, SplitOptions};
use crate::error::SpecError;
use crate::trial::DatasetSpec;

/// The file name extensions of images, lower case.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];

/// CIFAR-10's binary record: a label byte and 32x32x3 bytes.
pub const CIFAR_RECORD: u64 = 1 + 3 * 32 * 32;

/// The class names of Corel-1k, in index order (class = image number / 100).
const COREL_CLASSES: &[&str] = &[
    "africans",
    "beaches",
    "buildings",
    "buses",
    "dinosaurs",
    "elephants",
    "flowers",
    "horses",
    "mountains",
    "food",
];

/// Why a dataset root cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The layout is wrong at `path` (a missing file, an empty class folder, ...).
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// A folder or file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An option does not fit the files (`dataset.options.holdout_domain` names no domain).
    #[error(transparent)]
    Spec(#[from] SpecError),
}

fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> LayoutError {
    LayoutError::Invalid { path: path.into(), reason: reason.into() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io { path: path.to_path_buf(), source }
}

/// One image file and its class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub path: PathBuf,
    pub label: i64,
}

/// The files of a dataset, split, with class names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub classes: Vec<String>,
    pub train: Vec<Item>,
    pub val: Vec<Item>,
}

/// Lists the image files of `root` in `format`'s layout (every format but `synthetic` and
/// `cifar10_bin`, whose files are not images: see [`cifar_files`]).
pub fn list(format: Format, root: &Path, spec: &DatasetSpec) -> Result<Listing, LayoutError> {
    match format {
        Format::ImageFolder => {
            let options: FolderOptions = parse_options(spec)?;
            image_folder(root, &options.train_dir, &options.val_dir)
        }
        Format::TinyImageNet => {
            parse_options::<NoOptions>(spec)?;
            tiny_imagenet(root)
        }
        Format::EuroSat | Format::Pacs | Format::Corel1k => {
            let options: SplitOptions = parse_options(spec)?;
            options.validate(format)?;
            match format {
                Format::EuroSat => {
                    let (classes, files) = class_folders(root)?;
                    stratified(classes, files, &options)
                }
                Format::Pacs => pacs(root, &options),
                _ => corel1k(root, &options),
            }
        }
        Format::Synthetic | Format::Cifar10Bin => {
            Err(invalid(root, format!("format {format:?} has no folder layout")))
        }
    }
}

/// The files of a CIFAR-10 binary folder: `data_batch_1.bin` .. `data_batch_5.bin` (train),
/// `test_batch.bin` (validation) and `batches.meta.txt` (class names, one a line).
#[derive(Debug, Clone)]
pub struct CifarFiles {
    pub train: Vec<PathBuf>,
    pub test: PathBuf,
    pub meta: PathBuf,
}

impl CifarFiles {
    pub fn all(&self) -> Vec<PathBuf> {
        self.train.iter().cloned().chain([self.test.clone(), self.meta.clone()]).collect()
    }
}

/// The files of CIFAR-10's binary layout under `root`, each checked to be there.
pub fn cifar_files(root: &Path) -> Result<CifarFiles, LayoutError> {
    let files = CifarFiles {
        train: (1..=5).map(|i| root.join(format!("data_batch_{i}.bin"))).collect(),
        test: root.join("test_batch.bin"),
        meta: root.join("batches.meta.txt"),
    };
    for path in files.all() {
        if !path.is_file() {
            return Err(invalid(path, "missing (CIFAR-10 binary layout)"));
        }
    }
    Ok(files)
}

/// The class names of `batches.meta.txt`, one a line.
pub fn cifar_classes(meta: &Path) -> Result<Vec<String>, LayoutError> {
    let text = std::fs::read_to_string(meta).map_err(io(meta))?;
    let classes: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if classes.is_empty() {
        return Err(invalid(meta, "lists no classes"));
    }
    Ok(classes)
}

/// `train/<class>/*` and `val/<class>/*`; both must hold the same classes.
fn image_folder(root: &Path, train_dir: &str, val_dir: &str) -> Result<Listing, LayoutError> {
    let (classes, train_files) = class_folders(&root.join(train_dir))?;
    let (val_classes, val_files) = class_folders(&root.join(val_dir))?;
    check_same_classes(&classes, &val_classes, &root.join(val_dir))?;
    Ok(Listing { train: items(&train_files), val: items(&val_files), classes })
}

/// `wnids.txt`, `train/<wnid>/images/*`, `val/images/*` labelled by `val/val_annotations.txt`.
fn tiny_imagenet(root: &Path) -> Result<Listing, LayoutError> {
    let wnids_path = root.join("wnids.txt");
    let text = std::fs::read_to_string(&wnids_path).map_err(io(&wnids_path))?;
    let classes: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.is_empty() {
        return Err(invalid(&wnids_path, "lists no classes"));
    }
    let index: BTreeMap<&str, i64> =
        classes.iter().enumerate().map(|(i, c)| (c.as_str(), i as i64)).collect();

    let mut train = Vec::new();
    for (label, wnid) in classes.iter().enumerate() {
        let folder = root.join("train").join(wnid).join("images");
        let files = image_files(&folder)?;
        if files.is_empty() {
            return Err(invalid(&folder, "empty class folder"));
        }
        train.extend(files.into_iter().map(|path| Item { path, label: label as i64 }));
    }

    let annotations = root.join("val").join("val_annotations.txt");
    let text = std::fs::read_to_string(&annotations).map_err(io(&annotations))?;
    let mut val = Vec::new();
    let mut seen = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
            return Err(invalid(
                &annotations,
                format!("line {}: expected `<file>\\t<wnid>\\t...`", number + 1),
            ));
        };
        let Some(&label) = index.get(wnid.trim()) else {
            return Err(invalid(
                &annotations,
                format!("line {}: class `{wnid}` is not in wnids.txt", number + 1),
            ));
        };
        let path = root.join("val").join("images").join(file.trim());
        if !path.is_file() {
            return Err(invalid(
                &path,
                format!("listed on line {} of {} but missing", number + 1, annotations.display()),
            ));
        }
        seen.insert(label);
        val.push(Item { path, label });
    }
    if let Some(missing) = (0..classes.len() as i64).find(|label| !seen.contains(label)) {
        return Err(invalid(
            &annotations,
            format!("class `{}` is missing from val", classes[missing as usize]),
        ));
    }
    Ok(Listing { classes, train, val })
}

/// `<domain>/<class>/*`: a seeded stratified split over all domains, or one domain held out.
fn pacs(root: &Path, options: &SplitOptions) -> Result<Listing, LayoutError> {
    let domains = subfolders(root)?;
    if domains.is_empty() {
        return Err(invalid(root, "no domain folders"));
    }
    let mut per_domain = Vec::new();
    let mut all_classes = BTreeSet::new();
    for (domain, folder) in &domains {
        let (classes, files) = class_folders(folder)?;
        all_classes.extend(classes.iter().cloned());
        per_domain.push((domain.clone(), classes, files));
    }
    let classes: Vec<String> = all_classes.into_iter().collect();
    let label_of = |name: &str| classes.iter().position(|c| c == name).unwrap_or(0) as i64;

    if let Some(holdout) = &options.holdout_domain {
        if !domains.iter().any(|(d, _)| d == holdout) {
            let known: Vec<&str> = domains.iter().map(|(d, _)| d.as_str()).collect();
            return Err(SpecError::field(
                "dataset.options.holdout_domain",
                format!("no domain `{holdout}` under {} (found: {})", root.display(), known.join(", ")),
            )
            .into());
        }
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for (domain, domain_classes, files) in &per_domain {
            let target = if domain == holdout { &mut val } else { &mut train };
            for (class, paths) in domain_classes.iter().zip(files) {
                let label = label_of(class);
                target.extend(paths.iter().map(|path| Item { path: path.clone(), label }));
            }
        }
        let held: BTreeSet<i64> = val.iter().map(|i| i.label).collect();
        if let Some(missing) = classes.iter().find(|c| !held.contains(&label_of(c))) {
            return Err(invalid(root.join(holdout), format!("class `{missing}` is missing from val")));
        }
        return Ok(Listing { classes, train, val });
    }

    // Stratified by class over all domains together.
    let mut files: Vec<Vec<PathBuf>> = vec![Vec::new(); classes.len()];
    for (_, domain_classes, domain_files) in per_domain {
        for (class, paths) in domain_classes.iter().zip(domain_files) {
            files[label_of(class) as usize].extend(paths);
        }
    }
    stratified(classes, files, options)
}

/// Class folders, or the flat `0.jpg .. 999.jpg` with class = number / 100.
fn corel1k(root: &Path, options: &SplitOptions) -> Result<Listing, LayoutError> {
    if !subfolders(root)?.is_empty() {
        let (classes, files) = class_folders(root)?;
        return stratified(classes, files, options);
    }
    let mut by_class: BTreeMap<usize, Vec<PathBuf>> = BTreeMap::new();
    for path in image_files(root)? {
        let number: usize =
            path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).ok_or_else(|| {
                invalid(&path, "flat Corel-1k images must be named <number>.jpg (class = number / 100)")
            })?;
        by_class.entry(number / 100).or_default().push(path);
    }
    let Some(&last) = by_class.keys().next_back() else {
        return Err(invalid(root, "no images and no class folders"));
    };
    let class_count = last + 1;
    let classes: Vec<String> = (0..class_count)
        .map(|i| {
            if class_count <= COREL_CLASSES.len() {
                COREL_CLASSES[i].to_string()
            } else {
                format!("class{i}")
            }
        })
        .collect();
    let mut files = Vec::with_capacity(class_count);
    for (i, class) in classes.iter().enumerate() {
        match by_class.remove(&i) {
            Some(paths) => files.push(paths),
            None => {
                return Err(invalid(
                    root,
                    format!("class {i} (`{class}`, images {}..{}) has no images", i * 100, i * 100 + 99),
                ))
            }
        }
    }
    stratified(classes, files, options)
}

/// Per class: shuffle with a generator seeded by the split seed and the class name, then the
/// first `round(n * val_fraction)` (at least 1, at most n - 1) go to validation.
fn stratified(
    classes: Vec<String>,
    files: Vec<Vec<PathBuf>>,
    options: &SplitOptions,
) -> Result<Listing, LayoutError> {
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (label, (class, mut paths)) in classes.iter().zip(files).enumerate() {
        let n = paths.len();
        if n < 2 {
            let folder = paths.first().and_then(|p| p.parent()).map(Path::to_path_buf).unwrap_or_default();
            return Err(invalid(
                folder,
                format!("class `{class}` has {n} image(s); a train/val split needs at least 2"),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(options.split_seed ^ fnv(class.as_bytes()));
        paths.shuffle(&mut rng);
        let val_count = ((n as f64 * options.val_fraction).round() as usize).clamp(1, n - 1);
        for (i, path) in paths.into_iter().enumerate() {
            let item = Item { path, label: label as i64 };
            if i < val_count {
                val.push(item);
            } else {
                train.push(item);
            }
        }
    }
    Ok(Listing { classes, train, val })
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn items(files: &[Vec<PathBuf>]) -> Vec<Item> {
    files
        .iter()
        .enumerate()
        .flat_map(|(label, paths)| {
            paths.iter().map(move |path| Item { path: path.clone(), label: label as i64 })
        })
        .collect()
}

fn check_same_classes(train: &[String], val: &[String], val_root: &Path) -> Result<(), LayoutError> {
    if let Some(missing) = train.iter().find(|c| !val.contains(c)) {
        return Err(invalid(val_root, format!("class `{missing}` is missing from val")));
    }
    if let Some(extra) = val.iter().find(|c| !train.contains(c)) {
        return Err(invalid(val_root, format!("class `{extra}` is in val but not in train")));
    }
    Ok(())
}

/// Every non-hidden subfolder of `dir` as a class with its image files; an empty one is an error.
fn class_folders(dir: &Path) -> Result<(Vec<String>, Vec<Vec<PathBuf>>), LayoutError> {
    let folders = subfolders(dir)?;
    if folders.is_empty() {
        return Err(invalid(dir, "no class folders"));
    }
    let mut classes = Vec::with_capacity(folders.len());
    let mut files = Vec::with_capacity(folders.len());
    for (name, folder) in folders {
        let images = image_files(&folder)?;
        if images.is_empty() {
            return Err(invalid(&folder, "empty class folder"));
        }
        classes.push(name);
        files.push(images);
    }
    Ok((classes, files))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, LayoutError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symbolic links, which dataset mirrors use.
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, LayoutError> {
    Ok(read_dir_sorted(dir)?.into_iter().filter(|(_, _, is_dir)| *is_dir).map(|(n, p, _)| (n, p)).collect())
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>, LayoutError> {
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
