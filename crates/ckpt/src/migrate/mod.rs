//! Migration: move a running container to another host and measure what
//! its users see. The source checkpoints (memory pages into the images, to
//! a CRIU page server at the destination, or left at the source for
//! post-copy), sends the rest over a mutual-TLS link to `ckpt serve`, which
//! restores and checks it. Downtime runs on the source's monotonic clock
//! from the checkpoint request to the destination's "restored".

pub mod link;
pub mod serve;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::engine::any::AnyEngine;
use crate::engine::criu::CriuEngine;
use crate::engine::moby::podman::Service;
use crate::engine::moby::second::SecondDaemon;
use crate::engine::moby::DockerEngine;
use crate::engine::runc::RuncEngine;
use crate::engine::{Container, Engine, Image, PageDestination};
use crate::model::{EngineKind, ImageSpec, MigrationMethod, Point, RunSpec};
use crate::run::{RunId, Stop};
use link::Link;
use serve::CHECKPOINT;
use wire::Message;

/// What to move, how, and over which link.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub engine: EngineKind,
    pub method: MigrationMethod,
    pub point: Point,
    /// tc's rate syntax (`1gbit`), for the link to the throwaway host.
    pub link_rate: Option<String>,
}

/// One step of a migration and how long it took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub ms: f64,
}

/// What a migration measured and what the destination found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Migration {
    pub engine: EngineKind,
    pub method: MigrationMethod,
    pub phases: Vec<Phase>,
    /// From the checkpoint request to the destination's "restored".
    pub downtime_ms: f64,
    /// Until the source is gone and the last page has arrived.
    pub total_ms: f64,
    /// Bytes that crossed the link, both directions.
    pub bytes_sent: u64,
    /// The checkpoint's images on the source's disk (pages excluded when
    /// they went elsewhere).
    pub image_bytes: u64,
    pub processes_before: usize,
    /// The longest interval between two consecutive ticks of the
    /// workload's first process across the move (it ticks every 10 ms):
    /// the pause its users saw.
    pub gap_ms: Option<f64>,
    pub check: Message,
}

impl Migration {
    /// Same processes, and every one found its memory, threads and files.
    pub fn verified(&self) -> bool {
        matches!(&self.check, Message::Verified {
            processes,
            memory_ok: Some(true),
            threads_ok: Some(true),
            files_ok: Some(true),
            problem: None,
            ..
        } if *processes == self.processes_before)
    }
}

/// How often the moved workload ticks.
const TICK_MS: u64 = 10;

/// The wall-clock times of the first process's ticks in `lines`.
pub(crate) fn tick_times(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| crate::workload::Tick::parse(l).ok())
        .filter(|t| t.role == crate::workload::Role::Parent)
        .filter_map(|t| t.at_us)
        .collect()
}

/// The longest interval between consecutive ticks of the source's and the
/// destination's logs together (one host's log may hold the other's
/// lines: a plain process tree writes to one file by path).
fn longest_gap_ms(source: &[u64], destination: &[u64]) -> Option<f64> {
    let mut all: Vec<u64> = source.iter().chain(destination).copied().collect();
    all.sort_unstable();
    all.dedup();
    if destination.is_empty() || source.is_empty() {
        return None;
    }
    all.windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1000.0)
        .reduce(f64::max)
}

/// The port `ckpt serve` listens on at the throwaway destination.
const SERVE_PORT: u16 = 7207;
/// The port the source's lazy dump serves pages on.
const LAZY_PORT: u16 = 7208;
/// How long `ckpt serve` may take to start listening.
const SERVE_START: Duration = Duration::from_secs(15);

/// Moves a fresh workload at `options.point` from this host to a throwaway
/// host on this machine, and removes everything on both sides afterwards.
pub async fn migrate_to_throwaway(
    options: &MigrateOptions,
    run: &RunId,
    stop: &Stop,
) -> Result<Migration> {
    refuse_unsupported(options)?;
    let session = Session::open(options.engine, run, options.link_rate.as_deref(), true).await?;
    let outcome = session
        .move_one(options.method, options.point, &run.name("mover"), run, stop)
        .await;
    session.close(run).await;
    outcome
}

/// A throwaway destination host with its `ckpt serve`, and the source's
/// engine: one migration's, or all the migration trials of a sweep.
pub struct Session {
    dir: PathBuf,
    link: Link,
    client: tls::Credentials,
    serving: tokio::process::Child,
    /// Docker's or Podman's second daemon, the destination's engine.
    daemon: Option<SecondDaemon>,
    source: AnyEngine,
    kind: EngineKind,
}

