//! The user's own container moved (`ckpt migrate --container`): to a
//! throwaway host on this machine (a second dockerd in a network namespace
//! of ckpt's) and back into the same container, so that it ends running
//! where it started, with the same id. Each move is timed and verified by
//! the container's process count and its own check (--check-cmd).
//!
//! The container is the user's: ckpt never removes or reconfigures it, a
//! move that fails resumes it where it was (from the checkpoint just
//! taken), and every failure says where it runs. A signal does not cut a
//! move short: the container comes home first.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::link::Link;
use crate::engine::moby::existing::Existing;
use crate::engine::moby::second::SecondDaemon;
use crate::engine::moby::DockerEngine;
use crate::engine::{Container, Engine};
use crate::model::EngineKind;
use crate::run::{RunId, Stop};
use crate::workload::StateCheck;

/// Which container, on which engine, checked how.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    pub engine: EngineKind,
    /// Its name or id.
    pub container: String,
    /// The container's own check of its state, run before and after each
    /// move.
    pub check: Option<StateCheck>,
}

/// One move of the container: from where to where, its steps' times.
#[derive(Debug, Clone, Serialize)]
pub struct Leg {
    pub from: String,
    pub to: String,
    pub checkpoint_ms: f64,
    pub copy_ms: f64,
    pub restore_ms: f64,
    /// From the checkpoint request until the container runs again.
    pub downtime_ms: f64,
    pub checkpoint_bytes: u64,
    /// Processes running in the container after the move.
    pub processes: usize,
    /// --check-cmd's verdict after the move (None without one).
    pub state_ok: Option<bool>,
    pub state_problem: Option<String>,
}

/// The user's container moved there and back.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerMove {
    pub engine: EngineKind,
    pub container: String,
    pub id: String,
    pub image: String,
    pub processes_before: usize,
    /// Loading its image into the throwaway host and making its twin there
    /// (before the first checkpoint: not in any downtime).
    pub prepare_ms: f64,
    pub moves: Vec<Leg>,
    /// Both moves' --check-cmd verdicts together.
    pub state_ok: Option<bool>,
    /// What the container lacked while away.
    pub notes: Vec<String>,
}

impl ContainerMove {
    /// Both moves made, the same processes after each, no check failed.
    pub fn verified(&self) -> bool {
        self.moves.len() == 2
            && self
                .moves
                .iter()
                .all(|m| m.processes == self.processes_before && m.state_ok != Some(false))
    }
}

/// Where the container is during a move: its engine, its container there
/// and what to call the place in messages.
struct Place<'a> {
    engine: &'a DockerEngine,
    container: &'a Container,
    name: &'static str,
}

/// Moves the user's container to the throwaway host and back.
pub async fn there_and_back(
    options: &ContainerOptions,
    run: &RunId,
    stop: &Stop,
) -> Result<ContainerMove> {
    if options.engine != EngineKind::Docker {
        bail!(
            "--container moves a container of Docker's (give --engine docker); the {} engine's containers it does not move yet",
            options.engine
        );
    }
    let (user, _) = DockerEngine::connect_checked().await?;
    let original = user.existing(&options.container).await?;
    if let Some(reason) = refusal(&original) {
        bail!(
            "ckpt does not move container {}: {reason}. Nothing was changed",
            original.container.name
        );
    }
    let resident = user.resident_bytes(&original.container).await.unwrap_or(0);
    check_memory(
        resident,
        crate::host::envinfo::capacity().memory_available_mib,
    )?;
    let home = Place {
        engine: &user,
        container: &original.container,
        name: "this host",
    };
    let before = match &options.check {
        Some(check) => Some(
            run_check(&home, check)
                .await
                .context("the check before the move failed; nothing was changed")?,
        ),
        None => None,
    };
    let processes_before = user.processes(&original.container).await?.len();
    stop.check()?;
    let away = Away::open(run).await?;
    let stranded = std::cell::Cell::new(false);
    let moved = async {
        let started = Instant::now();
        let twin = away.prepare(&user, &original, run).await?;
        let prepare_ms = ms(started);
        let there = Place {
            engine: &away.engine,
            container: &twin,
            name: "the throwaway host",
        };
        let check = (options.check.as_ref(), before.as_deref());
        let out = leg(&home, &there, &run.name("out"), check).await?;
        let back = leg(&there, &home, &run.name("back"), check)
            .await
            .map_err(|e| {
                stranded.set(true);
                away.stranded(e, &run.name("out"))
            })?;
        let moves = vec![out, back];
        Ok(ContainerMove {
            engine: options.engine,
            container: original.container.name.clone(),
            id: original.container.id.clone(),
            image: original.image_name.clone(),
            processes_before,
            prepare_ms,
            state_ok: options
                .check
                .as_ref()
                .map(|_| moves.iter().all(|m| m.state_ok == Some(true))),
            moves,
            notes: notes(&original),
        })
    }
    .await;
    match stranded.get() {
        true => away.leave_running(),
        false => {
            // The checkpoints hold the container's memory, in its own
            // directory: removed whatever happened (it runs here).
            for checkpoint in [run.name("out"), run.name("back")] {
                let _ = user
                    .remove_checkpoint(&original.container, &checkpoint)
                    .await;
            }
            away.close()
        }
    }
    moved
}

