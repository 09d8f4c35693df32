//! The stall as the clients saw it: every request of one probed move, its
//! latency (log scale) against when it was sent, counted from the
//! checkpoint request, the move's window shaded; a panel per point and a
//! colour per engine+method. It reads the timelines a sweep kept beside
//! its records (`timeline-<trial>.csv`); results without them, older ones
//! among them, simply have no such figure.

use std::collections::BTreeMap;
use std::ops::Range;

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::plot::{self, Paint};
use crate::analysis::Analysis;
use crate::model::Point;
use crate::probe::{Outcome, Timeline};
use crate::sweep::records::{Status, TrialRecord};
use crate::sweep::results::{ResultFile, ResultsDir};

/// The figure's file stem.
pub(crate) const STALL: &str = "stall";

/// The most panels (points) the figure gets: beyond that each is too
/// flat to show a stall; the points shown are spread over the range.
const MAX_PANELS: usize = 4;

/// Time slices per panel: in each, a move's slowest request is drawn, so
/// that a long move stays a figure of a few hundred dots (the SVG goes
/// into report.html) and a short one still shows nearly every request.
const SLICES: usize = 300;

/// The figure as written, for the report.
pub struct StallFigure {
    pub svg: String,
    /// Points drawn, of those with a timeline.
    pub points_shown: usize,
    pub points: usize,
}

/// One move's requests as drawn: (s since the checkpoint request, ms).
struct Move {
    series: String,
    color: RGBColor,
    window_end_s: f64,
    /// The slowest answered request of each time slice.
    answered: Vec<(f64, f64)>,
    /// When requests that got no reply, or a wrong one, were sent.
    unanswered: Vec<f64>,
}

/// A point's moves.
struct Panel {
    caption: String,
    moves: Vec<Move>,
    x: Range<f64>,
}

/// Writes stall.svg and stall.png from the timelines in `dir`; None when
/// no measured move has one (no probe, or results older than timelines).
pub(crate) fn write_stall_figure(
    analysis: &Analysis,
    records: &[TrialRecord],
    dir: &ResultsDir,
    out: &ResultsDir,
) -> Result<Option<StallFigure>> {
    let timelines = first_timelines(records, dir);
    if timelines.is_empty() {
        return Ok(None);
    }
    // Sorted by point: each point's moves are together.
    let mut points_all: Vec<Point> = timelines.keys().map(|(point, _)| *point).collect();
    points_all.dedup();
    let shown = spread(&points_all, MAX_PANELS);
    let panels = panels(analysis, &timelines, &shown);
    plot::register_font()?;
    let svg = plot::write_both(out, STALL, &Stall(&panels))?;
    Ok(Some(StallFigure {
        svg,
        points_shown: shown.len(),
        points: points_all.len(),
    }))
}

/// The timeline of the first measured move of each point and series that
/// has one; a file that cannot be read is skipped with a word.
fn first_timelines(
    records: &[TrialRecord],
    dir: &ResultsDir,
) -> BTreeMap<(Point, String), Timeline> {
    let mut found: BTreeMap<(Point, String), (usize, Timeline)> = BTreeMap::new();
    let probed = records.iter().filter(|r| {
        r.method.is_some() && !r.warmup && r.status == Status::Ok && r.client_connections.is_some()
    });
    for record in probed {
        let key = (record.point(), record.series());
        if found
            .get(&key)
            .is_some_and(|(trial, _)| *trial < record.trial)
        {
            continue;
        }
        let path = dir.file(ResultFile::Timeline(record.trial));
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let what = path.display().to_string();
        match Timeline::from_csv(std::io::BufReader::new(file), &what) {
            Ok(timeline) => {
                found.insert(key, (record.trial, timeline));
            }
            Err(e) => eprintln!("ckpt: the figure of the stall leaves out {what}: {e:#}"),
        }
    }
    found.into_iter().map(|(k, (_, t))| (k, t)).collect()
}

/// At most `most` of `all`, the first and the last among them, the rest
/// evenly between.
fn spread<T: Copy>(all: &[T], most: usize) -> Vec<T> {
    if all.len() <= most || most < 2 {
        return all.iter().copied().take(most.max(1)).collect();
    }
    let step = (all.len() - 1) as f64 / (most - 1) as f64;
    (0..most)
        .map(|i| all[(i as f64 * step).round() as usize])
        .collect()
}

