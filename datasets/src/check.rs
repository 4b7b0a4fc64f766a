//! `data check`: every dataset and trunk a sweep uses, checked on the disk before a GPU is
//! booked: found or not, layout recognised, classes, images per split, unreadable files (each
//! named), weights present and matching their manifest. The first trial must not be the first to
//! find a broken data root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::trial::DatasetSpec;
use serde::Deserialize;

use crate::error::DataError;
use crate::scan::{self, CIFAR_RECORD};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Roots already resolved against the data root.
    pub datasets: Vec<DatasetSpec>,
    /// (architecture, weights file).
    pub weights: Vec<(String, PathBuf)>,
}

/// How deeply to read each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// The header (format and dimensions): catches empty, garbage and mislabelled files.
    Header,
    /// Every pixel: catches truncated files too, at the price of a full decode.
    Decode,
}

/// The keys of a sweep file that name data; the rest of the file is the coordinator's to check.
#[derive(Debug, Deserialize)]
struct SweepData {
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    datasets: BTreeMap<String, SweepDataset>,
    #[serde(default)]
    pretrained: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Deserialize)]
struct SweepDataset {
    format: String,
    #[serde(default)]
    root: Option<PathBuf>,
    #[serde(default)]
    options: BTreeMap<String, serde_json::Value>,
}

impl Plan {
    /// The datasets and weights of `sweep`, relative paths under `data_root` (default: the sweep
    /// file's folder, as the coordinator resolves them).
    pub fn from_sweep(sweep: &Path, data_root: Option<&Path>) -> Result<Plan, DataError> {
        let text = std::fs::read_to_string(sweep).map_err(|e| DataError::io(sweep, e))?;
        let data: SweepData = serde_yaml_ng::from_str(&text).map_err(|e| DataError::Catalogue {
            file: sweep.display().to_string(),
            message: e.to_string(),
        })?;
        let base = data_root
            .map(Path::to_path_buf)
            .unwrap_or_else(|| sweep.parent().unwrap_or(Path::new("")).to_path_buf());
        let datasets = data
            .datasets
            .into_iter()
            .map(|(name, d)| DatasetSpec {
                name,
                format: d.format,
                root: d.root.map(|r| base.join(r)),
                options: d.options,
            })
            .collect();
        let weights = data
            .pretrained
            .into_iter()
            .filter(|(architecture, _)| data.architectures.as_ref().is_none_or(|a| a.contains(architecture)))
            .map(|(architecture, path)| (architecture, base.join(path)))
            .collect();
        Ok(Plan { datasets, weights })
    }
}

impl Plan {
    /// What a sweep's expanded trials use (the coordinator's view: roots and weights resolved as
    /// the trials will see them), each dataset and trunk once.
    pub fn from_trials<'a>(trials: impl IntoIterator<Item = &'a common::trial::TrialSpec>) -> Plan {
        let mut datasets = BTreeMap::new();
        let mut weights = BTreeMap::new();
        for trial in trials {
            datasets.entry(trial.dataset.name.clone()).or_insert_with(|| trial.dataset.clone());
            if let Some(path) = &trial.pretrained {
                weights.entry(trial.architecture.clone()).or_insert_with(|| path.clone());
            }
        }
        Plan { datasets: datasets.into_values().collect(), weights: weights.into_iter().collect() }
    }
}

/// One dataset's findings.
#[derive(Debug, Clone)]
pub struct DatasetFindings {
    pub name: String,
    pub format: String,
    pub root: Option<PathBuf>,
    pub scan: Option<scan::Scan>,
    pub unreadable: Vec<(PathBuf, String)>,
    /// The layout problem, when it was not recognised.
    pub problem: Option<String>,
}

/// One trunk's findings.
#[derive(Debug, Clone)]
pub struct WeightsFindings {
    pub architecture: String,
    pub path: PathBuf,
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub datasets: Vec<DatasetFindings>,
    pub weights: Vec<WeightsFindings>,
}

impl Report {
    /// One line per problem: what, where.
    pub fn problems(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for d in &self.datasets {
            if let Some(problem) = &d.problem {
                lines.push(format!("{}: {problem}", d.name));
            }
            for (path, why) in &d.unreadable {
                lines.push(format!("{}: {}: unreadable: {why}", d.name, path.display()));
            }
        }
        for w in &self.weights {
            if let Some(problem) = &w.problem {
                lines.push(format!("weights:{}: {problem}", w.architecture));
            }
        }
        lines
    }