impl Session {
    /// Makes the host, its credentials and its server; `once`: the server
    /// serves a single migration.
    pub async fn open(
        kind: EngineKind,
        run: &RunId,
        link_rate: Option<&str>,
        once: bool,
    ) -> Result<Session> {
        // The source's daemon first: when it is not there, nothing is made.
        let daemon_source = match kind {
            EngineKind::Docker => Some(AnyEngine::Docker(DockerEngine::connect_checked().await?.0)),
            // A service of its own: a sweep's podman engine has the run's.
            EngineKind::Podman => Some(AnyEngine::Docker(
                DockerEngine::podman(Service::start_tagged(run, "migrate")?).await?,
            )),
            _ => None,
        };
        let dir = crate::engine::os::rundir::create("migrate", run)?;
        let made = (|| -> Result<_> {
            let link = Link::create(run, link_rate)?;
            // One directory per host: a sweep over two engines makes two.
            let own = dir.join(&link.netns);
            crate::engine::os::rundir::make_private_dir(&own)?;
            let ips = [link.peer_addr.into(), link.host_addr.into()];
            let (server, client) = tls::throwaway(&own, &ips)?;
            // CRIU's own connections use the same credentials: runc reads
            // them from a configuration file its containers name.
            let criu_conf = own.join("criu-tls.conf");
            std::fs::write(&criu_conf, client.criu_config())?;
            let daemon = kind
                .has_daemon()
                .then(|| SecondDaemon::start(kind, run, &link.netns))
                .transpose()?;
            let serving = spawn_serve(&link, &server, &own, once, daemon.as_ref())?;
            Ok((link, client, serving, criu_conf, daemon))
        })();
        let (link, client, serving, criu_conf, daemon) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = crate::engine::os::rundir::remove(&dir);
                return Err(e);
            }
        };
        let source = match kind {
            EngineKind::Criu => {
                AnyEngine::Criu(CriuEngine::new().with_criu_options(client.criu_options()))
            }
            EngineKind::Docker | EngineKind::Podman => match daemon_source {
                Some(engine) => engine,
                None => bail!("no {kind} engine was opened at the source"),
            },
            EngineKind::Runc => AnyEngine::Runc(
                RuncEngine::new(None)
                    .with_writable_rootfs()
                    .with_criu_config(criu_conf),
            ),
        };
        Ok(Session {
            dir,
            link,
            client,
            serving,
            daemon,
            source,
            kind,
        })
    }

    /// Starts a workload at `point` named `name`, moves it by `method`, and
    /// removes it from the source.
    pub async fn move_one(
        &self,
        method: MigrationMethod,
        point: Point,
        name: &str,
        run: &RunId,
        stop: &Stop,
    ) -> Result<Migration> {
        let options = MigrateOptions {
            engine: self.kind,
            method,
            point,
            link_rate: None,
        };
        move_one(
            &self.source,
            &options,
            name,
            run,
            stop,
            (&self.link, &self.client),
            &self.dir,
        )
        .await
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Removes both hosts' state, the server, the link and the credentials.
    pub async fn close(mut self, run: &RunId) {
        let _ = self.source.remove_run(run).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.serving.wait()).await;
        let _ = self.serving.kill().await;
        // The second daemon goes with everything it held.
        if let Some(mut daemon) = self.daemon.take() {
            if let Err(e) = daemon.stop() {
                eprintln!(
                    "ckpt migrate: stopping the destination's daemon failed: {e:#}; run `ckpt gc`"
                );
            }
        }
        // A runc or criu destination that died kept its state: the
        // throwaway host is ours, so its leftovers are too (those of dead
        // runs only, which for this process's own engines would be all:
        // Docker's and Podman's destination went with their daemon).
        if !self.kind.has_daemon() {
            if let Err(e) = crate::engine::any::remove_orphans(self.kind).await {
                eprintln!("ckpt migrate: cleaning up the destination failed: {e:#}; run `ckpt gc`");
            }
        }
        self.link.remove();
        let _ = crate::engine::os::rundir::remove(&self.dir);
    }
}

/// Refuses, before anything is made, what the engine cannot do.
fn refuse_unsupported(options: &MigrateOptions) -> Result<()> {
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
        (EngineKind::Criu, MigrationMethod::Lazy) => bail!(
            "lazy migration of a criu process tree needs a destination on another machine: the source keeps the tree frozen until its last page is fetched, and CRIU restores the same pids, which on one machine are still taken"
        ),
        (EngineKind::Criu, _) => Ok(()),
    }
}

