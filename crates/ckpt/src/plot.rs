//! The seed's Fig 1, redrawn from the analysis: checkpoint and restore time
//! (ms) against the number of child processes, means with 95% CI error
//! bars and the fitted lines. SVG and PNG, from the same drawing code.
//!
//! The PNG needs a font rasteriser; plotters' ab_glyph backend with a font
//! compiled into the binary (DejaVu Sans, see assets/) needs no system font
//! library at run time.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::analysis::{Analysis, Operation};

pub const FIGURE_SVG: &str = "figure.svg";
pub const FIGURE_PNG: &str = "figure.png";

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| anyhow!("the embedded font could not be loaded"));
    });
    result
}

/// One line of the figure: an engine's operation.
struct Series {
    label: String,
    color: RGBColor,
    /// (children, mean, ci low, ci high)
    points: Vec<(f64, f64, f64, f64)>,
    fit: Option<(f64, f64)>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn series(analysis: &Analysis) -> Vec<Series> {
    let mut keys: Vec<(String, Operation)> = analysis
        .points
        .iter()
        .map(|p| (p.engine.clone(), p.operation))
        .collect();
    keys.sort();
    keys.dedup();
    let single_engine = keys.iter().all(|(e, _)| *e == keys[0].0);
    keys.iter()
        .enumerate()
        .map(|(i, (engine, op))| {
            let points = analysis
                .points
                .iter()
                .filter(|p| &p.engine == engine && p.operation == *op)
                .map(|p| (p.children as f64, p.mean_ms, p.ci95_low_ms, p.ci95_high_ms))
                .collect();
            let fit = analysis
                .fits
                .iter()
                .find(|f| &f.engine == engine && f.operation == *op)
                .map(|f| (f.fit.intercept, f.fit.slope));
            let label = if single_engine {
                op.name().to_string()
            } else {
                format!("{engine} {}", op.name())
            };
            Series {
                label,
                color: COLORS[i % COLORS.len()],
                points,
                fit,
            }
        })
        .collect()
}

/// Writes figure.svg and figure.png into `dir`; returns the SVG text (the
/// HTML report inlines it).
pub fn write_figures(analysis: &Analysis, dir: &Path) -> Result<String> {
    register_font()?;
    let all = series(analysis);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        draw(&root, &all)?;
    }
    crate::records::write_private(&dir.join(FIGURE_SVG), svg.as_bytes())?;
    let png = dir.join(FIGURE_PNG);
    {
        let root = BitMapBackend::new(&png, (900, 560)).into_drawing_area();
        draw(&root, &all)?;
    }
    Ok(svg)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure failed: {e:?}")
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, all: &[Series]) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let x_max = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.3))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Checkpoint and restore time against number of child processes",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.15)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("Number of child processes")
        .y_desc("Time (ms)")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_error)?;
    for s in all {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(plot_error)?
            .label(format!("{} (mean, 95% CI)", s.label))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                s.points
                    .iter()
                    .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, color.filled(), 8)),
            )
            .map_err(plot_error)?;
        if let Some((intercept, slope)) = s.fit {
            let line = [(0.0, intercept), (x_max, intercept + slope * x_max)];
            chart
                .draw_series(DashedLineSeries::new(
                    line,
                    6,
                    4,
                    color.mix(0.7).stroke_width(1),
                ))
                .map_err(plot_error)?
                .label(format!(
                    "{} fit: {:.1} ms + {:.2} ms/process",
                    s.label, intercept, slope
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.mix(0.7)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
