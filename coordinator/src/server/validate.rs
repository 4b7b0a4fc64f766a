//! What workers send is checked before it is stored: every number in its range, every list the
//! length the trial implies, every string bounded. A refusal is `invalid_argument` naming the
//! field, so a worker with a bug (or a client that is not a worker) cannot put a result in the
//! store that a report would then average.

use common::{ClassMetrics, EpochReport, TrialResult, TrialSpec, TrialStatus};
use tonic::Status;

use crate::sweep::checkpoint_storage::SizeTable;

/// Longest id (worker, lease, trial) in bytes.
pub const MAX_ID: usize = 128;
/// Longest name (hostname, class label, `cached` entry) in bytes.
pub const MAX_NAME: usize = 256;
/// Longest error message in bytes.
pub const MAX_ERROR: usize = 16 * 1024;
/// Most entries of a list a worker sends (`cached`, `held_leases`).
pub const MAX_LIST: usize = 1024;
/// Most epochs a trial may have (reports carried by one completion included).
pub const MAX_EPOCHS: usize = 100_000;
/// Default cap of one gRPC message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;

fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("`{field}`: {reason}"))
}

/// An id: 1 to [`MAX_ID`] of `[A-Za-z0-9._:@-]`, not starting with `.`, so that it is safe in a
/// log line or a path.
pub fn id(value: &str, field: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if value.len() > MAX_ID {
        return Err(invalid(field, format!("longer than {MAX_ID} bytes")));
    }
    if value.starts_with('.') {
        return Err(invalid(field, "starts with `.`"));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || "._:@-".contains(*c))) {
        return Err(invalid(field, format!("character {c:?} is not allowed in an id")));
    }
    Ok(())
}

/// Free text of at most `max` bytes without control characters (newlines and tabs allowed in
/// error messages only, where `multiline`).
pub fn text(value: &str, field: &str, max: usize, multiline: bool) -> Result<(), Status> {
    if value.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    let allowed = |c: char| !c.is_control() || (multiline && (c == '\n' || c == '\t'));
    if let Some(c) = value.chars().find(|c| !allowed(*c)) {
        return Err(invalid(field, format!("control character {c:?}")));
    }
    Ok(())
}

/// A list of at most [`MAX_LIST`] names.
pub fn names(values: &[String], field: &str) -> Result<(), Status> {
    if values.len() > MAX_LIST {
        return Err(invalid(field, format!("more than {MAX_LIST} entries")));
    }
    for (i, value) in values.iter().enumerate() {
        text(value, &format!("{field}[{i}]"), MAX_NAME, false)?;
    }
    Ok(())
}

/// A list of at most [`MAX_LIST`] ids.
pub fn ids(values: &[String], field: &str) -> Result<(), Status> {
    if values.len() > MAX_LIST {
        return Err(invalid(field, format!("more than {MAX_LIST} entries")));
    }
    for (i, value) in values.iter().enumerate() {
        id(value, &format!("{field}[{i}]"))?;
    }
    Ok(())
}

fn finite(value: f64, field: &str) -> Result<(), Status> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(invalid(field, format!("{value} is not a finite number")))
    }
}

fn non_negative(value: f64, field: &str) -> Result<(), Status> {
    finite(value, field)?;
    if value < 0.0 {
        return Err(invalid(field, format!("{value} is negative")));
    }
    Ok(())
}

fn fraction(value: f64, field: &str) -> Result<(), Status> {
    finite(value, field)?;
    if !(0.0..=1.0).contains(&value) {
        return Err(invalid(field, format!("{value} is not in [0, 1]")));
    }
    Ok(())
}

