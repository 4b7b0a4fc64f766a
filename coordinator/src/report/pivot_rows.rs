//! The pivot: trials grouped by any axes, each group's outcomes and mean ± 95% CI over seeds
//! (SAL − baseline beside), and the groups as a terminal table, CSV or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use common::Method;
use serde::Serialize;

use super::select::{outcome, Outcome, Outcomes};
use super::{ablation, fit, grid, paper, pivot_grid, precision, Axis, PaperFigures};
use crate::store::TrialRecord;
use crate::sweep::spec::method_name;

/// Mean and half-width of the 95% confidence interval (Student's t) of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    /// `None` with fewer than two values.
    pub ci95: Option<f64>,
    pub n: usize,
}

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T_975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

pub fn estimate(values: &[f64]) -> Option<Estimate> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let ci95 = (n >= 2).then(|| {
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let t = T_975.get(n - 2).copied().unwrap_or(1.96);
        t * (variance / n as f64).sqrt()
    });
    Some(Estimate { mean, ci95, n })
}

/// A group's value on each axis, by axis name.
pub type GroupKey = BTreeMap<&'static str, String>;

/// The metrics of one group of trials.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub key: GroupKey,
    /// Trials in the group, and what became of them; the metrics are over the completed ones.
    pub trials: usize,
    pub completed: usize,
    pub diverged: usize,
    pub failed: usize,
    pub unfinished: usize,
    /// The axes on which every trial of the group has one value (grouped by, or fixed in the
    /// sweep), with that value.
    pub fixed: BTreeMap<&'static str, String>,
    /// The training setup every trial of the group shares; `None` when they differ.
    pub training: Option<paper::Training>,
    pub top1: Option<Estimate>,
    pub top5: Option<Estimate>,
    pub train_seconds: Option<Estimate>,
    /// Peak resident memory of the trial process (the paper's psutil figure).
    pub peak_host_mb: Option<Estimate>,
    /// The trial process's own peak on its busiest GPU (trials without one are left out).
    pub peak_device_mb: Option<Estimate>,
    /// Training throughput, images per second (see `TrialResult::train_images_per_s`).
    pub train_images_per_s: Option<Estimate>,
    pub inference_ms: Option<Estimate>,
    /// SAL − baseline of the mean top-1/top-5, on SAL rows whose baseline row exists.
    pub delta_top1: Option<f64>,
    pub delta_top5: Option<f64>,
    /// Hutchinson's `Tr(H)` and the top Hessian eigenvalue at the end of training, over the
    /// trials that measured flatness (the sweep's `flatness:`).
    pub trace_h: Option<Estimate>,
    pub lambda_max: Option<Estimate>,
}

impl GroupRow {
    /// Whether any trial of the group measured flatness.
    pub fn has_flatness(&self) -> bool {
        self.trace_h.is_some() || self.lambda_max.is_some()
    }
}

