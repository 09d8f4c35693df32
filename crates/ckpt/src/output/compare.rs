//! What `ckpt compare A B` prints and writes: the two results directories
//! read back, and their comparison as a terminal table, Markdown, JSON and
//! a figure of both sweeps' means (A solid, B dashed).

use std::path::Path;

use anyhow::{bail, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::plot::{self, Paint};
use crate::analysis::compare::{Comparison, EnvField, Run, Verdict};
use crate::analysis::{self, Analysis, Operation};
use crate::model::Point;
use crate::sweep::results::{ResultFile, ResultsDir};

/// The figure's file stem: `compare.svg` and `compare.png`.
const FIGURE: &str = "compare";

/// Reads a results directory written by `ckpt sweep` and analyses its
/// records; an error names a directory that is not one.
pub fn read_run(dir: &Path) -> Result<Run> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: `ckpt compare` takes two results directories written by `ckpt sweep`",
            dir.display()
        );
    }
    let results = ResultsDir::new(dir);
    // The plan is not needed for the numbers, but a directory without one
    // was not written by a sweep.
    results.read_plan()?;
    let back = results.read_records()?;
    if !back.dropped_lines.is_empty() {
        eprintln!(
            "ckpt: skipped unreadable line(s) {:?} of {} in {} (cut by a crash?)",
            back.dropped_lines,
            ResultFile::TrialsJsonl.name(),
            dir.display()
        );
    }
    Ok(Run {
        label: dir.display().to_string(),
        env: results.read_env(),
        analysis: analysis::analyse(&back.records),
        records: back.records,
    })
}

/// Writes compare.md, compare.json and compare.svg/png into `dir`
/// (created 0700 when it does not exist).
pub fn write(dir: &ResultsDir, comparison: &Comparison, a: &Run, b: &Run) -> Result<()> {
    if !dir.path().exists() {
        dir.create_private()?;
    }
    dir.write(ResultFile::CompareMd, markdown(comparison).as_bytes())?;
    dir.write(
        ResultFile::CompareJson,
        serde_json::to_string_pretty(comparison)?.as_bytes(),
    )?;
    plot::register_font()?;
    let figure = Figure {
        comparison,
        a: &a.analysis,
        b: &b.analysis,
    };
    plot::write_both(dir, FIGURE, &figure)?;
    Ok(())
}

/// The comparison as JSON.
pub fn to_json(comparison: &Comparison) -> Result<String> {
    Ok(serde_json::to_string_pretty(comparison)?)
}

fn p_value(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("{p:.3}"),
    }
}

