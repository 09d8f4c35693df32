//! `ckpt sweep`: the seed's experiment. Runs the plan's trials one by one,
//! appends each record as it ends, and turns the records into summary,
//! figures and report. `write_outputs` reads only the results directory, so
//! `ckpt report DIR` is the same code without an engine.

use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::analysis::{self, Analysis};
use crate::cleanup::{RunId, Stop};
use crate::engine::{Container, Engine, Image, ImageSpec};
use crate::envinfo::Environment;
use crate::plan::{SweepPlan, TrialSpec};
use crate::records::{self, RecordWriter, Status, TrialRecord};
use crate::report::{self, Report};
use crate::workload::Workload;
use crate::{plot, runner};

pub const PLAN_JSON: &str = "plan.json";
pub const ENV_JSON: &str = "env.json";
pub const SUMMARY_CSV: &str = "summary.csv";
pub const ANALYSIS_JSON: &str = "analysis.json";

/// A results directory ready for trials: its plan, and the records of the
/// trials already done (when resuming).
pub struct Prepared {
    pub dir: PathBuf,
    pub plan: SweepPlan,
    pub done: Vec<TrialRecord>,
    /// Record lines dropped because they were cut (reported to the user).
    pub repaired_lines: Vec<usize>,
}

/// Creates a new results directory (0700) and writes plan.json and env.json.
/// Refuses a directory that already holds a sweep: that is what --resume is
/// for, and overwriting results is never what the user meant.
pub fn prepare_new(dir: &Path, plan: SweepPlan, env: &Environment) -> Result<Prepared> {
    plan.validate()?;
    if dir.join(PLAN_JSON).exists() || dir.join(records::TRIALS_JSONL).exists() {
        bail!(
            "{} already holds a sweep: continue it with `ckpt sweep --resume {}`, or choose another --output",
            dir.display(),
            dir.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    // A pre-existing directory keeps its mode unless we own its contents:
    // results describe the machine and its processes, keep them private.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    records::write_private(&dir.join(PLAN_JSON), &serde_json::to_vec_pretty(&plan)?)?;
    records::write_private(&dir.join(ENV_JSON), &serde_json::to_vec_pretty(env)?)?;
    Ok(Prepared {
        dir: dir.to_path_buf(),
        plan,
        done: Vec::new(),
        repaired_lines: Vec::new(),
    })
}

/// Opens an interrupted sweep: its plan and the trials it completed. Cut
/// record lines are dropped and the record files rewritten without them.
pub fn prepare_resume(dir: &Path) -> Result<Prepared> {
    let plan = read_plan(dir)?;
    let back = if dir.join(records::TRIALS_JSONL).exists() {
        records::read_records(dir)?
    } else {
        records::ReadBack::default()
    };
    // trials.csv is rebuilt from the JSON lines when either file was cut
    // (a crash in the middle of writing one of them).
    let csv_rows = records::count_csv_rows(dir);
    let csv_cut = csv_rows != Some(back.records.len()) && dir.join(records::TRIALS_CSV).exists();
    if !back.dropped_lines.is_empty() || csv_cut {
        records::rewrite(dir, &back.records)?;
    }
    if csv_cut && back.dropped_lines.is_empty() {
        eprintln!(
            "ckpt: repaired {}: it held {} complete row(s) for {} record(s); rebuilt from {}",
            records::TRIALS_CSV,
            csv_rows.unwrap_or(0),
            back.records.len(),
            records::TRIALS_JSONL
        );
    }
    Ok(Prepared {
        dir: dir.to_path_buf(),
        plan,
        done: back.records,
        repaired_lines: back.dropped_lines,
    })
}

fn read_plan(dir: &Path) -> Result<SweepPlan> {
    let path = dir.join(PLAN_JSON);
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {}: is {} a ckpt sweep directory?",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a valid sweep plan", path.display()))
}

/// The trials of the plan that have no record yet.
pub fn remaining(plan: &SweepPlan, done: &[TrialRecord]) -> Vec<TrialSpec> {
    let finished: std::collections::HashSet<usize> = done.iter().map(|r| r.trial).collect();
    plan.trials()
        .into_iter()
        .filter(|t| !finished.contains(&t.index))
        .collect()
}

fn progress(total: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} trials  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn one_line(r: &TrialRecord) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    let status = match r.status {
        Status::Ok => "verified".to_string(),
        Status::Unverified => "NOT verified".to_string(),
        Status::Failed => format!("FAILED: {}", r.error.as_deref().unwrap_or("")),
    };
    format!(
        "trial {} {} N={}{}{}: checkpoint {}, restore {}, {status}",
        r.trial,
        r.engine,
        r.children,
        point_extras(r),
        if r.warmup { " (warm-up)" } else { "" },
        ms(r.checkpoint_ms),
        ms(r.restore_ms)
    )
}