/// Groups trials by `axes` and summarizes each group.
pub fn pivot(records: &[TrialRecord], axes: &[Axis]) -> Vec<GroupRow> {
    let mut groups: BTreeMap<Vec<String>, Vec<&TrialRecord>> = BTreeMap::new();
    for record in records {
        let key = axes.iter().map(|a| a.value(record)).collect();
        groups.entry(key).or_default().push(record);
    }
    let mut rows: Vec<GroupRow> = groups
        .iter()
        .map(|(key, members)| {
            // Diverged trials carry a result too (top-1 of a broken model): never in a mean.
            let results: Vec<_> = members
                .iter()
                .filter(|r| outcome(r) == Outcome::Completed)
                .filter_map(|r| r.result.as_ref())
                .collect();
            let metric = |f: &dyn Fn(&common::TrialResult) -> f64| {
                estimate(&results.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let counts = Outcomes::of(members.iter().copied());
            GroupRow {
                key: axes.iter().map(|a| a.name()).zip(key.iter().cloned()).collect(),
                trials: members.len(),
                completed: counts.completed,
                diverged: counts.diverged,
                failed: counts.failed,
                unfinished: counts.unfinished,
                fixed: fixed_axes(members),
                training: shared_training(members),
                top1: metric(&|r| r.top1 * 100.0),
                top5: metric(&|r| r.top5 * 100.0),
                train_seconds: metric(&|r| r.train_seconds),
                train_images_per_s: estimate(
                    &results.iter().filter_map(|r| r.train_images_per_s()).collect::<Vec<_>>(),
                ),
                peak_host_mb: metric(&|r| r.peak_host_mb),
                peak_device_mb: estimate(
                    &results.iter().filter_map(|r| r.peak_device_mb).collect::<Vec<_>>(),
                ),
                inference_ms: metric(&|r| r.inference_ms_per_batch),
                delta_top1: None,
                delta_top5: None,
                trace_h: estimate(
                    &results
                        .iter()
                        .filter_map(|r| r.flatness.as_ref().map(|f| f.trace_h))
                        .collect::<Vec<_>>(),
                ),
                lambda_max: estimate(
                    &results
                        .iter()
                        .filter_map(|r| r.flatness.as_ref().map(|f| f.lambda_max))
                        .collect::<Vec<_>>(),
                ),
            }
        })
        .collect();
    if axes.contains(&Axis::Method) {
        let baseline = method_name(Method::Baseline);
        let lookup: BTreeMap<GroupKey, (Option<f64>, Option<f64>)> = rows
            .iter()
            .filter(|r| r.key.get("method").map(String::as_str) == Some(baseline))
            .map(|r| {
                let mut key = r.key.clone();
                key.remove("method");
                (key, (r.top1.map(|e| e.mean), r.top5.map(|e| e.mean)))
            })
            .collect();
        // Every method against the baseline of its group: SAL and its ablation arms.
        for row in rows.iter_mut().filter(|r| r.key.get("method").is_some_and(|m| m != baseline)) {
            let mut key = row.key.clone();
            key.remove("method");
            if let Some((base1, base5)) = lookup.get(&key) {
                row.delta_top1 = row.top1.zip(*base1).map(|(s, b)| s.mean - b);
                row.delta_top5 = row.top5.zip(*base5).map(|(s, b)| s.mean - b);
            }
        }
    }
    rows
}

/// The axes on which all of `members` agree, with their value.
fn fixed_axes(members: &[&TrialRecord]) -> BTreeMap<&'static str, String> {
    Axis::ALL
        .iter()
        .filter_map(|axis| {
            let first = axis.value(members.first()?);
            members.iter().all(|r| axis.value(r) == first).then_some((axis.name(), first))
        })
        .collect()
}

/// The training setup all of `members` share, if they do.
fn shared_training(members: &[&TrialRecord]) -> Option<paper::Training> {
    let training = |r: &TrialRecord| paper::Training {
        epochs: r.spec.epochs,
        batch_size: r.spec.batch_size,
        learning_rate: r.spec.learning_rate,
        head: r.spec.head,
        pretrained: r.spec.pretrained.is_some(),
    };
    let first = training(members.first()?);
    members.iter().all(|r| training(r) == first).then_some(first)
}

/// A mean with its CI by [`precision`]'s rule; `decimals` where the CI gives no place, and without
/// a CI (one seed).
pub(crate) fn show(estimate: Option<Estimate>, decimals: usize) -> String {
    match estimate {
        None => "–".into(),
        Some(Estimate { mean, ci95: Some(ci), .. }) => precision::mean_ci(mean, ci, decimals),
        Some(Estimate { mean, ci95: None, .. }) => format!("{mean:.decimals$}"),
    }
}

/// A count, blank when zero (the eye finds the few that are not).
fn count(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        n.to_string()
    }
}

/// A Hessian figure (from 1e-4 to 1e4 and beyond) with its CI half-width, by [`precision`]'s rule.
fn show_figure(estimate: Option<Estimate>) -> String {
    let figure = ablation::figure;
    match estimate {
        None => "–".into(),
        Some(Estimate { mean, ci95: Some(ci), .. }) => precision::figure_ci(mean, ci, figure),
        Some(Estimate { mean, ci95: None, .. }) => figure(mean),
    }
}

fn show_delta(delta: Option<f64>) -> String {
    delta.map_or_else(String::new, |d| format!("{d:+.2}"))
}

/// The metric columns of the pivot, after the axes; the flatness columns only when a trial
/// measured flatness ([`FLATNESS_METRICS`]), the last only with the paper's figures.
const METRICS: [&str; 13] = [
    "done",
    "diverged",
    "failed",
    "top-1 %",
    "top-5 %",
    "train s",
    "train img/s",
    "host MB",
    "GPU MB",
    "infer ms",
    "Δ top-1",
    "Δ top-5",
    "paper top-1 %",
];

/// Flatness at the end of training, before `Δ top-1`.
const FLATNESS_METRICS: [&str; 2] = ["Tr H", "λ_max"];

/// Where the flatness columns go among [`METRICS`].
const FLATNESS_AT: usize = 10;

/// The metric columns of a pivot of `rows`.
pub(crate) fn metric_columns(rows: &[GroupRow], paper: bool) -> Vec<&'static str> {
    let mut columns: Vec<&str> = METRICS[..METRICS.len() - usize::from(!paper)].to_vec();
    if rows.iter().any(GroupRow::has_flatness) {
        columns.splice(FLATNESS_AT..FLATNESS_AT, FLATNESS_METRICS);
    }
    columns
}

