//! One trial: run a fresh container, wait until the workload is ready,
//! checkpoint (timed), stop (timed), restore (timed), verify that the same
//! processes are alive. The caller removes the container (the sweep does it
//! while the next trial starts). Every step's failure is recorded, never
//! thrown: a sweep goes on after a failed trial.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::engine::{self, Container, Engine, Image};
use crate::host::state::HostState;
use crate::model::Network;
use crate::run::{Interrupted, RunId, Stop};
use crate::sweep::plan::TrialSpec;
use crate::sweep::records::{Status, TrialRecord};
use crate::verify::CHECK_TIMEOUT;
use crate::workload::{self, Workload};

/// Interval at which the forker's processes print their pid.
const WORKLOAD_INTERVAL_MS: u64 = 1000;
/// How long a workload may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The same bounds on the user's commands as outside sweeps.
use crate::program::{CLOSE_WAIT_LIMIT, COMMAND_TIMEOUT};

/// Times a trial: engine calls (and the waits on the workload) are timed
/// one by one for the record; ckpt's own work between them (reading
/// statistics and checkpoint sizes, comparing pids, building the record) is
/// timed section by section and summed as the trial's overhead. Summing
/// sections, rather than subtracting engine time from wall time, keeps the
/// figure honest while the previous trial's container is being removed
/// concurrently.
struct Stopwatch {
    own: Duration,
}

impl Stopwatch {
    fn new() -> Stopwatch {
        Stopwatch {
            own: Duration::ZERO,
        }
    }

    /// Runs an engine call; returns its result and its duration in ms.
    async fn time<T>(&mut self, call: impl Future<Output = Result<T>>) -> (Result<T>, f64) {
        let started = Instant::now();
        let result = call.await;
        (result, millis(started.elapsed()))
    }

    /// Runs a piece of ckpt's own work and counts it as overhead.
    async fn own<T>(&mut self, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        self.own += started.elapsed();
        out
    }