/// Rows of cells under a header, printed aligned for the terminal (text
/// columns to the left, numbers to the right) or as Markdown.
struct Table {
    header: Vec<&'static str>,
    /// Which columns hold numbers.
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            header: columns.iter().map(|c| c.0).collect(),
            numeric: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn terminal(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                let cells = self.rows.iter().map(|r| r[i].chars().count());
                cells.fold(self.header[i].len(), usize::max)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| match self.numeric[i] {
                    true => format!("{c:>w$}", w = widths[i]),
                    false => format!("{c:<w$}", w = widths[i]),
                })
                .collect();
            format!("{}\n", padded.join("  ").trim_end())
        };
        let mut out = line(self.header.clone());
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }

    fn markdown(&self) -> String {
        let rule: Vec<&str> = self
            .numeric
            .iter()
            .map(|n| if *n { "---:" } else { "---" })
            .collect();
        let mut out = format!("| {} |\n|{}|\n", self.header.join(" | "), rule.join("|"));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

/// Every time compared, a row each.
fn times_table(c: &Comparison) -> Table {
    let mut table = Table::new(&[
        ("engine", false),
        ("point", false),
        ("operation", false),
        ("n A", true),
        ("n B", true),
        ("mean A", true),
        ("mean B", true),
        ("B/A", true),
        ("95% CI", true),
        ("p", true),
        ("p Holm", true),
        ("verdict", false),
    ]);
    for p in &c.points {
        let ci = match (p.ratio_ci_low, p.ratio_ci_high) {
            (Some(low), Some(high)) => format!("{low:.3}..{high:.3}"),
            _ => "-".into(),
        };
        table.rows.push(vec![
            p.engine.clone(),
            p.label.clone(),
            p.operation.name().into(),
            p.n_a.to_string(),
            p.n_b.to_string(),
            format!("{:.1} ms", p.mean_a_ms),
            format!("{:.1} ms", p.mean_b_ms),
            format!("{:.3}", p.ratio),
            ci,
            p_value(p.p),
            p_value(p.p_holm),
            p.verdict.words().into(),
        ]);
    }
    table
}

/// Every slope compared, a row each.
fn slopes_table(c: &Comparison) -> Table {
    let mut table = Table::new(&[
        ("engine", false),
        ("operation", false),
        ("axis", false),
        ("at", false),
        ("slope A", true),
        ("slope B", true),
        ("B - A", true),
        ("95% CI", true),
        ("p", true),
        ("p Holm", true),
        ("verdict", false),
    ]);
    for s in &c.slopes {
        let unit = format!("ms/{}", s.axis.unit());
        table.rows.push(vec![
            s.engine.clone(),
            s.operation.name().into(),
            s.axis.name().into(),
            if s.at.is_empty() {
                "-".into()
            } else {
                s.at.clone()
            },
            format!("{:.3} {unit}", s.slope_a),
            format!("{:.3} {unit}", s.slope_b),
            format!("{:+.3}", s.difference),
            format!("{:.3}..{:.3}", s.ci_low, s.ci_high),
            p_value(Some(s.p)),
            p_value(Some(s.p_holm)),
            s.verdict.words().into(),
        ]);
    }
    table
}

/// The environment in lines: what differs (A -> B), then what is the same.
fn environment_lines(fields: &[EnvField]) -> Vec<String> {
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    let mut lines: Vec<String> = fields
        .iter()
        .filter(|f| !f.same)
        .map(|f| format!("{}: {} -> {}", f.name, shown(&f.a), shown(&f.b)))
        .collect();
    let same: Vec<String> = fields
        .iter()
        .filter(|f| f.same && f.a.is_some())
        .map(|f| format!("{} {}", f.name, shown(&f.a)))
        .collect();
    if !same.is_empty() {
        lines.push(format!("same in both: {}", same.join(", ")));
    }
    lines
}

/// The verdicts counted: "2 slower, 1 faster, 21 no difference detected".
fn summary(c: &Comparison) -> String {
    let mut parts: Vec<String> = [
        Verdict::Slower,
        Verdict::Faster,
        Verdict::NoDifference,
        Verdict::NotTested,
    ]
    .into_iter()
    .map(|v| (c.count(v), v))
    .filter(|(n, v)| *n > 0 || matches!(v, Verdict::Slower | Verdict::Faster))
    .map(|(n, v)| format!("{n} {}", v.words()))
    .collect();
    if c.only_in_a + c.only_in_b > 0 {
        parts.push(format!(
            "{} engine/point pair(s) only in A and {} only in B, not compared",
            c.only_in_a, c.only_in_b
        ));
    }
    parts.join(", ")
}

/// What the times' columns mean.
fn times_note(c: &Comparison) -> String {
    format!(
        "B/A is the ratio of the geometric means of the trials' times; its 95% confidence interval and p come from Welch's t on the log times. The verdict is decided by p after Holm's correction over the {} times compared (below 0.05: faster or slower).",
        c.points.iter().filter(|p| p.p.is_some()).count()
    )
}

/// What the slopes' columns mean.
fn slopes_note(c: &Comparison) -> String {
    if c.slopes.is_empty() {
        return "No fit is present in both sweeps (a fit needs three trials over two values of an axis).".into();
    }
    format!(
        "The least-squares slope of each fit found in both sweeps; B - A with its 95% confidence interval from both slopes' standard errors (Welch-Satterthwaite degrees of freedom); the verdict is decided by p after Holm's correction over the {} slopes compared (steeper: B's time grows more along the axis).",
        c.slopes.len()
    )
}

/// The terminal output: environment, times, slopes, verdicts counted.
pub fn render_table(c: &Comparison) -> String {
    let mut out = format!("A: {}\nB: {}\n\nenvironment (A -> B)\n", c.a, c.b);
    for line in environment_lines(&c.environment) {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("\ntimes: {}\n", times_note(c)));
    out.push_str(&times_table(c).terminal());
    out.push_str(&format!("\nslopes: {}\n", slopes_note(c)));
    if !c.slopes.is_empty() {
        out.push_str(&slopes_table(c).terminal());
    }
    out.push_str(&format!("\n{}\n", summary(c)));
    out
}

/// The comparison as a Markdown page.
pub(crate) fn markdown(c: &Comparison) -> String {
    let mut md = format!(
        "# Comparison of two sweeps\n\n- A: `{}`\n- B: `{}`\n\nIn all: {}.\n\n## Environment\n\n",
        c.a,
        c.b,
        summary(c)
    );
    let mut env = Table::new(&[("", false), ("A", false), ("B", false)]);
    for f in &c.environment {
        let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let name = if f.same {
            f.name.to_string()
        } else {
            format!("**{}** (differs)", f.name)
        };
        env.rows.push(vec![name, cell(&f.a), cell(&f.b)]);
    }
    md.push_str(&env.markdown());
    md.push_str(&format!("\n## Times\n\n{}\n\n", times_note(c)));
    md.push_str(&times_table(c).markdown());
    md.push_str(&format!("\n## Slopes\n\n{}\n\n", slopes_note(c)));
    if !c.slopes.is_empty() {
        md.push_str(&slopes_table(c).markdown());
    }
    md.push_str(&format!(
        "\n## Figure\n\n![mean times of A (solid) and B (dashed)]({})\n\nMean checkpoint and restore time against {}: A solid, B dashed.\n",
        ResultFile::Svg(FIGURE).name(),
        c.axis.title()
    ));
    md
}

/// Both sweeps' means against the comparison's axis.
struct Figure<'a> {
    comparison: &'a Comparison,
    a: &'a Analysis,
    b: &'a Analysis,
}