/// A group's metric cells, in the order of [`metric_columns`] (the table and every other
/// format); `flatness`: whether the pivot has the flatness columns.
pub(crate) fn row_numbers(row: &GroupRow, paper: Option<&PaperFigures>, flatness: bool) -> Vec<String> {
    let mut numbers = vec![
        format!("{}/{}", row.completed, row.trials),
        count(row.diverged),
        count(row.failed),
        show(row.top1, 2),
        show(row.top5, 2),
        show(row.train_seconds, 1),
        show(row.train_images_per_s, 0),
        show(row.peak_host_mb, 0),
        show(row.peak_device_mb, 0),
        show(row.inference_ms, 2),
    ];
    if flatness {
        numbers.extend([show_figure(row.trace_h), show_figure(row.lambda_max)]);
    }
    numbers.extend([show_delta(row.delta_top1), show_delta(row.delta_top5)]);
    if let Some(paper) = paper {
        numbers.push(paper.top1(row).map_or_else(String::new, |p| format!("{p:.2}")));
    }
    numbers
}

/// Renders the pivot as a table; with `paper`, a column of the published top-1 where a group's
/// setup is one the paper published. `done` is completed/all trials of the group; the numbers
/// are over the completed ones.
pub fn table(rows: &[GroupRow], axes: &[Axis], paper: Option<&PaperFigures>) -> String {
    let metrics = metric_columns(rows, paper.is_some());
    let flatness = rows.iter().any(GroupRow::has_flatness);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
    let mut header: Vec<String> = axes.iter().map(|a| a.name().to_string()).collect();
    header.extend(metrics.iter().map(|m| m.to_string()));
    table.set_header(header);
    for row in rows {
        let mut cells: Vec<Cell> = axes.iter().map(|a| Cell::new(&row.key[a.name()])).collect();
        let numbers = row_numbers(row, paper, flatness);
        cells.extend(numbers.into_iter().map(|n| Cell::new(n).set_alignment(CellAlignment::Right)));
        table.add_row(cells);
    }
    table.to_string()
}

/// [`table`] fitted to a terminal `width` columns wide ([`fit`]), with the pivot's order of
/// importance ([`pivot_grid::IMPORTANCE`]); `None` (piped): [`table`] itself. No newline at the end.
pub fn table_fitted(
    rows: &[GroupRow],
    axes: &[Axis],
    paper: Option<&PaperFigures>,
    width: Option<u16>,
) -> String {
    match width {
        None => table(rows, axes, paper),
        Some(width) => {
            let grid = grid::Grid { notes: Vec::new(), ..pivot_grid::grid("", rows, axes, paper) };
            fit::render(&grid, usize::from(width)).trim_end_matches('\n').to_string()
        }
    }
}

pub(super) fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// One line per group; each metric as mean and ci95 columns (empty when unknown).
pub fn csv(rows: &[GroupRow], axes: &[Axis]) -> String {
    let mut out = String::new();
    let mut header: Vec<String> = axes.iter().map(|a| a.name().to_string()).collect();
    header.extend(["trials", "completed", "diverged", "failed"].map(String::from));
    for metric in [
        "top1",
        "top5",
        "train_seconds",
        "train_images_per_s",
        "peak_host_mb",
        "peak_device_mb",
        "inference_ms",
    ] {
        header.push(format!("{metric}_mean"));
        header.push(format!("{metric}_ci95"));
    }
    header.extend(["delta_top1", "delta_top5"].map(String::from));
    // Last, so that readers of the columns before them are not disturbed.
    header.extend(["trace_h_mean", "trace_h_ci95", "lambda_max_mean", "lambda_max_ci95"].map(String::from));
    let _ = writeln!(out, "{}", header.join(","));
    let number = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    for row in rows {
        let mut fields: Vec<String> = axes.iter().map(|a| csv_field(&row.key[a.name()])).collect();
        fields.push(row.trials.to_string());
        fields.push(row.completed.to_string());
        fields.push(row.diverged.to_string());
        fields.push(row.failed.to_string());
        for metric in [
            row.top1,
            row.top5,
            row.train_seconds,
            row.train_images_per_s,
            row.peak_host_mb,
            row.peak_device_mb,
            row.inference_ms,
        ] {
            fields.push(number(metric.map(|e| e.mean)));
            fields.push(number(metric.and_then(|e| e.ci95)));
        }
        fields.push(number(row.delta_top1));
        fields.push(number(row.delta_top5));
        for metric in [row.trace_h, row.lambda_max] {
            fields.push(number(metric.map(|e| e.mean)));
            fields.push(number(metric.and_then(|e| e.ci95)));
        }
        let _ = writeln!(out, "{}", fields.join(","));
    }
    out
}

#[derive(Serialize)]
struct JsonReport<'a> {
    sweep: &'a str,
    by: &'a [Axis],
    groups: &'a [GroupRow],
    trials: &'a [TrialRecord],
}

/// The groups and every trial's full record (spec, state, result, epoch history of every attempt).
pub fn json(sweep: &str, rows: &[GroupRow], axes: &[Axis], records: &[TrialRecord]) -> String {
    let report = JsonReport { sweep, by: axes, groups: rows, trials: records };
    serde_json::to_string_pretty(&report).unwrap_or_default()
}
