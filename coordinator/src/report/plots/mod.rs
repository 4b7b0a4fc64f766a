//! Plots, drawn with `plotters`: SVG always, and PNG through the bitmap backend.
//!
//! Per trial (the paper's figures 5–7): training and validation loss and accuracy per epoch, with
//! the epochs where SAL injected noise, deformed plastically or recovered marked by vertical lines;
//! and SAL's stress trace with its S_noise and S_yield thresholds. Per sweep: SAL − baseline top-1
//! per cell with its 95% CI (a forest plot), a heatmap of that difference over architecture ×
//! dataset, and training time and memory by architecture.
//!
//! This module chooses which plots a trial and a sweep get; [`render`] draws them.

mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ablation::{forest_rows, value_rows, Metric};
use super::model::{history, title, Method, TrialRecord, TrialStatus};
use super::stats::{compare_cells, MeanCi};
pub use render::{NamedPlot, Plot, PlotError};

/// The folder of a trial's plots under `dir`.
pub fn trial_dir(dir: &Path, record: &TrialRecord) -> PathBuf {
    dir.join("trials").join(&record.id)
}

/// The plots of one trial: curves always (when it has epochs), the stress trace for SAL.
pub fn trial_plots(record: &TrialRecord) -> Vec<NamedPlot> {
    let history = history(record);
    if history.is_empty() {
        return Vec::new();
    }
    let base = format!("trials/{}", record.id);
    let mut plots = vec![NamedPlot {
        name: format!("{base}/curves"),
        plot: Plot::Curves { title: title(record), history: history.clone() },
    }];
    if record.spec.method.uses_stress() && history.iter().any(|e| e.sal.is_some()) {
        plots.push(NamedPlot {
            name: format!("{base}/stress"),
            plot: Plot::Stress {
                title: format!("stress: {}", title(record)),
                history,
                s_noise: record.spec.sal.s_noise,
                s_yield: record.spec.sal.s_yield,
            },
        });
    }
    plots
}

/// The files `write_all` makes for one trial (SVG and PNG of each of its plots).
pub fn trial_plot_files(dir: &Path, record: &TrialRecord) -> Vec<PathBuf> {
    trial_plots(record)
        .iter()
        .flat_map(|p| ["svg", "png"].map(|ext| dir.join(format!("{}.{ext}", p.name))))
        .collect()
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The plots of the whole sweep: forest and heatmap where SAL meets its baseline, cost always.
pub fn sweep_plots(records: &[TrialRecord]) -> Vec<NamedPlot> {
    let comparisons = compare_cells(records);
    let mut plots = Vec::new();
    let forest: Vec<(String, MeanCi)> =
        comparisons.iter().filter_map(|c| c.comparison.mean_ci.map(|m| (c.cell.label(), m))).collect();
    if !forest.is_empty() {
        plots.push(NamedPlot {
            name: "forest".into(),
            plot: Plot::Forest {
                caption: "SAL − baseline top-1 (pp), mean and 95% CI over seeds".into(),
                x_label: "Δ top-1 (percentage points)".into(),
                rows: forest,
            },
        });
        let mut cells: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for c in &comparisons {
            if let Some(m) = c.comparison.mean_ci {
                cells.entry((c.cell.architecture.clone(), c.cell.dataset.clone())).or_default().push(m.mean);
            }
        }
        let mut architectures: Vec<String> = cells.keys().map(|k| k.0.clone()).collect();
        architectures.dedup();
        let mut datasets: Vec<String> = cells.keys().map(|k| k.1.clone()).collect();
        datasets.sort();
        datasets.dedup();
        let delta = cells.into_iter().filter_map(|(k, v)| mean(&v).map(|m| (k, m))).collect();
        plots.push(NamedPlot {
            name: "heatmap".into(),
            plot: Plot::Heatmap { architectures, datasets, delta },
        });
    }
    /// Train seconds and memory of one method's finished trials.
    type Costs = (Vec<f64>, Vec<f64>);
    let mut by_arch: BTreeMap<String, [Costs; 2]> = BTreeMap::new();
    for record in records {
        let Some(result) = record.result.as_ref().filter(|r| r.status == TrialStatus::Completed) else {
            continue;
        };
        // SAL's cost beside the baseline's; the ablation arms are left out of this figure.
        let side = match record.spec.method {
            Method::Baseline => 0,
            Method::Sal => 1,
            _ => continue,
        };
        let entry = &mut by_arch.entry(record.spec.architecture.clone()).or_default()[side];
        entry.0.push(result.train_seconds);
        // Resident memory of the trial process, the paper's figure (GPU memory is not always there).
        entry.1.push(result.peak_host_mb);
    }
    plots.extend(ablation_plots(records));
    if !by_arch.is_empty() {
        let architectures: Vec<String> = by_arch.keys().cloned().collect();
        let column = |side: usize, memory: bool| -> Vec<Option<f64>> {
            by_arch.values().map(|sides| mean(if memory { &sides[side].1 } else { &sides[side].0 })).collect()
        };
        plots.push(NamedPlot {
            name: "cost".into(),
            plot: Plot::Cost {
                architectures,
                seconds: [column(0, false), column(1, false)],
                memory: [column(0, true), column(1, true)],
            },
        });
    }
    plots
}

/// Writes every plot of the sweep and of each trial as SVG and PNG under `dir`; returns the files.
pub fn write_all(dir: &Path, records: &[TrialRecord]) -> Result<Vec<PathBuf>, PlotError> {
    let mut written = Vec::new();
    let plots = sweep_plots(records).into_iter().chain(records.iter().flat_map(trial_plots));
    for named in plots {
        let svg_path = dir.join(format!("{}.svg", named.name));
        if let Some(parent) = svg_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|source| PlotError::Io { path: parent.into(), source })?;
        }
        std::fs::write(&svg_path, named.plot.svg()?)
            .map_err(|source| PlotError::Io { path: svg_path.clone(), source })?;
        let png_path = svg_path.with_extension("png");
        named.plot.write_png(&png_path)?;
        written.push(svg_path);
        written.push(png_path);
    }
    Ok(written)
}

/// The ablation's plots, when the sweep has an arm beyond the baseline: Δ top-1 by arm and cell,
/// and `Tr H` by arm and cell (the baseline's among them) when flatness was measured.
fn ablation_plots(records: &[TrialRecord]) -> Vec<NamedPlot> {
    let mut plots = Vec::new();
    // With SAL alone beside the baseline, the sweep's forest plot shows this already.
    if !crate::report::stats::other_methods(records).is_empty() {
        let delta = forest_rows(records, Metric::Top1);
        plots.push(NamedPlot {
            name: "ablation-top1".into(),
            plot: Plot::Forest {
                caption: "arm − baseline top-1 (pp), mean and 95% CI over seeds".into(),
                x_label: "Δ top-1 (percentage points)".into(),
                rows: delta,
            },
        });
    }
    let trace = value_rows(records, Metric::TraceH);
    if !trace.is_empty() {
        plots.push(NamedPlot {
            name: "ablation-trace-h".into(),
            plot: Plot::Forest {
                caption: "Tr H at the end of training by arm, mean and 95% CI over seeds".into(),
                x_label: "Hutchinson's Tr(H)".into(),
                rows: trace,
            },
        });
    }
    plots
}