/// A line of the figure: an engine's operation along the axis, the other
/// axes held at `at`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LineKey {
    engine: String,
    operation: Operation,
    at: Point,
}

/// (x, mean) points of a line.
type Line = Vec<(f64, f64)>;

impl Figure<'_> {
    /// The lines measured in both sweeps, each once.
    fn keys(&self) -> Vec<LineKey> {
        let axis = self.comparison.axis;
        let mut keys: Vec<LineKey> = self
            .comparison
            .points
            .iter()
            .map(|p| LineKey {
                engine: p.engine.clone(),
                operation: p.operation,
                at: analysis::without(p.point, axis),
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// One sweep's points on a line, in the order of x.
    fn line(&self, analysis: &Analysis, key: &LineKey) -> Line {
        let axis = self.comparison.axis;
        let mut points: Vec<(f64, f64)> = analysis
            .points
            .iter()
            .filter(|p| {
                p.engine == key.engine
                    && p.operation == key.operation
                    && analysis::without(p.point(), axis) == key.at
            })
            .map(|p| (f64::from(axis.of(&p.point())), p.mean_ms))
            .collect();
        points.sort_by(|x, y| x.0.total_cmp(&y.0));
        points
    }

    /// "docker checkpoint", with the other axes' values when they vary.
    fn legend(&self, key: &LineKey, keys: &[LineKey]) -> String {
        let mut text = format!("{} {}", key.engine, key.operation.name());
        if keys.iter().any(|k| k.at != key.at) {
            text = format!(
                "{text}, {}",
                self.a.label_except(&key.at, self.comparison.axis)
            );
        }
        text
    }
}

impl Paint for Figure<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 560)
    }

    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(plot::plot_error)?;
        let keys = self.keys();
        let lines: Vec<(Line, Line)> = keys
            .iter()
            .map(|k| (self.line(self.a, k), self.line(self.b, k)))
            .collect();
        let all = lines.iter().flat_map(|(a, b)| a.iter().chain(b));
        let (x_max, y_max) = all.fold((1.0f64, 1.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
        let axis = self.comparison.axis;
        let mut chart = plot::plane(
            root,
            &format!("A (solid) and B (dashed) against {}", axis.title()),
            0.0..x_max * 1.05,
            0.0..y_max * plot::legend_headroom(keys.len()),
        )?;
        chart
            .configure_mesh()
            .x_label_formatter(&plot::integer_label)
            .x_desc(plot::capitalised(axis.title()))
            .y_desc("Mean time (ms)")
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(plot::plot_error)?;
        for (i, (key, pair)) in keys.iter().zip(&lines).enumerate() {
            let color = plot::COLORS[i % plot::COLORS.len()];
            draw_pair(&mut chart, pair, color, self.legend(key, &keys))?;
        }
        plot::finish(root, &mut chart, 13)
    }
}

/// One engine's operation in both sweeps: A solid, B dashed, in one colour,
/// with a legend line for the pair.
fn draw_pair<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    (a, b): &(Line, Line),
    color: RGBColor,
    legend: String,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(a.iter().copied(), color.stroke_width(2)))
        .map_err(plot::plot_error)?
        .label(legend)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart
        .draw_series(DashedLineSeries::new(
            b.iter().copied(),
            8,
            5,
            color.stroke_width(2),
        ))
        .map_err(plot::plot_error)?;
    // Marks, so that a line of one point still shows: A's filled, B's
    // hollow.
    let marks = a
        .iter()
        .map(move |p| Circle::new(*p, 3, color.filled()))
        .chain(
            b.iter()
                .map(move |p| Circle::new(*p, 4, color.stroke_width(1))),
        );
    chart.draw_series(marks).map_err(plot::plot_error)?;
    Ok(())
}
