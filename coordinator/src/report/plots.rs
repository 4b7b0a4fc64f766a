//! Plots, drawn with `plotters`: SVG always, and PNG through the bitmap backend.
//!
//! Per trial (the paper's figures 5–7): training and validation loss and accuracy per epoch, with
//! the epochs where SAL injected noise, deformed plastically or recovered marked by vertical lines;
//! and SAL's stress trace with its S_noise and S_yield thresholds. Per sweep: SAL − baseline top-1
//! per cell with its 95% CI (a forest plot), a heatmap of that difference over architecture ×
//! dataset, and training time and memory by architecture.
//!
//! Text needs a font: SVG leaves glyphs to the viewer, but PNG rasterises them, so a subset of
//! DejaVu Sans (ASCII and the few symbols the plots use; Bitstream Vera licence, in
//! `coordinator/assets/`) is compiled in and registered with plotters' `ab_glyph` text backend. No
//! system font or fontconfig is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::model::{history, title, Action, EpochReport, Method, TrialRecord, TrialStatus};
use super::stats::{compare_cells, MeanCi};

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

const NOISE: RGBColor = RGBColor(230, 140, 0);
const PLASTIC: RGBColor = RGBColor(200, 30, 30);
const RECOVERED: RGBColor = RGBColor(20, 150, 60);
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VAL: RGBColor = RGBColor(148, 60, 190);
const BASELINE: RGBColor = RGBColor(120, 120, 120);
const SAL: RGBColor = RGBColor(31, 119, 180);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing {plot}: {message}")]
    Draw { plot: String, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: encoding PNG: {message}", path.display())]
    Png { path: PathBuf, message: String },
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse (a test draws with it), so a failure here
        // would only cost PNG text, never a plot.
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded plot font did not load: PNG plots will have no text");
        }
    });
}

/// What one plot shows; drawn on any plotters backend.
#[derive(Debug, Clone)]
pub enum Plot {
    Curves {
        title: String,
        history: Vec<EpochReport>,
    },
    Stress {
        title: String,
        history: Vec<EpochReport>,
        s_noise: f64,
        s_yield: f64,
    },
    /// Means with their 95% CIs, one row each, a line at 0: Δ top-1 by cell (and by arm), or a
    /// flatness figure by arm.
    Forest {
        caption: String,
        x_label: String,
        rows: Vec<(String, MeanCi)>,
    },
    Heatmap {
        architectures: Vec<String>,
        datasets: Vec<String>,
        delta: BTreeMap<(String, String), f64>,
    },
    Cost {
        architectures: Vec<String>,
        seconds: [Vec<Option<f64>>; 2],
        memory: [Vec<Option<f64>>; 2],
    },
}

/// A plot and the file name it is written under (relative, without extension).
#[derive(Debug, Clone)]
pub struct NamedPlot {
    pub name: String,
    pub plot: Plot,
}

impl Plot {
    pub fn size(&self) -> (u32, u32) {
        match self {
            Plot::Curves { .. } => (960, 360),
            Plot::Stress { .. } => (640, 360),
            Plot::Forest { rows, .. } => (720, (120 + 36 * rows.len() as u32).max(220)),
            Plot::Heatmap { architectures, datasets, .. } => (
                (220 + 120 * architectures.len() as u32).max(420),
                (140 + 60 * datasets.len() as u32).max(260),
            ),
            Plot::Cost { .. } => (960, 380),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Plot::Curves { .. } => "training curves",
            Plot::Stress { .. } => "stress trace",
            Plot::Forest { .. } => "forest plot",
            Plot::Heatmap { .. } => "heatmap",
            Plot::Cost { .. } => "cost plot",
        }
    }