/// An epoch report of a trial with `epochs` epochs (`None`: not known here).
pub fn epoch_report(report: &EpochReport, field: &str, epochs: Option<u32>) -> Result<(), Status> {
    let at = |name: &str| format!("{field}.{name}");
    let last = epochs.unwrap_or(MAX_EPOCHS as u32);
    if !(1..=last).contains(&report.epoch) {
        return Err(invalid(&at("epoch"), format!("{} is not in 1..={last}", report.epoch)));
    }
    non_negative(report.train_loss, &at("train_loss"))?;
    non_negative(report.val_loss, &at("val_loss"))?;
    fraction(report.train_accuracy, &at("train_accuracy"))?;
    fraction(report.val_accuracy, &at("val_accuracy"))?;
    non_negative(report.grad_norm, &at("grad_norm"))?;
    non_negative(report.seconds, &at("seconds"))?;
    non_negative(report.train_images_per_s, &at("train_images_per_s"))?;
    non_negative(report.eval_images_per_s, &at("eval_images_per_s"))?;
    if let Some(device) = report.peak_device_mb {
        non_negative(device, &at("peak_device_mb"))?;
    }
    if let Some(sal) = &report.sal {
        if sal.epoch != report.epoch {
            return Err(invalid(
                &at("sal.epoch"),
                format!("{} is not the report's epoch {}", sal.epoch, report.epoch),
            ));
        }
        for (value, name) in [
            (sal.loss, "sal.loss"),
            (sal.accuracy, "sal.accuracy"),
            (sal.stress, "sal.stress"),
            (sal.stress_after, "sal.stress_after"),
            (sal.noise_sigma, "sal.noise_sigma"),
        ] {
            finite(value, &at(name))?;
        }
    }
    Ok(())
}

/// The number of classes a dataset has, where the trial's definition fixes it: generated data.
/// Formats read from disk take their classes from their files (CIFAR's `batches.meta.txt`, Tiny
/// ImageNet's `wnids.txt`, folders), which only workers see: those results are checked for
/// consistency instead.
fn known_classes(spec: &TrialSpec) -> Option<usize> {
    match spec.dataset.format.as_str() {
        "synthetic" => Some(
            spec.dataset
                .options
                .get("classes")
                .and_then(serde_json::Value::as_u64)
                .map_or(10, |c| c as usize),
        ),
        _ => None,
    }
}

fn class_metrics(metrics: &ClassMetrics, field: &str) -> Result<(), Status> {
    text(&metrics.label, &format!("{field}.label"), MAX_NAME, false)?;
    fraction(metrics.precision, &format!("{field}.precision"))?;
    fraction(metrics.recall, &format!("{field}.recall"))?;
    fraction(metrics.f1, &format!("{field}.f1"))
}

