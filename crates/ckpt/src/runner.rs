//! One trial: run a fresh container, wait until the workload is ready,
//! checkpoint (timed), stop (timed), restore (timed), verify that the same
//! processes are alive. The caller removes the container (the sweep does it
//! while the next trial starts). Every step's failure is recorded, never
//! thrown: a sweep goes on after a failed trial.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cleanup::{Interrupted, RunId, Stop};
use crate::engine::{self, Container, Engine, Image, RunSpec};
use crate::plan::TrialSpec;
use crate::records::{Status, TrialRecord};
use crate::workload;

/// Interval at which the forker's processes print their pid.
const WORKLOAD_INTERVAL_MS: u64 = 1000;
/// How long a workload may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

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

/// CRIU counts in microseconds.
fn us_to_ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
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
    /// Pids the workload announced when it became ready.
    before: Vec<u32>,
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
pub async fn launch<E: Engine>(
    engine: &E,
    run: &RunId,
    image: &Image,
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
        interrupted: false,
    };
    if let Err(e) = stop.check() {
        trial.fail("start", e.into());
        return trial;
    }
    let run_spec = RunSpec {
        name: run.name(&format!("t{}-n{}", spec.index, spec.children)),
        args: workload::forker_args(spec.children, WORKLOAD_INTERVAL_MS),
    };
    let (created, run_ms) = trial.clock.time(engine.run(run, image, &run_spec)).await;
    trial.record.run_ms = Some(run_ms);
    match created {
        Ok(c) => trial.container = Some(c),
        Err(e) => {
            trial.fail("run", e);
            return trial;
        }
    }
    if let Err(e) = wait_until_ready(engine, &mut trial, spec, stop).await {
        trial.fail("ready", e);
    }
    trial
}

async fn wait_until_ready<E: Engine>(
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
    if trial.before.len() != spec.children as usize + 1 {
        bail!(
            "expected {} processes, the workload reported {}",
            spec.children + 1,
            trial.before.len()
        );
    }
    trial.record.status = Status::Unverified;
    Ok(())
}

/// The measured part: checkpoint, stop, restore, verify. Does nothing for
/// a trial that already failed. The record is complete afterwards; the
/// container is left for the caller to remove.
pub async fn measure<E: Engine>(engine: &E, trial: &mut Trial, stop: &Stop) {
    if !trial.ended() {
        if let Err(e) = checkpoint_and_restore(engine, trial, stop).await {
            trial.fail("trial", e);
        }
    }
    trial.record.overhead_ms = trial.clock.overhead_ms();
}

/// Fills the record as it goes, so a failure keeps what was measured
/// before it.
async fn checkpoint_and_restore<E: Engine>(
    engine: &E,
    trial: &mut Trial,
    stop: &Stop,
) -> Result<()> {
    let container = trial.container.clone().context("no container")?;
    let (record, clock) = (&mut trial.record, &mut trial.clock);
    let checkpoint = "ckpt";
    stop.check()?;
    clock.own(async { engine.clear_phase_stats() }).await;
    let (result, ms) = clock.time(engine.checkpoint(&container, checkpoint)).await;
    record.checkpoint_ms = Some(ms);
    result?;
    clock
        .own(async {
            if let Some(d) = engine.take_dump_stats() {
                record.criu_freezing_ms = Some(us_to_ms(d.freezing_time));
                record.criu_frozen_ms = Some(us_to_ms(d.frozen_time));
                record.criu_memdump_ms = Some(us_to_ms(d.memdump_time));
                record.criu_memwrite_ms = Some(us_to_ms(d.memwrite_time));
                record.criu_pages_scanned = Some(d.pages_scanned);
                record.criu_pages_written = Some(d.pages_written);
            }
            record.checkpoint_bytes = engine.checkpoint_size(&container, checkpoint).await;
        })
        .await;

    let (result, ms) = clock.time(engine.stop(&container)).await;
    record.stop_ms = Some(ms);
    result?;
    stop.check()?;

    let (restored, _) = clock
        .time(engine::restore_with_retry(engine, &container, checkpoint))
        .await;
    let restored = restored?;
    let (after, _) = clock.time(engine.processes(&container)).await;
    let after = after.context("listing the restored container's processes")?;
    let before = &trial.before;
    clock
        .own(async {
            record.restore_ms = Some(millis(restored.took));
            record.restore_retries = restored.retries;
            if let Some(r) = engine.take_restore_stats() {
                record.criu_forking_ms = Some(us_to_ms(r.forking_time));
                record.criu_restore_ms = Some(us_to_ms(r.restore_time));
                record.criu_pages_restored = r.pages_restored;
            }
            record.processes_after = Some(after.len() as u32);
            record.verified = same_pids(before, &after);
            if record.verified {
                record.status = Status::Ok;
            } else {
                record.error = Some(format!(
                    "after the restore the container runs pids {after:?}, before it ran {before:?}"
                ));
            }
        })
        .await;
    Ok(())
}

/// The same set of pids, whatever the order.
pub fn same_pids(before: &[u32], after: &[u32]) -> bool {
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
