//! The ablation arms and SAM against the baseline (SAL_SPEC.md, "Ablation arms and flatness"):
//! top-1 and flatness per arm, and the test of the paper's Equation 11 (SAL converges to flatter
//! minima, lower `E[Tr H]`), which the paper asserts and never measures.
//!
//! Every arm shares the baseline's initialisation, data order and dropout streams for a seed, so
//! arm − baseline is a paired difference: the same statistics as [`super::stats`] (mean with its
//! Student's t 95% CI, paired t-test), Holm–Bonferroni over every (cell, arm) of one metric.

use std::collections::BTreeMap;

use super::grid::Grid;
use super::model::{Method, TrialRecord, TrialResult, TrialStatus};
use super::precision;
use super::stats::{compare, format_p, holm, Cell, MeanCi, PairedComparison};
use crate::sweep::spec::method_name;

/// Below this Holm-adjusted p a difference is called (two-sided 5%).
pub const ALPHA: f64 = 0.05;

/// What an arm is compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Top-1 in percent.
    Top1,
    /// Hutchinson's `Tr(H)` at the end of training.
    TraceH,
    /// The top Hessian eigenvalue at the end of training.
    LambdaMax,
}

impl Metric {
    /// The metric of a completed trial, if it was measured.
    pub fn of(self, result: &TrialResult) -> Option<f64> {
        let value = match self {
            Metric::Top1 => Some(result.top1 * 100.0),
            Metric::TraceH => result.flatness.as_ref().map(|f| f.trace_h),
            Metric::LambdaMax => result.flatness.as_ref().map(|f| f.lambda_max),
        };
        value.filter(|v| v.is_finite())
    }
}

fn completed(record: &TrialRecord) -> Option<&TrialResult> {
    record.result.as_ref().filter(|r| r.status == TrialStatus::Completed)
}

/// One arm of one cell against that cell's baseline, on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmComparison {
    pub cell: Cell,
    pub arm: Method,
    /// Means over the seeds with a value (not only the paired ones).
    pub baseline_mean: Option<f64>,
    pub arm_mean: Option<f64>,
    /// Arm − baseline, paired by seed.
    pub comparison: PairedComparison,
    /// The t-test's p, Holm-adjusted over every (cell, arm) of the metric.
    pub holm: Option<f64>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Every arm other than the baseline, per cell, on `metric`; cells without a baseline value are
/// left out.
pub fn compare_arms(records: &[TrialRecord], metric: Metric) -> Vec<ArmComparison> {
    let mut values: BTreeMap<Cell, BTreeMap<Method, BTreeMap<u64, f64>>> = BTreeMap::new();
    for record in records {
        let Some(value) = completed(record).and_then(|r| metric.of(r)) else { continue };
        values
            .entry(Cell::of(record))
            .or_default()
            .entry(record.spec.method)
            .or_default()
            .insert(record.spec.seed, value);
    }
    let mut out = Vec::new();
    for (cell, arms) in values {
        let Some(baseline) = arms.get(&Method::Baseline) else { continue };
        let baseline_mean = mean(&baseline.values().copied().collect::<Vec<_>>());
        for (&arm, by_seed) in arms.iter().filter(|(m, _)| **m != Method::Baseline) {
            let differences: Vec<f64> =
                by_seed.iter().filter_map(|(seed, v)| baseline.get(seed).map(|b| v - b)).collect();
            out.push(ArmComparison {
                cell: cell.clone(),
                arm,
                baseline_mean,
                arm_mean: mean(&by_seed.values().copied().collect::<Vec<_>>()),
                comparison: compare(differences),
                holm: None,
            });
        }
    }
    let adjusted = holm(&out.iter().map(|c| c.comparison.t_test.value()).collect::<Vec<_>>());
    for (comparison, p) in out.iter_mut().zip(adjusted) {
        comparison.holm = p;
    }
    out
}

