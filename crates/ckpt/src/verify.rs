//! Checks of a restored workload that any engine's container allows: ckpt's
//! forker answers SIGUSR1 with a `state` line per process (memory checksum,
//! threads, open files), read from the container's output. Used after a
//! restore on the same host (sweep) and on a migration's destination.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::engine::{Container, Engine};
use crate::workload::{StateReport, StateVerdict};

/// How long the restored processes may take to answer (large memory is
/// checksummed page by page).
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Asks every process of the forker to check its memory, threads and open
/// files (SIGUSR1 to the parent, which passes it on) and waits for all
/// their answers: memory, threads and files judged apart.
pub(crate) async fn check_state<E: Engine>(
    engine: &E,
    container: &Container,
    pids: &[u32],
    (threads, files): (u32, u32),
) -> Result<StateVerdict> {
    let is_report = |l: &str| StateReport::parse(l).is_ok();
    // Answers to earlier requests (none in a sweep) would be counted twice.
    let earlier = engine
        .logs(container)
        .await?
        .iter()
        .filter(|l| is_report(l))
        .count();
    engine.signal(container, libc::SIGUSR1).await?;
    engine
        .wait_for_line(
            container,
            earlier + pids.len() - 1,
            &is_report,
            CHECK_TIMEOUT,
        )
        .await
        .context("waiting for the restored processes to check their memory, threads and files")?;
    let reports: Vec<StateReport> = engine
        .logs(container)
        .await?
        .iter()
        .filter_map(|l| StateReport::parse(l).ok())
        .skip(earlier)
        .collect();
    Ok(StateVerdict::judge(&reports, pids, threads, files))
}
