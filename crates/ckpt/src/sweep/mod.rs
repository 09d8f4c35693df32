//! `ckpt sweep`: the seed's experiment, or any grid. The plan makes the list
//! of trials; each trial runs against an engine and its record is appended
//! to the results directory as it ends. What the records turn into is
//! `analysis` and `output`'s business, never this module's.

pub mod plan;
pub mod progress;
pub mod records;
pub mod results;
mod timelines;
pub mod trial;

use std::path::Path;

use anyhow::{bail, Result};

use crate::engine::{Container, Engine, Image};
use crate::host::envinfo::Environment;
use crate::model::ImageSpec;
use crate::run::{RunId, Stop};
use crate::workload::Workload;
use plan::{SweepPlan, TrialSpec};
use records::{DoneTrial, Status, TrialRecord};
use results::ResultsDir;

/// A results directory ready for trials: its plan, and the trials already
/// done (when resuming).
pub struct Prepared {
    pub results: ResultsDir,
    pub plan: SweepPlan,
    pub done: Vec<DoneTrial>,
    /// Record lines dropped because they were cut (reported to the user).
    pub repaired_lines: Vec<usize>,
    /// Run again the trials that failed for any reason (`--retry-failed`).
    pub retry_failed: bool,
}

/// Creates a new results directory with the plan and the environment.
pub fn prepare_new(dir: &Path, plan: SweepPlan, env: &Environment) -> Result<Prepared> {
    plan.validate()?;
    let results = ResultsDir::new(dir);
    results.create(&plan, env)?;
    Ok(Prepared {
        results,
        plan,
        done: Vec::new(),
        repaired_lines: Vec::new(),
        retry_failed: false,
    })
}

/// Opens an interrupted sweep: its plan and the trials it completed, cut
/// record lines dropped.
pub fn prepare_resume(dir: &Path) -> Result<Prepared> {
    let results = ResultsDir::new(dir);
    let plan = results.read_plan()?;
    let resumed = results.repair_records()?;
    Ok(Prepared {
        results,
        plan,
        done: resumed.done,
        repaired_lines: resumed.dropped_lines,
        retry_failed: false,
    })
}

