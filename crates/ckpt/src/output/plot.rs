//! The seed's Fig 1, redrawn from the analysis: checkpoint and restore time
//! (ms) against the number of child processes, means with 95% CI error
//! bars and the fitted lines; one such figure per swept axis (the other
//! axes held fixed, a line per combination of their values), and a heat
//! map when two axes vary. SVG and PNG, from the same drawing code.
//!
//! The PNG needs a font rasteriser; plotters' ab_glyph backend with a font
//! compiled into the binary (DejaVu Sans, see assets/) needs no system font
//! library at run time.

use std::ops::Range;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::drift::Drift;
use crate::analysis::{self, Analysis, Operation, PhaseSummary};
use crate::model::{Axis, Point};
use crate::sweep::results::{ResultFile, ResultsDir};

pub(crate) const HEATMAP: &str = "heatmap";
pub(crate) const SIZE: &str = "size-vs-rss";

/// A figure written to the results directory.
pub struct Figure {
    /// File name without extension (`.svg` and `.png` exist).
    pub stem: String,
    pub caption: String,
    pub svg: String,
}

/// The file stem of the figure against `axis`: the first swept axis gets
/// the seed's `figure`, the others `figure-<axis>`.
pub(crate) fn figure_stem(analysis: &Analysis, axis: Axis) -> String {
    if analysis.swept.first() == Some(&axis) {
        "figure".into()
    } else {
        format!("figure-{}", axis.name().replace('_', "-"))
    }
}

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

