//! Container engines behind one small trait. Everything engine-specific
//! (APIs, paths, quirks) stays in the engine's own file; the runner, the
//! demo and the sweep only speak this trait.

pub mod any;
pub mod criu;
pub mod criu_stats;
pub mod moby;
pub mod os;
pub mod runc;
pub(crate) mod user_rootfs;

use std::time::Duration;

use anyhow::{Context, Result};

use crate::model::{EngineKind, ImageSpec, RunSpec};
use crate::run::RunId;
use criu_stats::PhaseStats;

/// A workload image the engine can start containers from.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference the engine knows it by (a tag for Docker).
    pub reference: String,
    /// Size of the image in bytes, as the engine reports it.
    pub size_bytes: u64,
    /// ckpt built it and removes it; a user's image is never removed.
    pub owned: bool,
}

/// A container: one ckpt created (and so must remove), or one of the
/// user's it moves (`migrate --container`), never removed.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub id: String,
    pub name: String,
}

/// The operations a checkpoint experiment needs. All calls are made by the
/// client and timed by the caller, so an engine must not sleep or retry
/// inside a timed call on its own.
#[allow(async_fn_in_trait)]
pub trait Engine {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Short name used in records and messages ("docker").
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// Builds the workload image for this run (labelled with the run id),
    /// or looks up the user's image.
    async fn build_image(&self, run: &RunId, spec: &ImageSpec) -> Result<Image>;

    /// Creates and starts a container from `image`.
    async fn run(&self, run: &RunId, image: &Image, spec: &RunSpec) -> Result<Container>;

    /// Waits until the container's output holds a line matching `wanted`,
    /// after skipping the first `skip` matching lines; returns that line.
    async fn wait_for_line(
        &self,
        container: &Container,
        skip: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        timeout: Duration,
    ) -> Result<String>;

    /// Everything the container printed so far.
    async fn logs(&self, container: &Container) -> Result<Vec<String>>;

    /// Runs `argv` inside the running container (its namespaces, root
    /// and environment) and waits for it: the user's --setup-cmd and
    /// --check-cmd.
    async fn exec(&self, _container: &Container, _argv: &[String]) -> Result<Executed> {
        anyhow::bail!(
            "the {} engine cannot run a command inside its containers (--setup-cmd, --check-cmd): use docker, podman or runc",
            self.name()
        )
    }

    /// Checkpoints the container; the container is stopped afterwards.
    /// Returns where CRIU left its statistics of the dump.
    async fn checkpoint(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats>;

    /// Stops the container (a no-op when the checkpoint already stopped it).
    async fn stop(&self, container: &Container) -> Result<()>;

    /// Starts the container again from the checkpoint. Returns where CRIU
    /// left its statistics of the restore.
    async fn restore(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats>;

    /// Checkpoints for a move to another host, memory pages going where
    /// `pages` says. Only the daemon-less engines can: Docker and Podman
    /// checkpoint into their own directories (stop-and-copy through
    /// `checkpoint` and their storage).
    async fn checkpoint_for_migration(
        &self,
        _container: &Container,
        _checkpoint: &str,
        _pages: PageDestination,
    ) -> Result<Dumped> {
        anyhow::bail!(
            "the {} engine cannot migrate yet: use runc or criu",
            self.name()
        )
    }

    /// Restores a migrated checkpoint whose memory stayed at the source:
    /// pages are fetched on demand by a `criu lazy-pages` daemon that
    /// listens in the checkpoint's work directory.
    async fn restore_lazily(
        &self,
        _container: &Container,
        _checkpoint: &str,
    ) -> Result<PhaseStats> {
        anyhow::bail!("the {} engine cannot restore lazily", self.name())
    }

    /// Where everything of `container` lies that a destination needs:
    /// `images/<checkpoint>/` and `work/<checkpoint>/`, and runc's
    /// `config.json`. None for engines that keep it in a daemon.
    fn container_dir(&self, _container: &Container) -> Option<std::path::PathBuf> {
        None
    }

    /// Whether a failed restore is one the engine is known to recover from
    /// when asked again (the caller retries it on `restore_retry_delays`).
    fn is_transient_restore_error(&self, _message: &str) -> bool {
        false
    }

    /// How long to wait before each retry of a transient restore failure.
    fn restore_retry_delays(&self) -> &'static [u64] {
        &[]
    }

    /// The host pid of the container's first process.
    async fn root_pid(&self, container: &Container) -> Result<u32>;

    /// Process ids of the container's processes, as seen inside it.
    async fn processes(&self, container: &Container) -> Result<Vec<u32>> {
        os::proctree::namespace_pids(self.root_pid(container).await?)
    }

    /// Resident memory of the container's processes, in bytes.
    async fn resident_bytes(&self, container: &Container) -> Option<u64> {
        os::proctree::resident_bytes(self.root_pid(container).await.ok()?).ok()
    }

    /// Sends `signal` to the container's first process. ckpt runs as root
    /// on the engine's host, so a host pid reaches into any container
    /// alike, without an engine call.
    async fn signal(&self, container: &Container, signal: i32) -> Result<()> {
        let pid = self.root_pid(container).await?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        // SAFETY: kill has no memory-safety preconditions.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("signalling container {}", container.name));
        }
        Ok(())
    }