/// A trial's result, against its definition when known (`spec`).
pub fn result(result: &TrialResult, spec: Option<&TrialSpec>) -> Result<(), Status> {
    const F: &str = "result_json";
    let at = |name: &str| format!("{F}.{name}");
    fraction(result.top1, &at("top1"))?;
    fraction(result.top5, &at("top5"))?;
    non_negative(result.test_loss, &at("test_loss"))?;
    non_negative(result.train_seconds, &at("train_seconds"))?;
    non_negative(result.peak_host_mb, &at("peak_host_mb"))?;
    if let Some(device) = result.peak_device_mb {
        non_negative(device, &at("peak_device_mb"))?;
    }
    non_negative(result.inference_ms_per_batch, &at("inference_ms_per_batch"))?;
    if let Some(field) = result.manifest.as_ref().and_then(common::run_manifest::RunManifest::oversized_field)
    {
        return Err(invalid(
            &at(&format!("manifest.{field}")),
            format!("longer than {} bytes", common::run_manifest::MAX_FIELD_BYTES),
        ));
    }
    class_metrics(&result.macro_avg, &at("macro_avg"))?;
    class_metrics(&result.weighted_avg, &at("weighted_avg"))?;

    // Per-class rows: one per class of the dataset, a square confusion matrix whose rows add up
    // to their class's support. Stand-in (noop) and diverged trials evaluate nothing.
    let classes = result.per_class.len();
    let evaluates =
        result.status == TrialStatus::Completed && spec.is_none_or(|s| s.architecture != common::names::NOOP);
    if classes == 0 {
        if evaluates && spec.is_some() {
            return Err(invalid(&at("per_class"), "is empty: a completed trial evaluates every class"));
        }
        if !result.confusion.is_empty() {
            return Err(invalid(&at("confusion"), "has rows but `per_class` is empty"));
        }
    } else {
        if let Some(expected) = spec.and_then(known_classes) {
            if classes != expected {
                return Err(invalid(
                    &at("per_class"),
                    format!("{classes} rows; the dataset has {expected} classes"),
                ));
            }
        }
        if classes > 100_000 {
            return Err(invalid(&at("per_class"), "more than 100000 classes"));
        }
        for (i, metrics) in result.per_class.iter().enumerate() {
            class_metrics(metrics, &at(&format!("per_class[{i}]")))?;
        }
        if result.confusion.len() != classes {
            return Err(invalid(
                &at("confusion"),
                format!(
                    "{} rows for {classes} classes: a confusion matrix is square",
                    result.confusion.len()
                ),
            ));
        }
        let mut total = 0u64;
        for (i, row) in result.confusion.iter().enumerate() {
            if row.len() != classes {
                return Err(invalid(
                    &at(&format!("confusion[{i}]")),
                    format!("{} columns for {classes} classes: a confusion matrix is square", row.len()),
                ));
            }
            let sum = row.iter().try_fold(0u64, |s, v| s.checked_add(*v));
            let support = result.per_class[i].support;
            if sum != Some(support) {
                return Err(invalid(
                    &at(&format!("confusion[{i}]")),
                    format!("adds up to {sum:?}, not to the class's support {support}"),
                ));
            }
            total = total.saturating_add(support);
        }
        for (average, name) in [(&result.macro_avg, "macro_avg"), (&result.weighted_avg, "weighted_avg")] {
            if average.support != total {
                return Err(invalid(
                    &at(&format!("{name}.support")),
                    format!("{} is not the confusion matrix's total {total}", average.support),
                ));
            }
        }
    }

    // History: epochs 1..E without gaps; E is the trial's epochs when it completed, fewer when it
    // diverged (the history ends at the last finite epoch).
    let epochs = spec.map(|s| s.epochs);
    if result.history.len() > MAX_EPOCHS {
        return Err(invalid(&at("history"), format!("more than {MAX_EPOCHS} epochs")));
    }
    for (i, report) in result.history.iter().enumerate() {
        let field = at(&format!("history[{i}]"));
        epoch_report(report, &field, epochs)?;
        if report.epoch as usize != i + 1 {
            return Err(invalid(
                &format!("{field}.epoch"),
                format!("{} where epoch {} belongs: a gap", report.epoch, i + 1),
            ));
        }
    }
    if let (TrialStatus::Completed, Some(epochs)) = (result.status, epochs) {
        if result.history.len() != epochs as usize {
            return Err(invalid(
                &at("history"),
                format!("{} epochs for a completed trial of {epochs}", result.history.len()),
            ));
        }
    }
    if let Some(flatness) = &result.flatness {
        flatness_result(flatness, &at("flatness"))?;
    }
    Ok(())
}

/// Most directions, and points per direction, a flatness result may carry.
const MAX_FLATNESS_DIRECTIONS: usize = 64;
const MAX_FLATNESS_STEPS: usize = 1024;

