//! Migration: move a running container to another host and measure what
//! its users see. The source checkpoints (memory pages into the images, to
//! a CRIU page server at the destination, or left at the source for
//! post-copy), sends the rest over a mutual-TLS link to `ckpt serve`, which
//! restores and checks it. Downtime runs on the source's monotonic clock
//! from the checkpoint request to the destination's "restored".

mod described;
pub mod link;
mod measured;
pub mod meter;
mod mover;
pub mod program;
pub mod serve;
mod session;
mod start;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{bail, Result};

use crate::model::{EngineKind, MigrationMethod, Point};
use crate::run::{RunId, Stop};
pub(crate) use measured::{tick_times, TICK_MS};
pub use measured::{Migration, Phase};
pub use session::Session;

/// What to move, how, and over which link.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub engine: EngineKind,
    pub method: MigrationMethod,
    pub point: Point,
    /// tc's rate syntax (`1gbit`), for the link to the throwaway host.
    pub link_rate: Option<String>,
    /// A program of the user's (runc) instead of ckpt's forker.
    pub program: Option<crate::program::UserProgram>,
}

/// The port the source's lazy dump serves pages on.
pub const LAZY_PORT: u16 = 7208;

/// Where a migration goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A throwaway host on this machine; `link_rate` (tc's syntax) shapes
    /// its link; `once`: its server serves a single migration.
    Throwaway {
        link_rate: Option<String>,
        once: bool,
    },
    /// A `ckpt serve` that runs elsewhere.
    Remote(Remote),
}

/// A destination the user runs, and the user's credentials for it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `HOST:PORT` of its `ckpt serve`.
    pub to: String,
    pub creds: tls::Credentials,
    /// Where the source serves lazy pages; by default the local address of
    /// the connection to `to`, port 7208.
    pub lazy_listen: Option<SocketAddr>,
}

/// Moves a fresh workload at `options.point` from this host to a throwaway
/// host on this machine, and removes everything on both sides afterwards.
pub async fn migrate_to_throwaway(
    options: &MigrateOptions,
    run: &RunId,
    stop: &Stop,
) -> Result<Migration> {
    let target = Target::Throwaway {
        link_rate: options.link_rate.clone(),
        once: true,
    };
    migrate_to(options, &target, run, stop).await
}

/// Moves a fresh workload at `options.point` from this host to `target`,
/// and removes everything ckpt made afterwards.
pub async fn migrate_to(
    options: &MigrateOptions,
    target: &Target,
    run: &RunId,
    stop: &Stop,
) -> Result<Migration> {
    refuse_unsupported(options, matches!(target, Target::Remote(_)))?;
    if let Some(program) = &options.program {
        program::check_plan(program, options.engine, run).await?;
    }
    let session = Session::open(options.engine, run, target).await?;
    let host = (&session.host, &session.client);
    let name = run.name("mover");
    let outcome = mover::move_one(
        &session.source,
        options,
        &name,
        run,
        stop,
        host,
        &session.dir,
    )
    .await;
    session.close(run).await;
    outcome
}

/// Refuses, before anything is made, what the engine cannot do; `remote`:
/// the destination is another machine's.
fn refuse_unsupported(options: &MigrateOptions, remote: bool) -> Result<()> {
    if !options.engine.migration_methods().contains(&options.method) {
        bail!(
            "the {} engine cannot migrate with {}: it can with {}",
            options.engine,
            options.method.name(),
            options
                .engine
                .migration_methods()
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match (options.engine, options.method) {
        (EngineKind::Runc | EngineKind::Docker | EngineKind::Podman, _) => Ok(()),
        (EngineKind::Criu, MigrationMethod::Lazy) if !remote => bail!(
            "lazy migration of a criu process tree needs a destination on another machine: the source keeps the tree frozen until its last page is fetched, and CRIU restores the same pids, which on one machine are still taken"
        ),
        (EngineKind::Criu, _) => Ok(()),
    }
}

/// For `ckpt gc`: the work directories (credentials) of dead migrations,
/// and the scratch directories of dead `ckpt serve` processes (a Docker or
/// Podman move's checkpoint: its memory, on tmpfs).
pub fn remove_orphans() -> Result<usize> {
    remove_orphans_in(Path::new(crate::model::STATE_ROOT))
}

fn remove_orphans_in(root: &Path) -> Result<usize> {
    let mut removed = 0;
    for side in ["migrate", "serve"] {
        for dir in crate::engine::os::rundir::orphans_in(root, side) {
            crate::engine::os::rundir::remove(&dir)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_removes_the_directories_of_dead_serve_and_migrate_processes() {
        let root = tempfile::tempdir().unwrap();
        let live = crate::run::testing::FakeCkpt::start();
        let dead = format!("{} 1", crate::run::testing::dead_pid());
        let made = [
            ("serve/run-a", &dead),
            ("serve/run-b", &live.record()),
            ("migrate/run-c", &dead),
            ("migrate/run-d", &live.record()),
        ];
        for (dir, owner) in made {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(dir.join("images/checkpoint")).unwrap();
            std::fs::write(dir.join("owner.pid"), owner).unwrap();
        }
        assert_eq!(remove_orphans_in(root.path()).unwrap(), 2);
        for (dir, owner) in made {
            let kept = root.path().join(dir).exists();
            assert_eq!(kept, *owner != dead, "{dir}");
        }
        assert_eq!(remove_orphans_in(root.path()).unwrap(), 0);
    }
}