    pub fn svg(&self) -> Result<String, PlotError> {
        register_font();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, self.size()).into_drawing_area();
            self.draw(&root)
                .and_then(|()| root.present().map_err(text))
                .map_err(|message| PlotError::Draw { plot: self.kind().into(), message })?;
        }
        Ok(out)
    }

    pub fn write_png(&self, path: &Path) -> Result<(), PlotError> {
        register_font();
        let (width, height) = self.size();
        let mut buffer = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
            self.draw(&root)
                .and_then(|()| root.present().map_err(text))
                .map_err(|message| PlotError::Draw { plot: self.kind().into(), message })?;
        }
        let image = image::RgbImage::from_raw(width, height, buffer)
            .ok_or_else(|| PlotError::Png { path: path.into(), message: "buffer size".into() })?;
        image
            .save_with_format(path, image::ImageFormat::Png)
            .map_err(|e| PlotError::Png { path: path.into(), message: e.to_string() })
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(text)?;
        match self {
            Plot::Curves { title, history } => draw_curves(root, title, history),
            Plot::Stress { title, history, s_noise, s_yield } => {
                draw_stress(root, title, history, *s_noise, *s_yield)
            }
            Plot::Forest { caption, x_label, rows } => draw_forest(root, caption, x_label, rows),
            Plot::Heatmap { architectures, datasets, delta } => {
                draw_heatmap(root, architectures, datasets, delta)
            }
            Plot::Cost { architectures, seconds, memory } => draw_cost(root, architectures, seconds, memory),
        }
    }
}

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A padded range around finite values; a fixed one when there are none.
fn range_of(values: impl Iterator<Item = f64>, floor_at_zero: bool) -> std::ops::Range<f64> {
    let finite: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    let (mut lo, mut hi) = finite.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    if finite.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if floor_at_zero {
        lo = lo.min(0.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    (if floor_at_zero && lo >= 0.0 { lo } else { lo - pad })..hi + pad
}

/// Epochs whose SAL action includes noise, a plastic deformation, a recovery.
fn action_epochs(history: &[EpochReport]) -> [Vec<f64>; 3] {
    let mut out: [Vec<f64>; 3] = Default::default();
    for e in history {
        let Some(sal) = &e.sal else { continue };
        let epoch = f64::from(e.epoch);
        // What was done to the weights (at the last epoch a decision may have been withheld).
        match sal.applied {
            Action::Noise => out[0].push(epoch),
            Action::Plastic => out[1].push(epoch),
            Action::NoisePlastic => {
                out[0].push(epoch);
                out[1].push(epoch);
            }
            Action::Recovered => out[2].push(epoch),
            Action::None => {}
        }
    }
    out
}

fn epoch_range(history: &[EpochReport]) -> std::ops::Range<f64> {
    let last = history.iter().map(|e| e.epoch).max().unwrap_or(1);
    0.5..f64::from(last) + 0.5
}

/// Vertical lines at the epochs of each SAL action, each kind with its legend entry.
fn mark_actions<DB: DrawingBackend>(
    chart: &mut ChartContext<
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    history: &[EpochReport],
    y: std::ops::Range<f64>,
) -> Result<(), String> {
    let [noise, plastic, recovered] = action_epochs(history);
    for (epochs, color, name) in
        [(noise, NOISE, "noise"), (plastic, PLASTIC, "plastic"), (recovered, RECOVERED, "recovery")]
    {
        if epochs.is_empty() {
            continue;
        }
        let (lo, hi) = (y.start, y.end);
        chart
            .draw_series(
                epochs
                    .into_iter()
                    .map(move |e| PathElement::new(vec![(e, lo), (e, hi)], color.stroke_width(2))),
            )
            .map_err(text)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y - 6), (x, y + 6)], color.stroke_width(2)));
    }
    Ok(())
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    history: &[EpochReport],
) -> Result<(), String> {
    let titled = root.titled(title, (FAMILY, 16)).map_err(text)?;
    let (left, right) = titled.split_horizontally(titled.dim_in_pixel().0 / 2);
    let x = epoch_range(history);
    let panels: [(&DrawingArea<DB, Shift>, &str, bool); 2] =
        [(&left, "loss", false), (&right, "accuracy %", true)];
    for (area, name, accuracy) in panels {
        let pick = |e: &EpochReport| {
            if accuracy {
                (e.train_accuracy * 100.0, e.val_accuracy * 100.0)
            } else {
                (e.train_loss, e.val_loss)
            }
        };
        let y = range_of(
            history.iter().flat_map(|e| {
                let (a, b) = pick(e);
                [a, b]
            }),
            accuracy,
        );
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(x.clone(), y.clone())
            .map_err(text)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(name)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FAMILY, 12))
            .draw()
            .map_err(text)?;
        mark_actions(&mut chart, history, y.clone())?;
        for (label, color, train) in [("train", TRAIN, true), ("validation", VAL, false)] {
            let points: Vec<(f64, f64)> = history
                .iter()
                .map(|e| {
                    let (t, v) = pick(e);
                    (f64::from(e.epoch), if train { t } else { v })
                })
                .filter(|(_, v)| v.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(text)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 2, color.filled()))).map_err(text)?;
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(if accuracy {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .draw()
            .map_err(text)?;
    }
    Ok(())
}