/// [`compare_arms`] by (cell, arm), for the tables that read one metric beside another.
fn by_cell_and_arm(records: &[TrialRecord], metric: Metric) -> BTreeMap<(Cell, Method), ArmComparison> {
    compare_arms(records, metric).into_iter().map(|c| ((c.cell.clone(), c.arm), c)).collect()
}

/// What Equation 11 predicts for an arm, as the data say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lower `Tr H` than the baseline, Holm-adjusted p below [`ALPHA`].
    Flatter,
    Sharper,
    /// Not significant after Holm at this number of pairs (or too few pairs to test).
    NoDetectableDifference {
        n: usize,
    },
}

impl Verdict {
    pub fn of(comparison: &ArmComparison) -> Verdict {
        let n = comparison.comparison.n;
        match (comparison.holm, comparison.comparison.mean_ci) {
            (Some(p), Some(MeanCi { mean, .. })) if p < ALPHA && mean < 0.0 => Verdict::Flatter,
            (Some(p), Some(MeanCi { mean, .. })) if p < ALPHA && mean > 0.0 => Verdict::Sharper,
            _ => Verdict::NoDetectableDifference { n },
        }
    }

    pub fn show(self) -> String {
        match self {
            Verdict::Flatter => "flatter".into(),
            Verdict::Sharper => "sharper".into(),
            Verdict::NoDetectableDifference { n } => format!("no detectable difference at n={n}"),
        }
    }
}

/// A number in a width that suits Hessian figures (from 1e-4 to 1e4 and beyond).
pub(crate) fn figure(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.3e}")
    } else {
        format!("{value:.4}")
    }
}

fn signed(value: f64) -> String {
    let text = figure(value);
    if value >= 0.0 {
        format!("+{text}")
    } else {
        text
    }
}

/// A paired difference and its CI, rounded at the CI's place ([`precision::difference`]; Hessian
/// figures in scientific notation where they are out of [`figure`]'s range when `hessian`);
/// `show` without a CI or where it gives no place.
fn mean_and_ci(mean_ci: Option<MeanCi>, show: fn(f64) -> String, hessian: bool) -> (String, String) {
    match mean_ci {
        None => (String::new(), String::new()),
        Some(MeanCi { mean, ci95: None }) => (show(mean), "n=1".into()),
        Some(MeanCi { mean, ci95: Some((lo, hi)) }) => precision::difference(mean, (lo, hi), hessian)
            .unwrap_or_else(|| (show(mean), format!("[{}, {}]", show(lo), show(hi)))),
    }
}

fn optional(value: Option<f64>, show: fn(f64) -> String) -> String {
    value.map(show).unwrap_or_default()
}

fn cell_columns(cell: &Cell) -> Vec<String> {
    vec![cell.architecture.clone(), cell.optimizer.clone(), cell.dataset.clone(), cell.resolution.to_string()]
}

