//! What a trial's run holds: its folder's name, the scalars of each epoch, the text of each SAL
//! intervention, its hyperparameters and final metrics, and the experiment record of a sweep.
//! The export and `--tensorboard` both write a run through [`super::run_file::RunFile`], so both
//! write the same thing.
//!
//! - every epoch report: one event at step = epoch (1-based) with the scalars of
//!   [`epoch_scalars`]; the learning rate is the trial's, a constant;
//! - every epoch whose SAL record applied an action: a text at that step, [`INTERVENTION_TAG`];
//! - the hyperparameters ([`session_hparams`]) as the run's `session_start_info`;
//! - the final metrics ([`final_scalars`]) at the last epoch's step, so that the HParams table
//!   shows them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{EpochReport, TrialResult, TrialSpec};
use sal_core::{Action, EpochRecord};

use super::{HParamInfo, HParamValue};

/// The text tag of SAL's interventions.
pub const INTERVENTION_TAG: &str = "sal/intervention";

/// The metrics of the HParams table, in its column order (it shows the first five unless asked):
/// the final evaluation, then the last epoch's validation and training figures.
pub const METRICS: [&str; 7] =
    ["test/top1", "test/top5", "test/loss", "val/accuracy", "val/loss", "train/accuracy", "train/loss"];

/// The hyperparameters of a trial, as the HParams dashboard names them: the grid's axes, then the
/// training settings.
pub const HPARAMS: [&str; 9] = [
    "method",
    "architecture",
    "optimizer",
    "dataset",
    "resolution",
    "seed",
    "learning_rate",
    "batch_size",
    "epochs",
];

/// The run's folder under the logdir, by the trial's cell:
/// `architecture/optimizer/dataset@resolution/method-seedN-ID`.
///
/// A folder per cell rather than one flat name: TensorBoard names a run by its path and lists runs
/// sorted, so a cell's methods and seeds stand together (baseline and SAL of a seed side by side),
/// the run filter's regex can pick a slice (`resnet50/adam/`), and `tensorboard --logdir
/// OUT/resnet50` opens one architecture alone, which is much lighter than 13,440 runs. The
/// trial's id (16 hex digits) ends the name: it keeps two definitions of one cell and seed apart
/// and is what `coordinator show ID` takes. Each part is made filesystem-safe ([`safe`]).
pub fn run_dir(id: &str, spec: &TrialSpec) -> PathBuf {
    [
        safe(&spec.architecture),
        safe(&spec.optimizer),
        safe(&spec.cache_key()),
        safe(&format!("{}-seed{}-{id}", spec.method.name(), spec.seed)),
    ]
    .iter()
    .collect()
}