/// `ckpt serve` inside the destination's namespace, for one migration.
fn spawn_serve(
    link: &Link,
    creds: &tls::Credentials,
    dir: &Path,
    once: bool,
    daemon: Option<&SecondDaemon>,
) -> Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("cannot find the ckpt executable")?;
    let log = std::fs::File::create(dir.join("serve.log"))?;
    // nsenter joins the network namespace only: `ip netns exec` would also
    // mount a fresh /sys, hiding the cgroup mounts that runc needs.
    tokio::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", link.netns))
        .arg(exe)
        .arg("serve")
        .args(once.then_some("--once"))
        .args(["--listen", &format!("{}:{SERVE_PORT}", link.peer_addr)])
        .arg("--ca")
        .arg(&creds.ca)
        .arg("--cert")
        .arg(&creds.cert)
        .arg("--key")
        .arg(&creds.key)
        .args(daemon.map(|d| format!("--{}-socket", d.kind())))
        .args(daemon.map(SecondDaemon::socket))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start ckpt serve in the destination's namespace")
}

/// Connects to `ckpt serve`, retrying while it starts (bounded).
async fn connect(
    addr: SocketAddr,
    creds: &tls::Credentials,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(creds.client_config()?);
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let deadline = Instant::now() + SERVE_START;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => {
                return connector
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("the TLS handshake with {addr} failed"))
            }
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| {
                    format!(
                        "ckpt serve at {addr} did not answer within {} s",
                        SERVE_START.as_secs()
                    )
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Starts the workload, waits until it is ready, and moves it.
async fn move_one(
    source: &AnyEngine,
    options: &MigrateOptions,
    name: &str,
    run: &RunId,
    stop: &Stop,
    route: (&Link, &tls::Credentials),
    scratch: &Path,
) -> Result<Migration> {
    let image = source.build_image(run, &ImageSpec::default()).await?;
    let spec = RunSpec {
        name: name.to_string(),
        // Ticks every 10 ms: the gap across the move is measured in them.
        args: crate::workload::forker_args(&options.point, TICK_MS),
        entrypoint: None,
        network: Default::default(),
    };
    let container = source.run(run, &image, &spec).await?;
    let workload = Workload {
        container: &container,
        image: &image,
        args: &spec.args,
        scratch,
    };
    let moved = move_running(source, &workload, options, stop, route).await;
    // The source's copy goes at once: a sweep moves many, each with its
    // checkpoint beside it.
    let _ = source.remove_container(&container).await;
    moved
}

/// The workload being moved: its container, the image and command it
/// runs, and a directory of the source's for files on their way.
struct Workload<'a> {
    container: &'a Container,
    image: &'a Image,
    args: &'a [String],
    scratch: &'a Path,
}

/// Moves the workload once it is ready.
async fn move_running(
    source: &AnyEngine,
    workload: &Workload<'_>,
    options: &MigrateOptions,
    stop: &Stop,
    (link, creds): (&Link, &tls::Credentials),
) -> Result<Migration> {
    let container = workload.container;
    let ready = stop
        .unless_stopped(source.wait_for_line(
            container,
            0,
            &crate::workload::is_ready,
            Duration::from_secs(60),
        ))
        .await?;
    let processes_before = crate::workload::ready_pids(&ready).map_or(0, |p| p.len());
    stop.check()?;
    let mut stream = connect(SocketAddr::new(link.peer_addr.into(), SERVE_PORT), creds).await?;
    let log = match options.engine {
        EngineKind::Criu => Some(
            source
                .container_dir(container)
                .context("the source keeps no files")?
                .join("out.log"),
        ),
        _ => None,
    };
    let hello = Message::Hello {
        engine: options.engine,
        method: options.method,
        name: container.name.clone(),
        point: options.point,
        log,
    };
    wire::send(&mut stream, &hello).await?;
    let bytes_before = link.bytes()?;
    let mut mover = Mover {
        source,
        container,
        link,
        phases: Vec::new(),
    };
    if options.engine.has_daemon() {
        mover
            .timed(
                "prepare",
                prepare_destination(&mut stream, source, workload),
            )
            .await?;
    }
    let (downtime, total) = mover.run(&mut stream, options.method).await?;
    let check = wire::recv(&mut stream).await?;
    let source_ticks = tick_times(&source.logs(container).await.unwrap_or_default());
    let gap_ms = match &check {
        Message::Verified { ticks_us, .. } => longest_gap_ms(&source_ticks, ticks_us),
        _ => None,
    };
    let bytes_sent = link.bytes()?.saturating_sub(bytes_before);
    wire::send(&mut stream, &Message::Finish).await?;
    wire::expect(&mut stream, "done", |m| {
        matches!(m, Message::Done).then_some(())
    })
    .await?;
    let image_bytes = checkpoint_on_source(source, container)
        .and_then(|p| crate::engine::dir_size(&p).or_else(|| Some(p.metadata().ok()?.len())))
        .unwrap_or(0);
    Ok(Migration {
        engine: options.engine,
        method: options.method,
        phases: mover.phases,
        downtime_ms: ms(downtime),
        total_ms: ms(total),
        bytes_sent,
        image_bytes,
        processes_before,
        gap_ms,
        check,
    })
}

