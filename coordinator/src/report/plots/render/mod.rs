//! Drawing a plot with `plotters`: SVG always, and PNG through the bitmap backend.
//!
//! Text needs a font: SVG leaves glyphs to the viewer, but PNG rasterises them, so a subset of
//! DejaVu Sans (ASCII and the few symbols the plots use; Bitstream Vera licence, in
//! `coordinator/assets/`) is compiled in and registered with plotters' `ab_glyph` text backend. No
//! system font or fontconfig is needed.

mod charts;
mod curves;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::model::EpochReport;
use crate::report::stats::MeanCi;
use charts::{draw_cost, draw_forest, draw_heatmap};
use curves::{draw_curves, draw_stress};

pub(super) const FONT: &[u8] = include_bytes!("../../../../assets/DejaVuSans-subset.ttf");

pub(super) const FAMILY: &str = "sans-serif";

pub(super) const NOISE: RGBColor = RGBColor(230, 140, 0);

pub(super) const PLASTIC: RGBColor = RGBColor(200, 30, 30);

pub(super) const RECOVERED: RGBColor = RGBColor(20, 150, 60);

pub(super) const TRAIN: RGBColor = RGBColor(31, 119, 180);

pub(super) const VAL: RGBColor = RGBColor(148, 60, 190);

pub(super) const BASELINE: RGBColor = RGBColor(120, 120, 120);

pub(super) const SAL: RGBColor = RGBColor(31, 119, 180);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing {plot}: {message}")]
    Draw { plot: String, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: encoding PNG: {message}", path.display())]
    Png { path: PathBuf, message: String },
}

pub(super) fn register_font() {
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

pub(super) fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A padded range around finite values; a fixed one when there are none.
pub(super) fn range_of(values: impl Iterator<Item = f64>, floor_at_zero: bool) -> std::ops::Range<f64> {
    let finite: Vec<f64> = values.filter(|v| v.is_finite()).collect();
    let (mut lo, mut hi) = finite.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    if finite.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if floor_at_zero {
        lo = lo.min(0.0);
    }
    // Every value the same (one seed, a Δ of zero): a span of its own, or the axis would spread
    // a millionth over its whole width.
    let pad = if hi - lo > 1e-9 { (hi - lo) * 0.08 } else { hi.abs().max(1.0) * 0.5 };
    (if floor_at_zero && lo >= 0.0 { lo } else { lo - pad })..hi + pad
}

#[cfg(test)]
mod tests {
    use super::range_of;

    #[test]
    fn an_axis_spans_its_values_with_a_margin_and_a_single_value_gets_a_span_of_its_own() {
        let range = range_of([1.0, 3.0].into_iter(), false);
        assert!(range.start < 1.0 && range.end > 3.0 && range.end - range.start < 2.5, "{range:?}");
        let flat = range_of([0.0, 0.0].into_iter(), false);
        assert_eq!(flat, -0.5..0.5);
        let bars = range_of([40.0].into_iter(), true);
        assert_eq!(bars.start, 0.0);
        assert!((bars.end - 43.2).abs() < 1e-9, "{bars:?}");
        assert!(range_of(std::iter::empty(), false).start < 0.0);
    }
}
