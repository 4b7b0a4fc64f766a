//! The pivot (mean ± 95% CI over seeds per group) as a [`Grid`], for the Markdown, LaTeX and HTML
//! reports; the same columns as the terminal table.

use super::grid::Grid;
use super::{Axis, Estimate, GroupRow, PaperFigures};

fn show(estimate: Option<Estimate>, decimals: usize) -> String {
    match estimate {
        None => "–".into(),
        Some(Estimate { mean, ci95: Some(ci), .. }) => format!("{mean:.decimals$} ± {ci:.decimals$}"),
        Some(Estimate { mean, ci95: None, .. }) => format!("{mean:.decimals$}"),
    }
}

pub fn grid(title: &str, rows: &[GroupRow], axes: &[Axis], paper: Option<&PaperFigures>) -> Grid {
    let mut header: Vec<String> = axes.iter().map(|a| a.name().to_string()).collect();
    header.extend(
        ["trials", "top-1 %", "top-5 %", "train s", "host MB", "GPU MB", "infer ms", "Δ top-1", "Δ top-5"]
            .map(String::from),
    );
    if paper.is_some() {
        header.push("paper top-1 %".into());
    }
    let body = rows
        .iter()
        .map(|row| {
            let mut cells: Vec<String> = axes.iter().map(|a| row.key[a.name()].clone()).collect();
            cells.extend([
                format!("{}/{}", row.finished, row.trials),
                show(row.top1, 2),
                show(row.top5, 2),
                show(row.train_seconds, 1),
                show(row.peak_host_mb, 0),
                show(row.peak_device_mb, 0),
                show(row.inference_ms, 2),
                row.delta_top1.map_or_else(String::new, |d| format!("{d:+.2}")),
                row.delta_top5.map_or_else(String::new, |d| format!("{d:+.2}")),
            ]);
            if let Some(paper) = paper {
                cells.push(paper.top1(row).map_or_else(String::new, |p| format!("{p:.2}")));
            }
            cells
        })
        .collect();
    Grid {
        title: title.to_string(),
        header,
        rows: body,
        numeric_from: axes.len(),
        notes: vec!["Mean ± 95% CI over seeds (Student's t); Δ = SAL − baseline of the means.".into()],
    }
}