/// Docker and Podman: the image goes ahead of the checkpoint (it does not
/// change), and Docker's container is created at the destination, so that
/// neither counts in the downtime.
async fn prepare_destination<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    source: &AnyEngine,
    workload: &Workload<'_>,
) -> Result<()> {
    let AnyEngine::Docker(daemon) = source else {
        bail!("only Docker and Podman moves send their image");
    };
    let saved = workload.scratch.join("image.tar");
    daemon.save_image(&workload.image.reference, &saved).await?;
    let sent = wire::send_path(stream, &saved, Path::new("image.tar")).await;
    let _ = std::fs::remove_file(&saved);
    sent?;
    let prepare = Message::Prepare {
        image: workload.image.reference.clone(),
        args: workload.args.to_vec(),
    };
    wire::send(stream, &prepare).await?;
    wire::expect(stream, "prepared", |m| {
        matches!(m, Message::Prepared).then_some(())
    })
    .await
}

/// Where the checkpoint lies at the source: runc's and CRIU's image
/// directory, Docker's checkpoint directory, Podman's exported archive.
fn checkpoint_on_source(source: &AnyEngine, container: &Container) -> Option<PathBuf> {
    match source {
        AnyEngine::Docker(daemon) => daemon.migration_checkpoint(container, CHECKPOINT),
        other => Some(
            other
                .container_dir(container)?
                .join("images")
                .join(CHECKPOINT),
        ),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The source's side of one move, phase by phase.
struct Mover<'a> {
    source: &'a AnyEngine,
    container: &'a Container,
    link: &'a Link,
    phases: Vec<Phase>,
}

impl Mover<'_> {
    async fn timed<T>(
        &mut self,
        name: &'static str,
        step: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let result = step
            .await
            .with_context(|| format!("migration step '{name}'"))?;
        self.phases.push(Phase {
            name,
            ms: ms(started.elapsed()),
        });
        Ok(result)
    }

    /// Sends the checkpoint and has the destination restore it.
    async fn hand_over<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        lazy_from: Option<SocketAddr>,
    ) -> Result<()> {
        let (source, container) = (self.source, self.container);
        self.timed("transfer", send_bundle(stream, source, container))
            .await?;
        wire::send(stream, &Message::Restore { lazy_from }).await?;
        self.timed(
            "restore",
            wire::expect(stream, "restored", |m| match m {
                Message::Restored { processes } => Some(processes),
                _ => None,
            }),
        )
        .await?;
        Ok(())
    }

    /// The destination failed. With stop-and-copy the whole checkpoint is
    /// still here: the workload starts again at the source, nothing lost.
    /// With a page server or lazy pages its memory has left the source.
    async fn after_failed_hand_over(
        &mut self,
        method: MigrationMethod,
        e: anyhow::Error,
    ) -> anyhow::Error {
        if method != MigrationMethod::Copy {
            return e.context(format!(
                "the destination failed during a {} migration: the workload's memory had left the source, so it is lost",
                method.name()
            ));
        }
        match self.source.restore(self.container, CHECKPOINT).await {
            Ok(_) => e.context("the destination failed; the workload was restored at the source from its checkpoint, nothing lost"),
            Err(again) => e.context(format!("the destination failed, and restoring at the source failed too: {again:#}")),
        }
    }

    /// Runs the method's steps; returns (downtime, total).
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        method: MigrationMethod,
    ) -> Result<(Duration, Duration)> {
        let pages = match method {
            MigrationMethod::Copy => PageDestination::Images,
            MigrationMethod::PageServer => {
                wire::send(stream, &Message::StartPageServer).await?;
                let port = wire::expect(stream, "the page server's port", |m| match m {
                    Message::PageServerReady { port } => Some(port),
                    _ => None,
                })
                .await?;
                PageDestination::PageServer(SocketAddr::new(self.link.peer_addr.into(), port))
            }
            MigrationMethod::Lazy => {
                PageDestination::Lazy(SocketAddr::new(self.link.host_addr.into(), LAZY_PORT))
            }
        };
        let started = Instant::now();
        let (source, container) = (self.source, self.container);
        let mut dumped = self
            .timed(
                "checkpoint",
                source.checkpoint_for_migration(container, CHECKPOINT, pages),
            )
            .await?;
        if dumped.serving.is_none() {
            // The dump killed the processes; the source's runc forgets them.
            self.timed("stop", source.stop(container)).await?;
        }
        let lazy_from = matches!(pages, PageDestination::Lazy(_))
            .then_some(SocketAddr::new(self.link.host_addr.into(), LAZY_PORT));
        if let Err(e) = self.hand_over(stream, lazy_from).await {
            return Err(self.after_failed_hand_over(method, e).await);
        }
        let downtime = started.elapsed();
        if let Some(mut serving) = dumped.serving.take() {
            // Post-copy: the move ends when the last page has left.
            let status = self
                .timed("pages", async { Ok(serving.wait().await?) })
                .await?;
            if !status.success() {
                bail!("the lazy dump's page transfer failed ({status}): the workload's memory is lost with it");
            }
            self.timed("stop", source.stop(container)).await?;
        }
        Ok((downtime, started.elapsed()))
    }
}