pub(super) fn register_font() -> Result<()> {
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

pub(super) const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The lines of the figure against `axis`: one per engine, operation and
/// combination of the other axes' values.
fn series(analysis: &Analysis, axis: Axis) -> Vec<Series> {
    let mut keys: Vec<(String, Point, Operation)> = analysis
        .points
        .iter()
        .map(|p| {
            (
                p.engine.clone(),
                analysis::without(p.point(), axis),
                p.operation,
            )
        })
        .collect();
    keys.sort();
    keys.dedup();
    let single_engine = keys.iter().all(|(e, _, _)| *e == keys[0].0);
    let single_slice = keys.iter().all(|(_, at, _)| *at == keys[0].1);
    keys.iter()
        .enumerate()
        .map(|(i, (engine, at, op))| {
            let points = analysis
                .points
                .iter()
                .filter(|p| {
                    &p.engine == engine
                        && p.operation == *op
                        && analysis::without(p.point(), axis) == *at
                })
                .map(|p| {
                    let x = f64::from(axis.of(&p.point()));
                    (x, p.mean_ms, p.ci95_low_ms, p.ci95_high_ms)
                })
                .collect();
            let fit = analysis
                .fits
                .iter()
                .find(|f| {
                    &f.engine == engine && f.operation == *op && f.axis == axis && f.at == *at
                })
                .map(|f| (f.fit.intercept, f.fit.slope));
            let mut label = if single_engine {
                op.name().to_string()
            } else {
                format!("{engine} {}", op.name())
            };
            if !single_slice {
                label = format!("{label}, {}", analysis.label_except(at, axis));
            }
            Series {
                label,
                color: COLORS[i % COLORS.len()],
                points,
                fit,
            }
        })
        .collect()
}

/// Writes one figure per swept axis (figure.svg/png for the first) and,
/// when exactly two axes vary, the heat map; returns them for the report.
pub(crate) fn write_figures(analysis: &Analysis, dir: &ResultsDir) -> Result<Vec<Figure>> {
    register_font()?;
    let mut figures = Vec::new();
    for &axis in &analysis.swept {
        let all = series(analysis, axis);
        let stem = figure_stem(analysis, axis);
        let svg = write_both(dir, &stem, &Picture::Lines(&all, axis))?;
        figures.push(Figure {
            caption: format!(
                "checkpoint and restore time against {}: means with 95% confidence intervals and the least-squares lines (dashed)",
                axis.title()
            ),
            stem,
            svg,
        });
    }
    if let [x, y] = analysis.swept[..] {
        let svg = write_both(dir, HEATMAP, &Picture::Heat(analysis, (x, y)))?;
        figures.push(Figure {
            stem: HEATMAP.into(),
            caption: format!(
                "mean checkpoint time (top) and restore time (bottom), in ms, over {} and {}, one panel per engine",
                x.title(),
                y.title()
            ),
            svg,
        });
    }
    if analysis
        .migrations
        .iter()
        .map(|m| m.memory_mib)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        >= 2
    {
        let all = downtime_series(analysis);
        let svg = write_both(dir, MIGRATION, &Picture::Downtime(&all))?;
        figures.push(Figure {
            stem: MIGRATION.into(),
            caption: "migration downtime against the memory each process holds, a line per engine and method (and N), and the clients' gap where a probe ran: means with 95% confidence intervals".into(),
            svg,
        });
    }
    if size_points(analysis).len() >= 2 {
        let svg = write_both(dir, SIZE, &Picture::Size(analysis))?;
        figures.push(Figure {
            stem: SIZE.into(),
            caption: "checkpoint size against the resident memory of the container's processes, a point per grid point and engine; dashed: size = resident memory".into(),
            svg,
        });
    }
    Ok(figures)
}

/// The migration figure's file stem.
pub(crate) const MIGRATION: &str = "migration";

/// Downtime against memory, a series per engine and method (and per N
/// when the sweep varies it: a tree of two processes is not a point on the
/// line of one), and beside each the clients' gap when a probe ran.
fn downtime_series(analysis: &Analysis) -> Vec<Series> {
    let mut keys: Vec<(&str, u32)> = analysis
        .migrations
        .iter()
        .map(|m| (m.engine.as_str(), m.children))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let several_n = keys.iter().any(|k| k.1 != keys[0].1);
    let mut all = Vec::new();
    for (engine, children) in keys {
        let label = match several_n {
            true => format!("{engine} N={children}"),
            false => engine.to_string(),
        };
        let at = || {
            analysis
                .migrations
                .iter()
                .filter(move |m| m.engine == engine && m.children == children)
        };
        let color = COLORS[all.len() % COLORS.len()];
        let point =
            |x: u32, s: &crate::analysis::Stats| (f64::from(x), s.mean, s.ci_low, s.ci_high);
        all.push(Series {
            label: label.clone(),
            color,
            points: at().map(|m| point(m.memory_mib, &m.downtime)).collect(),
            fit: None,
        });
        let gaps: Vec<_> = at()
            .filter_map(|m| Some(point(m.memory_mib, &m.client.as_ref()?.gap)))
            .collect();
        if !gaps.is_empty() {
            all.push(Series {
                label: format!("{label} client gap"),
                color: COLORS[all.len() % COLORS.len()],
                points: gaps,
                fit: None,
            });
        }
    }
    all
}

/// (engine, resident MiB, checkpoint MiB) of every point that has both.
fn size_points(analysis: &Analysis) -> Vec<(&str, f64, f64)> {
    const MIB: f64 = 1048576.0;
    analysis
        .points
        .iter()
        .filter(|p| p.operation == Operation::Checkpoint)
        .filter_map(|p| {
            Some((
                p.engine.as_str(),
                p.mean_rss_bytes? / MIB,
                p.mean_checkpoint_bytes? / MIB,
            ))
        })
        .collect()
}

/// Checkpoint size against resident memory, with the line where they are
/// equal: what CRIU writes is what the processes hold, minus what it can
/// leave out (file-backed pages it reads back from the files).
fn draw_size<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, analysis: &Analysis) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let points = size_points(analysis);
    let top = points.iter().map(|p| p.1.max(p.2)).fold(1.0, f64::max) * 1.05;
    let mut chart = plane(
        root,
        "Checkpoint size against resident memory",
        0.0..top,
        0.0..top,
    )?;
    draw_axes(
        &mut chart,
        (
            "Resident memory of the container's processes (MiB)",
            "Checkpoint size (MiB)",
        ),
        false,
    )?;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (top, top)],
            6,
            4,
            GREY.stroke_width(1),
        ))
        .map_err(plot_error)?;
    let mut engines: Vec<&str> = points.iter().map(|p| p.0).collect();
    engines.sort_unstable();
    engines.dedup();
    for (i, engine) in engines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // Each engine's marks are smaller than the last one's, so points
        // that coincide across engines stay visible as rings.
        let radius = 8u32.saturating_sub(2 * i as u32).max(2);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.0 == *engine)
                    .map(move |p| Circle::new((p.1, p.2), radius, color.filled())),
            )
            .map_err(plot_error)?
            .label(*engine)
            .legend(move |(x, y)| Circle::new((x + 10, y), radius, color.filled()));
    }
    finish(root, &mut chart, 13)
}

