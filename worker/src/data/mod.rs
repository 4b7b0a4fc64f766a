//! Datasets in the layouts they are distributed in, decoded once per (dataset, resolution) into a
//! u8 cache that every trial on the node reuses.
//!
//! - [`layout`]: finds the files and labels of each folder layout, and the seeded splits;
//! - [`cifar`]: the CIFAR-10 binary records;
//! - [`synthetic`]: a built-in, deterministic, learnable dataset;
//! - [`decode`]: any image mode to RGB, resized, in parallel;
//! - [`cache`]: the decoded tensors on disk, keyed by the files they came from.
//!
//! A loaded dataset is two [`Split`]s of `u8` images `[N, 3, R, R]` and `i64` labels `[N]` on the
//! host; the trainer moves them whole to its device and cuts batches there. The `val` split is the
//! held-out set: it is evaluated every epoch and, at the end, for the final metrics (as the paper's
//! Keras runs did with `validation_data`).

use std::path::{Path, PathBuf};

use common::trial::DatasetSpec;
use serde::de::DeserializeOwned;
use tch::Tensor;

use crate::error::WorkerError;

pub mod cache;
pub mod cifar;
pub mod decode;
pub mod layout;
pub mod synthetic;

pub use common::dataset::{Format, FORMATS};

/// Images and labels of one split, on the host.
#[derive(Debug)]
pub struct Split {
    /// `u8`, `[N, 3, R, R]`.
    pub images: Tensor,
    /// `i64`, `[N]`, in `0..classes`.
    pub labels: Tensor,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.size().first().map_or(0, |&n| n as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New handles to the same storage (tch tensors are `Send`, not `Sync`: each rank thread
    /// gets its own handles).
    pub fn shallow_clone(&self) -> Split {
        Split { images: self.images.shallow_clone(), labels: self.labels.shallow_clone() }
    }

    fn from_host(images: Vec<u8>, labels: Vec<i64>, resolution: u32) -> Split {
        let side = i64::from(resolution);
        let count = labels.len() as i64;
        Split {
            images: Tensor::from_slice(&images).view([count, 3, side, side]),
            labels: Tensor::from_slice(&labels),
        }
    }
}

/// A dataset decoded at one resolution.
#[derive(Debug)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub resolution: u32,
    pub train: Split,
    pub val: Split,
}

impl Dataset {
    pub fn class_count(&self) -> usize {
        self.classes.len()
    }
}

/// How a load went: where the cache is and whether it was hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadReport {
    /// The cache file (none for `synthetic`, which is generated in memory).
    pub cache_file: Option<PathBuf>,
    pub cache_hit: bool,
    /// Images decoded by this load (0 on a cache hit).
    pub decoded: usize,
}

/// Decoded images and labels before they become tensors (what the cache stores).
#[derive(Debug, Clone, PartialEq)]
pub struct HostData {
    pub classes: Vec<String>,
    pub resolution: u32,
    pub train_images: Vec<u8>,
    pub train_labels: Vec<i64>,
    pub val_images: Vec<u8>,
    pub val_labels: Vec<i64>,
}

impl HostData {
    fn into_dataset(self) -> Dataset {
        Dataset {
            train: Split::from_host(self.train_images, self.train_labels, self.resolution),
            val: Split::from_host(self.val_images, self.val_labels, self.resolution),
            classes: self.classes,
            resolution: self.resolution,
        }
    }
}

/// Checks a dataset's format and options before anything runs (a sweep's validation): the same
/// checks `load` makes, without touching the disk.
pub fn check(spec: &DatasetSpec) -> Result<(), WorkerError> {
    Ok(common::dataset::check(spec)?)
}

/// Loads `spec` at `resolution`: from the cache in `cache_dir` when the files it was decoded from
/// are unchanged, else by decoding them (and writing the cache).
pub fn load(
    spec: &DatasetSpec,
    resolution: u32,
    cache_dir: &Path,
) -> Result<(Dataset, LoadReport), WorkerError> {
    if resolution == 0 {
        return Err(WorkerError::field("resolution", "must be at least 1 pixel"));
    }
    let format = Format::parse(&spec.format)?;
    if format == Format::Synthetic {
        let options: synthetic::Options = parse_options(spec)?;
        let data = synthetic::generate(&options, resolution)?;
        let report = LoadReport { cache_file: None, cache_hit: false, decoded: 0 };
        return Ok((data.into_dataset(), report));
    }
    let root = spec.root.as_deref().ok_or_else(|| {
        WorkerError::field("dataset.root", format!("format `{}` needs a root folder", spec.format))
    })?;
    if !root.is_dir() {
        return Err(WorkerError::dataset(root, "dataset root is not a folder (missing?)"));
    }
    let source = match format {
        Format::Cifar10Bin => {
            parse_options::<NoOptions>(spec)?;
            Source::Cifar(common::layout::cifar_files(root)?)
        }
        _ => Source::Files(layout::list(format, root, spec)?),
    };
    let key = cache::key(&spec.format, &spec.options, resolution, &source.fingerprint_files()?)?;
    let cache_file = cache::path(cache_dir, &spec.name, resolution, &key);
    if let Some(dataset) = cache::read(&cache_file, &key)? {
        let report = LoadReport { cache_file: Some(cache_file), cache_hit: true, decoded: 0 };
        return Ok((dataset, report));
    }
    let (data, decoded) = match source {
        Source::Cifar(files) => {
            let data = cifar::decode(&files, resolution)?;
            let decoded = data.train_labels.len() + data.val_labels.len();
            (data, decoded)
        }
        Source::Files(listing) => {
            let train = decode::decode_all(&listing.train, resolution)?;
            let val = decode::decode_all(&listing.val, resolution)?;
            let data = HostData {
                classes: listing.classes,
                resolution,
                train_images: train,
                train_labels: listing.train.iter().map(|item| item.label).collect(),
                val_images: val,
                val_labels: listing.val.iter().map(|item| item.label).collect(),
            };
            let decoded = data.train_labels.len() + data.val_labels.len();
            (data, decoded)
        }
    };
    cache::write(cache_dir, &cache_file, &key, &data)?;
    tracing::info!(dataset = %spec.name, resolution, decoded, cache = %cache_file.display(), "dataset decoded and cached");
    let report = LoadReport { cache_file: Some(cache_file), cache_hit: false, decoded };
    Ok((data.into_dataset(), report))
}

/// What a dataset is decoded from.
enum Source {
    Files(layout::Listing),
    Cifar(common::layout::CifarFiles),
}

impl Source {
    /// Every file the decoded data depends on (its path relative to the root, as the key sees it).
    fn fingerprint_files(&self) -> Result<Vec<PathBuf>, WorkerError> {
        Ok(match self {
            Source::Files(listing) => {
                listing.train.iter().chain(&listing.val).map(|item| item.path.clone()).collect()
            }
            Source::Cifar(files) => files.all(),
        })
    }
}

pub use layout::Item;

pub(crate) use common::dataset::NoOptions;

/// Reads `dataset.options` into a format's typed options; unknown keys and wrong types are errors
/// that name the field.
pub(crate) fn parse_options<T: DeserializeOwned>(spec: &DatasetSpec) -> Result<T, WorkerError> {
    Ok(common::dataset::parse_options(spec)?)
}
