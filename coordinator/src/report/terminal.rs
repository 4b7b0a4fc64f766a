//! `coordinator report`'s text in a terminal (`--format table`): the pivot, ours against the
//! paper, the statistics and ablation tables, the summary line. With a width, every table is
//! fitted to it and every other line wrapped ([`super::fit`]); without one (piped, `--out`), the
//! tables are printed whole, as scripts parse them.

use super::fit;
use super::grid::Grid;
use super::{comparison_table, table_fitted, Axis, GroupRow, PaperFigures};

/// What the report prints, in order.
pub struct Report<'a> {
    /// The sweep's name, above the pivot.
    pub sweep: &'a str,
    pub rows: &'a [GroupRow],
    pub axes: &'a [Axis],
    pub paper: Option<&'a PaperFigures>,
    /// Provenance: numbers of several builds side by side.
    pub versions: Option<&'a str>,
    /// The tables after the pivot (statistics, ablation, Equation 11).
    pub grids: &'a [Grid],
    /// The last line: how many trials, and which were left out.
    pub summary: &'a str,
}

/// The report as text, fitted to `width` columns when given.
pub fn text(report: &Report, width: Option<u16>) -> String {
    let line = |text: &str| match width {
        Some(width) => format!("{}\n", fit::wrap(text, usize::from(width), "", "")),
        None => format!("{text}\n"),
    };
    let mut text = line(report.sweep);
    text.push_str(&table_fitted(report.rows, report.axes, report.paper, width));
    text.push('\n');
    if let Some(paper) = report.paper {
        let comparisons = paper.compare(report.rows);
        if comparisons.is_empty() {
            text.push_str(&line("no group has a setup the paper published"));
        } else {
            let title = "ours against the paper, where the setups are equal:";
            match width {
                None => text.push_str(&format!("{title}\n{}\n", comparison_table(&comparisons))),
                Some(_) => text.push_str(&super::paper::comparison_grid(title, &comparisons).render(width)),
            }
        }
        let misses = paper.near_misses(report.rows);
        if let Some(first) = misses.first() {
            text.push_str(&line(&format!(
                "no paper figure beside {} groups with a published setup's axes but another training (first: {first})",
                misses.len()
            )));
        }
    }
    if let Some(warning) = report.versions {
        text.push_str(&line(warning));
    }
    let tables: Vec<String> = report.grids.iter().map(|g| g.render(width)).collect();
    text.push_str(&tables.join("\n"));
    text.push_str(&match width {
        Some(width) => fit::wrap(report.summary, usize::from(width), "", ""),
        None => report.summary.to_string(),
    });
    text
}

/// Grids printed one after another (`report --table N`), then the summary line.
pub fn grids_text(grids: &[Grid], summary: &str, width: Option<u16>) -> String {
    let tables: Vec<String> = grids.iter().map(|g| g.render(width)).collect();
    let summary = match width {
        Some(width) => fit::wrap(summary, usize::from(width), "", ""),
        None => summary.to_string(),
    };
    format!("{}\n{summary}", tables.join("\n"))
}
