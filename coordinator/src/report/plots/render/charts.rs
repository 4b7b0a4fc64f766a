//! A sweep's charts: the forest plot, the heatmap, training time and memory.

use std::collections::BTreeMap;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{range_of, text, BASELINE, FAMILY, SAL};
use crate::report::stats::MeanCi;

/// A label for each integer position of a categorical axis; nothing between them.
pub(super) fn category(names: &[String], value: f64) -> String {
    let i = value.round();
    if (value - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].clone()
    } else {
        String::new()
    }
}

pub(super) fn draw_forest<DB: DrawingBackend>(
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
pub(super) fn diverging(value: f64, scale: f64) -> RGBColor {
    let t = (value / scale.max(1e-9)).clamp(-1.0, 1.0);
    let fade = |full: u8| (255.0 - (255.0 - f64::from(full)) * t.abs()).round() as u8;
    if t >= 0.0 {
        RGBColor(fade(200), fade(40), fade(40))
    } else {
        RGBColor(fade(40), fade(90), fade(200))
    }
}

pub(super) fn draw_heatmap<DB: DrawingBackend>(
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

pub(super) fn draw_cost<DB: DrawingBackend>(
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