/// The point's coordinates beyond N, where they are not zero.
fn point_extras(r: &TrialRecord) -> String {
    let p = r.point();
    crate::plan::Axis::ALL[1..]
        .iter()
        .filter(|a| a.of(&p) != 0)
        .map(|a| format!(" {}={}", a.name(), a.of(&p)))
        .collect()
}

/// Runs the remaining trials. Each record is written as soon as its
/// measurement ends, so cancelling this future (Ctrl-C) loses only the trial
/// in flight; the caller removes the run's objects afterwards.
///
/// The previous trial's container is removed while the next one starts and
/// becomes ready: that overlaps two untimed steps and never touches a timed
/// one (checkpoint, stop and restore always run alone).
pub async fn run_trials<E: Engine>(
    engines: &[E],
    run: &RunId,
    prepared: &Prepared,
    stop: &Stop,
) -> Result<usize> {
    let todo = remaining(&prepared.plan, &prepared.done);
    if todo.is_empty() {
        return Ok(0);
    }
    let workload = Workload::from_plan(&prepared.plan)?;
    let mut images = Images::default();
    let mut writer = RecordWriter::open(&prepared.dir)?;
    let bar = progress(todo.len());
    let total = prepared.plan.trials().len();
    let mut leftover: Option<(&E, Container)> = None;
    for spec in &todo {
        stop.check()?;
        let engine = &engines[spec.engine];
        bar.set_message(format!("{} N={}", engine.name(), spec.point.children));
        let image = images.get(engine, spec, &prepared.plan, run).await?;
        let previous = leftover.take();
        let (removed, mut trial) = tokio::join!(
            remove_if_any(previous.as_ref()),
            runner::launch(
                engine,
                run,
                (&workload, &image, prepared.plan.network),
                spec,
                stop
            )
        );
        if removed.is_err() {
            // The engine may have died in the middle (a daemon restart):
            // wait for it, then try once more before giving up.
            if let Some((previous_engine, _)) = &previous {
                wait_until_healthy(*previous_engine, stop).await?;
            }
            remove_if_any(previous.as_ref()).await?;
        }
        runner::measure(engine, &workload, &mut trial, stop).await;
        leftover = trial.container.take().map(|c| (engine, c));
        if trial.interrupted {
            // Not recorded: --resume runs it again. Its container goes with
            // the run's other objects when the caller cleans up.
            stop.check()?;
        }
        writer.append(&trial.record)?;
        if trial.record.status == Status::Failed {
            wait_until_healthy(engine, stop).await?;
        }
        if bar.is_hidden() {
            eprintln!("[{}/{total}] {}", spec.index + 1, one_line(&trial.record));
        } else {
            bar.println(one_line(&trial.record));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    remove_if_any(leftover.as_ref()).await?;
    for ((engine, _), image) in &images.built {
        engines[*engine].remove_image(image).await?;
    }
    Ok(todo.len())
}

/// Refuses a sweep over a user's image that an engine does not have, before
/// the results directory is created (ckpt never pulls).
pub async fn check_user_image<E: Engine>(
    engines: &[E],
    plan: &SweepPlan,
    run: &RunId,
) -> Result<()> {
    let Some(user) = &plan.workload else {
        return Ok(());
    };
    let wanted = ImageSpec {
        user_image: Some(user.image.clone()),
        filler_mib: 0,
    };
    for engine in engines {
        // A user's image is only looked up, never built or labelled.
        engine.build_image(run, &wanted).await?;
    }
    Ok(())
}

/// The images of a sweep, built when a trial first needs them: one per
/// engine and filler size.
#[derive(Default)]
struct Images {
    built: std::collections::BTreeMap<(usize, u32), Image>,
}

impl Images {
    async fn get<E: Engine>(
        &mut self,
        engine: &E,
        spec: &TrialSpec,
        plan: &SweepPlan,
        run: &RunId,
    ) -> Result<Image> {
        let key = (spec.engine, spec.point.filler_mib);
        if let Some(image) = self.built.get(&key) {
            return Ok(image.clone());
        }
        let wanted = ImageSpec {
            user_image: plan.workload.as_ref().map(|w| w.image.clone()),
            filler_mib: spec.point.filler_mib,
        };
        let image = engine.build_image(run, &wanted).await?;
        self.built.insert(key, image.clone());
        Ok(image)
    }
}

/// How long a sweep waits for an engine (a restarting daemon) to answer
/// again after a failed trial, before it stops with the resume command.
const ENGINE_RETURN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// After a failed trial: if the engine stopped answering (a daemon died),
/// waits for it to come back instead of failing every following trial.
async fn wait_until_healthy<E: Engine>(engine: &E, stop: &Stop) -> Result<()> {
    let Err(first) = engine.healthy().await else {
        return Ok(());
    };
    eprintln!(
        "ckpt: {} does not answer ({first:#}); waiting up to {} s for it to come back",
        engine.name(),
        ENGINE_RETURN_TIMEOUT.as_secs()
    );
    let deadline = std::time::Instant::now() + ENGINE_RETURN_TIMEOUT;
    loop {
        stop.unless_stopped(async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Ok(())
        })
        .await?;
        if engine.healthy().await.is_ok() {
            eprintln!("ckpt: {} answers again; the sweep goes on", engine.name());
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "{} did not come back within {} s",
                engine.name(),
                ENGINE_RETURN_TIMEOUT.as_secs()
            );
        }
    }
}

