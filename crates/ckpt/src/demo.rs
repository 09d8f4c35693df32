//! `ckpt demo`: the seed's lifecycle demo in nine timed
//! steps, with a continuity check of the restored Fibonacci printer.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::engine::{self, Container, Engine, Image};
use crate::model::{ImageSpec, Network, RunSpec};
use crate::run::{RunId, Stop};
use crate::stdout;
use crate::workload::{self, Continuity, FibStep};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Time between two Fibonacci numbers.
    pub interval: Duration,
    /// How long the program runs before the checkpoint.
    pub run_for: Duration,
}

/// What the demo established, for the caller to print and to set the exit
/// status from.
#[derive(Debug)]
pub struct DemoOutcome {
    pub continuity: Continuity,
}

/// Prints one step with its duration; the step's error is passed through
/// with the step named, so the user sees where it broke.
async fn step<T>(number: u8, title: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = work.await;
    let took = started.elapsed().as_secs_f64();
    let verdict = if result.is_ok() { "ok" } else { "FAILED" };
    stdout::println(&format!("{number}. {title:<42} {took:>8.3} s  {verdict}"))?;
    result.map_err(|e| e.context(format!("step {number} ({title})")))
}

/// The name of the demo's one checkpoint.
const CHECKPOINT: &str = "ckpt-demo";

/// Runs the nine steps. The caller removes whatever is left (by run label)
/// whether this returns, fails or is cancelled.
pub async fn run<E: Engine>(
    engine: &E,
    run: &RunId,
    options: &DemoOptions,
    stop: &Stop,
) -> Result<DemoOutcome> {
    let interval_ms = interval_ms(options)?;
    stdout::println(&format!(
        "ckpt demo: engine {}, run {run}, a Fibonacci number every {:?}, checkpoint after {:?}",
        engine.name(),
        options.interval,
        options.run_for
    ))?;
    let image = step(
        1,
        "build the image",
        engine.build_image(run, &ImageSpec::default()),
    )
    .await?;
    stop.check()?;
    let container = start(engine, run, &image, interval_ms, stop).await?;
    stop.unless_stopped(async {
        tokio::time::sleep(options.run_for).await;
        Ok(())
    })
    .await?;
    let before = step(3, "print the logs", engine.logs(&container)).await?;
    print_fib_lines("   ", &before)?;
    let before = checkpoint_and_restore(engine, &container).await?;
    let continuity = continuity_after_restore(engine, &container, &before, options, stop).await?;
    clean_up(engine, &container, &image).await?;
    Ok(DemoOutcome { continuity })
}

/// The interval in whole milliseconds, as the workload takes it; 0 would
/// make it print as fast as it can.
fn interval_ms(options: &DemoOptions) -> Result<u64> {
    let interval_ms = u64::try_from(options.interval.as_millis()).unwrap_or(u64::MAX);
    if interval_ms == 0 {
        bail!("the interval must be at least 1 ms");
    }
    Ok(interval_ms)
}

/// Step 2: starts the Fibonacci printer and waits until it says it is
/// ready, so that the run time before the checkpoint counts from there.
async fn start<E: Engine>(
    engine: &E,
    run: &RunId,
    image: &Image,
    interval_ms: u64,
    stop: &Stop,
) -> Result<Container> {
    let spec = RunSpec {
        name: run.name("fib"),
        args: workload::fib_args(interval_ms),
        entrypoint: None,
        network: Network::Disabled,
        netns: None,
    };
    step(2, "create and run the container", async {
        let c = engine.run(run, image, &spec).await?;
        let ready = engine.wait_for_line(&c, 0, &workload::is_ready, Duration::from_secs(30));
        stop.unless_stopped(ready).await?;
        Ok(c)
    })
    .await
}

/// Steps 4 to 6: checkpoint, stop, restore. Returns the numbers the
/// program printed before the checkpoint.
async fn checkpoint_and_restore<E: Engine>(
    engine: &E,
    container: &Container,
) -> Result<Vec<FibStep>> {
    step(
        4,
        "create the checkpoint",
        engine.checkpoint(container, CHECKPOINT),
    )
    .await?;
    step(5, "stop the container", engine.stop(container)).await?;
    // Read the log once the container is stopped: nothing can be added now.
    let before = workload::fib_steps(&engine.logs(container).await?);
    let restored = step(
        6,
        "restore from the checkpoint",
        engine::restore_with_retry(engine, container, CHECKPOINT),
    )
    .await?;
    if restored.retries > 0 {
        stdout::println(&format!(
            "   (the restore hit a transient error and was retried {} time(s), after {:?} ms)",
            restored.retries,
            &engine.restore_retry_delays()[..restored.retries as usize]
        ))?;
    }
    Ok(before)
}

/// Waits for the first number the restored program prints and judges
/// whether it follows the last one before the checkpoint; prints the logs.
async fn continuity_after_restore<E: Engine>(
    engine: &E,
    container: &Container,
    before: &[FibStep],
    options: &DemoOptions,
    stop: &Stop,
) -> Result<Continuity> {
    // Two intervals, plus time for a slow restore to settle.
    let wait = options.interval * 2 + Duration::from_secs(10);
    let first_after = stop
        .unless_stopped(engine.wait_for_line(container, before.len(), &workload::is_fib, wait))
        .await?;
    let first_after = workload::fib_steps(&[first_after]).first().copied();
    let verdict = workload::continuity(before, first_after);
    stdout::println("   logs after the restore:")?;
    print_fib_lines("   ", &engine.logs(container).await?)?;
    Ok(verdict)
}

/// Steps 7 to 9: removes what the demo made, newest first.
async fn clean_up<E: Engine>(engine: &E, container: &Container, image: &Image) -> Result<()> {
    step(
        7,
        "remove the checkpoint",
        engine.remove_checkpoint(container, CHECKPOINT),
    )
    .await?;
    step(
        8,
        "stop and remove the container",
        engine.remove_container(container),
    )
    .await?;
    step(9, "remove the image", engine.remove_image(image)).await?;
    Ok(())
}

fn print_fib_lines(indent: &str, lines: &[String]) -> Result<()> {
    for s in workload::fib_steps(lines) {
        stdout::println(&format!("{indent}F({}) = {}", s.index, s.value))?;
    }
    Ok(())
}

/// One sentence on the continuity verdict.
pub fn describe(continuity: &Continuity) -> String {
    match continuity {
        Continuity::Continues { last_before, first_after } => format!(
            "continuity holds: the last number before the checkpoint was F({}) = {}, the first after the restore F({}) = {}",
            last_before.index, last_before.value, first_after.index, first_after.value
        ),
        Continuity::Restarted { last_before, first_after } => format!(
            "continuity BROKEN: the program restarted from F({}) after F({}); the restore did not resume it",
            first_after.index, last_before.index
        ),
        Continuity::Broken { last_before, first_after } => format!(
            "continuity BROKEN: F({}) = {} followed F({}) = {} (expected F({}))",
            first_after.index,
            first_after.value,
            last_before.index,
            last_before.value,
            last_before.index + 1
        ),
        Continuity::Unknown(why) => format!("continuity unknown: {why}"),
    }
}