/// The panels of the points `shown`, each series in the same colour in
/// every panel.
fn panels(
    analysis: &Analysis,
    timelines: &BTreeMap<(Point, String), Timeline>,
    shown: &[Point],
) -> Vec<Panel> {
    let mut series: Vec<&str> = timelines.keys().map(|(_, s)| s.as_str()).collect();
    series.sort_unstable();
    series.dedup();
    let color = |name: &str| {
        let i = series.iter().position(|s| *s == name).unwrap_or(0);
        plot::COLORS[i % plot::COLORS.len()]
    };
    shown
        .iter()
        .map(|point| {
            let mine: Vec<(&String, &Timeline)> = timelines
                .iter()
                .filter(|((p, _), _)| p == point)
                .map(|((_, s), t)| (s, t))
                .collect();
            let x = time_range(mine.iter().map(|(_, t)| *t));
            let moves = mine
                .iter()
                .map(|(name, t)| drawn(name, color(name), t, &x))
                .collect();
            let label = analysis.label(point);
            Panel {
                caption: match label.is_empty() {
                    true => "one move per engine+method".into(),
                    false => label,
                },
                moves,
                x,
            }
        })
        .collect()
}

/// Seconds from the first request sent to the last reply or the window's
/// end, whichever is later, with a little room on both sides.
fn time_range<'a>(timelines: impl Iterator<Item = &'a Timeline>) -> Range<f64> {
    let (mut first, mut last) = (0.0f64, 0.0f64);
    for t in timelines {
        last = last.max(t.window_end_ms);
        for r in &t.requests {
            first = first.min(r.sent_ms);
            last = last.max(r.sent_ms + r.latency_ms.unwrap_or(0.0));
        }
    }
    let room = ((last - first) * 0.02).max(1.0);
    (first - room) / 1000.0..(last + room) / 1000.0
}

/// A move as drawn in a panel spanning `x` (s): the slowest answered
/// request of each slice, and every unanswered one.
fn drawn(series: &str, color: RGBColor, timeline: &Timeline, x: &Range<f64>) -> Move {
    let width = (x.end - x.start) / SLICES as f64;
    let mut slowest: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    let mut unanswered = Vec::new();
    for r in &timeline.requests {
        let sent = r.sent_ms / 1000.0;
        match (r.outcome, r.latency_ms) {
            (Outcome::Ok, Some(latency)) => {
                let slice = ((sent - x.start) / width).max(0.0) as usize;
                let kept = slowest.entry(slice).or_insert((sent, latency));
                if latency > kept.1 {
                    *kept = (sent, latency);
                }
            }
            _ => unanswered.push(sent),
        }
    }
    Move {
        series: series.to_string(),
        color,
        window_end_s: timeline.window_end_ms / 1000.0,
        answered: slowest.into_values().collect(),
        unanswered,
    }
}

/// The panels, one above the other.
struct Stall<'a>(&'a [Panel]);

/// Each panel's height in pixels.
const PANEL_HEIGHT: u32 = 330;

impl Paint for Stall<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 40 + PANEL_HEIGHT * self.0.len().max(1) as u32)
    }

    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(plot::plot_error)?;
        let titled = root
            .titled(
                "Every request's latency across one move",
                ("sans-serif", 20),
            )
            .map_err(plot::plot_error)?;
        let areas = titled.split_evenly((self.0.len().max(1), 1));
        for (area, panel) in areas.iter().zip(self.0) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(plot::plot_error)
    }
}

/// The y axis (ms, log): from under the fastest reply to well above the
/// slowest, the top part kept for the legend and the unanswered marks.
fn latency_range(panel: &Panel) -> (Range<f64>, f64) {
    let latencies = || {
        panel
            .moves
            .iter()
            .flat_map(|m| m.answered.iter().map(|a| a.1))
    };
    let low = latencies().fold(f64::MAX, f64::min).clamp(0.001, 1.0) / 2.0;
    let high = latencies().fold(1.0f64, f64::max);
    // The legend (a line per move) and the marks take the top; in log
    // space the data keeps the rest of the plot's height.
    let lines = panel.moves.len();
    let legend = ((lines as f64 * 17.0 + 20.0) / (PANEL_HEIGHT as f64 - 90.0)).min(0.6);
    let span = (high / low).ln() * 1.1;
    let top = low * (span / (1.0 - legend)).exp();
    (low..top, high * (span * legend / 3.0).exp())
}

