//! How many images the published datasets hold: one table, read by the dry run's cost estimate,
//! the scheduler's longest-first order and checked against `datasets/catalogue.yaml` (a test
//! there compares every dataset of the catalogue with [`published`]).

use crate::dataset::{parse_options, SplitOptions, SyntheticOptions};
use crate::trial::DatasetSpec;

/// A published dataset's images: in its own train/validation split, or in all when the split is
/// ours (`val_fraction`), and per domain for PACS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Published {
    Split {
        train: u64,
        val: u64,
    },
    Whole(u64),
    /// PACS: photo, art_painting, cartoon, sketch.
    Domains(&'static [(&'static str, u64)]),
}

impl Published {
    /// Every image of the dataset.
    pub fn total(&self) -> u64 {
        match self {
            Published::Split { train, val } => train + val,
            Published::Whole(total) => *total,
            Published::Domains(domains) => domains.iter().map(|(_, n)| n).sum(),
        }
    }
}

/// PACS's domains and their images (9,991 in all).
const PACS_DOMAINS: &[(&str, u64)] =
    &[("photo", 1_670), ("art_painting", 2_048), ("cartoon", 2_344), ("sketch", 3_929)];

/// The published size of the dataset `spec` names, by its format (and, for the `imagenette`
/// format, whether it is ImageWoof); `None` for formats of any size (`image_folder`,
/// `synthetic`).
pub fn published(spec: &DatasetSpec) -> Option<Published> {
    let named = |needle: &str| {
        spec.name.contains(needle) || spec.root.as_ref().is_some_and(|r| r.to_string_lossy().contains(needle))
    };
    Some(match spec.format.as_str() {
        // imagewoof2: 9,025 + 3,929; imagenette2: 9,469 + 3,925 (fastai's README).
        "imagenette" if named("woof") => Published::Split { train: 9_025, val: 3_929 },
        "imagenette" => Published::Split { train: 9_469, val: 3_925 },
        "tiny_imagenet" => Published::Split { train: 100_000, val: 10_000 },
        "cifar10_bin" => Published::Split { train: 50_000, val: 10_000 },
        "eurosat" => Published::Whole(27_000),
        "corel1k" => Published::Whole(1_000),
        "pacs" => Published::Domains(PACS_DOMAINS),
        _ => return None,
    })
}

/// Training and validation images of one epoch on `spec`'s dataset, as its options split it;
/// `None` when its size cannot be known without reading it (`image_folder`).
pub fn epoch_images(spec: &DatasetSpec) -> Option<(f64, f64)> {
    if spec.format == "synthetic" {
        let options: SyntheticOptions = parse_options(spec).ok()?;
        return Some((options.train_size as f64, options.val_size as f64));
    }
    let split = |total: u64| -> Option<(f64, f64)> {
        let options: SplitOptions = parse_options(spec).ok()?;
        let val = (total as f64 * options.val_fraction).round();
        Some((total as f64 - val, val))
    };
    match published(spec)? {
        Published::Split { train, val } => Some((train as f64, val as f64)),
        Published::Whole(total) => split(total),
        Published::Domains(domains) => {
            let options: SplitOptions = parse_options(spec).ok()?;
            let total: u64 = domains.iter().map(|(_, n)| n).sum();
            match options.holdout_domain.as_deref() {
                Some(domain) => {
                    let held = domains.iter().find(|(d, _)| *d == domain)?.1;
                    Some(((total - held) as f64, held as f64))
                }
                None => split(total),
            }
        }
    }
}
