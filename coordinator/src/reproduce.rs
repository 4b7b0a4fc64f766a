//! `coordinator reproduce TRIAL`: reruns one trial of the store from its stored definition in a
//! fresh `worker train` process on this machine, and compares the rerun with the stored result,
//! epoch by epoch, bit for bit.
//!
//! What is compared: every number an epoch report carries that training computes (losses,
//! accuracies, gradient norm, SAL's record), then the final evaluation (top-1, top-5, test loss,
//! per-class metrics, confusion matrix). What is not: wall-clock times, throughput and memory,
//! which no rerun repeats. The rerun takes the stored result's ranks and devices from its
//! manifest, so that a 2-rank result is rerun on 2 ranks.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::run_manifest::{RunManifest, CUBLAS_WORKSPACE_CONFIG};
use common::{TrialResult, TrialSpec};
use serde_json::Value;

use crate::report::grid::Grid;

/// Epoch report fields that measure the run, not what it computed.
const NOT_COMPUTED: &[&str] = &["seconds", "peak_device_mb", "train_images_per_s", "eval_images_per_s"];
/// Result fields that measure the run, or are compared epoch by epoch already.
const NOT_COMPUTED_RESULT: &[&str] =
    &["train_seconds", "peak_host_mb", "peak_device_mb", "inference_ms_per_batch", "history", "manifest"];

/// Where two results first part.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// The epoch (1-based); `None`: the final evaluation.
    pub epoch: Option<u32>,
    /// The metric's path in the JSON form (`train_loss`, `sal.stress`, `per_class[3].f1`).
    pub metric: String,
    pub stored: Value,
    pub rerun: Value,
}

impl Difference {
    /// `epoch 3, train_loss: stored 0.6931471805599453, rerun 0.6931471805599454 (differs by
    /// 1.1e-16, relative 1.6e-16)`.
    pub fn describe(&self) -> String {
        let at = self.epoch.map_or_else(|| "final evaluation".to_string(), |e| format!("epoch {e}"));
        let by = match (self.stored.as_f64(), self.rerun.as_f64()) {
            (Some(a), Some(b)) => {
                let diff = (a - b).abs();
                let scale = a.abs().max(b.abs());
                let relative = if scale > 0.0 { diff / scale } else { 0.0 };
                format!(" (differs by {diff:.3e}, relative {relative:.3e})")
            }
            _ => String::new(),
        };
        format!("{at}, {}: stored {}, rerun {}{by}", self.metric, self.stored, self.rerun)
    }
}

/// The verdict of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// Every compared number has the same bits.
    Identical { epochs: usize },
    /// The first number that differs.
    Differs(Difference),
}

/// The leaves of a JSON value with their paths, in document order (maps are sorted by key).
fn leaves(value: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                leaves(inner, path, out);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                leaves(inner, format!("{path}[{i}]"), out);
            }
        }
        leaf => out.push((path, leaf.clone())),
    }
}

/// Two leaves are the same when their bits are: numbers as f64 bit patterns (JSON keeps an f64
/// exactly: the writer prints the shortest form that reads back to the same bits), the rest as
/// they are.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x.to_bits() == y.to_bits(),
            _ => x == y,
        },
        _ => a == b,
    }
}

/// The first leaf of `stored` and `rerun` (the JSON forms of one kind of record, `skip` keys left
/// out at the top) that differs.
fn first_difference(stored: &Value, rerun: &Value, skip: &[&str]) -> Option<(String, Value, Value)> {
    let strip = |value: &Value| {
        let mut value = value.clone();
        if let Some(map) = value.as_object_mut() {
            for key in skip {
                map.remove(*key);
            }
        }
        let mut out = Vec::new();
        leaves(&value, String::new(), &mut out);
        out
    };
    let (a, b) = (strip(stored), strip(rerun));
    for i in 0..a.len().max(b.len()) {
        match (a.get(i), b.get(i)) {
            (Some((path, x)), Some((other, y))) if path == other => {
                if !same(x, y) {
                    return Some((path.clone(), x.clone(), y.clone()));
                }
            }
            (Some((path, x)), Some((other, y))) => {
                // Different shapes (a field one side lacks): name the first.
                let name = path.min(other).clone();
                return Some((name, x.clone(), y.clone()));
            }
            (Some((path, x)), None) => return Some((path.clone(), x.clone(), Value::Null)),
            (None, Some((path, y))) => return Some((path.clone(), Value::Null, y.clone())),
            (None, None) => break,
        }
    }
    None
}