type LogPlane = Cartesian2d<RangedCoordf64, LogCoord<f64>>;

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()> {
    let (y, marks_at) = latency_range(panel);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(panel.x.clone(), y.clone().log_scale())
        .map_err(plot::plot_error)?;
    chart
        .configure_mesh()
        .y_label_formatter(&|v| ms_label(*v))
        .max_light_lines(0)
        .x_desc("Time since the checkpoint request (s)")
        .y_desc("Request latency (ms, log)")
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(plot::plot_error)?;
    for m in &panel.moves {
        draw_window(&mut chart, m, &y)?;
    }
    // The checkpoint request: where every move starts.
    chart
        .draw_series(LineSeries::new(
            [(0.0, y.start), (0.0, y.end)],
            BLACK.stroke_width(1),
        ))
        .map_err(plot::plot_error)?;
    for m in &panel.moves {
        draw_requests(&mut chart, m, marks_at)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(plot::plot_error)
}

/// A move's window, from the checkpoint request to the destination's
/// being ready: shaded in its colour, its end dashed.
fn draw_window<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, LogPlane>,
    m: &Move,
    y: &Range<f64>,
) -> Result<()> {
    let end = m.window_end_s;
    chart
        .draw_series([Rectangle::new(
            [(0.0, y.start), (end, y.end)],
            m.color.mix(0.10).filled(),
        )])
        .map_err(plot::plot_error)?;
    chart
        .draw_series(DashedLineSeries::new(
            [(end, y.start), (end, y.end)],
            6,
            4,
            m.color.stroke_width(1),
        ))
        .map_err(plot::plot_error)?;
    Ok(())
}

/// A move's answered requests as dots, the unanswered as crosses at
/// `marks_at`, above them all.
fn draw_requests<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, LogPlane>,
    m: &Move,
    marks_at: f64,
) -> Result<()> {
    let color = m.color;
    chart
        .draw_series(
            m.answered
                .iter()
                .map(move |p| Circle::new(*p, 2, color.filled())),
        )
        .map_err(plot::plot_error)?
        .label(format!("{} (window to {:.2} s)", m.series, m.window_end_s))
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.filled()));
    chart
        .draw_series(
            m.unanswered
                .iter()
                .map(move |s| Cross::new((*s, marks_at), 4, color.stroke_width(2))),
        )
        .map_err(plot::plot_error)?;
    Ok(())
}

