//! What a results directory turns into: the summary, figures (plot), the
//! report in Markdown and HTML (report) and the terminal table. Reads
//! records and analyses only; never an engine.

pub mod plot;
pub mod report;

use anyhow::{Context, Result};

use crate::analysis::{self, Analysis};
use crate::sweep::results::{ResultFile, ResultsDir};
use report::Report;

/// Reads a results directory and writes summary.csv, analysis.json, the
/// figures, report.md and report.html. Needs no engine.
pub fn write_outputs(results: &ResultsDir) -> Result<Analysis> {
    let plan = results.read_plan()?;
    let env = results.read_env();
    let back = results.read_records()?;
    if !back.dropped_lines.is_empty() {
        eprintln!(
            "ckpt: skipped unreadable line(s) {:?} of {} (cut by a crash?)",
            back.dropped_lines,
            ResultFile::TrialsJsonl.name()
        );
    }
    let analysis = analysis::analyse(&back.records);
    write_summary(results, &analysis)?;
    results.write(ResultFile::Analysis, &serde_json::to_vec_pretty(&analysis)?)?;
    let figures = plot::write_figures(&analysis, results)?;
    let phases_svg = plot::write_phase_figures(&analysis, results)?;
    let drift_svg = plot::write_drift_figure(&analysis, results)?;
    let report = Report {
        plan: &plan,
        env: &env,
        analysis: &analysis,
        figures: &figures,
        phases_svg: phases_svg.as_deref(),
        drift_svg: drift_svg.as_deref(),
    };
    results.write(ResultFile::ReportMd, report.markdown().as_bytes())?;
    results.write(ResultFile::ReportHtml, report.html().as_bytes())?;
    Ok(analysis)
}

fn write_summary(results: &ResultsDir, analysis: &Analysis) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for point in &analysis.points {
        csv.serialize(point)?;
    }
    let bytes = csv.into_inner().context("writing summary.csv")?;
    results.write(ResultFile::Summary, &bytes)
}

/// What the terminal should warn about after the table: each engine and
/// operation whose times drifted over the run.
pub fn drift_warnings(analysis: &Analysis) -> Vec<String> {
    if !analysis.drift.iter().any(|d| d.drifting()) {
        return Vec::new();
    }
    report::steadiness_sentences(&analysis.drift)
}

/// The summary as a terminal table.
pub fn render_table(analysis: &Analysis) -> String {
    let mut out = format!(
        "{:<8} {:>24} {:>4}  {:>12} {:>19}  {:>12} {:>19}\n",
        "engine", "point", "n", "checkpoint", "95% CI", "restore", "95% CI"
    );
    let restore: Vec<_> = analysis
        .points
        .iter()
        .filter(|p| p.operation == analysis::Operation::Restore)
        .collect();
    for c in analysis
        .points
        .iter()
        .filter(|p| p.operation == analysis::Operation::Checkpoint)
    {
        let r = restore
            .iter()
            .find(|r| r.engine == c.engine && r.point() == c.point());
        let (rm, rci) = r.map_or(("-".into(), "-".into()), |r| {
            (
                format!("{:.1} ms", r.mean_ms),
                format!("{:.1}..{:.1}", r.ci95_low_ms, r.ci95_high_ms),
            )
        });
        out.push_str(&format!(
            "{:<8} {:>24} {:>4}  {:>12} {:>19}  {:>12} {:>19}\n",
            c.engine,
            analysis.label(&c.point()),
            c.n,
            format!("{:.1} ms", c.mean_ms),
            format!("{:.1}..{:.1}", c.ci95_low_ms, c.ci95_high_ms),
            rm,
            rci
        ));
    }
    out
}