/// Flatness: finite numbers, a standard error >= 0, direction traces of bounded, matching sizes.
fn flatness_result(flatness: &common::flatness::Flatness, at: &str) -> Result<(), Status> {
    let field = |name: &str| format!("{at}.{name}");
    for (value, name) in
        [(flatness.loss, "loss"), (flatness.trace_h, "trace_h"), (flatness.lambda_max, "lambda_max")]
    {
        finite(value, &field(name))?;
    }
    for (value, name) in [
        (flatness.trace_h_se, "trace_h_se"),
        (flatness.lambda_residual, "lambda_residual"),
        (flatness.grad_norm, "grad_norm"),
        (flatness.seconds, "seconds"),
    ] {
        non_negative(value, &field(name))?;
    }
    if flatness.directions.len() > MAX_FLATNESS_DIRECTIONS {
        return Err(invalid(&field("directions"), format!("more than {MAX_FLATNESS_DIRECTIONS}")));
    }
    for (i, trace) in flatness.directions.iter().enumerate() {
        let name = field(&format!("directions[{i}]"));
        if trace.alphas.len() != trace.losses.len() || trace.alphas.len() > MAX_FLATNESS_STEPS {
            return Err(invalid(
                &name,
                format!(
                    "{} steps and {} losses (at most {MAX_FLATNESS_STEPS}, equal)",
                    trace.alphas.len(),
                    trace.losses.len()
                ),
            ));
        }
        for value in trace.alphas.iter().chain(&trace.losses) {
            finite(*value, &name)?;
        }
    }
    Ok(())
}

/// The most bytes one checkpoint upload of `spec` may take: `configured` (`--max-checkpoint-mb`),
/// else the size table's upper bound on the trial's checkpoint (model, optimizer state and SAL's
/// yield point; see `checkpoint_storage`) plus a quarter and 16 MiB of slack. A trial the table
/// does not know gets [`UNKNOWN_CHECKPOINT_CAP`].
pub fn checkpoint_cap(spec: Option<&TrialSpec>, configured: Option<u64>, sizes: &SizeTable) -> u64 {
    if let Some(bytes) = configured {
        return bytes;
    }
    match spec.and_then(|spec| sizes.checkpoint_bytes(spec)) {
        Some(bound) => bound.saturating_add(bound / 4).saturating_add(16 << 20),
        None => UNKNOWN_CHECKPOINT_CAP,
    }
}

