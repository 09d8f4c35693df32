//! Migration: move a running container to another host and measure what
//! its users see. The source checkpoints (memory pages into the images, to
//! a CRIU page server at the destination, or left at the source for
//! post-copy), sends the rest over a mutual-TLS link to `ckpt serve`, which
//! restores and checks it. Downtime runs on the source's monotonic clock
//! from the checkpoint request to the destination's "restored".

mod clients;
mod described;
pub mod existing;
pub mod link;
mod measured;
pub mod meter;
mod mover;
pub mod program;
mod segment;
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
pub use clients::ProbeOptions;
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
    /// A service moved with its clients connected (`--probe`).
    pub probe: Option<ProbeOptions>,
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
    let remote = matches!(target, Target::Remote(_));
    refuse_unsupported(options, remote)?;
    check_memory(&options.point, remote, &crate::host::envinfo::capacity())?;
    if let Some(program) = &options.program {
        program::check_plan(program, options.engine, run).await?;
    }
    let established = options.probe.is_some();
    let session = Session::open(options.engine, run, target, established).await?;
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
    if options.probe.is_some() {
        refuse_probe(options, remote)?;
    }
    match (options.engine, options.method) {
        (EngineKind::Runc | EngineKind::Docker | EngineKind::Podman, _) => Ok(()),
        (EngineKind::Criu, MigrationMethod::Lazy) if !remote => bail!(
            "lazy migration of a criu process tree needs a destination on another machine: the source keeps the tree frozen until its last page is fetched, and CRIU restores the same pids, which on one machine are still taken"
        ),
        (EngineKind::Criu, _) => Ok(()),
    }
}

/// A service moved with its clients: a program of the user's in a
/// container, to the throwaway host (two machines share no segment of ckpt's).
fn refuse_probe(options: &MigrateOptions, remote: bool) -> Result<()> {
    if remote {
        bail!("--probe needs the throwaway destination: its clients and the service's two places share a network segment ckpt makes on this machine, which another host is not on; drop --to or --probe");
    }
    if options.engine == EngineKind::Criu && options.method != MigrationMethod::Copy {
        bail!("--probe on the criu engine moves by copy: CRIU runs inside the service's namespace, which reaches only its clients, not the destination's page server; use --method copy, or --engine runc");
    }
    if options.program.is_none() {
        bail!("--probe needs a service to probe: give --cmd (and --image but on the criu engine): ckpt's own workload serves nothing");
    }
    Ok(())
}

/// Refuses, before anything starts, a workload whose move cannot fit in
/// this machine's memory. At the peak the source holds the checkpoint
/// (runc and CRIU write it to a tmpfs) while the destination receives it,
/// and a throwaway destination on this machine then restores the tree
/// beside them: three times the tree's memory; two with a remote one.
/// A program of the user's writes what it writes: ckpt cannot know.
fn check_memory(point: &Point, remote: bool, capacity: &crate::model::Capacity) -> Result<()> {
    let tree = (u64::from(point.children) + 1) * u64::from(point.memory_mib);
    let needed = tree * if remote { 2 } else { 3 };
    let available = capacity.memory_available_mib * 9 / 10;
    if needed > available {
        bail!(
            "moving {} processes x {} MiB needs about {needed} MiB of memory on this machine ({}), but {} MiB are available: lower --memory-mib or --children",
            u64::from(point.children) + 1,
            point.memory_mib,
            match remote {
                true => "the tree and its checkpoint",
                false => "the tree, its checkpoint at the source and the copy the throwaway host receives and restores",
            },
            capacity.memory_available_mib
        );
    }
    Ok(())
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
    fn a_move_larger_than_the_memory_is_refused_up_front() {
        let capacity = crate::model::Capacity {
            memory_available_mib: 10_000,
            state_free_mib: 10_000,
        };
        let point = |children, memory_mib| Point {
            children,
            memory_mib,
            ..Default::default()
        };
        assert!(check_memory(&point(2, 1000), false, &capacity).is_ok());
        let said = check_memory(&point(2, 1100), false, &capacity).unwrap_err();
        assert!(said.to_string().contains("needs about 9900 MiB"), "{said}");
        assert!(check_memory(&point(2, 1100), true, &capacity).is_ok());
        assert!(check_memory(&point(0, 99_999_999), true, &capacity).is_err());
    }

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