/// What a figure shows; drawn the same way on every backend.
enum Picture<'a> {
    Lines(&'a [Series], Axis),
    Downtime(&'a [Series]),
    Heat(&'a Analysis, (Axis, Axis)),
    Phases(&'a Analysis),
    Size(&'a Analysis),
    Drift(&'a [Drift]),
}

/// A picture that can be drawn on any backend, at its own size.
pub(super) trait Paint {
    fn size(&self) -> (u32, u32);
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

impl Paint for Picture<'_> {
    /// Pixels; the heat map stacks two rows of panels and needs the height.
    fn size(&self) -> (u32, u32) {
        match self {
            Picture::Heat(..) => (900, 820),
            _ => (900, 560),
        }
    }

    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        match self {
            Picture::Lines(all, axis) => draw(
                root,
                all,
                *axis,
                &format!("Checkpoint and restore time against {}", axis.title()),
            ),
            Picture::Downtime(all) => draw(
                root,
                all,
                Axis::MemoryMib,
                "Migration downtime against memory",
            ),
            Picture::Heat(analysis, axes) => draw_heatmap(root, analysis, *axes),
            Picture::Phases(analysis) => draw_phases(root, analysis),
            Picture::Size(analysis) => draw_size(root, analysis),
            Picture::Drift(drifts) => draw_drift(root, drifts),
        }
    }
}

/// Draws the same picture as `<stem>.svg` and `<stem>.png`; returns the SVG.
pub(super) fn write_both(dir: &ResultsDir, stem: &str, picture: &impl Paint) -> Result<String> {
    let size = picture.size();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        picture.paint(&root)?;
    }
    dir.write(ResultFile::Svg(stem), svg.as_bytes())?;
    {
        let png = dir.file(ResultFile::Png(stem));
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        picture.paint(&root)?;
    }
    dir.make_private(ResultFile::Png(stem))?;
    Ok(svg)
}

/// The coordinates of a chart with numbers on both axes.
type Plane = Cartesian2d<RangedCoordf64, RangedCoordf64>;

/// The frame every chart but the heat map's panels shares: a caption and
/// room for the axis labels and descriptions.
pub(super) fn plane<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    caption: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<ChartContext<'a, DB, Plane>> {
    ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(x, y)
        .map_err(plot_error)
}

/// How far above the highest point the y axis goes, so that the legend
/// (one line per series, top left) stays clear of the data.
pub(super) fn legend_headroom(series: usize) -> f64 {
    // About 17 px per legend line in a plot area about 450 px high.
    let legend = (series as f64 * 17.0 + 12.0) / 450.0;
    1.05 / (1.0 - legend.min(0.6))
}

/// Draws the legend (top left, over a white veil) and writes the picture
/// out: the last steps of every chart here.
pub(super) fn finish<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    root: &DrawingArea<DB, Shift>,
    chart: &mut ChartContext<'a, DB, CT>,
    font_size: u32,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", font_size))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// The grid and the axes' titles of a `plane`; `whole_x` when the x axis
/// counts things (processes, trials), so its ticks read "5", not "5.0".
fn draw_axes<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Plane>,
    (x_desc, y_desc): (&str, &str),
    whole_x: bool,
) -> Result<()> {
    let mut mesh = chart.configure_mesh();
    if whole_x {
        mesh.x_label_formatter(&integer_label);
    }
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_error)
}

pub(super) fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure failed: {e:?}")
}