/// The "Equation 11" table: per cell and arm, `Tr H` and `λ_max` of the baseline and the arm,
/// their paired differences with CI, p and Holm p, and the verdict on `Tr H`. `None` when no
/// trial measured flatness.
pub fn equation11_grid(records: &[TrialRecord]) -> Option<Grid> {
    let traces = compare_arms(records, Metric::TraceH);
    if traces.is_empty() {
        return None;
    }
    let lambdas = by_cell_and_arm(records, Metric::LambdaMax);
    let header = [
        "architecture",
        "optimizer",
        "dataset",
        "resolution",
        "arm",
        "pairs",
        "Tr H baseline",
        "Tr H arm",
        "Δ Tr H",
        "95% CI",
        "p",
        "Holm p",
        "λ_max baseline",
        "λ_max arm",
        "Δ λ_max",
        "95% CI (λ)",
        "Holm p (λ)",
        "verdict",
    ];
    let rows = traces
        .iter()
        .map(|trace| {
            let lambda = lambdas.get(&(trace.cell.clone(), trace.arm));
            let (delta, ci) = mean_and_ci(trace.comparison.mean_ci, signed, true);
            let (delta_l, ci_l) = mean_and_ci(lambda.and_then(|l| l.comparison.mean_ci), signed, true);
            let mut row = cell_columns(&trace.cell);
            row.extend([
                method_name(trace.arm).to_string(),
                trace.comparison.n.to_string(),
                optional(trace.baseline_mean, figure),
                optional(trace.arm_mean, figure),
                delta,
                ci,
                trace.comparison.t_test.show(),
                optional(trace.holm, format_p),
                optional(lambda.and_then(|l| l.baseline_mean), figure),
                optional(lambda.and_then(|l| l.arm_mean), figure),
                delta_l,
                ci_l,
                optional(lambda.and_then(|l| l.holm), format_p),
                Verdict::of(trace).show(),
            ]);
            row
        })
        .collect();
    let family = traces.iter().filter(|c| c.holm.is_some()).count();
    Some(Grid {
        title: "Equation 11: flatness at the end of training, arm − baseline, paired by seed".into(),
        header: header.map(String::from).to_vec(),
        rows,
        numeric_from: 5,
        // The test of Tr H and its verdict first, then the figures it is made of, then λ_max.
        importance: &[
            &["Δ Tr H", "95% CI"],
            &["Holm p"],
            &["verdict"],
            &["pairs"],
            &["Tr H baseline", "Tr H arm"],
            &["p"],
            &["Δ λ_max", "95% CI (λ)"],
            &["Holm p (λ)"],
            &["λ_max baseline", "λ_max arm"],
        ],
        notes: vec![
            "Tr H: Hutchinson's estimate with Rademacher probes; λ_max: power iteration (largest-magnitude \
             eigenvalue); both over the fixed seeded subset of training images, batch norm in eval mode."
                .into(),
            format!(
                "Δ = arm − baseline per seed; 95% CI from Student's t (n − 1 df; Δ and the CI's ends rounded \
                 to two significant digits of its half-width); paired t-test, two-sided; Holm–Bonferroni \
                 over the {family} tested (cell, arm) pair(s) of each metric."
            ),
            format!(
                "verdict on Tr H: flatter (Δ < 0) or sharper (Δ > 0) when the Holm-adjusted p < {ALPHA}; \
                 otherwise no detectable difference at this number of pairs."
            ),
        ],
    })
}

/// Mean train seconds of a cell's arm (SAM's cost beside its accuracy).
fn train_seconds(records: &[TrialRecord]) -> BTreeMap<(Cell, Method), f64> {
    let mut seconds: BTreeMap<(Cell, Method), Vec<f64>> = BTreeMap::new();
    for record in records {
        if let Some(result) = completed(record) {
            seconds.entry((Cell::of(record), record.spec.method)).or_default().push(result.train_seconds);
        }
    }
    seconds.into_iter().filter_map(|(key, values)| mean(&values).map(|m| (key, m))).collect()
}

