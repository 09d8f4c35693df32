//! Checks of a restored workload that any engine's container allows: ckpt's
//! forker answers SIGUSR1 with a `state` line per process (memory checksum,
//! threads, open files), read from the container's output. Used after a
//! restore on the same host (sweep) and on a migration's destination.

use std::time::Duration;

use anyhow::{bail, Context, Result};

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
    // With no process there is no answer to wait for (and `len() - 1`
    // would wrap around: a wait for the 2^64th line until the timeout).
    let Some(last) = pids.len().checked_sub(1) else {
        bail!("no process found in the restored container: nothing answered the state check");
    };
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
        .wait_for_line(container, earlier + last, &is_report, CHECK_TIMEOUT)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::criu_stats::PhaseStats;
    use crate::engine::Image;
    use crate::model::{EngineKind, ImageSpec, RunSpec};
    use crate::run::RunId;

    /// An engine whose container printed nothing and whose waits end at
    /// once, as a timeout would: only the calls `check_state` makes work.
    struct Silent;

    impl Engine for Silent {
        fn kind(&self) -> EngineKind {
            EngineKind::Criu
        }
        async fn build_image(&self, _: &RunId, _: &ImageSpec) -> Result<Image> {
            unimplemented!()
        }
        async fn run(&self, _: &RunId, _: &Image, _: &RunSpec) -> Result<Container> {
            unimplemented!()
        }
        async fn wait_for_line(
            &self,
            _: &Container,
            skip: usize,
            _: &(dyn Fn(&str) -> bool + Sync),
            _: Duration,
        ) -> Result<String> {
            bail!("timed out waiting for line {skip}")
        }
        async fn logs(&self, _: &Container) -> Result<Vec<String>> {
            Ok(Vec::new())
        }
        async fn signal(&self, _: &Container, _: i32) -> Result<()> {
            Ok(())
        }
        async fn checkpoint(&self, _: &Container, _: &str) -> Result<PhaseStats> {
            unimplemented!()
        }
        async fn stop(&self, _: &Container) -> Result<()> {
            unimplemented!()
        }
        async fn restore(&self, _: &Container, _: &str) -> Result<PhaseStats> {
            unimplemented!()
        }
        async fn root_pid(&self, _: &Container) -> Result<u32> {
            unimplemented!()
        }
        fn checkpoint_path(&self, _: &Container, _: &str) -> Option<std::path::PathBuf> {
            None
        }
        async fn remove_checkpoint(&self, _: &Container, _: &str) -> Result<()> {
            unimplemented!()
        }
        async fn remove_container(&self, _: &Container) -> Result<()> {
            unimplemented!()
        }
        async fn remove_image(&self, _: &Image) -> Result<()> {
            unimplemented!()
        }
        async fn remove_run(&self, _: &RunId) -> Result<usize> {
            unimplemented!()
        }
        async fn remove_orphans(&self) -> Result<usize> {
            unimplemented!()
        }
    }

    fn container() -> Container {
        Container {
            id: "c".into(),
            name: "c".into(),
        }
    }

    #[tokio::test]
    async fn no_process_is_reported_without_waiting() {
        let err = check_state(&Silent, &container(), &[], (0, 0))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("no process found"), "{err:#}");
    }

    #[tokio::test]
    async fn the_last_processs_answer_is_awaited() {
        let err = check_state(&Silent, &container(), &[7, 8, 9], (0, 0))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
    }
}