/// Why ckpt will not move `c` (None: it will).
fn refusal(c: &Existing) -> Option<String> {
    if c.status != "running" {
        return Some(format!(
            "it is {}, not running: ckpt moves a running container (`docker start {}` first)",
            c.status, c.container.name
        ));
    }
    if !matches!(c.restart_policy.as_str(), "" | "no") {
        return Some(format!(
            "it has the restart policy '{}': Docker would start it afresh when its checkpoint stops it, while its state is away (`docker update --restart no {}` first)",
            c.restart_policy, c.container.name
        ));
    }
    if c.auto_remove {
        return Some("it was started with --rm: Docker removes it when its checkpoint stops it, and it would have nothing to come back to".into());
    }
    if !c.mounts.is_empty() {
        return Some(format!(
            "it has volumes or bind mounts ({}): their files stay on this host and would not move with it",
            c.mounts.join(", ")
        ));
    }
    if c.devices > 0 {
        return Some(format!(
            "it has {} device(s) of the host's (--device), which another host would not have",
            c.devices
        ));
    }
    if c.privileged {
        return Some(
            "it is privileged: it holds the host's devices and capabilities, which do not move"
                .into(),
        );
    }
    match c.network_mode.as_str() {
        "default" | "bridge" | "none" => None,
        "host" => Some("it uses the host's network (--network host): its sockets are the host's, and restoring them elsewhere would take the other host's addresses".into()),
        shared if shared.starts_with("container:") => Some(format!(
            "it shares the network of another container ({shared}), which stays here"
        )),
        other => Some(format!(
            "it is on network '{other}', which ckpt cannot make on the throwaway host"
        )),
    }
}

/// What the container goes without while it is away.
fn notes(c: &Existing) -> Vec<String> {
    let mut notes = Vec::new();
    if c.published_ports {
        notes.push("its published ports (-p) are not made on the throwaway host: they answered nothing while it was there, and do again now".into());
    }
    if c.networks.iter().any(|n| n != "none") {
        notes.push("on the throwaway host it had loopback only; back here it has its own network again (connections open before a move are not moved: CRIU refuses to dump one without --tcp-established, which Docker does not pass)".into());
    }
    notes
}

/// Refuses a container whose move cannot fit in memory: its checkpoint
/// and the throwaway host's copy (on tmpfs) and twin beside it.
fn check_memory(resident_bytes: u64, available_mib: u64) -> Result<()> {
    let needed = resident_bytes / (1 << 20) * 3;
    if needed > available_mib * 9 / 10 {
        bail!(
            "moving the container needs about {needed} MiB of memory (three times its {} MiB: its checkpoint, the throwaway host's copy of it and its restored twin), but {available_mib} MiB are available",
            resident_bytes / (1 << 20)
        );
    }
    Ok(())
}

/// The throwaway host: a network namespace with a second dockerd in it.
struct Away {
    link: Link,
    daemon: SecondDaemon,
    engine: DockerEngine,
    /// Where the image travels (removed at the end).
    dir: PathBuf,
}