/// The ablation table: per cell and arm, top-1 and its paired Δ against the baseline, `Tr H`,
/// `λ_max`, and the training time with its ratio to the baseline's. `None` when the sweep has no
/// arm beyond the baseline and SAL (whose own statistics table says it all then).
pub fn ablation_grid(records: &[TrialRecord]) -> Option<Grid> {
    if super::stats::other_methods(records).is_empty() {
        return None;
    }
    let top1 = compare_arms(records, Metric::Top1);
    if top1.is_empty() {
        return None;
    }
    let (traces, lambdas) =
        (by_cell_and_arm(records, Metric::TraceH), by_cell_and_arm(records, Metric::LambdaMax));
    let seconds = train_seconds(records);
    let header = [
        "architecture",
        "optimizer",
        "dataset",
        "resolution",
        "arm",
        "pairs",
        "top-1 %",
        "Δ top-1 (pp)",
        "95% CI",
        "Holm p",
        "Tr H",
        "λ_max",
        "train s",
        "× baseline train s",
    ];
    let mut rows = Vec::new();
    let mut cells: Vec<&Cell> = top1.iter().map(|c| &c.cell).collect();
    cells.dedup();
    for cell in cells {
        let baseline_seconds = seconds.get(&(cell.clone(), Method::Baseline)).copied();
        let baseline = top1.iter().find(|c| &c.cell == cell);
        let mut row = cell_columns(cell);
        let trace = traces.values().find(|c| &c.cell == cell).and_then(|c| c.baseline_mean);
        let lambda = lambdas.values().find(|c| &c.cell == cell).and_then(|c| c.baseline_mean);
        row.extend([
            method_name(Method::Baseline).to_string(),
            String::new(),
            optional(baseline.and_then(|c| c.baseline_mean), |v| format!("{v:.2}")),
            String::new(),
            String::new(),
            String::new(),
            optional(trace, figure),
            optional(lambda, figure),
            optional(baseline_seconds, |v| format!("{v:.1}")),
            "1.00".into(),
        ]);
        rows.push(row);
        for arm in top1.iter().filter(|c| &c.cell == cell) {
            let key = (cell.clone(), arm.arm);
            let (delta, ci) = mean_and_ci(arm.comparison.mean_ci, |v| format!("{v:+.2}"), false);
            let arm_seconds = seconds.get(&key).copied();
            let mut row = cell_columns(cell);
            row.extend([
                method_name(arm.arm).to_string(),
                arm.comparison.n.to_string(),
                optional(arm.arm_mean, |v| format!("{v:.2}")),
                delta,
                ci,
                optional(arm.holm, format_p),
                optional(traces.get(&key).and_then(|c| c.arm_mean), figure),
                optional(lambdas.get(&key).and_then(|c| c.arm_mean), figure),
                optional(arm_seconds, |v| format!("{v:.1}")),
                optional(
                    arm_seconds.zip(baseline_seconds).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b),
                    |v| format!("{v:.2}"),
                ),
            ]);
            rows.push(row);
        }
    }
    Some(Grid {
        title: "Ablation: every arm against the baseline of its cell".into(),
        header: header.map(String::from).to_vec(),
        rows,
        numeric_from: 5,
        // Accuracy and its paired test first, then flatness, then the cost.
        importance: &[
            &["top-1 %"],
            &["Δ top-1 (pp)", "95% CI"],
            &["Holm p"],
            &["pairs"],
            &["Tr H"],
            &["λ_max"],
            &["× baseline train s"],
            &["train s"],
        ],
        notes: vec![
            "Δ top-1 = arm − baseline in percentage points, paired by seed, 95% CI from Student's t (Δ and \
             the CI's ends rounded to two significant digits of its half-width); Holm over every (cell, \
             arm). Tr H, λ_max and train s are means over the arm's completed seeds."
                .into(),
            "× baseline train s: SAM computes two gradients per step; `baseline_2x` (twice the epochs) is the \
             compute-matched baseline."
                .into(),
        ],
    })
}

/// `(label, mean and CI)` per (cell, arm) of a metric, for the plots.
pub fn forest_rows(records: &[TrialRecord], metric: Metric) -> Vec<(String, MeanCi)> {
    compare_arms(records, metric)
        .into_iter()
        .filter_map(|c| {
            c.comparison.mean_ci.map(|m| (format!("{} {}", c.cell.label(), method_name(c.arm)), m))
        })
        .collect()
}

/// `(label, mean and CI of the value itself)` per (cell, arm) including the baseline: `Tr H` by arm.
pub fn value_rows(records: &[TrialRecord], metric: Metric) -> Vec<(String, MeanCi)> {
    let mut values: BTreeMap<(Cell, Method), Vec<f64>> = BTreeMap::new();
    for record in records {
        if let Some(value) = completed(record).and_then(|r| metric.of(r)) {
            values.entry((Cell::of(record), record.spec.method)).or_default().push(value);
        }
    }
    values
        .into_iter()
        .filter_map(|((cell, arm), v)| {
            super::stats::mean_ci95(&v).map(|m| (format!("{} {}", cell.label(), method_name(arm)), m))
        })
        .collect()
}