async fn remove_if_any<E: Engine>(leftover: Option<&(&E, Container)>) -> Result<()> {
    match leftover {
        Some((engine, c)) => engine.remove_container(c).await,
        None => Ok(()),
    }
}

/// Reads a results directory and writes summary.csv, analysis.json,
/// figure.svg, figure.png, report.md and report.html. Needs no engine.
pub fn write_outputs(dir: &Path) -> Result<Analysis> {
    let plan = read_plan(dir)?;
    let env: Environment = std::fs::read(dir.join(ENV_JSON))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let back = records::read_records(dir)?;
    if !back.dropped_lines.is_empty() {
        eprintln!(
            "ckpt: skipped unreadable line(s) {:?} of {} (cut by a crash?)",
            back.dropped_lines,
            records::TRIALS_JSONL
        );
    }
    let analysis = analysis::analyse(&back.records);
    write_summary(dir, &analysis)?;
    records::write_private(
        &dir.join(ANALYSIS_JSON),
        &serde_json::to_vec_pretty(&analysis)?,
    )?;
    let figures = plot::write_figures(&analysis, dir)?;
    let phases_svg = plot::write_phase_figures(&analysis, dir)?;
    let report = Report {
        plan: &plan,
        env: &env,
        analysis: &analysis,
        figures: &figures,
        phases_svg: phases_svg.as_deref(),
    };
    records::write_private(&dir.join(report::REPORT_MD), report.markdown().as_bytes())?;
    records::write_private(&dir.join(report::REPORT_HTML), report.html().as_bytes())?;
    Ok(analysis)
}

fn write_summary(dir: &Path, analysis: &Analysis) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for point in &analysis.points {
        csv.serialize(point)?;
    }
    let bytes = csv.into_inner().context("writing summary.csv")?;
    records::write_private(&dir.join(SUMMARY_CSV), &bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Order;

    fn plan() -> SweepPlan {
        SweepPlan {
            engines: vec!["docker".into()],
            children: vec![1, 3],
            memory_mib: vec![0],
            threads: vec![0],
            files: vec![0],
            filler_mib: vec![0],
            workload: None,
            repeat: 2,
            warmup: 1,
            order: Order::Sequential,
            network: crate::engine::Network::Disabled,
            seed: 1,
        }
    }

    #[test]
    fn refuses_a_directory_that_holds_a_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r");
        prepare_new(&out, plan(), &Environment::default()).unwrap();
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let err = prepare_new(&out, plan(), &Environment::default())
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    }

    #[test]
    fn refuses_an_unwritable_directory() {
        let err = prepare_new(
            Path::new("/proc/ckpt-results"),
            plan(),
            &Environment::default(),
        )
        .err()
        .unwrap();
        assert!(
            format!("{err:#}").contains("cannot create the output directory"),
            "{err:#}"
        );
    }

    #[test]
    fn resume_skips_recorded_trials_only() {
        let p = plan();
        let all = p.trials();
        assert_eq!(all.len(), 6);
        let done: Vec<TrialRecord> = all[..2]
            .iter()
            .map(|t| {
                let mut r: TrialRecord = serde_json::from_str(SAMPLE).unwrap();
                r.trial = t.index;
                r
            })
            .collect();
        let left: Vec<usize> = remaining(&p, &done).iter().map(|t| t.index).collect();
        assert_eq!(left, vec![2, 3, 4, 5]);
    }

    const SAMPLE: &str = r#"{"run_id":"r","trial":0,"engine":"docker","children":1,"repetition":0,"warmup":true,
        "started_at":"","image_bytes":1,"run_ms":1.0,"ready_ms":1.0,"checkpoint_ms":1.0,"stop_ms":1.0,
        "restore_ms":1.0,"restore_retries":0,"checkpoint_bytes":1,"processes_before":2,"processes_after":2,
        "verified":true,"criu_freezing_ms":null,"criu_frozen_ms":null,"criu_memdump_ms":null,
        "criu_memwrite_ms":null,"criu_pages_scanned":null,"criu_pages_written":null,"criu_forking_ms":null,
        "criu_restore_ms":null,"criu_pages_restored":null,"overhead_ms":0.1,"status":"ok","error":null}"#;
}