/// The JSON form of plain data (which always serializes).
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Compares a rerun with the stored result: epoch by epoch, then the final evaluation.
pub fn compare(stored: &TrialResult, rerun: &TrialResult) -> Comparison {
    for (i, (a, b)) in stored.history.iter().zip(&rerun.history).enumerate() {
        if let Some((metric, stored, rerun)) = first_difference(&json(a), &json(b), NOT_COMPUTED) {
            let epoch = Some(u32::try_from(i + 1).unwrap_or(u32::MAX));
            return Comparison::Differs(Difference { epoch, metric, stored, rerun });
        }
    }
    if stored.history.len() != rerun.history.len() {
        let epoch = stored.history.len().min(rerun.history.len()) + 1;
        return Comparison::Differs(Difference {
            epoch: Some(u32::try_from(epoch).unwrap_or(u32::MAX)),
            metric: "epochs run".into(),
            stored: Value::from(stored.history.len()),
            rerun: Value::from(rerun.history.len()),
        });
    }
    if let Some((metric, a, b)) = first_difference(&json(stored), &json(rerun), NOT_COMPUTED_RESULT) {
        return Comparison::Differs(Difference { epoch: None, metric, stored: a, rerun: b });
    }
    Comparison::Identical { epochs: stored.history.len() }
}

/// The two manifests side by side; rows that differ are marked `*`.
pub fn manifests_grid(stored: Option<&RunManifest>, rerun: Option<&RunManifest>) -> Grid {
    let rows = |m: Option<&RunManifest>| m.map(RunManifest::rows);
    let (a, b) = (rows(stored), rows(rerun));
    let names: Vec<&str> =
        a.as_ref().or(b.as_ref()).map_or_else(Vec::new, |r| r.iter().map(|(n, _)| *n).collect());
    let value = |rows: &Option<Vec<(&'static str, String)>>, i: usize| {
        rows.as_ref().and_then(|r| r.get(i)).map_or_else(|| "(no manifest)".to_string(), |(_, v)| v.clone())
    };
    let grid_rows = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (x, y) = (value(&a, i), value(&b, i));
            let mark = if x == y { "" } else { "*" };
            vec![format!("{mark}{name}"), x, y]
        })
        .collect();
    Grid {
        title: "what produced each".into(),
        header: vec!["".into(), "stored".into(), "this rerun".into()],
        rows: grid_rows,
        numeric_from: usize::MAX,
        notes: vec!["* differs".into()],
        importance: &[],
    }
}

/// How a rerun is made.
#[derive(Debug, Clone)]
pub struct RerunOptions {
    /// The `worker` binary (`--worker-bin`, or the one beside the coordinator).
    pub worker_bin: PathBuf,
    /// The trial file, the rerun's result and its dataset cache go here.
    pub work_dir: PathBuf,
}

