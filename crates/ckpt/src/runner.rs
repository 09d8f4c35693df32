//! One trial: run a fresh container, wait until the workload is ready,
//! checkpoint (timed), stop (timed), restore (timed), verify that the same
//! processes are alive, remove the container. Every step's failure is
//! recorded, never thrown: a sweep goes on after a failed trial.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cleanup::RunId;
use crate::engine::{self, Container, Engine, Image, RunSpec};
use crate::plan::TrialSpec;
use crate::records::{Status, TrialRecord};
use crate::workload;

/// Interval at which the forker's processes print their pid.
const WORKLOAD_INTERVAL_MS: u64 = 1000;
/// How long a workload may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Accumulates the time spent waiting on the engine, so that the rest of
/// the trial's wall time can be reported as ckpt's own overhead.
struct Stopwatch {
    started: Instant,
    external: Duration,
}

impl Stopwatch {
    fn new() -> Stopwatch {
        Stopwatch {
            started: Instant::now(),
            external: Duration::ZERO,
        }
    }

    /// Runs an engine call, counts its time as external, returns its
    /// result and its duration in milliseconds.
    async fn time<T>(&mut self, call: impl Future<Output = Result<T>>) -> (Result<T>, f64) {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        self.external += took;
        (result, millis(took))
    }

    fn overhead_ms(&self) -> f64 {
        millis(self.started.elapsed().saturating_sub(self.external))
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs one trial and returns its record, whatever happened.
pub async fn run_trial<E: Engine>(engine: &E, run: &RunId, image: &Image, spec: &TrialSpec) -> TrialRecord {
    let mut clock = Stopwatch::new();
    let mut record = TrialRecord {
        run_id: run.to_string(),
        trial: spec.index,
        engine: engine.name().to_string(),
        children: spec.children,
        repetition: spec.repetition,
        warmup: spec.warmup,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        image_bytes: Some(image.size_bytes),
        run_ms: None,
        ready_ms: None,
        checkpoint_ms: None,
        stop_ms: None,
        restore_ms: None,
        restore_retries: 0,
        checkpoint_bytes: None,
        processes_before: None,
        processes_after: None,
        verified: false,
        remove_ms: None,
        overhead_ms: 0.0,
        status: Status::Failed,
        error: None,
    };
    let run_spec = RunSpec {
        name: run.name(&format!("t{}-n{}", spec.index, spec.children)),
        args: workload::forker_args(spec.children, WORKLOAD_INTERVAL_MS),
    };
    let (created, run_ms) = clock.time(engine.run(run, image, &run_spec)).await;
    record.run_ms = Some(run_ms);
    let container = match created {
        Ok(c) => c,
        Err(e) => return failed(record, &clock, "run", e),
    };
    let outcome = checkpoint_and_restore(engine, &container, spec, &mut record, &mut clock).await;
    let (removed, remove_ms) = clock.time(engine.remove_container(&container)).await;
    record.remove_ms = Some(remove_ms);
    match (outcome, removed) {
        (Err(e), _) => failed(record, &clock, "trial", e),
        (Ok(()), Err(e)) => failed(record, &clock, "remove", e),
        (Ok(()), Ok(())) => {
            record.status = if record.verified { Status::Ok } else { Status::Unverified };
            record.overhead_ms = clock.overhead_ms();
            record
        }
    }
}

fn failed(mut record: TrialRecord, clock: &Stopwatch, step: &str, error: anyhow::Error) -> TrialRecord {
    record.status = Status::Failed;
    record.error = Some(format!("{step}: {error:#}"));
    record.overhead_ms = clock.overhead_ms();
    record
}

/// The measured part of a trial, from a running container to a verified
/// restored one. Fills `record` as it goes, so a failure keeps what was
/// measured before it.
async fn checkpoint_and_restore<E: Engine>(
    engine: &E,
    container: &Container,
    spec: &TrialSpec,
    record: &mut TrialRecord,
    clock: &mut Stopwatch,
) -> Result<()> {
    let (ready, ready_ms) = clock
        .time(engine.wait_for_line(container, 0, &workload::is_ready, READY_TIMEOUT))
        .await;
    record.ready_ms = Some(ready_ms);
    let ready = ready.context("waiting for the workload to be ready")?;
    let before = workload::ready_pids(&ready)
        .with_context(|| format!("the workload's ready line has no pid list: {ready}"))?;
    record.processes_before = Some(before.len() as u32);
    if before.len() != spec.children as usize + 1 {
        bail!("expected {} processes, the workload reported {}", spec.children + 1, before.len());
    }

    let checkpoint = "ckpt";
    let (result, ms) = clock.time(engine.checkpoint(container, checkpoint)).await;
    record.checkpoint_ms = Some(ms);
    result?;
    record.checkpoint_bytes = engine.checkpoint_size(container, checkpoint).await;

    let (result, ms) = clock.time(engine.stop(container)).await;
    record.stop_ms = Some(ms);
    result?;

    let (restored, _) = clock
        .time(engine::restore_with_retry(engine, container, checkpoint))
        .await;
    let restored = restored?;
    record.restore_ms = Some(millis(restored.took));
    record.restore_retries = restored.retries;

    let (after, _) = clock.time(engine.processes(container)).await;
    let after = after.context("listing the restored container's processes")?;
    record.processes_after = Some(after.len() as u32);
    record.verified = same_pids(&before, &after);
    if !record.verified {
        record.error = Some(format!(
            "after the restore the container runs pids {after:?}, before it ran {before:?}"
        ));
    }
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
    async fn stopwatch_separates_engine_time_from_overhead() {
        let mut clock = Stopwatch::new();
        let (r, ms) = clock
            .time(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(())
            })
            .await;
        r.unwrap();
        assert!(ms >= 30.0, "{ms}");
        assert!(clock.overhead_ms() < 10.0, "{}", clock.overhead_ms());
    }
}