/// One path component: ASCII letters, digits and `-_.@+=,` kept, anything else `_`; never empty,
/// never starting with a dot (no `..`, no hidden folder).
pub fn safe(part: &str) -> String {
    let mut out: String = part
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.@+=,".contains(c) { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// The scalars of one epoch, in a fixed order; SAL's three when the epoch has a SAL record.
pub fn epoch_scalars(report: &EpochReport, learning_rate: f64) -> Vec<(&'static str, f32)> {
    let mut scalars = vec![
        ("train/loss", report.train_loss as f32),
        ("train/accuracy", report.train_accuracy as f32),
        ("val/loss", report.val_loss as f32),
        ("val/accuracy", report.val_accuracy as f32),
        ("train/grad_norm", report.grad_norm as f32),
        ("train/learning_rate", learning_rate as f32),
        ("time/epoch_seconds", report.seconds as f32),
        ("time/train_images_per_s", report.train_images_per_s as f32),
    ];
    if let Some(sal) = &report.sal {
        scalars.push(("sal/stress", sal.stress as f32));
        scalars.push(("sal/stress_after", sal.stress_after as f32));
        scalars.push(("sal/noise_sigma", sal.noise_sigma as f32));
    }
    scalars
}

/// What SAL did at an epoch, in Markdown (the text dashboard renders it); `None` when it applied
/// nothing.
pub fn intervention_text(sal: &EpochRecord) -> Option<String> {
    let what = match sal.applied {
        Action::None => return None,
        Action::Noise => format!("noise (σ = {:.3e})", sal.noise_sigma),
        Action::Plastic => "plastic deformation".to_owned(),
        Action::NoisePlastic => format!("noise (σ = {:.3e}) and plastic deformation", sal.noise_sigma),
        Action::Recovered => "recovered: the yield point restored".to_owned(),
    };
    Some(format!(
        "epoch {}: **{what}** at stress {:.4} (stress after: {:.4})",
        sal.epoch, sal.stress, sal.stress_after
    ))
}

/// The final evaluation's metrics, written at the last epoch's step.
pub fn final_scalars(result: &TrialResult) -> [(&'static str, f32); 3] {
    [
        ("test/top1", result.top1 as f32),
        ("test/top5", result.top5 as f32),
        ("test/loss", result.test_loss as f32),
    ]
}

/// The trial's hyperparameters, in [`HPARAMS`] order.
pub fn session_hparams(spec: &TrialSpec) -> Vec<(&'static str, HParamValue)> {
    let text = |s: &str| HParamValue::Text(s.to_owned());
    let number = HParamValue::Number;
    let values = [
        text(spec.method.name()),
        text(&spec.architecture),
        text(&spec.optimizer),
        text(&spec.dataset.name),
        number(f64::from(spec.resolution)),
        number(spec.seed as f64),
        number(spec.learning_rate),
        number(f64::from(spec.batch_size)),
        number(f64::from(spec.epochs)),
    ];
    HPARAMS.into_iter().zip(values).collect()
}

/// The experiment's hparam columns for these trials: each with the values seen as its discrete
/// domain (sorted), those that vary first (in [`HPARAMS`] order), then those all trials share, so
/// that the columns a dashboard shows first are ones that tell trials apart. (TensorBoard 2.21
/// orders them itself: those marked `differs`, a domain of several values, first, then by name.)
pub fn experiment_hparams<'a>(specs: impl IntoIterator<Item = &'a TrialSpec>) -> Vec<HParamInfo> {
    let mut seen: BTreeMap<usize, Vec<HParamValue>> = BTreeMap::new();
    for spec in specs {
        for (i, (_, value)) in session_hparams(spec).into_iter().enumerate() {
            seen.entry(i).or_default().push(value);
        }
    }
    let mut columns: Vec<(bool, HParamInfo)> = seen
        .into_iter()
        .map(|(i, mut values)| {
            values.sort_by(|a, b| match (a, b) {
                (HParamValue::Number(x), HParamValue::Number(y)) => x.total_cmp(y),
                (HParamValue::Text(x), HParamValue::Text(y)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            });
            values.dedup();
            (values.len() == 1, HParamInfo::discrete(HPARAMS[i], values))
        })
        .collect();
    // Stable: the varying ones keep their order, then the constant ones keep theirs.
    columns.sort_by_key(|(constant, _)| *constant);
    columns.into_iter().map(|(_, info)| info).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: &str, seed: u64, lr: f64) -> TrialSpec {
        serde_json::from_value(serde_json::json!({
            "architecture": "small_cnn", "optimizer": "adam", "resolution": 16, "method": method,
            "epochs": 6, "batch_size": 8, "learning_rate": lr, "seed": seed,
            "dataset": {"name": "synth/../x y", "format": "synthetic"},
        }))
        .unwrap()
    }

    #[test]
    fn a_run_is_a_folder_per_cell_with_safe_names() {
        let dir = run_dir("0123456789abcdef", &spec("sal", 3, 0.1));
        assert_eq!(dir, PathBuf::from("small_cnn/adam/synth_.._x_y@16/sal-seed3-0123456789abcdef"));
        assert_eq!(safe(".."), "_..");
        assert_eq!(safe(""), "_");
    }

    #[test]
    fn the_columns_that_vary_come_first_with_the_values_seen() {
        let specs = [spec("sal", 2, 0.1), spec("baseline", 1, 0.1), spec("sal", 1, 0.1)];
        let columns = experiment_hparams(&specs);
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "method",
                "seed",
                "architecture",
                "optimizer",
                "dataset",
                "resolution",
                "learning_rate",
                "batch_size",
                "epochs"
            ]
        );
        let text = |s: &str| HParamValue::Text(s.into());
        assert_eq!(columns[0], HParamInfo::discrete("method", vec![text("baseline"), text("sal")]));
        let numbers = vec![HParamValue::Number(1.0), HParamValue::Number(2.0)];
        assert_eq!(columns[1], HParamInfo::discrete("seed", numbers));
    }

    #[test]
    fn only_applied_actions_have_a_text() {
        let record = |applied| EpochRecord {
            epoch: 4,
            loss: 1.0,
            accuracy: 0.5,
            stress: 0.875,
            stress_after: 0.0,
            decided: Action::NoisePlastic,
            applied,
            noise_sigma: 0.00125,
        };
        assert_eq!(intervention_text(&record(Action::None)), None);
        assert_eq!(
            intervention_text(&record(Action::NoisePlastic)).unwrap(),
            "epoch 4: **noise (σ = 1.250e-3) and plastic deformation** at stress 0.8750 (stress after: 0.0000)"
        );
    }
}