/// Why a trial could not be rerun.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    #[error("no worker binary at {}: build it (`cargo build --release -p worker`) or give --worker-bin", .0.display())]
    MissingWorker(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`worker train` exited with {status} (its output is above)")]
    WorkerFailed { status: std::process::ExitStatus },
    #[error("the rerun's result {}: {source}", path.display())]
    BadResult {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The command line of a rerun: the stored result's devices and ranks (one CPU rank when it has no
/// manifest).
pub fn worker_args(
    trial_file: &Path,
    out: &Path,
    work_dir: &Path,
    stored: Option<&RunManifest>,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "train".into(),
        "--trial".into(),
        trial_file.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--cache-dir".into(),
        work_dir.join("cache").display().to_string(),
        "--checkpoint-dir".into(),
        work_dir.join("checkpoints").display().to_string(),
        "--checkpoint-every".into(),
        "0".into(),
        "--no-progress".into(),
    ];
    let ranks = stored.map_or(1, |m| m.ranks.max(1));
    match stored {
        Some(m) if m.devices == "cuda" => {
            args.push("--gpus".into());
            args.push((0..ranks).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
        }
        _ => {
            args.push("--cpu-ranks".into());
            args.push(ranks.to_string());
        }
    }
    args
}

/// Reruns `spec` in a fresh `worker train` process (its epoch lines go to this process's stderr)
/// and reads its result.
pub fn rerun(
    trial_id: &str,
    spec: &TrialSpec,
    stored: Option<&RunManifest>,
    options: &RerunOptions,
) -> Result<TrialResult, RerunError> {
    if !options.worker_bin.is_file() {
        return Err(RerunError::MissingWorker(options.worker_bin.clone()));
    }
    let dir = options.work_dir.join(trial_id);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RerunError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let trial_file = dir.join("trial.json");
    std::fs::write(&trial_file, spec.canonical_json()).map_err(io(&trial_file))?;
    let out = dir.join("result.json");
    // A result of an earlier rerun must not pass for this one's.
    match std::fs::remove_file(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&out)(e)),
        _ => {}
    }
    let mut command = Command::new(&options.worker_bin);
    command
        .args(worker_args(&trial_file, &out, &options.work_dir, stored))
        .stdout(std::process::Stdio::null());
    if spec.deterministic {
        command.env(CUBLAS_WORKSPACE_CONFIG.0, CUBLAS_WORKSPACE_CONFIG.1);
    }
    let status = command.status().map_err(io(&options.worker_bin))?;
    if !status.success() {
        return Err(RerunError::WorkerFailed { status });
    }
    let text = std::fs::read_to_string(&out).map_err(io(&out))?;
    let result =
        serde_json::from_str(&text).map_err(|source| RerunError::BadResult { path: out.clone(), source })?;
    let _ = std::fs::remove_dir_all(options.work_dir.join("checkpoints"));
    Ok(result)
}

