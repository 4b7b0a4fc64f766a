//! The report's tables, in the report's order: the pivot, SAL's statistics, each other method's,
//! the ablation and Equation 11. `coordinator report` prints them and the dashboard shows them:
//! one list, so that the two never disagree.

use super::grid::Grid;
use super::model::TrialRecord;
use super::{ablation, pivot, pivot_grid, stats, Axis, PaperFigures};

/// The pivot of `records` by `axes` (titled `name`), then the paired statistics of every method
/// against the baseline, the ablation table and Equation 11's (when the records hold them).
pub fn report_grids(
    name: &str,
    records: &[TrialRecord],
    axes: &[Axis],
    paper: Option<&PaperFigures>,
) -> Vec<Grid> {
    let rows = pivot(records, axes);
    let mut grids =
        vec![pivot_grid::grid(name, &rows, axes, paper), stats::grid(&stats::compare_cells(records))];
    for method in stats::other_methods(records) {
        grids.push(stats::method_grid(&stats::compare_method(records, method), method));
    }
    grids.extend(ablation::ablation_grid(records));
    grids.extend(ablation::equation11_grid(records));
    grids
}

/// The axes with more than one value, then method.
pub fn default_axes(records: &[TrialRecord]) -> Vec<Axis> {
    let mut axes: Vec<Axis> = [Axis::Architecture, Axis::Optimizer, Axis::Dataset, Axis::Resolution]
        .into_iter()
        .filter(|axis| {
            let values: std::collections::HashSet<String> = records.iter().map(|r| axis.value(r)).collect();
            values.len() > 1
        })
        .collect();
    if axes.is_empty() {
        axes.push(Axis::Architecture);
    }
    axes.push(Axis::Method);
    axes
}