/// A tick of an axis whose values are whole numbers (processes, MiB): "5",
/// not "5.0"; a tick between two of them keeps its fraction.
pub(super) fn integer_label(v: &f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    all: &[Series],
    axis: Axis,
    title: &str,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let x_max = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let y_max = all
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.3))
        .fold(1.0, f64::max);
    let mut chart = plane(
        root,
        title,
        0.0..x_max * 1.05,
        0.0..y_max * legend_headroom(all.len()),
    )?;
    draw_axes(&mut chart, (&capitalised(axis.title()), "Time (ms)"), true)?;
    for s in all {
        draw_line(&mut chart, s, x_max)?;
    }
    finish(root, &mut chart, 13)
}

/// One series: its means joined by a line, their confidence intervals as
/// error bars, and its fit dashed from 0 to `x_max`.
fn draw_line<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Plane>,
    s: &Series,
    x_max: f64,
) -> Result<()> {
    let color = s.color;
    chart
        .draw_series(LineSeries::new(
            s.points.iter().map(|p| (p.0, p.1)),
            color.stroke_width(2),
        ))
        .map_err(plot_error)?
        .label(format!("{} (mean, 95% CI; dashed: fit)", s.label))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
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
    Ok(())
}

pub(crate) fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Light yellow for the fastest cell to dark red for the slowest.
fn heat(fraction: f64) -> RGBColor {
    let f = fraction.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(255.0, 165.0), mix(237.0, 15.0), mix(160.0, 21.0))
}