    /// Where the checkpoint's image files are, when the engine's storage
    /// is readable from here.
    fn checkpoint_path(
        &self,
        container: &Container,
        checkpoint: &str,
    ) -> Option<std::path::PathBuf>;

    /// Where the container's OCI runtime spec can be read while it runs
    /// (for `ckpt export`'s spec.dump). None when the engine keeps it out
    /// of reach.
    fn runtime_spec(&self, _container: &Container) -> Option<std::path::PathBuf> {
        None
    }

    /// Bytes the checkpoint occupies on disk.
    async fn checkpoint_size(&self, container: &Container, checkpoint: &str) -> Option<u64> {
        dir_size(&self.checkpoint_path(container, checkpoint)?)
    }

    async fn remove_checkpoint(&self, container: &Container, checkpoint: &str) -> Result<()>;

    /// Stops (if needed) and removes the container and its checkpoints.
    async fn remove_container(&self, container: &Container) -> Result<()>;

    async fn remove_image(&self, image: &Image) -> Result<()>;

    /// Removes every object labelled with `run`; returns how many. Used on
    /// success, failure and interruption alike, so it must be idempotent.
    async fn remove_run(&self, run: &RunId) -> Result<usize>;

    /// Removes objects of runs whose ckpt process is gone (`ckpt gc`).
    async fn remove_orphans(&self) -> Result<usize>;

    /// Whether the engine answers (a daemon's ping). Daemon-less engines
    /// always do.
    async fn healthy(&self) -> Result<()> {
        Ok(())
    }

    /// Which run of the engine's daemon answers (its pid): a trial that
    /// failed while the daemon was replaced failed because of the outage,
    /// even when the new daemon already answers. None without a daemon.
    fn incarnation(&self) -> Option<String> {
        None
    }
}

/// What a command run inside a container printed (stdout and stderr
/// together) and how it exited.
#[derive(Debug, Clone)]
pub struct Executed {
    pub code: i64,
    pub output: String,
}

/// Runs `argv` in the container within `timeout`; a non-zero exit is an
/// error quoting the command's last words.
pub(crate) async fn exec_checked<E: Engine>(
    engine: &E,
    container: &Container,
    argv: &[String],
    timeout: std::time::Duration,
) -> Result<String> {
    let shown = argv.join(" ");
    let ran = tokio::time::timeout(timeout, engine.exec(container, argv))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "`{shown}` did not finish within {} s inside the container",
                timeout.as_secs()
            )
        })?
        .with_context(|| format!("running `{shown}` inside the container"))?;
    if ran.code != 0 {
        anyhow::bail!(
            "`{shown}` exited with status {} inside the container: {}",
            ran.code,
            crate::workload::shorten(&ran.output)
        );
    }
    Ok(ran.output)
}

/// Where a migration's memory pages go during the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageDestination {
    /// Into the image directory, copied with it (stop-and-copy).
    Images,
    /// Streamed to a CRIU page server at the destination.
    PageServer(std::net::SocketAddr),
    /// Kept at the source, served from this address until the destination
    /// has fetched them all (post-copy).
    Lazy(std::net::SocketAddr),
}

/// A migration dump that returned: CRIU's statistics, and for lazy pages
/// the dump still serving memory (it exits once every page was fetched).
#[derive(Debug)]
pub struct Dumped {
    pub stats: PhaseStats,
    pub serving: Option<tokio::process::Child>,
}

/// How a restore went: retries after a transient error, the wall time of
/// the attempt that succeeded (a failed attempt is not a restore), and
/// where CRIU left its statistics.
#[derive(Debug, Clone)]
pub struct Restored {
    pub retries: u32,
    pub took: std::time::Duration,
    pub stats: PhaseStats,
}

/// Restores, retrying on the engine's known transient failures (which
/// leave the container stopped and the checkpoint intact). The engine says
/// which errors those are and how long to wait; the waiting happens here,
/// between timed attempts, never inside one.
pub(crate) async fn restore_with_retry<E: Engine>(
    engine: &E,
    container: &Container,
    checkpoint: &str,
) -> Result<Restored> {
    let mut retries = 0;
    loop {
        let started = std::time::Instant::now();
        match engine.restore(container, checkpoint).await {
            Ok(stats) => {
                return Ok(Restored {
                    retries,
                    took: started.elapsed(),
                    stats,
                });
            }
            Err(e) if engine.is_transient_restore_error(&format!("{e:#}")) => {
                let Some(&delay) = engine.restore_retry_delays().get(retries as usize) else {
                    return Err(e.context(format!("still failing after {retries} retries")));
                };
                tracing::info!("restore hit a transient error, retrying in {delay} ms: {e:#}");
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sets loopback up in a restored container's network namespace: runc
/// (under Docker and Podman too) restores a new namespace with loopback
/// down, so a program serving on it would answer nobody. Part of restoring
/// a user's program; ckpt's own workload holds no socket and skips it.
pub(crate) async fn serve_on_loopback<E: Engine>(engine: &E, container: &Container) -> Result<()> {
    let pid = engine.root_pid(container).await?;
    os::netns::loopback_up(pid)
}

/// Total bytes of the regular files under `dir` (None when unreadable).
pub(crate) fn dir_size(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let meta = entry.metadata().ok()?;
        let size = if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
        total = total.saturating_add(size);
    }
    Some(total)
}