/// The trials of the plan still to run: those without a record, those whose
/// only records failed because the engine was unreachable, and, with
/// `retry_failed`, those whose only records failed.
pub fn remaining(plan: &SweepPlan, done: &[DoneTrial], retry_failed: bool) -> Vec<TrialSpec> {
    // A trial is done once it has a record that ran against a live engine
    // (or, with `retry_failed`, once it has one that did not fail at all).
    let finished: std::collections::HashSet<usize> = done
        .iter()
        .filter(|r| !r.engine_unreachable)
        .filter(|r| !(retry_failed && r.status == Status::Failed))
        .map(|r| r.trial)
        .collect();
    plan.trials()
        .into_iter()
        .filter(|t| !finished.contains(&t.index))
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
    let todo = remaining(&prepared.plan, &prepared.done, prepared.retry_failed);
    if todo.is_empty() {
        return Ok(0);
    }
    let workload = Workload::new(prepared.plan.workload.as_ref(), &prepared.plan.swept_axes())?;
    let mut images = Images::default();
    let mut writer = prepared.results.record_writer()?;
    let bar = progress::bar(todo.len());
    let mut pace = progress::Pace::new(todo.len());
    let total = prepared.plan.trials().len();
    let mut leftover: Option<(&E, Container)> = None;
    let program = match (&prepared.plan.workload, prepared.plan.migrate.is_empty()) {
        (Some(user), false) => Some(crate::program::UserProgram::new(user.clone())?),
        _ => None,
    };
    let mut moves = Moves {
        link_rate: prepared.plan.link_rate.clone(),
        program,
        probe: probe_options(&prepared.plan)?,
        timelines: timelines::Timelines::found(&prepared.results, &prepared.plan),
        ..Moves::default()
    };
    for spec in &todo {
        stop.check()?;
        let engine = &engines[spec.engine];
        if let Some(method) = spec.method {
            let (record, timeline) = moves.trial(engine.kind(), method, spec, run, stop).await?;
            writer.append(&record)?;
            let kept = moves
                .timelines
                .offer(&prepared.results, (spec, &record), timeline.as_ref());
            if let Err(e) = kept {
                // It costs the figure of the stall, not the sweep.
                bar.println(format!("ckpt: warning: trial {}: {e:#}", spec.index));
            }
            report_trial(&bar, (spec.index, total, &mut pace), &record);
            continue;
        }
        bar.set_message(format!("{} N={}", engine.name(), spec.point.children));
        let image = images.get(engine, spec, &prepared.plan, run).await?;
        let incarnation = engine.incarnation();
        let previous = leftover.take();
        let (removed, mut trial) = tokio::join!(
            remove_if_any(previous.as_ref()),
            trial::launch(
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
        trial::measure(engine, &workload, &mut trial, stop).await;
        leftover = trial.container.take().map(|c| (engine, c));
        if trial.interrupted {
            // Not recorded: --resume runs it again. Its container goes with
            // the run's other objects when the caller cleans up.
            stop.check()?;
        }
        if trial.record.status == Status::Failed {
            trial.record.engine_unreachable =
                engine.healthy().await.is_err() || engine.incarnation() != incarnation;
        }
        writer.append(&trial.record)?;
        if trial.record.engine_unreachable {
            wait_until_healthy(engine, stop).await?;
        }
        report_trial(&bar, (spec.index, total, &mut pace), &trial.record);
    }
    bar.finish_and_clear();
    moves.close(run).await;
    remove_if_any(leftover.as_ref()).await?;
    for ((engine, _), image) in &images.built {
        engines[*engine].remove_image(image).await?;
    }
    Ok(todo.len())
}

/// One line per trial: above the progress bar (which shows the time left),
/// or alone without a terminal, with the time left at this run's pace.
fn report_trial(
    bar: &indicatif::ProgressBar,
    (index, total, pace): (usize, usize, &mut progress::Pace),
    record: &TrialRecord,
) {
    let remaining = pace.one_done();
    if bar.is_hidden() {
        eprintln!(
            "[{}/{total}] {} ({})",
            index + 1,
            progress::one_line(record),
            progress::left(remaining)
        );
    } else {
        bar.println(progress::one_line(record));
        bar.inc(1);
    }
}

/// The migration trials' throwaway host, made at the first one and shared
/// by all (one per engine kind), its link shaped to `link_rate`.
#[derive(Default)]
struct Moves {
    sessions: Vec<crate::migrate::Session>,
    link_rate: Option<String>,
    /// The user's program the trials move (--image), or ckpt's forker.
    program: Option<crate::program::UserProgram>,
    /// The clients that keep it busy across each move (--probe).
    probe: Option<crate::migrate::ProbeOptions>,
    /// The moves whose clients' timeline is kept.
    timelines: timelines::Timelines,
}

/// The plan's --probe, parsed (the plan was checked already).
fn probe_options(plan: &SweepPlan) -> Result<Option<crate::migrate::ProbeOptions>> {
    let Some(text) = &plan.probe else {
        return Ok(None);
    };
    Ok(Some(crate::migrate::ProbeOptions {
        spec: text.parse()?,
        rto_min: plan.probe_rto_min_ms.map(std::time::Duration::from_millis),
    }))
}

impl Moves {
    /// One move: its record, and its clients' timeline when probed.
    async fn trial(
        &mut self,
        kind: crate::model::EngineKind,
        method: crate::model::MigrationMethod,
        spec: &TrialSpec,
        run: &RunId,
        stop: &Stop,
    ) -> Result<(TrialRecord, Option<crate::probe::Timeline>)> {
        if !self.sessions.iter().any(|s| s.kind() == kind) {
            let target = crate::migrate::Target::Throwaway {
                link_rate: self.link_rate.clone(),
                once: false,
            };
            let established = self.probe.is_some();
            let session = crate::migrate::Session::open(kind, run, &target, established).await?;
            self.sessions.push(session);
        }
        let session = self
            .sessions
            .iter()
            .find(|s| s.kind() == kind)
            .expect("opened above");
        // The engine is the engine and the method has its own column: the
        // analysis makes the series label (`runc+copy`) from both.
        let mut record = TrialRecord::new(run.as_str(), spec, kind.name());
        record.method = Some(method);
        record.started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let name = run.name(&format!("t{}-move", spec.index));
        let workload = (self.program.as_ref(), self.probe.as_ref());
        let mut timeline = None;
        match session
            .move_one(method, spec.point, workload, &name, run, stop)
            .await
        {
            Ok(mut moved) => {
                record.fill_from_migration(&moved);
                timeline = moved.client_timeline.take();
            }
            Err(e) => {
                stop.check()?;
                record.status = Status::Failed;
                record.error = Some(format!("{e:#}"));
            }
        }
        Ok((record, timeline))
    }

    async fn close(self, run: &RunId) {
        for session in self.sessions {
            session.close(run).await;
        }
    }
}

/// Refuses a sweep over a user's image that an engine does not have, before
/// the results directory is created (ckpt never pulls).
pub async fn check_user_image<E: Engine>(
    engines: &[E],
    plan: &SweepPlan,
    run: &RunId,
) -> Result<()> {
    let Some(user) = plan.workload.as_ref().filter(|w| !w.image.is_empty()) else {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sweep::plan::Order;
    use crate::sweep::records::TrialRecord;

    /// Docker, N = 1 and 3, 2 repetitions after 1 warm-up, in grid order.
    pub(crate) fn plan() -> SweepPlan {
        SweepPlan {
            engines: vec![crate::model::EngineKind::Docker],
            children: vec![1, 3],
            memory_mib: vec![0],
            threads: vec![0],
            files: vec![0],
            filler_mib: vec![0],
            workload: None,
            repeat: 2,
            warmup: 1,
            order: Order::Sequential,
            network: crate::model::Network::Disabled,
            seed: 1,
            migrate: Vec::new(),
            link_rate: None,
            probe: None,
            probe_rto_min_ms: None,
            tcp_established: false,
            writable_rootfs: false,
        }
    }

    #[test]
    fn refuses_a_directory_that_holds_a_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r");
        prepare_new(&out, plan(), &Environment::default()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&out).unwrap().permissions(),
        );
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
        let done: Vec<DoneTrial> = all[..2]
            .iter()
            .map(|t| {
                let mut r: TrialRecord = serde_json::from_str(SAMPLE).unwrap();
                r.trial = t.index;
                DoneTrial::from(&r)
            })
            .collect();
        let left: Vec<usize> = remaining(&p, &done, false)
            .iter()
            .map(|t| t.index)
            .collect();
        assert_eq!(left, vec![2, 3, 4, 5]);
        // A trial that failed because its engine was down runs again, its
        // record kept; one that failed otherwise runs again on request.
        let mut more = done.clone();
        more[0].status = Status::Failed;
        more[1].status = Status::Failed;
        more[1].engine_unreachable = true;
        let left: Vec<usize> = remaining(&p, &more, false)
            .iter()
            .map(|t| t.index)
            .collect();
        assert_eq!(left, vec![1, 2, 3, 4, 5]);
        let left: Vec<usize> = remaining(&p, &more, true).iter().map(|t| t.index).collect();
        assert_eq!(left, vec![0, 1, 2, 3, 4, 5]);
        more.push(DoneTrial {
            engine_unreachable: false,
            status: Status::Ok,
            ..more[1]
        });
        let left: Vec<usize> = remaining(&p, &more, false)
            .iter()
            .map(|t| t.index)
            .collect();
        assert_eq!(left, vec![2, 3, 4, 5], "its second attempt counts");
    }

    const SAMPLE: &str = r#"{"run_id":"r","trial":0,"engine":"docker","children":1,"repetition":0,"warmup":true,
        "started_at":"","image_bytes":1,"run_ms":1.0,"ready_ms":1.0,"checkpoint_ms":1.0,"stop_ms":1.0,
        "restore_ms":1.0,"restore_retries":0,"checkpoint_bytes":1,"processes_before":2,"processes_after":2,
        "verified":true,"criu_freezing_ms":null,"criu_frozen_ms":null,"criu_memdump_ms":null,
        "criu_memwrite_ms":null,"criu_pages_scanned":null,"criu_pages_written":null,"criu_forking_ms":null,
        "criu_restore_ms":null,"criu_pages_restored":null,"overhead_ms":0.1,"status":"ok","error":null}"#;
}
