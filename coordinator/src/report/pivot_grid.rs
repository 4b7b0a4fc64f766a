//! The pivot (mean ± 95% CI over seeds per group) as a [`Grid`], for the Markdown, LaTeX and HTML
//! reports: the same columns and cells as the terminal table.

use super::grid::Grid;
use super::{metric_columns, row_numbers, Axis, GroupRow, PaperFigures};

/// The pivot's metric columns, most important first: what became of the trials and their
/// accuracy against the baseline (and the paper), flatness, then top-5, time and memory.
pub const IMPORTANCE: &[&[&str]] = &[
    &["done"],
    &["failed"],
    &["diverged"],
    &["top-1 %"],
    &["Δ top-1"],
    &["paper top-1 %"],
    &["Tr H"],
    &["λ_max"],
    &["top-5 %"],
    &["Δ top-5"],
    &["train s"],
    &["train img/s"],
    &["infer ms"],
    &["GPU MB"],
    &["host MB"],
];

pub fn grid(title: &str, rows: &[GroupRow], axes: &[Axis], paper: Option<&PaperFigures>) -> Grid {
    let metrics = metric_columns(rows, paper.is_some());
    let flatness = rows.iter().any(GroupRow::has_flatness);
    let mut header: Vec<String> = axes.iter().map(|a| a.name().to_string()).collect();
    header.extend(metrics.iter().map(|m| m.to_string()));
    let body = rows
        .iter()
        .map(|row| {
            let mut cells: Vec<String> = axes.iter().map(|a| row.key[a.name()].clone()).collect();
            cells.extend(row_numbers(row, paper, flatness));
            cells
        })
        .collect();
    Grid {
        title: title.to_string(),
        header,
        rows: body,
        numeric_from: axes.len(),
        importance: IMPORTANCE,
        notes: vec![format!(
            "done: completed / all trials; the numbers are over completed trials, mean ± 95% CI over \
             seeds (Student's t; {}); Δ = SAL − baseline of the means.",
            super::precision::RULE
        )],
    }
}
