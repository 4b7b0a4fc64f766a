//! A dataset root as the worker's loader sees it, without libtorch: which files make up each split
//! and how many classes there are. The listing is the loader's own (`common::layout`), so what the
//! loader would refuse, this refuses in the same words, and `data check` finds it first; this
//! module adds the counts, and checks CIFAR-10's batch files hold whole records.

use std::path::{Path, PathBuf};

use common::dataset::{parse_options, Format, NoOptions};
use common::layout::{self, LayoutError};
use common::trial::DatasetSpec;

pub use common::layout::CIFAR_RECORD;

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
    match format {
        Format::Synthetic => Err(problem(root, "the synthetic format has no files")),
        Format::Cifar10Bin => {
            parse_options::<NoOptions>(spec).map_err(|e| problem(root, e.to_string()))?;
            cifar(root)
        }
        _ => {
            let listing = layout::list(format, root, spec).map_err(|e| from_layout(root, e))?;
            let (train, val) = (listing.train.len(), listing.val.len());
            let files = listing.train.into_iter().chain(listing.val).map(|item| item.path).collect();
            Ok(Scan { classes: listing.classes, files, train, val })
        }
    }
}

/// The loader's refusal as a problem: at the path it names (the dataset root for an option that
/// does not fit the files).
fn from_layout(root: &Path, error: LayoutError) -> Problem {
    match error {
        LayoutError::Invalid { path, reason } => problem(path, reason),
        LayoutError::Io { path, source } => problem(path, source.to_string()),
        LayoutError::Spec(spec) => problem(root, spec.to_string()),
    }
}

fn cifar(root: &Path) -> Result<Scan, Problem> {
    let files = layout::cifar_files(root).map_err(|e| from_layout(root, e))?;
    let classes = layout::cifar_classes(&files.meta).map_err(|e| from_layout(root, e))?;
    let records = |path: &Path| -> Result<usize, Problem> {
        let len = std::fs::metadata(path).map_err(|e| problem(path, e.to_string()))?.len();
        if len == 0 || len % CIFAR_RECORD != 0 {
            return Err(problem(
                path,
                format!("{len} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records"),
            ));
        }
        Ok((len / CIFAR_RECORD) as usize)
    };
    let mut train = 0;
    for path in &files.train {
        train += records(path)?;
    }
    let val = records(&files.test)?;
    let mut all = files.train;
    all.push(files.test);
    Ok(Scan { classes, files: all, train, val })
}
