//! Dataset formats and their options: parsed and checked here, without touching the disk, so that
//! the coordinator refuses a bad sweep before any worker decodes anything. The worker's loaders
//! read the same option types.

use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// Where a dataset lives and how it is laid out on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// The dataset's name in reports (`cifar10`, `imagenette`, ...).
    pub name: String,
    /// On-disk layout: `synthetic`, `image_folder`, `imagenette`, `tiny_imagenet`, `eurosat`,
    /// `pacs`, `cifar10_bin`, `corel1k`.
    pub format: String,
    /// Root folder; not used by `synthetic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Format options (`val_fraction`, `holdout_domain`, `classes`, `train_size`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, serde_json::Value>,
}

/// Every dataset format, as written in a trial's `dataset.format`.
pub const FORMATS: &[&str] = &[
    "synthetic",
    "image_folder",
    "imagenette",
    "tiny_imagenet",
    "eurosat",
    "pacs",
    "cifar10_bin",
    "corel1k",
];

/// The on-disk layout of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Synthetic,
    /// `train/<class>/*` and `val/<class>/*` (Imagenette2, ImageWoof2, any ImageFolder).
    ImageFolder,
    TinyImageNet,
    EuroSat,
    Pacs,
    Cifar10Bin,
    Corel1k,
}

impl Format {
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        Ok(match name {
            "synthetic" => Format::Synthetic,
            "image_folder" | "imagenette" => Format::ImageFolder,
            "tiny_imagenet" => Format::TinyImageNet,
            "eurosat" => Format::EuroSat,
            "pacs" => Format::Pacs,
            "cifar10_bin" => Format::Cifar10Bin,
            "corel1k" => Format::Corel1k,
            other => {
                return Err(SpecError::field(
                    "dataset.format",
                    format!("unknown format `{other}` (known: {})", FORMATS.join(", ")),
                ))
            }
        })
    }
}

/// Checks a dataset's format and options before anything runs (a sweep's validation): the same
/// checks the worker's loader makes, without touching the disk.
pub fn check(spec: &DatasetSpec) -> Result<(), SpecError> {
    match Format::parse(&spec.format)? {
        Format::ImageFolder => parse_options::<FolderOptions>(spec).map(drop),
        Format::TinyImageNet | Format::Cifar10Bin => parse_options::<NoOptions>(spec).map(drop),
        format @ (Format::EuroSat | Format::Pacs | Format::Corel1k) => {
            parse_options::<SplitOptions>(spec)?.validate(format)
        }
        Format::Synthetic => parse_options::<SyntheticOptions>(spec)?.validate(),
    }
}

/// Reads `dataset.options` into a format's typed options; unknown keys and wrong types are errors
/// that name the field.
pub fn parse_options<T: DeserializeOwned>(spec: &DatasetSpec) -> Result<T, SpecError> {
    let map: serde_json::Map<String, serde_json::Value> =
        spec.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| SpecError::field("dataset.options", format!("{e} (format `{}`)", spec.format)))
}

/// Formats without options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}

/// Options of `image_folder`/`imagenette`: the split folders' names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolderOptions {
    pub train_dir: String,
    pub val_dir: String,
}

impl Default for FolderOptions {
    fn default() -> Self {
        Self { train_dir: "train".into(), val_dir: "val".into() }
    }
}

/// Options of the layouts that ship without a split: it is drawn by the worker, per class.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitOptions {
    /// Share of each class that goes to validation.
    pub val_fraction: f64,
    /// Seeds the split; fixed by default so that every trial (whatever its seed) is tested on
    /// the same images.
    pub split_seed: u64,
    /// PACS only: train on the other domains, validate on this one.
    pub holdout_domain: Option<String>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self { val_fraction: 0.2, split_seed: 0, holdout_domain: None }
    }
}

impl SplitOptions {
    pub fn validate(&self, format: Format) -> Result<(), SpecError> {
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return Err(SpecError::field(
                "dataset.options.val_fraction",
                format!("must be between 0 and 1 (exclusive), got {}", self.val_fraction),
            ));
        }
        if self.holdout_domain.is_some() && format != Format::Pacs {
            return Err(SpecError::field(
                "dataset.options.holdout_domain",
                "only the `pacs` format has domains",
            ));
        }
        Ok(())
    }
}

/// `dataset.options` of the `synthetic` format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticOptions {
    pub classes: usize,
    pub train_size: usize,
    pub val_size: usize,
    /// Amplitude of the uniform per-pixel noise, in [0, 1] intensity units.
    pub noise: f32,
    /// Share of training samples whose label is replaced by a random class: the training accuracy
    /// then plateaus below 1, as on real data (validation labels stay clean).
    pub label_noise: f64,
    /// Seeds the classes' looks and the samples; independent of the trial's seed, so that every
    /// trial sees the same data.
    pub seed: u64,
}

impl Default for SyntheticOptions {
    fn default() -> Self {
        Self { classes: 10, train_size: 2000, val_size: 500, noise: 0.3, label_noise: 0.0, seed: 0 }
    }
}

impl SyntheticOptions {
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(2..=1000).contains(&self.classes) {
            return Err(SpecError::field(
                "dataset.options.classes",
                format!("must be in 2..=1000, got {}", self.classes),
            ));
        }
        if self.train_size < self.classes {
            return Err(SpecError::field(
                "dataset.options.train_size",
                format!("must be at least `classes` ({}), got {}", self.classes, self.train_size),
            ));
        }
        if self.val_size < self.classes {
            return Err(SpecError::field(
                "dataset.options.val_size",
                format!("must be at least `classes` ({}), got {}", self.classes, self.val_size),
            ));
        }
        if !(0.0..=1.0).contains(&self.noise) {
            return Err(SpecError::field(
                "dataset.options.noise",
                format!("must be in [0, 1], got {}", self.noise),
            ));
        }
        if !(0.0..=1.0).contains(&self.label_noise) {
            return Err(SpecError::field(
                "dataset.options.label_noise",
                format!("must be in [0, 1], got {}", self.label_noise),
            ));
        }
        Ok(())
    }
}
