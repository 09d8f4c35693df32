//! What a results directory turns into: the summary, figures (plot), the
//! report in Markdown and HTML (report) and the terminal table; and one
//! report from several hosts' directories (merge). Reads records and
//! analyses only; never an engine.

pub mod compare;
pub mod merge;
pub mod plot;
pub mod report;
pub mod stall;

use anyhow::{Context, Result};

use crate::analysis::{self, Analysis};
use crate::host::envinfo::Environment;
use crate::sweep::plan::SweepPlan;
use crate::sweep::records::TrialRecord;
use crate::sweep::results::{ResultFile, ResultsDir};
use report::{Report, Run};

/// Reads a results directory and writes summary.csv, analysis.json, the
/// figures, report.md and report.html. Needs no engine.
pub fn write_outputs(results: &ResultsDir) -> Result<Analysis> {
    let plan = results.read_plan()?;
    let env = results.read_env();
    let records = read_records(results)?;
    write_report(results, &records, (&plan, &env, &[]), Some(results))
}

/// A directory's records; lines that cannot be read are skipped, with a
/// word (a line cut by a crash).
fn read_records(results: &ResultsDir) -> Result<Vec<TrialRecord>> {
    let back = results.read_records()?;
    if !back.dropped_lines.is_empty() {
        eprintln!(
            "ckpt: skipped unreadable line(s) {:?} of {} (cut by a crash?)",
            back.dropped_lines,
            results.file(ResultFile::TrialsJsonl).display()
        );
    }
    Ok(back.records)
}

/// Where the records come from, as the report tells it: the plan, the
/// machine, and each host's run when they were merged from several.
type Provenance<'a> = (&'a SweepPlan, &'a Environment, &'a [Run]);

/// Analyses the records and writes summary.csv, analysis.json, the
/// figures, report.md and report.html into `out`; the figure of the stall
/// from the clients' timelines in `timelines`, the directory that holds
/// the records' (None: the records are merged from several).
fn write_report(
    out: &ResultsDir,
    records: &[TrialRecord],
    (plan, env, runs): Provenance,
    timelines: Option<&ResultsDir>,
) -> Result<Analysis> {
    let analysis = analysis::analyse(records);
    write_summary(out, &analysis)?;
    out.write(ResultFile::Analysis, &serde_json::to_vec_pretty(&analysis)?)?;
    let figures = plot::write_figures(&analysis, out)?;
    let phases_svg = plot::write_phase_figures(&analysis, out)?;
    let stall = match timelines {
        Some(dir) => stall::write_stall_figure(&analysis, records, dir, out)?,
        None => None,
    };
    let drift_svg = plot::write_drift_figure(&analysis, out)?;
    let report = Report {
        plan,
        env,
        runs,
        analysis: &analysis,
        figures: &figures,
        phases_svg: phases_svg.as_deref(),
        stall: stall.as_ref(),
        drift_svg: drift_svg.as_deref(),
    };
    out.write(ResultFile::ReportMd, report.markdown().as_bytes())?;
    out.write(ResultFile::ReportHtml, report.html().as_bytes())?;
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
    // Merged hosts' engines (`docker@host`) are longer than an engine's name.
    let w = analysis
        .points
        .iter()
        .map(|p| p.engine.len())
        .fold(8, usize::max);
    let mut out = format!(
        "{:<w$} {:>24} {:>4}  {:>12} {:>19}  {:>12} {:>19}\n",
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
            "{:<w$} {:>24} {:>4}  {:>12} {:>19}  {:>12} {:>19}\n",
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