/// Why `reproduce` could not compare.
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    /// No trial, or several, start with the prefix (a usage error).
    #[error("{0}")]
    NoSuchTrial(String),
    #[error("trial {id} has no result to compare with (it is {state})")]
    NoResult { id: String, state: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Rerun(#[from] RerunError),
}

/// A finished comparison: what to print, and whether the rerun was bit-identical.
#[derive(Debug)]
pub struct Outcome {
    pub text: String,
    pub identical: bool,
}

/// `spec` as it was leased: a `shrink_perturb_random` trial with the deformation count of the
/// `sal` trial of its cell and seed (the same spec but for the method), which the store keeps
/// only in that trial's history.
fn with_partner_deformations(spec: &TrialSpec, records: &[crate::store::TrialRecord]) -> TrialSpec {
    let mut spec = spec.clone();
    if spec.method == common::Method::ShrinkPerturbRandom && spec.deformations.is_none() {
        let partner = TrialSpec { method: common::Method::Sal, ..spec.clone() };
        spec.deformations = records
            .iter()
            .find(|r| r.spec == partner)
            .and_then(|r| r.result.as_ref())
            .map(TrialResult::applied_deformations);
    }
    spec
}

/// Reruns the trial of the store in `state_dir` whose id starts with `prefix` and compares.
pub fn reproduce(state_dir: &Path, prefix: &str, options: &RerunOptions) -> Result<Outcome, ReproduceError> {
    let (_, records) = crate::store::read_records(state_dir)?;
    let record = crate::report::trial_view::find(&records, prefix).map_err(ReproduceError::NoSuchTrial)?;
    let stored = record
        .result
        .as_ref()
        .ok_or_else(|| ReproduceError::NoResult { id: record.id.clone(), state: record.state.clone() })?;
    let spec = with_partner_deformations(&record.spec, &records);
    let rerun = rerun(&record.id, &spec, stored.manifest.as_ref(), options)?;
    let comparison = compare(stored, &rerun);
    Ok(Outcome {
        text: render(&record.id, &comparison, stored, &rerun),
        identical: matches!(comparison, Comparison::Identical { .. }),
    })
}

/// What `reproduce` prints: the verdict, then the manifests side by side.
pub fn render(trial_id: &str, comparison: &Comparison, stored: &TrialResult, rerun: &TrialResult) -> String {
    let mut out = String::new();
    match comparison {
        Comparison::Identical { epochs } => {
            let _ = writeln!(
                out,
                "trial {trial_id}: bit-identical ({epochs} epoch(s) and the final evaluation, every computed number)"
            );
        }
        Comparison::Differs(difference) => {
            let _ = writeln!(out, "trial {trial_id}: differs, first at {}", difference.describe());
        }
    }
    out.push('\n');
    out.push_str(&manifests_grid(stored.manifest.as_ref(), rerun.manifest.as_ref()).text());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::EpochReport;

    fn epoch(epoch: u32, loss: f64) -> EpochReport {
        EpochReport {
            epoch,
            train_loss: loss,
            train_accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.25,
            grad_norm: 0.1,
            sal: None,
            seconds: 1.0,
            peak_device_mb: None,
            train_images_per_s: 10.0,
            eval_images_per_s: 20.0,
        }
    }

    fn result(losses: &[f64]) -> TrialResult {
        let mut result = crate::store::stand_in_result(common::TrialStatus::Completed, 0.5);
        result.history = losses.iter().enumerate().map(|(i, l)| epoch(i as u32 + 1, *l)).collect();
        result
    }

    #[test]
    fn the_same_numbers_are_identical_whatever_the_times() {
        let stored = result(&[0.7, 0.6]);
        let mut rerun = stored.clone();
        rerun.history[1].seconds = 99.0;
        rerun.history[0].train_images_per_s = 1.0;
        rerun.train_seconds = 50.0;
        rerun.peak_host_mb = 7.0;
        assert_eq!(compare(&stored, &rerun), Comparison::Identical { epochs: 2 });
    }

    #[test]
    fn one_bit_of_one_metric_is_named_with_its_epoch() {
        let stored = result(&[0.7, 0.6, 0.5]);
        let mut rerun = stored.clone();
        rerun.history[1].val_loss = f64::from_bits(1.0f64.to_bits() + 1);
        rerun.history[2].train_loss = 0.4;
        let Comparison::Differs(d) = compare(&stored, &rerun) else { panic!("no difference found") };
        assert_eq!((d.epoch, d.metric.as_str()), (Some(2), "val_loss"));
        let text = d.describe();
        assert!(text.starts_with("epoch 2, val_loss: stored 1.0, rerun 1.0000000000000002"), "{text}");
        assert!(text.contains("differs by 2.220e-16"), "{text}");
    }

    #[test]
    fn final_metrics_and_history_lengths_count() {
        let stored = result(&[0.7]);
        let mut rerun = stored.clone();
        rerun.top5 = 0.75;
        let Comparison::Differs(d) = compare(&stored, &rerun) else { panic!("no difference found") };
        assert_eq!((d.epoch, d.metric.as_str()), (None, "top5"));
        assert!(d.describe().starts_with("final evaluation, top5"), "{}", d.describe());
        let shorter = result(&[]);
        let Comparison::Differs(d) = compare(&stored, &shorter) else { panic!("no difference found") };
        assert_eq!((d.epoch, d.metric.as_str()), (Some(1), "epochs run"));
    }

    #[test]
    fn a_rerun_takes_the_stored_devices_and_ranks() {
        let manifest = RunManifest { devices: "cuda".into(), ranks: 2, ..RunManifest::default() };
        let args = worker_args(Path::new("t.json"), Path::new("r.json"), Path::new("w"), Some(&manifest));
        assert!(args.windows(2).any(|w| w == ["--gpus", "0,1"]), "{args:?}");
        let manifest = RunManifest { devices: "cpu".into(), ranks: 2, ..RunManifest::default() };
        let args = worker_args(Path::new("t.json"), Path::new("r.json"), Path::new("w"), Some(&manifest));
        assert!(args.windows(2).any(|w| w == ["--cpu-ranks", "2"]), "{args:?}");
        let args = worker_args(Path::new("t.json"), Path::new("r.json"), Path::new("w"), None);
        assert!(args.windows(2).any(|w| w == ["--cpu-ranks", "1"]), "{args:?}");
    }

    #[test]
    fn the_manifests_stand_side_by_side_with_differences_marked() {
        let a = RunManifest { version: "1".into(), host: "a".into(), ..RunManifest::default() };
        let b = RunManifest { version: "1".into(), host: "b".into(), ..RunManifest::default() };
        let grid = manifests_grid(Some(&a), Some(&b));
        let host = grid.rows.iter().find(|r| r[0].ends_with("host")).unwrap();
        assert_eq!(host, &vec!["*host".to_string(), "a".into(), "b".into()]);
        let version = grid.rows.iter().find(|r| r[0].ends_with("version")).unwrap();
        assert_eq!(version[0], "version");
        let grid = manifests_grid(None, Some(&b));
        assert_eq!(grid.rows[0][1], "(no manifest)");
    }
}