impl Away {
    async fn open(run: &RunId) -> Result<Away> {
        let link = Link::create(run, None)?;
        let mut daemon = SecondDaemon::start(EngineKind::Docker, run, &link.netns)?;
        let made = async {
            let dir = crate::engine::os::rundir::create("migrate", run)?;
            let engine = DockerEngine::connect_socket(EngineKind::Docker, &daemon.socket()).await;
            if engine.is_err() {
                let _ = crate::engine::os::rundir::remove(&dir);
            }
            Ok::<_, anyhow::Error>((dir, engine?))
        }
        .await;
        let (dir, engine) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = daemon.stop();
                return Err(e);
            }
        };
        Ok(Away {
            link,
            daemon,
            engine,
            dir,
        })
    }

    /// Loads the container's image here and makes its twin (stopped).
    async fn prepare(
        &self,
        user: &DockerEngine,
        original: &Existing,
        run: &RunId,
    ) -> Result<Container> {
        let tar = self.dir.join("image.tar");
        user.save_image(&original.image_id, &tar)
            .await
            .with_context(|| {
                format!(
                    "copying image {} to the throwaway host",
                    original.image_name
                )
            })?;
        self.engine.load_image(&tar).await?;
        let _ = std::fs::remove_file(&tar);
        self.engine
            .create_twin(run, original, &run.name("twin"))
            .await
    }

    /// The way back failed and the container runs here: the host stays
    /// (ckpt exits without stopping its daemon), and the error says how to
    /// reach it.
    fn stranded(&self, e: anyhow::Error, out: &str) -> anyhow::Error {
        e.context(format!(
            "the container is on the throwaway host, which ckpt left running: `docker -H unix://{} ps -a` shows it (`ckpt gc` would remove that host, the container with it); the checkpoint it left here with, {out}, is kept in your container (`docker start --checkpoint {out} NAME` restores that older state)",
            self.daemon.socket().display()
        ))
    }

    /// Leaves the host as it is, its daemon, namespace and files: the
    /// user's container runs there.
    fn leave_running(self) {
        std::mem::forget(self);
    }

    /// Stops the daemon (everything it held goes with it) and removes the
    /// namespace.
    fn close(self) {
        let _ = crate::engine::os::rundir::remove(&self.dir);
        let mut daemon = self.daemon;
        if let Err(e) = daemon.stop() {
            eprintln!(
                "ckpt migrate: stopping the throwaway host's daemon failed: {e:#}; run `ckpt gc`"
            );
        }
        self.link.remove();
    }
}

/// One move: checkpoint at `from` (the container exits), copy the
/// checkpoint into `to`'s container, restore it there, check it. A
/// failure after the checkpoint resumes the container at `from`.
async fn leg(
    from: &Place<'_>,
    to: &Place<'_>,
    checkpoint: &str,
    (check, before): (Option<&StateCheck>, Option<&str>),
) -> Result<Leg> {
    let started = Instant::now();
    from.engine
        .checkpoint(from.container, checkpoint)
        .await
        .with_context(|| {
            format!(
                "checkpointing the container on {} failed; it still runs there",
                from.name
            )
        })?;
    let checkpoint_ms = ms(started);
    let copied = Instant::now();
    let moved = async {
        let bytes = copy_checkpoint(from, to, checkpoint).await?;
        let copy_ms = ms(copied);
        let restored = Instant::now();
        crate::engine::restore_with_retry(to.engine, to.container, checkpoint).await?;
        Ok::<_, anyhow::Error>((bytes, copy_ms, ms(restored)))
    }
    .await;
    let (checkpoint_bytes, copy_ms, restore_ms) = match moved {
        Ok(moved) => moved,
        Err(e) => {
            return Err(resume(
                from,
                checkpoint,
                e.context(format!("moving it to {} failed", to.name)),
            )
            .await)
        }
    };
    // It runs at `to` now, whatever follows: never resumed at `from` too.
    let loopback = crate::engine::serve_on_loopback(to.engine, to.container).await;
    let downtime_ms = ms(started);
    // Unknown counts as none: the move itself is done.
    let processes = to
        .engine
        .processes(to.container)
        .await
        .map_or(0, |p| p.len());
    let (state_ok, state_problem) = match (check, loopback) {
        (_, Err(e)) => (
            Some(false),
            Some(format!("its loopback could not be set up: {e:#}")),
        ),
        (None, Ok(())) => (None, None),
        (Some(check), Ok(())) => match run_check(to, check).await {
            Ok(after) => match check.compare(before.unwrap_or_default(), &after) {
                Ok(()) => (Some(true), None),
                Err(problem) => (Some(false), Some(problem)),
            },
            Err(e) => (Some(false), Some(format!("{e:#}"))),
        },
    };
    Ok(Leg {
        from: from.name.into(),
        to: to.name.into(),
        checkpoint_ms,
        copy_ms,
        restore_ms,
        downtime_ms,
        checkpoint_bytes,
        processes,
        state_ok,
        state_problem,
    })
}

/// Copies the checkpoint from `from`'s container directory into `to`'s,
/// where `start --checkpoint` finds it; returns its bytes.
async fn copy_checkpoint(from: &Place<'_>, to: &Place<'_>, checkpoint: &str) -> Result<u64> {
    let source = checkpoint_dir(from, checkpoint)?;
    let target = checkpoint_dir(to, checkpoint)?;
    tokio::task::spawn_blocking(move || crate::engine::os::rundir::copy_tree(&source, &target))
        .await?
}

fn checkpoint_dir(place: &Place<'_>, checkpoint: &str) -> Result<PathBuf> {
    place
        .engine
        .checkpoint_path(place.container, checkpoint)
        .with_context(|| {
            format!(
                "the daemon on {} did not say where it keeps its data",
                place.name
            )
        })
}