/// The cap of a checkpoint whose size nothing here can estimate: 4 GiB.
pub const UNKNOWN_CHECKPOINT_CAP: u64 = 4 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: u32) -> EpochReport {
        EpochReport {
            epoch,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.5,
            grad_norm: 0.1,
            sal: None,
            seconds: 0.1,
            peak_device_mb: None,
            train_images_per_s: 100.0,
            eval_images_per_s: 400.0,
        }
    }

    fn metrics(label: &str, support: u64) -> ClassMetrics {
        ClassMetrics { label: label.into(), precision: 0.5, recall: 0.5, f1: 0.5, support }
    }

    fn spec() -> TrialSpec {
        serde_json::from_value(serde_json::json!({
            "architecture": "small_cnn", "optimizer": "adam", "resolution": 32, "method": "baseline",
            "epochs": 2, "batch_size": 8, "learning_rate": 0.01, "seed": 1,
            "dataset": {"name": "s", "format": "synthetic", "options": {"classes": 2}}
        }))
        .unwrap()
    }

    fn good() -> TrialResult {
        TrialResult {
            status: TrialStatus::Completed,
            top1: 0.5,
            top5: 1.0,
            test_loss: 0.7,
            per_class: vec![metrics("a", 3), metrics("b", 1)],
            macro_avg: metrics("macro avg", 4),
            weighted_avg: metrics("weighted avg", 4),
            confusion: vec![vec![2, 1], vec![0, 1]],
            train_seconds: 1.0,
            peak_host_mb: 10.0,
            peak_device_mb: None,
            inference_ms_per_batch: 1.0,
            history: vec![report(1), report(2)],
            flatness: None,
            manifest: None,
        }
    }

    fn flatness(trace_h: f64, steps: usize) -> common::flatness::Flatness {
        common::flatness::Flatness {
            images: 8,
            params: common::flatness::FlatnessParams::All,
            parameters: 31,
            loss: 0.5,
            trace_h,
            trace_h_se: 0.1,
            probes: 4,
            lambda_max: 2.0,
            lambda_residual: 0.01,
            power_iterations: 10,
            grad_norm: 0.3,
            directions: vec![common::flatness::DirectionTrace {
                alphas: vec![0.0; steps],
                losses: vec![0.5; steps],
            }],
            seconds: 0.2,
        }
    }

    fn refused(result: &TrialResult) -> String {
        let status = super::result(result, Some(&spec())).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_string()
    }

    #[test]
    fn a_consistent_result_passes_and_each_kind_of_damage_names_its_field() {
        result(&good(), Some(&spec())).unwrap();
        type Damage = Box<dyn Fn(&mut TrialResult)>;
        let cases: Vec<(&str, Damage)> = vec![
            ("result_json.top1", Box::new(|r| r.top1 = 1.5)),
            ("result_json.top5", Box::new(|r| r.top5 = -0.1)),
            ("result_json.test_loss", Box::new(|r| r.test_loss = f64::INFINITY)),
            ("result_json.per_class", Box::new(|r| r.per_class.push(metrics("c", 0)))),
            ("result_json.confusion", Box::new(|r| drop(r.confusion.pop()))),
            ("result_json.confusion[1]", Box::new(|r| r.confusion[1] = vec![0, 1, 0])),
            ("result_json.confusion[0]", Box::new(|r| r.confusion[0] = vec![3, 1])),
            ("result_json.weighted_avg.support", Box::new(|r| r.weighted_avg.support = 5)),
            ("result_json.history", Box::new(|r| r.history.truncate(1))),
            ("result_json.history[1].epoch", Box::new(|r| r.history[1].epoch = 3)),
            ("result_json.history[0].val_accuracy", Box::new(|r| r.history[0].val_accuracy = 2.0)),
            ("result_json.per_class[0].label", Box::new(|r| r.per_class[0].label = "x".repeat(300))),
            ("result_json.flatness.trace_h", Box::new(|r| r.flatness = Some(flatness(f64::NAN, 3)))),
            ("result_json.flatness.directions[0]", Box::new(|r| r.flatness = Some(flatness(1.0, 5000)))),
        ];
        for (field, damage) in cases {
            let mut result = good();
            damage(&mut result);
            let message = refused(&result);
            assert!(message.starts_with(&format!("`{field}`")), "{field}: {message}");
        }
    }

    #[test]
    fn a_diverged_result_may_end_early_and_evaluate_nothing() {
        let mut diverged = good();
        diverged.status = TrialStatus::Diverged;
        diverged.per_class.clear();
        diverged.confusion.clear();
        diverged.history.truncate(1);
        result(&diverged, Some(&spec())).unwrap();
        diverged.history[0].epoch = 2;
        assert!(refused(&diverged).starts_with("`result_json.history[0].epoch`"));
    }

    #[test]
    fn ids_are_plain_and_bounded() {
        id("3fa2b9c0d1e2f3a4", "lease_id").unwrap();
        id("node-1.cluster:7@x", "worker_id").unwrap();
        for bad in ["", "..", "../etc", "a/b", "a b", &"x".repeat(MAX_ID + 1)] {
            assert_eq!(id(bad, "trial_id").unwrap_err().code(), tonic::Code::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn the_checkpoint_cap_grows_with_the_model_and_yields_to_the_flag() {
        let sizes = SizeTable::committed();
        let mut trial = spec();
        let small = checkpoint_cap(Some(&trial), None, &sizes);
        trial.architecture = "resnet50".into();
        let large = checkpoint_cap(Some(&trial), None, &sizes);
        // ResNet-50 with Adam: 23.5 M parameters and two moments, f32: about 280 MB.
        assert!(large > 280_000_000 && large < 500_000_000, "{large}");
        assert!(small < large / 5, "{small} vs {large}");
        assert_eq!(checkpoint_cap(Some(&trial), Some(1234), &sizes), 1234);
        trial.architecture = "unheard_of".into();
        assert_eq!(checkpoint_cap(Some(&trial), None, &sizes), UNKNOWN_CHECKPOINT_CAP);
    }
}