fn draw_stress<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    history: &[EpochReport],
    s_noise: f64,
    s_yield: f64,
) -> Result<(), String> {
    let x = epoch_range(history);
    let stress: Vec<(f64, f64)> =
        history.iter().filter_map(|e| e.sal.as_ref().map(|s| (f64::from(e.epoch), s.stress))).collect();
    let y = range_of(stress.iter().map(|p| p.1).chain([s_noise, s_yield]), true);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 16))
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(52)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("stress S_g")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 12))
        .draw()
        .map_err(text)?;
    mark_actions(&mut chart, history, y.clone())?;
    for (level, color, name) in [(s_noise, NOISE, "S_noise"), (s_yield, PLASTIC, "S_yield")] {
        let label = format!("{name} = {level}");
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x.start, level), (x.end, level)],
                color.mix(0.7).stroke_width(1),
            )))
            .map_err(text)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(1)));
    }
    chart
        .draw_series(LineSeries::new(stress.clone(), TRAIN.stroke_width(2)))
        .map_err(text)?
        .label("stress")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], TRAIN.stroke_width(2)));
    chart.draw_series(stress.into_iter().map(|p| Circle::new(p, 3, TRAIN.filled()))).map_err(text)?;
    chart
        .configure_series_labels()
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(text)?;
    Ok(())
}

/// A label for each integer position of a categorical axis; nothing between them.
fn category(names: &[String], value: f64) -> String {
    let i = value.round();
    if (value - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].clone()
    } else {
        String::new()
    }
}

fn draw_forest<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    caption: &str,
    x_label: &str,
    rows: &[(String, MeanCi)],
) -> Result<(), String> {
    let names: Vec<String> = rows.iter().map(|(name, _)| name.clone()).collect();
    let x = range_of(
        rows.iter().flat_map(|(_, m)| {
            let (lo, hi) = m.ci95.unwrap_or((m.mean, m.mean));
            [m.mean, lo, hi, 0.0]
        }),
        false,
    );
    let n = rows.len().max(1);
    let label_width = names.iter().map(|n| n.len() as u32 * 7 + 16).max().unwrap_or(60).min(320);
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FAMILY, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(label_width)
        .build_cartesian_2d(x.clone(), -0.5..n as f64 - 0.5)
        .map_err(text)?;
    let label = |v: &f64| category(&names, (n - 1) as f64 - v);
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_labels(n)
        .y_label_formatter(&label)
        .disable_y_mesh()
        .label_style((FAMILY, 12))
        .draw()
        .map_err(text)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, -0.5), (0.0, n as f64 - 0.5)],
            BLACK.mix(0.6),
        )))
        .map_err(text)?;
    for (i, (_, m)) in rows.iter().enumerate() {
        // First row at the top.
        let y = (n - 1 - i) as f64;
        if let Some((lo, hi)) = m.ci95 {
            chart
                .draw_series([
                    PathElement::new(vec![(lo, y), (hi, y)], SAL.stroke_width(2)),
                    PathElement::new(vec![(lo, y - 0.15), (lo, y + 0.15)], SAL.stroke_width(2)),
                    PathElement::new(vec![(hi, y - 0.15), (hi, y + 0.15)], SAL.stroke_width(2)),
                ])
                .map_err(text)?;
        }
        chart.draw_series(std::iter::once(Circle::new((m.mean, y), 5, SAL.filled()))).map_err(text)?;
    }
    Ok(())
}

