//! The SVG chart of the headline ratios (plotters, SVG backend): one horizontal bar per
//! headline comparison, its target as a red mark, parity (1.0×) as a grey line.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::Result;
use crate::results::Comparison;

/// Draw the headline comparisons of `all` into `path`.
pub(crate) fn draw(path: &Path, all: &[Comparison], title: &str) -> Result<()> {
    // Top to bottom in the order measured: plotters' y grows upwards, so reverse.
    let rows: Vec<&Comparison> = all.iter().filter(|c| c.headline.is_some()).rev().collect();
    let n = rows.len();
    if n == 0 {
        return Ok(());
    }
    let xmax = rows
        .iter()
        .map(|c| c.ratio.value.max(c.target.map_or(0.0, |t| t.max)))
        .fold(1.0f64, f64::max)
        * 1.25;
    let labels: Vec<String> = rows
        .iter()
        .map(|c| c.headline.unwrap_or_default().to_owned())
        .collect();
    let height = 110 + 44 * n as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(300)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("subject / baseline (cost; lower is better; red mark = target)")
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, c) in rows.iter().enumerate() {
        let colour = match c.met() {
            Some(false) => RGBColor(214, 96, 77),
            _ => RGBColor(67, 147, 195),
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (c.ratio.value, SegmentValue::Exact(i + 1)),
            ],
            colour.filled(),
        );
        bar.set_margin(8, 8, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{:.2}×", c.ratio.value),
            (c.ratio.value + xmax * 0.01, SegmentValue::CenterOf(i)),
            ("sans-serif", 14),
        )))?;
        if let Some(t) = c.target {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![
                    (t.max, SegmentValue::Exact(i)),
                    (t.max, SegmentValue::Exact(i + 1)),
                ],
                RED.stroke_width(3),
            )))?;
        }
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Exact(n))],
        BLACK.mix(0.4).stroke_width(1),
    )))?;
    root.present()?;
    Ok(())
}
