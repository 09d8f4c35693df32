//! One type for "any engine", so that a sweep can interleave the trials of
//! several engines. Each call is forwarded to the engine inside.

use std::time::Duration;

use anyhow::Result;

use super::criu::CriuEngine;
use super::criu_stats::PhaseStats;
use super::moby::DockerEngine;
use super::runc::RuncEngine;
use super::{Container, Engine, Image};
use crate::model::{EngineKind, ImageSpec, RunSpec};
use crate::run::RunId;

pub enum AnyEngine {
    Docker(DockerEngine),
    Runc(RuncEngine),
    Criu(CriuEngine),
}

/// Forwards a call to whichever engine this is.
macro_rules! forward {
    ($self:ident, $engine:ident => $call:expr) => {
        match $self {
            AnyEngine::Docker($engine) => $call,
            AnyEngine::Runc($engine) => $call,
            AnyEngine::Criu($engine) => $call,
        }
    };
}

impl Engine for AnyEngine {
    fn kind(&self) -> EngineKind {
        forward!(self, e => e.kind())
    }

    async fn build_image(&self, run: &RunId, spec: &ImageSpec) -> Result<Image> {
        forward!(self, e => e.build_image(run, spec).await)
    }

    async fn run(&self, run: &RunId, image: &Image, spec: &RunSpec) -> Result<Container> {
        forward!(self, e => e.run(run, image, spec).await)
    }

    async fn wait_for_line(
        &self,
        container: &Container,
        skip: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        timeout: Duration,
    ) -> Result<String> {
        forward!(self, e => e.wait_for_line(container, skip, wanted, timeout).await)
    }

    async fn logs(&self, container: &Container) -> Result<Vec<String>> {
        forward!(self, e => e.logs(container).await)
    }

    async fn exec(&self, container: &Container, argv: &[String]) -> Result<super::Executed> {
        forward!(self, e => e.exec(container, argv).await)
    }

    async fn checkpoint(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        forward!(self, e => e.checkpoint(container, checkpoint).await)
    }

    async fn stop(&self, container: &Container) -> Result<()> {
        forward!(self, e => e.stop(container).await)
    }

    async fn restore(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        forward!(self, e => e.restore(container, checkpoint).await)
    }

    async fn checkpoint_for_migration(
        &self,
        container: &Container,
        checkpoint: &str,
        pages: super::PageDestination,
    ) -> Result<super::Dumped> {
        forward!(self, e => e.checkpoint_for_migration(container, checkpoint, pages).await)
    }

    async fn restore_lazily(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        forward!(self, e => e.restore_lazily(container, checkpoint).await)
    }

    fn container_dir(&self, container: &Container) -> Option<std::path::PathBuf> {
        forward!(self, e => e.container_dir(container))
    }

    fn is_transient_restore_error(&self, message: &str) -> bool {
        forward!(self, e => e.is_transient_restore_error(message))
    }

    fn restore_retry_delays(&self) -> &'static [u64] {
        forward!(self, e => e.restore_retry_delays())
    }

    async fn root_pid(&self, container: &Container) -> Result<u32> {
        forward!(self, e => e.root_pid(container).await)
    }

    fn runtime_spec(&self, container: &Container) -> Option<std::path::PathBuf> {
        forward!(self, e => e.runtime_spec(container))
    }

    fn checkpoint_path(
        &self,
        container: &Container,
        checkpoint: &str,
    ) -> Option<std::path::PathBuf> {
        forward!(self, e => e.checkpoint_path(container, checkpoint))
    }

    async fn remove_checkpoint(&self, container: &Container, checkpoint: &str) -> Result<()> {
        forward!(self, e => e.remove_checkpoint(container, checkpoint).await)
    }

    async fn remove_container(&self, container: &Container) -> Result<()> {
        forward!(self, e => e.remove_container(container).await)
    }

    async fn remove_image(&self, image: &Image) -> Result<()> {
        forward!(self, e => e.remove_image(image).await)
    }

    async fn remove_run(&self, run: &RunId) -> Result<usize> {
        forward!(self, e => e.remove_run(run).await)
    }

    async fn remove_orphans(&self) -> Result<usize> {
        forward!(self, e => e.remove_orphans().await)
    }

    async fn healthy(&self) -> Result<()> {
        forward!(self, e => e.healthy().await)
    }

    fn incarnation(&self) -> Option<String> {
        forward!(self, e => e.incarnation())
    }
}

/// Opens the engines. Docker's daemon facts come back for env.json.
/// `stats` is where CRIU leaves its statistics for the runc-based engines
/// (see `criu_stats`).
pub async fn open(
    kinds: &[EngineKind],
    run: &RunId,
    stats: Option<std::sync::Arc<super::criu_stats::StatsCapture>>,
) -> Result<(Vec<AnyEngine>, Option<super::moby::DaemonFacts>)> {
    open_with(kinds, run, stats, Options::default()).await
}

/// How the engines checkpoint, beyond their defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Established TCP connections are checkpointed and restored
    /// (runc and Podman only; the plan refuses the others).
    pub tcp_established: bool,
    /// runc's containers get a writable root filesystem.
    pub writable_rootfs: bool,
}

/// `open`, with `options`.
pub async fn open_with(
    kinds: &[EngineKind],
    run: &RunId,
    stats: Option<std::sync::Arc<super::criu_stats::StatsCapture>>,
    options: Options,
) -> Result<(Vec<AnyEngine>, Option<super::moby::DaemonFacts>)> {
    let mut engines = Vec::new();
    let mut facts = None;
    for kind in kinds {
        engines.push(match kind {
            EngineKind::Docker => {
                let (mut docker, daemon) = DockerEngine::connect_checked().await?;
                docker.use_criu_stats(stats.clone());
                facts = Some(daemon);
                AnyEngine::Docker(docker)
            }
            EngineKind::Podman => {
                let service = super::moby::podman::Service::start(run)?;
                let mut podman = DockerEngine::podman(service).await?;
                podman.use_criu_stats(stats.clone());
                podman.tcp_established = options.tcp_established;
                AnyEngine::Docker(podman)
            }
            EngineKind::Runc => {
                let mut runc = RuncEngine::new(stats.clone());
                runc.tcp_established = options.tcp_established;
                if options.writable_rootfs {
                    runc = runc.with_writable_rootfs();
                }
                AnyEngine::Runc(runc)
            }
            EngineKind::Criu => {
                let mut criu = CriuEngine::new();
                criu.tcp_established = options.tcp_established;
                AnyEngine::Criu(criu)
            }
        });
    }
    Ok((engines, facts))
}

/// Removes what runs of `kind` whose ckpt process is gone left behind
/// (`ckpt gc`); returns how many objects. Each engine is reached its own
/// way: the daemon-less ones through their run directories, Docker through
/// its daemon, Podman through a service of our own (the dead run's service
/// went with it).
pub async fn remove_orphans(kind: EngineKind) -> Result<usize> {
    match kind {
        EngineKind::Runc => RuncEngine::new(None).remove_orphans().await,
        EngineKind::Criu => CriuEngine::new().remove_orphans().await,
        EngineKind::Docker => {
            let (docker, _) = DockerEngine::connect_any().await?;
            docker.remove_orphans().await
        }
        EngineKind::Podman => {
            let mut removed = super::moby::podman::remove_orphans()?;
            let service = super::moby::podman::Service::start(&RunId::new())?;
            removed += DockerEngine::podman(service)
                .await?
                .remove_orphans()
                .await?;
            Ok(removed)
        }
    }
}