    fn overhead_ms(&self) -> f64 {
        millis(self.own)
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A trial in progress: its record so far, and the container to remove.
pub struct Trial {
    pub record: TrialRecord,
    /// The container, once created; whoever ends the trial removes it.
    pub container: Option<Container>,
    clock: Stopwatch,
    /// Pids the workload announced (or ran) when it became ready.
    before: Vec<u32>,
    /// Check-pattern lines printed before the restore.
    checks_before: usize,
    /// What the program's own check printed before the checkpoint.
    state_before: Option<String>,
    /// A stop was requested before the trial ended: it must not be
    /// recorded (a resumed sweep runs it again).
    pub interrupted: bool,
}

impl Trial {
    fn fail(&mut self, step: &str, error: anyhow::Error) {
        if error.downcast_ref::<Interrupted>().is_some() {
            self.interrupted = true;
            return;
        }
        self.record.status = Status::Failed;
        self.record.error = Some(format!("{step}: {error:#}"));
    }

    fn ended(&self) -> bool {
        self.interrupted || self.record.status == Status::Failed
    }
}

/// Starts a fresh container for the trial and waits until the workload is
/// ready. A failure is recorded in the trial, not returned.
pub(crate) async fn launch<E: Engine>(
    engine: &E,
    run: &RunId,
    (workload, image, network): (&Workload, &Image, Network),
    spec: &TrialSpec,
    stop: &Stop,
) -> Trial {
    let mut trial = Trial {
        record: TrialRecord {
            image_bytes: Some(image.size_bytes),
            ..TrialRecord::new(run.as_str(), spec, engine.name())
        },
        container: None,
        clock: Stopwatch::new(),
        before: Vec::new(),
        checks_before: 0,
        state_before: None,
        interrupted: false,
    };
    if let Err(e) = stop.check() {
        trial.fail("start", e.into());
        return trial;
    }
    let name = run.name(&format!("t{}-n{}", spec.index, spec.point.children));
    let run_spec = workload.run_spec(name, &spec.point, WORKLOAD_INTERVAL_MS, network);
    let (created, run_ms) = trial.clock.time(engine.run(run, image, &run_spec)).await;
    trial.record.run_ms = Some(run_ms);
    match created {
        Ok(c) => trial.container = Some(c),
        Err(e) => {
            trial.fail("run", e);
            return trial;
        }
    }
    let ready = match workload {
        Workload::Forker => wait_for_forker(engine, &mut trial, spec, stop).await,
        Workload::User {
            ready,
            delay,
            timeout,
            ..
        } => wait_for_user(engine, &mut trial, (ready.as_ref(), *delay, *timeout), stop).await,
    };
    if let Err(e) = ready {
        trial.fail("ready", e);
        return trial;
    }
    if let Err(e) = run_setup(engine, workload, &mut trial, &spec.point).await {
        trial.fail("setup", e);
        return trial;
    }
    let container = trial.container.clone();
    if let Some(c) = container {
        let (rss, _) = trial
            .clock
            .time(async { Ok(engine.resident_bytes(&c).await) })
            .await;
        trial.record.rss_bytes = rss.ok().flatten();
    }
    trial.record.status = Status::Unverified;
    trial
}

/// Waits for the forker's ready line and takes its pid list.
async fn wait_for_forker<E: Engine>(
    engine: &E,
    trial: &mut Trial,
    spec: &TrialSpec,
    stop: &Stop,
) -> Result<()> {
    let container = trial.container.as_ref().context("no container")?;
    let wait = engine.wait_for_line(container, 0, &workload::is_ready, READY_TIMEOUT);
    let (ready, ready_ms) = trial.clock.time(stop.unless_stopped(wait)).await;
    trial.record.ready_ms = Some(ready_ms);
    let ready = ready.context("waiting for the workload to be ready")?;
    trial.before = workload::ready_pids(&ready)
        .with_context(|| format!("the workload's ready line has no pid list: {ready}"))?;
    trial.record.processes_before = Some(trial.before.len() as u32);
    if trial.before.len() != spec.point.children as usize + 1 {
        bail!(
            "expected {} processes, the workload reported {}",
            spec.point.children + 1,
            trial.before.len()
        );
    }
    Ok(())
}

/// Waits for the user's ready pattern (or the delay), then takes the
/// container's processes as they are.
async fn wait_for_user<E: Engine>(
    engine: &E,
    trial: &mut Trial,
    (pattern, delay, timeout): (Option<&regex::Regex>, Duration, Duration),
    stop: &Stop,
) -> Result<()> {
    let container = trial.container.clone().context("no container")?;
    let wait = async {
        match pattern {
            Some(p) => engine
                .wait_for_line(&container, 0, &|l: &str| p.is_match(l), timeout)
                .await
                .with_context(|| format!("waiting for a log line matching '{p}'"))
                .map(drop),
            None => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    };
    let (ready, ready_ms) = trial.clock.time(stop.unless_stopped(wait)).await;
    trial.record.ready_ms = Some(ready_ms);
    ready?;
    let (pids, _) = trial.clock.time(engine.processes(&container)).await;
    trial.before = pids.context("the workload is not running after it became ready")?;
    trial.record.processes_before = Some(trial.before.len() as u32);
    Ok(())
}

/// The user's --setup-cmd, once the program is ready.
async fn run_setup<E: Engine>(
    engine: &E,
    workload: &Workload,
    trial: &mut Trial,
    point: &crate::model::Point,
) -> Result<()> {
    let Workload::User {
        setup: Some(setup), ..
    } = workload
    else {
        return Ok(());
    };
    let container = trial.container.clone().context("no container")?;
    let argv = setup.render(point);
    let (done, ms) = trial
        .clock
        .time(engine::exec_checked(
            engine,
            &container,
            &argv,
            COMMAND_TIMEOUT,
        ))
        .await;
    trial.record.setup_ms = Some(ms);
    done.map(drop).context("--setup-cmd")
}

/// The program's own check (--check-cmd), when asked: its output, and the
/// time it took added to the record's check time.
async fn run_state_check<E: Engine>(
    engine: &E,
    workload: &Workload,
    trial: &mut Trial,
    container: &Container,
) -> Result<Option<String>> {
    let Workload::User {
        state: Some(state), ..
    } = workload
    else {
        return Ok(None);
    };
    let argv = state.cmd.render(&trial.record.point());
    let (output, ms) = trial
        .clock
        .time(engine::exec_checked(
            engine,
            container,
            &argv,
            COMMAND_TIMEOUT,
        ))
        .await;
    *trial.record.check_ms.get_or_insert(0.0) += ms;
    output.context("--check-cmd").map(Some)
}

/// Runs the check before the checkpoint, then waits for the connections
/// it closed to be closed by the program too.
async fn check_before<E: Engine>(
    engine: &E,
    workload: &Workload,
    trial: &mut Trial,
    container: &Container,
) -> Result<()> {
    trial.state_before = run_state_check(engine, workload, trial, container).await?;
    if trial.state_before.is_some() {
        let pid = engine.root_pid(container).await?;
        let (_, _) = trial
            .clock
            .time(async { Ok(engine::os::sockets::wait_for_closed(pid, CLOSE_WAIT_LIMIT).await) })
            .await;
    }
    Ok(())
}

/// The check after the restore, compared with the one before; sets
/// state_ok and says what differed.
async fn check_after<E: Engine>(
    engine: &E,
    workload: &Workload,
    trial: &mut Trial,
    container: &Container,
) -> Result<bool> {
    let Some(after) = run_state_check(engine, workload, trial, container).await? else {
        return Ok(true);
    };
    let Workload::User {
        state: Some(state), ..
    } = workload
    else {
        return Ok(true);
    };
    let before = trial.state_before.as_deref().unwrap_or_default();
    let verdict = state.compare(before, &after);
    trial.record.state_ok = Some(verdict.is_ok());
    if let Err(problem) = verdict {
        trial.record.error = Some(problem);
        return Ok(false);
    }
    Ok(true)
}

/// The measured part: checkpoint, stop, restore, verify. Does nothing for
/// a trial that already failed. Then reads the host's state into the
/// record, failed or not. The record is complete afterwards; the
/// container is left for the caller to remove.
pub(crate) async fn measure<E: Engine>(
    engine: &E,
    workload: &Workload,
    trial: &mut Trial,
    stop: &Stop,
) {
    if !trial.ended() {
        if let Err(e) = checkpoint_and_restore(engine, workload, trial, stop).await {
            trial.fail("trial", e);
        }
    }
    // Once per trial, in ckpt's own time after the timed calls: the
    // previous trial's container is gone and this one still runs, the same
    // moment in every trial, so the values compare from trial to trial.
    let state = trial.clock.own(async { HostState::read() }).await;
    trial.record.set_host(&state);
    trial.record.overhead_ms = Some(trial.clock.overhead_ms());
}

/// Fills the record as it goes, so a failure keeps what was measured
/// before it.
async fn checkpoint_and_restore<E: Engine>(
    engine: &E,
    workload: &Workload,
    trial: &mut Trial,
    stop: &Stop,
) -> Result<()> {
    let container = trial.container.clone().context("no container")?;
    check_before(engine, workload, trial, &container).await?;
    let (record, clock) = (&mut trial.record, &mut trial.clock);
    let checkpoint = "ckpt";
    stop.check()?;
    let (result, ms) = clock.time(engine.checkpoint(&container, checkpoint)).await;
    record.checkpoint_ms = Some(ms);
    let stats = result?;
    clock
        .own(async {
            if let Some(d) = stats.dump() {
                record.fill_dump_stats(&d);
            }
            record.checkpoint_bytes = engine.checkpoint_size(&container, checkpoint).await;
        })
        .await;

    let (result, ms) = clock.time(engine.stop(&container)).await;
    record.stop_ms = Some(ms);
    result?;
    stop.check()?;
    if let Workload::User {
        check: Some(pattern),
        ..
    } = workload
    {
        // The log is final while the container is stopped: every match
        // after the restore is new.
        let (lines, _) = clock.time(engine.logs(&container)).await;
        trial.checks_before = lines?.iter().filter(|l| pattern.is_match(l)).count();
    }

    let (restored, _) = clock
        .time(engine::restore_with_retry(engine, &container, checkpoint))
        .await;
    let mut restored = restored?;
    if let Workload::User { .. } = workload {
        // Counted in the restore: the program serves nobody before it.
        let (up, ms) = clock
            .time(engine::serve_on_loopback(engine, &container))
            .await;
        up?;
        restored.took += Duration::from_secs_f64(ms / 1000.0);
    }
    let (after, _) = clock.time(engine.processes(&container)).await;
    let after = after.context("listing the restored container's processes")?;
    let before = &trial.before;
    clock
        .own(async {
            record.restore_ms = Some(millis(restored.took));
            record.restore_retries = restored.retries;
            if let Some(r) = restored.stats.restore() {
                record.fill_restore_stats(&r);
            }
            record.processes_after = Some(after.len() as u32);
            record.verified = same_pids(before, &after);
            if !record.verified {
                record.error = Some(format!(
                    "after the restore the container runs pids {after:?}, before it ran {before:?}"
                ));
            }
        })
        .await;
    if trial.record.verified {
        trial.record.verified = check_after_restore(engine, workload, trial, &container).await?;
    }
    if trial.record.verified {
        trial.record.verified = check_after(engine, workload, trial, &container).await?;
    }
    if trial.record.verified {
        trial.record.status = Status::Ok;
    }
    Ok(())
}

/// The workload's own check after the restore: the forker's memory
/// checksums and its thread and file counts (when it holds any), or the
/// user's check pattern.
async fn check_after_restore<E: Engine>(
    engine: &E,
    workload: &Workload,
    trial: &mut Trial,
    container: &Container,
) -> Result<bool> {
    match workload {
        Workload::Forker if holds_state(&trial.record) => {
            let (verdict, _) = trial
                .clock
                .time(crate::verify::check_state(
                    engine,
                    container,
                    &trial.before,
                    (trial.record.threads, trial.record.files),
                ))
                .await;
            let verdict = verdict?;
            trial.record.memory_ok = Some(verdict.memory);
            trial.record.threads_ok = Some(verdict.threads);
            trial.record.files_ok = Some(verdict.files);
            if let Some(problem) = &verdict.problem {
                trial.record.error = Some(problem.clone());
            }
            Ok(verdict.holds())
        }
        Workload::User {
            check: Some(pattern),
            ..
        } => {
            let skip = trial.checks_before;
            let (found, _) = trial
                .clock
                .time(engine.wait_for_line(
                    container,
                    skip,
                    &|l: &str| pattern.is_match(l),
                    CHECK_TIMEOUT,
                ))
                .await;
            if let Err(e) = found {
                trial.record.error = Some(format!(
                    "no new line matching '{pattern}' after the restore: {e:#}"
                ));
                return Ok(false);
            }
            Ok(true)
        }
        _ => Ok(true),
    }
}

/// Whether the forker's processes hold anything to check after a restore
/// beyond their pids: memory, threads or open files.
fn holds_state(record: &TrialRecord) -> bool {
    record.memory_mib > 0 || record.threads > 0 || record.files > 0
}

/// The same set of pids, whatever the order.
pub(crate) fn same_pids(before: &[u32], after: &[u32]) -> bool {
    let mut a = before.to_vec();
    let mut b = after.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_sets_compare_without_order() {
        assert!(same_pids(&[1, 7, 8], &[8, 1, 7]));
        assert!(!same_pids(&[1, 7, 8], &[1, 7]));
        assert!(!same_pids(&[1, 7, 8], &[1, 7, 9]));
    }

    #[tokio::test]
    async fn stopwatch_counts_own_work_but_not_engine_calls() {
        let mut clock = Stopwatch::new();
        let (r, ms) = clock
            .time(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(())
            })
            .await;
        r.unwrap();
        assert!(ms >= 30.0, "{ms}");
        assert_eq!(clock.overhead_ms(), 0.0);
        clock
            .own(tokio::time::sleep(Duration::from_millis(5)))
            .await;
        assert!(clock.overhead_ms() >= 5.0, "{}", clock.overhead_ms());
    }
}
