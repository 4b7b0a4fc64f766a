//! A trial's curves: loss and accuracy per epoch, SAL's stress trace, SAL's actions marked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{range_of, text, FAMILY, NOISE, PLASTIC, RECOVERED, TRAIN, VAL};
use crate::report::model::{Action, EpochReport};

/// Epochs whose SAL action includes noise, a plastic deformation, a recovery.
pub(super) fn action_epochs(history: &[EpochReport]) -> [Vec<f64>; 3] {
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

pub(super) fn epoch_range(history: &[EpochReport]) -> std::ops::Range<f64> {
    let last = history.iter().map(|e| e.epoch).max().unwrap_or(1);
    0.5..f64::from(last) + 0.5
}

/// Vertical lines at the epochs of each SAL action, each kind with its legend entry.
pub(super) fn mark_actions<DB: DrawingBackend>(
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

pub(super) fn draw_curves<DB: DrawingBackend>(
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

pub(super) fn draw_stress<DB: DrawingBackend>(
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