/// The heat map of mean checkpoint and restore time over two axes: a row
/// per operation, a panel per engine, each cell labelled with its value.
/// Each row has its own colour scale, shared by its engines, so that
/// engines compare at a glance and restore is not washed out by checkpoint.
fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    analysis: &Analysis,
    axes: (Axis, Axis),
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let values = |axis: Axis| {
        let mut v: Vec<u32> = analysis
            .points
            .iter()
            .map(|p| axis.of(&p.point()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let grid = HeatGrid {
        axes,
        values: (values(axes.0), values(axes.1)),
    };
    let mut engines: Vec<&str> = analysis.points.iter().map(|p| p.engine.as_str()).collect();
    engines.sort_unstable();
    engines.dedup();
    let titled = root
        .titled("Mean time (ms)", ("sans-serif", 20))
        .map_err(plot_error)?;
    let rows = titled.split_evenly((Operation::ALL.len(), 1));
    for (row, operation) in rows.iter().zip(Operation::ALL) {
        let cells: Vec<&analysis::PointSummary> = analysis
            .points
            .iter()
            .filter(|p| p.operation == operation)
            .collect();
        let range = cells.iter().fold((f64::MAX, f64::MIN), |(l, h), p| {
            (l.min(p.mean_ms), h.max(p.mean_ms))
        });
        let panels = row.split_evenly((1, engines.len().max(1)));
        for (panel, engine) in panels.iter().zip(&engines) {
            let mine: Vec<_> = cells
                .iter()
                .filter(|p| p.engine == *engine)
                .copied()
                .collect();
            let caption = format!("{engine}: {}", operation.name());
            draw_heat_panel(panel, &caption, &mine, &grid, range)?;
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

/// The two axes of a heat map and the values each takes, in order.
struct HeatGrid {
    axes: (Axis, Axis),
    values: (Vec<u32>, Vec<u32>),
}

/// One panel of the heat map: a cell per grid point, coloured by its mean
/// between `low` and `high`.
fn draw_heat_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    caption: &str,
    cells: &[&analysis::PointSummary],
    grid: &HeatGrid,
    (low, high): (f64, f64),
) -> Result<()> {
    let ((x_axis, y_axis), (xs, ys)) = (grid.axes, &grid.values);
    let mut chart = heat_panel_chart(panel, caption, grid)?;
    for p in cells {
        let point = p.point();
        let (Some(i), Some(j)) = (
            xs.iter().position(|v| *v == x_axis.of(&point)),
            ys.iter().position(|v| *v == y_axis.of(&point)),
        ) else {
            continue;
        };
        let fraction = if high > low {
            (p.mean_ms - low) / (high - low)
        } else {
            0.0
        };
        draw_heat_cell(&mut chart, (i, j), fraction, p.mean_ms)?;
    }
    Ok(())
}

/// The coordinates of a heat map panel: a segment per value of each axis.
type Cells = Cartesian2d<SegmentedCoord<RangedCoordusize>, SegmentedCoord<RangedCoordusize>>;

/// A heat map panel's frame: its caption and its two axes, each value
/// labelled under the middle of its cells.
fn heat_panel_chart<'a, DB: DrawingBackend>(
    panel: &'a DrawingArea<DB, Shift>,
    caption: &str,
    grid: &HeatGrid,
) -> Result<ChartContext<'a, DB, Cells>> {
    let ((x_axis, y_axis), (xs, ys)) = (grid.axes, &grid.values);
    let mut chart = ChartBuilder::on(panel)
        .caption(caption, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(55)
        // Segmented axes put each value's label under the middle of its
        // cell rather than on a cell edge.
        // (An integer range includes its end: 0..n-1 is n cells.)
        .build_cartesian_2d(
            (0..xs.len().saturating_sub(1)).into_segmented(),
            (0..ys.len().saturating_sub(1)).into_segmented(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(xs.len() + 1)
        .y_labels(ys.len() + 1)
        .x_label_formatter(&|v| centre_label(v, xs))
        .y_label_formatter(&|v| centre_label(v, ys))
        .x_desc(x_axis.title())
        .y_desc(y_axis.title())
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

/// The cell at column `i`, row `j`: coloured by `fraction` of the row's
/// range and labelled with its mean.
fn draw_heat_cell<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cells>,
    (i, j): (usize, usize),
    fraction: f64,
    mean_ms: f64,
) -> Result<()> {
    use SegmentValue::{CenterOf, Exact};
    chart
        .draw_series([Rectangle::new(
            [(Exact(i), Exact(j)), (Exact(i + 1), Exact(j + 1))],
            heat(fraction).filled(),
        )])
        .map_err(plot_error)?;
    // White on the dark end of the scale, black on the light end.
    let text_color = if fraction > 0.6 { WHITE } else { BLACK };
    let style = ("sans-serif", 14)
        .into_font()
        .color(&text_color)
        .pos(Pos::new(HPos::Center, VPos::Center));
    chart
        .draw_series([Text::new(
            format!("{mean_ms:.0}"),
            (CenterOf(i), CenterOf(j)),
            style,
        )])
        .map_err(plot_error)?;
    Ok(())
}

/// The label of a segmented axis position: the value at a cell's middle.
fn centre_label(at: &SegmentValue<usize>, values: &[u32]) -> String {
    match at {
        SegmentValue::CenterOf(i) => values.get(*i).map_or(String::new(), u32::to_string),
        _ => String::new(),
    }
}

pub(crate) const PHASES: &str = "phases";

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
    // CRIU times memwrite inside memdump: the bar splits memdump into
    // collecting the pages and writing them.
    Segment {
        label: "CRIU memdump: collecting pages",
        color: RGBColor(49, 130, 189),
        value: |p| (p.memdump_ms - p.memwrite_ms).max(0.0),
    },
    Segment {
        label: "CRIU memdump: writing pages (memwrite)",
        color: RGBColor(8, 81, 156),
        value: |p| p.memwrite_ms.min(p.memdump_ms),
    },
    Segment {
        label: "CRIU other frozen work",
        color: RGBColor(107, 174, 214),
        value: |p| (p.frozen_ms - p.memdump_ms).max(0.0),
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
pub(crate) fn write_phase_figures(analysis: &Analysis, dir: &ResultsDir) -> Result<Option<String>> {
    if analysis.phases.is_empty() {
        return Ok(None);
    }
    register_font()?;
    write_both(dir, PHASES, &Picture::Phases(analysis)).map(Some)
}

/// Stacked bars of where the time goes: for each point a checkpoint bar
/// and a restore bar side by side.
fn draw_phases<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    analysis: &Analysis,
) -> Result<()> {
    let phases: &[PhaseSummary] = &analysis.phases;
    root.fill(&WHITE).map_err(plot_error)?;
    let y_max = phases
        .iter()
        .map(|p| p.checkpoint_ms.max(p.restore_ms))
        .fold(1.0, f64::max);
    // Each point's bars stand at its index, from -0.38 to 0.38 around it.
    let mut chart = plane(
        root,
        "Where the time goes: CRIU's phases under the wall time",
        -0.6..(phases.len() as f64 - 0.4),
        0.0..y_max * 1.45,
    )?;
    draw_phase_axes(&mut chart, analysis)?;
    for (segments, left, right) in [
        (&CHECKPOINT_SEGMENTS[..], -0.38, -0.02),
        (&RESTORE_SEGMENTS[..], 0.02, 0.38),
    ] {
        draw_stacks(&mut chart, phases, segments, (left, right))?;
    }
    finish(root, &mut chart, 12)
}

/// The axes of the phase chart, a label under each pair of bars.
fn draw_phase_axes<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Plane>,
    analysis: &Analysis,
) -> Result<()> {
    let phases = &analysis.phases;
    let labels = phase_labels(analysis);
    let names: Vec<&str> = analysis.swept.iter().map(|a| a.name()).collect();
    let x_desc = format!(
        "engine {}; left bar: checkpoint, right bar: restore",
        names.join("/")
    );
    // Many bars leave little room under each.
    let label_size = if phases.len() > 10 { 10 } else { 13 };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(phases.len().max(2))
        .x_label_formatter(&|x| bar_label(x, &labels))
        .x_label_style(("sans-serif", label_size))
        .x_desc(x_desc)
        .y_desc("Time (ms)")
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(plot_error)
}

/// A label per point of the phase chart. Bars are labelled with the engine
/// and the swept values only; the axis names go once into the axis title,
/// so labels stay short.
fn phase_labels(analysis: &Analysis) -> Vec<String> {
    let values = |p: &Point| {
        let v: Vec<String> = analysis.swept.iter().map(|a| a.of(p).to_string()).collect();
        v.join("/")
    };
    analysis
        .phases
        .iter()
        .map(|p| format!("{} {}", p.engine, values(&p.point)))
        .collect()
}

/// The label of an x tick of the phase chart: the point's label at a whole
/// index, nothing between two points.
fn bar_label(x: &f64, labels: &[String]) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 {
        labels.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// One operation's bars, a segment at a time (each segment is one legend
/// entry), each stacked on the segments below it; `(left, right)` is where
/// the bar stands relative to its point's index.
fn draw_stacks<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Plane>,
    phases: &[PhaseSummary],
    segments: &[Segment],
    (left, right): (f64, f64),
) -> Result<()> {
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
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    Ok(())
}

pub(crate) const DRIFT: &str = "drift";

/// Writes drift.svg and drift.png (relative time against the trial's place
/// in the run); returns the SVG, or None when no engine has two trials.
pub(crate) fn write_drift_figure(analysis: &Analysis, dir: &ResultsDir) -> Result<Option<String>> {
    let drifts: Vec<Drift> = analysis
        .drift
        .iter()
        .filter(|d| d.relative.len() >= 2)
        .cloned()
        .collect();
    if drifts.is_empty() {
        return Ok(None);
    }
    register_font()?;
    write_both(dir, DRIFT, &Picture::Drift(&drifts)).map(Some)
}

/// The most dots a series of the drift figure gets: its 900 px hold about
/// 400 dots of 6 px side by side. Beyond that they only hide each other,
/// and 100,000 trials made a 20 MB SVG (inlined in report.html).
const DRIFT_DOTS: usize = 400;

/// How many consecutive trials each dot of the drift figure stands for:
/// 1 while every series has at most `DRIFT_DOTS` trials.
pub(crate) fn drift_run_length(drifts: &[Drift]) -> usize {
    let longest = drifts.iter().map(|d| d.relative.len()).max().unwrap_or(0);
    longest.div_ceil(DRIFT_DOTS).max(1)
}

/// A series' dots: the mean relative time of each `run` consecutive
/// trials, at their middle place (with `run` 1, each trial as it is).
fn drift_dots(relative: &[f64], run: usize) -> Vec<(f64, f64)> {
    relative
        .chunks(run)
        .enumerate()
        .map(|(i, trials)| {
            let place = (i * run) as f64 + (trials.len() - 1) as f64 / 2.0;
            (place, trials.iter().sum::<f64>() / trials.len() as f64)
        })
        .collect()
}

/// One engine's operation in the drift figure.
fn draw_drift_series<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Plane>,
    (d, dots): (&Drift, &[(f64, f64)]),
    color: RGBColor,
) -> Result<()> {
    let points = || dots.iter().copied();
    chart
        .draw_series(LineSeries::new(points(), color.mix(0.35).stroke_width(1)))
        .map_err(plot_error)?;
    chart
        .draw_series(points().map(|p| Circle::new(p, 3, color.filled())))
        .map_err(plot_error)?
        .label(format!("{} {} (dashed: fit)", d.engine, d.operation.name()))
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
    if let Some(fit) = &d.fit {
        let last = d.relative.len() as f64 - 1.0;
        let slope = fit.per_100_pct / 100.0 / 100.0;
        let line = [(0.0, fit.intercept), (last, fit.intercept + slope * last)];
        chart
            .draw_series(DashedLineSeries::new(line, 6, 4, color.stroke_width(2)))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// Each engine's operation as points joined by a thin line, its fit
/// dashed, and 1.0 (as fast as the point's mean) as a dark line: a steady
/// machine scatters around it from the first trial to the last.
fn draw_drift<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, drifts: &[Drift]) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let run = drift_run_length(drifts);
    let dots: Vec<Vec<(f64, f64)>> = drifts
        .iter()
        .map(|d| drift_dots(&d.relative, run))
        .collect();
    let all = || dots.iter().flatten().map(|(_, v)| *v);
    let (low, high) = all().fold((1.0f64, 1.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let last = drifts.iter().map(|d| d.relative.len()).max().unwrap_or(1) as f64 - 1.0;
    // At least 0.95..1.05, so that a steady run does not look jagged.
    let bottom = (low.min(0.95) - 0.02).max(0.0);
    let top = bottom + (high.max(1.05) - bottom) * legend_headroom(drifts.len());
    let mut chart = plane(
        root,
        "Steadiness: each trial's time over its point's mean, in run order",
        -0.5..last.max(1.0) + 0.5,
        bottom..top,
    )?;
    draw_axes(
        &mut chart,
        (
            "Measured trial of the engine, in the order they ran",
            "Time / its point's mean",
        ),
        true,
    )?;
    chart
        .draw_series(LineSeries::new(
            [(-0.5, 1.0), (last + 0.5, 1.0)],
            BLACK.mix(0.7).stroke_width(2),
        ))
        .map_err(plot_error)?;
    for (i, (d, dots)) in drifts.iter().zip(&dots).enumerate() {
        draw_drift_series(&mut chart, (d, dots), COLORS[i % COLORS.len()])?;
    }
    finish(root, &mut chart, 13)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_drift_series_are_drawn_as_means_of_runs_of_trials() {
        let relative = [1.0, 1.2, 0.9, 1.1, 1.3];
        assert_eq!(
            drift_dots(&relative, 1),
            vec![(0.0, 1.0), (1.0, 1.2), (2.0, 0.9), (3.0, 1.1), (4.0, 1.3)],
            "one trial a dot, as it is"
        );
        let dots = drift_dots(&relative, 2);
        assert_eq!(
            dots.iter().map(|d| d.0).collect::<Vec<_>>(),
            [0.5, 2.5, 4.0]
        );
        assert!((dots[0].1 - 1.1).abs() < 1e-12 && (dots[2].1 - 1.3).abs() < 1e-12);
        let drift = |n: usize| Drift {
            engine: "docker".into(),
            operation: crate::analysis::Operation::Checkpoint,
            relative: vec![1.0; n],
            fit: None,
            host: Vec::new(),
        };
        assert_eq!(drift_run_length(&[drift(3), drift(DRIFT_DOTS)]), 1);
        assert_eq!(drift_run_length(&[drift(3), drift(25_000)]), 63);
    }

    #[test]
    fn integer_axes_label_whole_numbers_without_a_fraction() {
        assert_eq!(integer_label(&5.0), "5");
        assert_eq!(integer_label(&50.0), "50");
        assert_eq!(integer_label(&2.5), "2.5");
    }
}
