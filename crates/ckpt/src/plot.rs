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

use crate::analysis::{Analysis, Operation, PhaseSummary};

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
    make_private(&png)?;
    Ok(svg)
}

/// Result files are 0600 like the records they are drawn from.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow!("cannot set the mode of {}: {e}", path.display()))
}

/// How far above the highest point the y axis goes, so that the legend
/// (one line per series, top left) stays clear of the data.
fn legend_headroom(series: usize) -> f64 {
    // About 17 px per legend line in a plot area about 450 px high.
    let legend = (series as f64 * 17.0 + 12.0) / 450.0;
    1.05 / (1.0 - legend.min(0.6))
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
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * legend_headroom(all.len()))
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
            .label(format!("{} (mean, 95% CI; dashed: fit)", s.label))
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
            // The fit is drawn but not labelled: its numbers are in the
            // report's tables, and a legend line per fit would hide data.
            chart
                .draw_series(DashedLineSeries::new(
                    line,
                    6,
                    4,
                    color.mix(0.7).stroke_width(1),
                ))
                .map_err(plot_error)?;
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

pub const PHASES_SVG: &str = "phases.svg";
pub const PHASES_PNG: &str = "phases.png";

/// One coloured part of a stacked bar.
struct Segment {
    label: &'static str,
    color: RGBColor,
    value: fn(&PhaseSummary) -> f64,
}

const GREY: RGBColor = RGBColor(170, 170, 170);

/// Checkpoint bar, bottom up: CRIU's phases, then the layers above CRIU.
const CHECKPOINT_SEGMENTS: [Segment; 5] = [
    Segment {
        label: "CRIU freezing",
        color: RGBColor(158, 202, 225),
        value: |p| p.freezing_ms,
    },
    Segment {
        label: "CRIU memdump",
        color: RGBColor(49, 130, 189),
        value: |p| p.memdump_ms,
    },
    Segment {
        label: "CRIU memwrite",
        color: RGBColor(8, 81, 156),
        value: |p| p.memwrite_ms,
    },
    Segment {
        label: "CRIU other frozen work",
        color: RGBColor(107, 174, 214),
        value: |p| (p.frozen_ms - p.memdump_ms - p.memwrite_ms).max(0.0),
    },
    Segment {
        label: "above CRIU (checkpoint)",
        color: GREY,
        value: |p| p.checkpoint_above_criu_ms,
    },
];

/// Restore bar, bottom up.
const RESTORE_SEGMENTS: [Segment; 3] = [
    Segment {
        label: "CRIU forking",
        color: RGBColor(253, 174, 107),
        value: |p| p.forking_ms,
    },
    Segment {
        label: "CRIU other restore work",
        color: RGBColor(230, 85, 13),
        value: |p| (p.criu_restore_ms - p.forking_ms).max(0.0),
    },
    Segment {
        label: "above CRIU (restore)",
        color: RGBColor(120, 120, 120),
        value: |p| p.restore_above_criu_ms,
    },
];

/// Writes phases.svg and phases.png (stacked bars of where the time goes);
/// returns the SVG, or None when no record carries CRIU's statistics.
pub fn write_phase_figures(analysis: &Analysis, dir: &Path) -> Result<Option<String>> {
    if analysis.phases.is_empty() {
        return Ok(None);
    }
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        draw_phases(&root, &analysis.phases)?;
    }
    crate::records::write_private(&dir.join(PHASES_SVG), svg.as_bytes())?;
    let png = dir.join(PHASES_PNG);
    {
        let root = BitMapBackend::new(&png, (900, 560)).into_drawing_area();
        draw_phases(&root, &analysis.phases)?;
    }
    make_private(&png)?;
    Ok(Some(svg))
}

fn draw_phases<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    phases: &[PhaseSummary],
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let y_max = phases
        .iter()
        .map(|p| p.checkpoint_ms.max(p.restore_ms))
        .fold(1.0, f64::max);
    let labels: Vec<String> = phases
        .iter()
        .map(|p| format!("{} N={}", p.engine, p.children))
        .collect();
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Where the time goes: CRIU's phases under the wall time",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(-0.6..(phases.len() as f64 - 0.4), 0.0..y_max * 1.45)
        .map_err(plot_error)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(phases.len().max(2))
        .x_label_formatter(&label_of)
        .x_desc("left bar: checkpoint, right bar: restore")
        .y_desc("Time (ms)")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_error)?;
    for (segments, left, right) in [
        (&CHECKPOINT_SEGMENTS[..], -0.38, -0.02),
        (&RESTORE_SEGMENTS[..], 0.02, 0.38),
    ] {
        for (k, segment) in segments.iter().enumerate() {
            let bars = phases.iter().enumerate().map(|(i, p)| {
                let below: f64 = segments[..k].iter().map(|s| (s.value)(p)).sum();
                let x = i as f64;
                Rectangle::new(
                    [(x + left, below), (x + right, below + (segment.value)(p))],
                    segment.color.filled(),
                )
            });
            let color = segment.color;
            chart
                .draw_series(bars)
                .map_err(plot_error)?
                .label(segment.label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}
