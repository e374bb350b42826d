//! The report's picture: how many objects were Ready over time in the bare
//! phase and in the Strata phase, on the same axes, as SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::Result;
use crate::report::{ReadySeries, Report};

/// Writes the Ready counts of phases `bare` and `strata` of `report` over
/// time to `path` (nothing when either phase has none); `title` names them.
pub fn ready_over_time(
    report: &Report,
    bare: &str,
    strata: &str,
    title: &str,
    path: &Path,
) -> Result<bool> {
    let find = |phase: &str| report.ready_over_time.iter().find(|s| s.phase == phase);
    let (Some(bare), Some(strata)) = (find(bare), find(strata)) else {
        return Ok(false);
    };
    let last = |s: &ReadySeries| s.points.last().map_or(0.0, |p| p.0);
    let most = |s: &ReadySeries| s.points.iter().map(|p| p.1).max().unwrap_or(0);
    let x_max = last(bare).max(last(strata)).max(1.0) * 1.05;
    let y_max = (most(bare).max(most(strata)).max(1) as f64) * 1.05;

    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds from the phase's start")
        .y_desc("Ready")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let bare_colour = RGBColor(0x55, 0x55, 0x55);
    let strata_colour = RGBColor(0x1f, 0x6f, 0xc5);
    for (series, label, colour) in [
        (
            bare,
            format!("bare: {} ({:.1} s)", bare.what, last(bare)),
            bare_colour,
        ),
        (
            strata,
            format!("Strata: {} ({:.1} s)", strata.what, last(strata)),
            strata_colour,
        ),
    ] {
        let style = colour.stroke_width(2);
        chart
            .draw_series(LineSeries::new(steps(series), style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}

/// The counts as a step line: each holds until the next change.
fn steps(series: &ReadySeries) -> Vec<(f64, f64)> {
    let mut line = Vec::with_capacity(series.points.len() * 2);
    for &(seconds, ready) in &series.points {
        if let Some(&(_, before)) = line.last() {
            line.push((seconds, before));
        }
        line.push((seconds, ready as f64));
    }
    line
}
