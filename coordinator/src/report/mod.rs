//! Reports: pivots of the results by any axes, mean ± 95% confidence interval over seeds, SAL −
//! baseline deltas; as a table, CSV or JSON (which carries every trial's result and history).
//!
//! The means count completed trials only; diverged and failed trials have columns of their own.
//! [`select`] picks one sweep's trials, [`paper`] sets the paper's figures beside ours.
//!
//! Around the pivot ([`pivot_rows`]: the groups, their estimates, as a table, CSV or JSON), each in
//! its own module:
//! - [`grid`]: a table as data, rendered as text, Markdown, LaTeX or HTML;
//! - [`fit`]: a table fitted to a terminal's width; [`terminal`]: the report printed there;
//! - [`stats`]: SAL vs baseline paired by seed (CI, t-test, signed-rank, Holm–Bonferroni);
//! - [`paper_tables`]: our results in the layout of the paper's tables 1–5, its figures beside;
//! - [`trial_view`]: one trial's spec, history with SAL's actions, per-class table, confusion;
//! - [`plots`]: training curves, stress traces, forest plot, heatmap, cost (SVG and PNG);
//! - [`html`]: all of it as one self-contained page;
//! - [`status_view`]: a running sweep's workers and trials in flight, as text.

pub mod ablation;
pub mod fit;
pub mod grid;
pub mod html;
pub mod model;
pub mod paper;
pub mod paper_tables;
pub mod pivot_grid;
mod pivot_rows;
pub mod plots;
pub mod precision;
pub mod provenance;
pub mod select;
pub mod stats;
pub mod status_view;
pub mod tables;
pub mod terminal;
pub mod trial_view;

use std::str::FromStr;

use serde::Serialize;

use crate::store::TrialRecord;
use crate::sweep::spec::method_name;
pub use paper::{comparison_table, Comparison, PaperFigures};
pub use pivot_rows::{csv, estimate, json, pivot, table, table_fitted, Estimate, GroupKey, GroupRow};
pub(crate) use pivot_rows::{metric_columns, row_numbers, show};

/// An axis of the grid that reports can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    Architecture,
    Optimizer,
    Dataset,
    Resolution,
    Method,
    Seed,
}

impl Axis {
    pub const ALL: [Axis; 6] =
        [Axis::Architecture, Axis::Optimizer, Axis::Dataset, Axis::Resolution, Axis::Method, Axis::Seed];

    pub fn name(self) -> &'static str {
        match self {
            Axis::Architecture => "architecture",
            Axis::Optimizer => "optimizer",
            Axis::Dataset => "dataset",
            Axis::Resolution => "resolution",
            Axis::Method => "method",
            Axis::Seed => "seed",
        }
    }

    /// The record's value on this axis.
    pub fn value(self, record: &TrialRecord) -> String {
        let spec = &record.spec;
        match self {
            Axis::Architecture => spec.architecture.clone(),
            Axis::Optimizer => spec.optimizer.clone(),
            Axis::Dataset => spec.dataset.name.clone(),
            Axis::Resolution => spec.resolution.to_string(),
            Axis::Method => method_name(spec.method).to_string(),
            Axis::Seed => spec.seed.to_string(),
        }
    }
}

impl FromStr for Axis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Axis::ALL.into_iter().find(|a| a.name() == s || format!("{}s", a.name()) == s).ok_or_else(|| {
            let known: Vec<_> = Axis::ALL.iter().map(|a| a.name()).collect();
            format!("unknown axis `{s}` (known: {})", known.join(", "))
        })
    }
}

/// Parses `--by architecture,method,...`.
pub fn parse_axes(list: &str) -> Result<Vec<Axis>, String> {
    let mut axes = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let axis: Axis = part.parse()?;
        if !axes.contains(&axis) {
            axes.push(axis);
        }
    }
    if axes.is_empty() {
        return Err("--by needs at least one axis".into());
    }
    Ok(axes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Markdown,
    Latex,
    Html,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "markdown" => Ok(Format::Markdown),
            "latex" => Ok(Format::Latex),
            "html" => Ok(Format::Html),
            other => {
                Err(format!("unknown format `{other}` (known: table, csv, json, markdown, latex, html)"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pivot_rows::csv_field;
    use super::*;
    use common::Method;

    #[test]
    fn ci_uses_students_t() {
        let e = estimate(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(e.mean, 2.0);
        // s = 1, n = 3, t(2) = 4.303: 4.303 / sqrt(3).
        assert!((e.ci95.unwrap() - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(estimate(&[5.0]).unwrap().ci95, None);
        assert!(estimate(&[]).is_none());
    }

    #[test]
    fn axes_parse_singular_and_plural_and_refuse_unknown_ones() {
        assert_eq!(parse_axes("architecture,methods").unwrap(), vec![Axis::Architecture, Axis::Method]);
        assert!(parse_axes("colour").unwrap_err().contains("unknown axis `colour`"));
    }

    fn record(method: Method, seed: u64, top1: Option<f64>) -> TrialRecord {
        let text = "name: t\nepochs: 1\nbatch_size: 1\nlearning_rate: 0.1\nseeds: [1]\nmethods: [baseline]\n\
                    architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\ndatasets:\n  s:\n    format: synthetic\n";
        let mut spec = crate::sweep::spec::parse(std::path::Path::new("t.yaml"), text, &Default::default())
            .unwrap()
            .trials
            .remove(0)
            .spec;
        spec.method = method;
        spec.seed = seed;
        let result = top1.map(|top1| common::TrialResult {
            train_seconds: 10.0,
            peak_host_mb: 100.0,
            inference_ms_per_batch: 2.0,
            ..crate::store::stand_in_result(common::TrialStatus::Completed, top1)
        });
        TrialRecord {
            id: format!("{method:?}{seed}"),
            spec,
            state: if result.is_some() { "done" } else { "failed" }.into(),
            attempts: 1,
            last_error: None,
            result,
            epochs: Vec::new(),
        }
    }

    #[test]
    fn pivots_average_over_seeds_and_subtract_the_baseline() {
        let records = vec![
            record(Method::Baseline, 1, Some(0.80)),
            record(Method::Baseline, 2, Some(0.82)),
            record(Method::Sal, 1, Some(0.84)),
            record(Method::Sal, 2, Some(0.86)),
            record(Method::Sal, 3, None),
        ];
        let rows = pivot(&records, &[Axis::Architecture, Axis::Method]);
        assert_eq!(rows.len(), 2);
        let (baseline, sal) = (&rows[0], &rows[1]);
        assert_eq!(baseline.key["method"], "baseline");
        assert!((baseline.top1.unwrap().mean - 81.0).abs() < 1e-9);
        assert_eq!((sal.trials, sal.completed, sal.failed), (3, 2, 1));
        assert!((sal.delta_top1.unwrap() - 4.0).abs() < 1e-9);
        assert_eq!(baseline.delta_top1, None);
        let csv = csv(&rows, &[Axis::Architecture, Axis::Method]);
        assert_eq!(csv.lines().count(), 3);
        assert!(csv.lines().nth(2).unwrap().starts_with("noop,sal,3,2,0,1,85"), "{csv}");
        let table = table(&rows, &[Axis::Architecture, Axis::Method], None);
        // 81 ± 12.706: the CI to two significant digits, the mean to units.
        assert!(table.contains("+4.00") && table.contains("81 ± 13"), "{table}");
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