    pub fn table(&self) -> String {
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header(["dataset", "format", "root", "status", "classes", "train", "val", "unreadable"]);
        for d in &self.datasets {
            let root = d.root.as_ref().map_or("-".to_string(), |r| r.display().to_string());
            let (status, classes, train, val) = match (&d.scan, &d.problem) {
                (Some(s), _) => (
                    if d.unreadable.is_empty() { "ok" } else { "unreadable files" },
                    s.classes.len().to_string(),
                    s.train.to_string(),
                    s.val.to_string(),
                ),
                (None, _) if d.root.as_ref().is_some_and(|r| !r.exists()) => {
                    ("missing", "-".into(), "-".into(), "-".into())
                }
                (None, _) => ("layout not recognised", "-".into(), "-".into(), "-".into()),
            };
            table.add_row([
                d.name.clone(),
                d.format.clone(),
                root,
                status.to_string(),
                classes,
                train,
                val,
                d.unreadable.len().to_string(),
            ]);
        }
        let mut out = table.to_string();
        if !self.weights.is_empty() {
            let mut weights = comfy_table::Table::new();
            weights.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            weights.set_header(["architecture", "weights", "status"]);
            for w in &self.weights {
                let status = match &w.problem {
                    None => "ok (fits its manifest)".to_string(),
                    Some(_) if !w.path.exists() => "missing".to_string(),
                    Some(_) => "does not fit".to_string(),
                };
                weights.add_row([w.architecture.clone(), w.path.display().to_string(), status]);
            }
            out.push('\n');
            out.push_str(&weights.to_string());
        }
        out
    }
}

/// Checks every dataset and trunk of `plan`; reads images on `threads` threads.
pub fn check(plan: &Plan, depth: Depth, threads: usize) -> Report {
    let datasets = plan
        .datasets
        .iter()
        .filter(|spec| spec.format != "synthetic")
        .map(|spec| {
            let mut findings = DatasetFindings {
                name: spec.name.clone(),
                format: spec.format.clone(),
                root: spec.root.clone(),
                scan: None,
                unreadable: Vec::new(),
                problem: None,
            };
            match scan::scan(spec) {
                Ok(scan) => {
                    findings.unreadable = if spec.format == "cifar10_bin" {
                        cifar_labels(&scan)
                    } else {
                        unreadable_images(&scan.files, depth, threads)
                    };
                    findings.scan = Some(scan);
                }
                Err(problem) => findings.problem = Some(problem.to_string()),
            }
            findings
        })
        .collect();
    let weights = plan
        .weights
        .iter()
        .map(|(architecture, path)| WeightsFindings {
            architecture: architecture.clone(),
            path: path.clone(),
            problem: common::weights_manifest::check_file(architecture, path).err().map(|e| e.reason),
        })
        .collect();
    Report { datasets, weights }
}

/// Every record's label must name a class of `batches.meta.txt`.
fn cifar_labels(scan: &scan::Scan) -> Vec<(PathBuf, String)> {
    let mut bad = Vec::new();
    for path in &scan.files {
        match std::fs::read(path) {
            Ok(bytes) => {
                let records = bytes.chunks(CIFAR_RECORD as usize);
                if let Some((index, label)) = records
                    .enumerate()
                    .map(|(i, r)| (i, r[0]))
                    .find(|(_, label)| usize::from(*label) >= scan.classes.len())
                {
                    bad.push((
                        path.clone(),
                        format!("record {index} has label {label}, past the {} classes", scan.classes.len()),
                    ));
                }
            }
            Err(e) => bad.push((path.clone(), e.to_string())),
        }
    }
    bad
}

fn unreadable_images(files: &[PathBuf], depth: Depth, threads: usize) -> Vec<(PathBuf, String)> {
    let threads = threads.max(1);
    let chunk = files.len().div_ceil(threads).max(1);
    let mut bad: Vec<(PathBuf, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|p| read_image(p, depth).err().map(|e| (p.clone(), e)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    bad.sort();
    bad
}

fn read_image(path: &Path, depth: Depth) -> Result<(), String> {
    let reader = image::ImageReader::open(path).map_err(|e| e.to_string())?;
    let reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image in any known format".into());
    }
    match depth {
        Depth::Header => reader.into_dimensions().map(drop).map_err(|e| e.to_string()),
        Depth::Decode => reader.decode().map(drop).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(
        architecture: &str,
        dataset: &str,
        resolution: u32,
        pretrained: Option<&str>,
    ) -> common::trial::TrialSpec {
        let json = serde_json::json!({
            "architecture": architecture, "optimizer": "adam", "resolution": resolution, "method": "baseline",
            "epochs": 1, "batch_size": 8, "learning_rate": 1e-3, "seed": 1,
            "dataset": {"name": dataset, "format": "eurosat", "root": format!("/data/{dataset}")},
            "pretrained": pretrained,
        });
        serde_json::from_value(json).expect("a trial")
    }

    #[test]
    fn a_sweeps_trials_give_each_dataset_and_trunk_once() {
        let trials = [
            trial("resnet50", "eurosat_rgb", 32, Some("/data/weights/resnet50.safetensors")),
            trial("resnet50", "eurosat_rgb", 64, Some("/data/weights/resnet50.safetensors")),
            trial("small_cnn", "pacs", 32, None),
        ];
        let plan = Plan::from_trials(&trials);
        let names: Vec<&str> = plan.datasets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["eurosat_rgb", "pacs"]);
        assert_eq!(
            plan.weights,
            [("resnet50".to_string(), PathBuf::from("/data/weights/resnet50.safetensors"))]
        );
    }
}