/// "0.1", "1", "100", "10000": a log axis' ticks without exponents.
fn ms_label(v: f64) -> String {
    match v {
        v if v >= 1.0 => format!("{v:.0}"),
        v if v >= 0.01 => format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
        v => format!("{v:.0e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MigrationMethod;
    use crate::probe::TimedRequest;
    use crate::sweep::plan::TrialSpec;

    /// A move of `window_ms`: 4 connections every 10 ms from 300 ms before
    /// the checkpoint request, each stalled across the window, one request
    /// lost; then a second after it.
    fn timeline(window_ms: f64) -> Timeline {
        let mut requests = Vec::new();
        for connection in 0..4 {
            let mut sent = -300.0 + connection as f64;
            while sent < window_ms + 1000.0 {
                let latency = match sent < 0.0 && sent + 10.0 > 0.0 {
                    true => window_ms - sent + 50.0,
                    false => 0.3,
                };
                requests.push(TimedRequest {
                    connection,
                    generation: 0,
                    sent_ms: sent,
                    latency_ms: Some(latency),
                    outcome: Outcome::Ok,
                });
                sent += latency + 10.0;
            }
        }
        requests[5].latency_ms = None;
        requests[5].outcome = Outcome::Unknown;
        requests.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
        Timeline {
            window_end_ms: window_ms,
            requests,
        }
    }

    /// Probed moves by copy and lazy (shorter) at 0 and 1024 MiB, two of
    /// each after a warm-up.
    fn records() -> Vec<TrialRecord> {
        let mut out = Vec::new();
        for method in [MigrationMethod::Copy, MigrationMethod::Lazy] {
            for memory_mib in [0u32, 1024] {
                for warmup in [true, false, false] {
                    let spec = TrialSpec {
                        index: out.len(),
                        engine: 0,
                        point: Point {
                            memory_mib,
                            ..Point::default()
                        },
                        repetition: 0,
                        warmup,
                        method: Some(method),
                    };
                    let mut ms = 300.0 + 10.0 * f64::from(memory_mib);
                    if method == MigrationMethod::Lazy {
                        ms *= 0.6;
                    }
                    out.push(TrialRecord {
                        downtime_ms: Some(ms),
                        status: Status::Ok,
                        client_connections: Some(4),
                        client_gap_ms: Some(ms + 100.0),
                        ..TrialRecord::new("r", &spec, "runc")
                    });
                }
            }
        }
        out
    }

    /// Writes a timeline for every record of `records`, as a sweep with
    /// all of them kept would.
    fn write_timelines(dir: &ResultsDir, records: &[TrialRecord]) {
        for r in records {
            let window = r.downtime_ms.unwrap_or(0.0);
            let csv = timeline(window).to_csv().unwrap();
            dir.write(ResultFile::Timeline(r.trial), &csv).unwrap();
        }
    }

    #[test]
    fn the_figure_is_drawn_from_the_first_measured_timelines() {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        let records = records();
        write_timelines(&results, &records);
        let found = first_timelines(&records, &results);
        assert_eq!(found.len(), 4, "two methods at two points");
        let copy_0 = &found[&(Point::default(), "runc+copy".to_string())];
        assert_eq!(copy_0.window_end_ms, 300.0);
        let analysis = crate::analysis::analyse(&records);
        let figure = write_stall_figure(&analysis, &records, &results, &results)
            .unwrap()
            .unwrap();
        assert_eq!((figure.points_shown, figure.points), (2, 2));
        for file in [ResultFile::Svg(STALL), ResultFile::Png(STALL)] {
            let size = std::fs::metadata(results.file(file)).unwrap().len();
            assert!(size > 1000, "{file:?}: {size} bytes");
        }
        assert!(figure.svg.contains("runc+copy (window to 10.54 s)"));
        assert!(figure.svg.contains("runc+lazy (window to 6.32 s)"));
        assert!(figure.svg.contains("Time since the checkpoint request (s)"));
        // A few hundred dots a move, not every request.
        assert!(figure.svg.len() < 400_000, "{} bytes", figure.svg.len());
    }

    #[test]
    fn without_timelines_there_is_no_figure_and_a_broken_one_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        let records = records();
        let analysis = crate::analysis::analyse(&records);
        let none = write_stall_figure(&analysis, &records, &results, &results).unwrap();
        assert!(none.is_none());
        assert!(!results.has(ResultFile::Svg(STALL)));
        // A cut file is skipped; the next measured move's is used.
        results
            .write(ResultFile::Timeline(1), b"connection,generation\n0,")
            .unwrap();
        let csv = timeline(300.0).to_csv().unwrap();
        results.write(ResultFile::Timeline(2), &csv).unwrap();
        let found = first_timelines(&records, &results);
        assert_eq!(found.len(), 1);
        let figure = write_stall_figure(&analysis, &records, &results, &results).unwrap();
        assert_eq!(figure.map(|f| f.points), Some(1));
    }

    #[test]
    fn the_report_shows_the_stall_in_its_migration_section_only_with_timelines() {
        let records = records();
        let plan = crate::sweep::tests::plan();
        let env = crate::host::envinfo::Environment::default();
        for with in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let results = ResultsDir::new(dir.path());
            if with {
                write_timelines(&results, &records);
            }
            let provenance = (&plan, &env, &[][..]);
            super::super::write_report(&results, &records, provenance, Some(&results)).unwrap();
            let md = std::fs::read_to_string(results.file(ResultFile::ReportMd)).unwrap();
            let migration = &md[md.find("## Migration").unwrap()..];
            assert_eq!(migration.contains("](stall.svg)"), with, "{migration}");
            assert_eq!(
                migration.contains("shows one move as its clients saw it"),
                with
            );
            assert_eq!(results.has(ResultFile::Svg(STALL)), with);
            let html = std::fs::read_to_string(results.file(ResultFile::ReportHtml)).unwrap();
            assert_eq!(html.contains("<figure id=\"stall\">"), with);
            // The figures are numbered in the order they appear.
            let mut numbers: Vec<usize> = md
                .match_indices("Fig ")
                .filter_map(|(at, _)| {
                    let rest = &md[at + 4..];
                    let end = rest.find(" - ")?;
                    rest[..end].parse().ok()
                })
                .collect();
            // Markdown gives each caption twice: as the image's text and under it.
            numbers.dedup();
            let expected: Vec<usize> = (1..=numbers.len()).collect();
            assert_eq!(numbers, expected, "{md}");
        }
    }

    #[test]
    fn panels_are_spread_over_the_points_and_slices_keep_the_slowest() {
        assert_eq!(spread(&[1, 2, 3], 4), [1, 2, 3]);
        assert_eq!(spread(&[1, 2, 3, 4, 5, 6, 7], 4), [1, 3, 5, 7]);
        assert_eq!(spread(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 4), [1, 4, 7, 10]);
        let t = timeline(2000.0);
        let x = time_range(std::iter::once(&t));
        assert!(x.start < -0.3 && x.end > 3.0, "{x:?}");
        let m = drawn("runc+copy", plot::COLORS[0], &t, &x);
        assert!(m.answered.len() <= SLICES, "{}", m.answered.len());
        assert_eq!(m.unanswered.len(), 1);
        let slowest = m.answered.iter().map(|a| a.1).fold(0.0, f64::max);
        assert!(slowest > 2000.0, "the stall is kept: {slowest}");
        assert_eq!(ms_label(1000.0), "1000");
        assert_eq!(ms_label(0.1), "0.1");
        assert_eq!(ms_label(0.25), "0.25");
    }
}