/// Blue for negative, white at 0, red for positive, saturating at `scale`.
fn diverging(value: f64, scale: f64) -> RGBColor {
    let t = (value / scale.max(1e-9)).clamp(-1.0, 1.0);
    let fade = |full: u8| (255.0 - (255.0 - f64::from(full)) * t.abs()).round() as u8;
    if t >= 0.0 {
        RGBColor(fade(200), fade(40), fade(40))
    } else {
        RGBColor(fade(40), fade(90), fade(200))
    }
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    architectures: &[String],
    datasets: &[String],
    delta: &BTreeMap<(String, String), f64>,
) -> Result<(), String> {
    let (nx, ny) = (architectures.len().max(1), datasets.len().max(1));
    let scale = delta.values().fold(0.0f64, |m, v| m.max(v.abs()));
    let label_width = datasets.iter().map(|n| n.len() as u32 * 7 + 16).max().unwrap_or(60).min(260);
    let mut chart = ChartBuilder::on(root)
        .caption("SAL − baseline top-1 (pp), architecture × dataset (mean over their cells)", (FAMILY, 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(label_width)
        .build_cartesian_2d(-0.5..nx as f64 - 0.5, -0.5..ny as f64 - 0.5)
        .map_err(text)?;
    let x_label = |v: &f64| category(architectures, *v);
    let y_label = |v: &f64| category(datasets, (ny - 1) as f64 - v);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(nx)
        .y_labels(ny)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style((FAMILY, 12))
        .draw()
        .map_err(text)?;
    let centered = TextStyle::from((FAMILY, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    for (i, architecture) in architectures.iter().enumerate() {
        for (j, dataset) in datasets.iter().enumerate() {
            let (x, y) = (i as f64, (ny - 1 - j) as f64);
            let value = delta.get(&(architecture.clone(), dataset.clone()));
            let fill = value.map_or(RGBColor(235, 235, 235), |v| diverging(*v, scale));
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    fill.filled(),
                )))
                .map_err(text)?;
            let label = value.map_or_else(|| "–".to_string(), |v| format!("{v:+.2}"));
            chart.draw_series(std::iter::once(Text::new(label, (x, y), centered.clone()))).map_err(text)?;
        }
    }
    Ok(())
}

fn draw_cost<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    architectures: &[String],
    seconds: &[Vec<Option<f64>>; 2],
    memory: &[Vec<Option<f64>>; 2],
) -> Result<(), String> {
    let titled = root
        .titled("Training time and peak host memory by architecture (mean over trials)", (FAMILY, 16))
        .map_err(text)?;
    let (left, right) = titled.split_horizontally(titled.dim_in_pixel().0 / 2);
    let n = architectures.len().max(1);
    for (area, name, values) in [(&left, "train seconds", seconds), (&right, "peak host memory MB", memory)] {
        let y = range_of(values.iter().flatten().flatten().copied(), true);
        let mut chart = ChartBuilder::on(area)
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, y.clone())
            .map_err(text)?;
        let label = |v: &f64| category(architectures, *v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&label)
            .y_desc(name)
            .label_style((FAMILY, 12))
            .draw()
            .map_err(text)?;
        for (side, (color, method)) in [(BASELINE, "baseline"), (SAL, "SAL")].into_iter().enumerate() {
            let offset = if side == 0 { -0.38 } else { 0.02 };
            let bars: Vec<Rectangle<(f64, f64)>> = values[side]
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as f64, v)))
                .map(|(x, v)| {
                    Rectangle::new([(x + offset, y.start.max(0.0)), (x + offset + 0.36, v)], color.filled())
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(text)?
                .label(method)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(text)?;
    }
    Ok(())
}

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
    plots.extend(super::ablation::plots(records));
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