/// Sends what the destination needs: the checkpoint's images, and for
/// runc the config.json and the root filesystem it names, for a plain
/// process tree its pid and output files; Docker's checkpoint directory as
/// `checkpoint/`, Podman's exported archive as `checkpoint.tar`.
async fn send_bundle<S: AsyncWrite + Unpin>(
    stream: &mut S,
    source: &AnyEngine,
    container: &Container,
) -> Result<u64> {
    let none = |_: &Path| false;
    let kind = source.kind();
    if kind.has_daemon() {
        let at =
            checkpoint_on_source(source, container).context("the checkpoint is not on disk")?;
        return match kind {
            EngineKind::Docker => {
                wire::send_tree(stream, &at, Path::new("checkpoint"), &none).await
            }
            _ => wire::send_path(stream, &at, Path::new("checkpoint.tar")).await,
        };
    }
    let dir = source.container_dir(container).context("no bundle")?;
    let dir = dir.as_path();
    let images = Path::new("images").join(CHECKPOINT);
    let mut sent = wire::send_tree(stream, &dir.join(&images), &images, &none).await?;
    let top_files: &[&str] = match kind {
        EngineKind::Runc => {
            let config =
                std::fs::read(dir.join("config.json")).context("the bundle has no config.json")?;
            let config: serde_json::Value = serde_json::from_slice(&config)?;
            let rootfs = config["root"]["path"]
                .as_str()
                .context("config.json names no root")?;
            sent += wire::send_tree(stream, Path::new(rootfs), Path::new("rootfs"), &none).await?;
            &["config.json"]
        }
        _ => &["pid", "out.log"],
    };
    let not_wanted = |p: &Path| {
        p.parent() != Some(dir) || !top_files.iter().any(|f| p.file_name() == Some(f.as_ref()))
    };
    sent += wire::send_tree(stream, dir, Path::new(""), &not_wanted).await?;
    Ok(sent)
}

/// For `ckpt gc`: the work directories (credentials) of dead migrations.
pub fn remove_orphans() -> Result<usize> {
    let dirs = crate::engine::os::rundir::orphans("migrate");
    for dir in &dirs {
        crate::engine::os::rundir::remove(dir)?;
    }
    Ok(dirs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_is_the_longest_pause_across_both_logs() {
        let source = [1_000, 11_000, 21_000];
        let destination = [21_000, 480_000, 490_000];
        assert_eq!(longest_gap_ms(&source, &destination), Some(459.0));
        assert_eq!(longest_gap_ms(&source, &[]), None);
        let lines = vec![
            "ckpt parent pid=1 tick=1 t_us=5".to_string(),
            "ckpt child pid=2 tick=1 t_us=6".to_string(),
            "ckpt parent pid=1 tick=2".to_string(),
        ];
        assert_eq!(tick_times(&lines), vec![5]);
    }
}