/// Restores the container where it was checkpointed, after `failed`; the
/// error says where the container runs now.
async fn resume(at: &Place<'_>, checkpoint: &str, failed: anyhow::Error) -> anyhow::Error {
    let resumed = crate::engine::restore_with_retry(at.engine, at.container, checkpoint).await;
    match resumed {
        Ok(_) => {
            let loopback = match crate::engine::serve_on_loopback(at.engine, at.container).await {
                Ok(()) => String::new(),
                Err(e) => format!(" (its loopback could not be set up: {e:#})"),
            };
            failed.context(format!(
                "the container was resumed on {} from its checkpoint, and runs there{loopback}",
                at.name
            ))
        }
        Err(e) => failed.context(format!(
            "resuming the container on {} failed too ({e:#}): it is stopped there, its checkpoint kept in {} (`docker start --checkpoint {checkpoint} {}` restores it)",
            at.name,
            checkpoint_dir(at, checkpoint).map_or_else(|_| "its checkpoints directory".into(), |p| p.display().to_string()),
            at.container.name
        )),
    }
}

/// Runs the check in the container at `place`.
async fn run_check(place: &Place<'_>, check: &StateCheck) -> Result<String> {
    crate::program::run_check(place.engine, place.container, &check.argv()).await
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Existing {
        Existing {
            container: Container {
                id: "abc".into(),
                name: "web".into(),
            },
            status: "running".into(),
            network_mode: "default".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_plain_running_container_moves() {
        assert_eq!(refusal(&running()), None);
        for mode in ["bridge", "none"] {
            let c = Existing {
                network_mode: mode.into(),
                ..running()
            };
            assert_eq!(refusal(&c), None, "{mode}");
        }
    }

    #[test]
    fn what_cannot_move_is_refused_with_the_reason() {
        let cases = [
            (
                Existing {
                    status: "exited".into(),
                    ..running()
                },
                "not running",
            ),
            (
                Existing {
                    auto_remove: true,
                    ..running()
                },
                "--rm",
            ),
            (
                Existing {
                    restart_policy: "always".into(),
                    ..running()
                },
                "restart policy 'always'",
            ),
            (
                Existing {
                    mounts: vec!["/data".into()],
                    ..running()
                },
                "/data",
            ),
            (
                Existing {
                    devices: 1,
                    ..running()
                },
                "device",
            ),
            (
                Existing {
                    privileged: true,
                    ..running()
                },
                "privileged",
            ),
            (
                Existing {
                    network_mode: "host".into(),
                    ..running()
                },
                "host's network",
            ),
            (
                Existing {
                    network_mode: "container:db".into(),
                    ..running()
                },
                "another container",
            ),
            (
                Existing {
                    network_mode: "backend".into(),
                    ..running()
                },
                "'backend'",
            ),
        ];
        for (c, said) in cases {
            let reason = refusal(&c).unwrap_or_default();
            assert!(reason.contains(said), "{said}: {reason}");
        }
    }

    #[test]
    fn what_it_lacks_while_away_is_said() {
        let c = Existing {
            published_ports: true,
            ..running()
        };
        let said = notes(&c);
        assert!(said[0].contains("published ports"), "{said:?}");
        let alone = Existing {
            networks: vec!["none".into()],
            ..running()
        };
        assert!(notes(&alone).is_empty());
        let bridged = Existing {
            networks: vec!["bridge".into()],
            ..running()
        };
        assert!(notes(&bridged)[0].contains("loopback only"));
    }

    #[test]
    fn a_container_too_large_for_the_memory_is_refused() {
        assert!(check_memory(1 << 30, 10_000).is_ok());
        let said = check_memory(4 << 30, 10_000).unwrap_err().to_string();
        assert!(said.contains("12288 MiB"), "{said}");
    }

    #[test]
    fn verified_needs_both_moves_the_same_processes_and_no_failed_check() {
        let leg = Leg {
            from: "a".into(),
            to: "b".into(),
            checkpoint_ms: 1.0,
            copy_ms: 1.0,
            restore_ms: 1.0,
            downtime_ms: 3.0,
            checkpoint_bytes: 10,
            processes: 2,
            state_ok: Some(true),
            state_problem: None,
        };
        let mut m = ContainerMove {
            engine: EngineKind::Docker,
            container: "web".into(),
            id: "abc".into(),
            image: "img".into(),
            processes_before: 2,
            prepare_ms: 1.0,
            moves: vec![leg.clone(), leg.clone()],
            state_ok: Some(true),
            notes: vec![],
        };
        assert!(m.verified());
        m.moves[1].state_ok = Some(false);
        assert!(!m.verified());
        m.moves[1] = Leg {
            processes: 1,
            ..leg.clone()
        };
        assert!(!m.verified());
        m.moves.pop();
        assert!(!m.verified());
    }
}
