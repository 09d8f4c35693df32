//! The source's side of one move: start the workload, hand its checkpoint
//! over step by step (timed), and gather what the destination found.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};

use super::measured::{longest_gap_ms, tick_times, wall_us, ClockOffset, Migration, Phase};
use super::meter::{self, BytesCounted};
use super::segment::Segment;
use super::serve::CHECKPOINT;
use super::session::{bytes_of_move, Host, Session, Stream};
use super::wire::{self, Message};
use super::{clients, program, start, tls, MigrateOptions, ProbeOptions};
use crate::engine::any::AnyEngine;
use crate::engine::{Container, Engine, Image, PageDestination};
use crate::model::{EngineKind, MigrationMethod, Point};
use crate::run::{RunId, Stop};

/// Starts the workload, waits until it is ready, and moves it.
pub(super) async fn move_one(
    source: &AnyEngine,
    options: &MigrateOptions,
    name: &str,
    run: &RunId,
    stop: &Stop,
    (host, creds): (&Host, &tls::Credentials),
    scratch: &Path,
) -> Result<Migration> {
    // First the destination: one that is unreachable or refuses us costs
    // no workload.
    let mut stream = host.connect(creds).await?;
    // TLS 1.3 reports a refused client certificate at the first read.
    let theirs = wire::expect(&mut stream, "ready", |m| match m {
        Message::Ready { criu, runc } => Some((criu, runc)),
        _ => None,
    })
    .await
    .map_err(|e| tls::explain(e, &host.name()))?;
    let ours = crate::host::envinfo::engine_versions();
    check_destination_engine(options.engine, &ours, &theirs)?;
    let (image_spec, mut spec) = start::specs(options, name);
    // A service with clients lives on the segment, in ckpt's namespace.
    let segment = options
        .probe
        .as_ref()
        .map(|_| Segment::create("mv"))
        .transpose()?;
    // Docker makes the container's namespace itself: the segment's
    // interface is handed to it once it runs.
    let docker = options.engine == EngineKind::Docker;
    spec.netns = segment
        .as_ref()
        .filter(|_| !docker)
        .map(Segment::source_path);
    let image = source.build_image(run, &image_spec).await?;
    let container = source.run(run, &image, &spec).await?;
    if let (Some(segment), true) = (&segment, docker) {
        let handed = async { segment.hand_source_to(source.root_pid(&container).await?) };
        if let Err(e) = handed.await {
            let _ = source.remove_container(&container).await;
            return Err(e.context("joining the container to the clients' segment"));
        }
    }
    let workload = Workload {
        container: &container,
        image: &image,
        args: &spec.args,
        scratch,
        segment: segment.as_ref(),
    };
    let moved = move_running(source, &workload, options, stop, host, &mut stream).await;
    // The source's copy goes at once: a sweep moves many, each with its
    // checkpoint beside it.
    let _ = source.remove_container(&container).await;
    moved
}

impl Session {
    /// Starts a workload at `point` named `name`, moves it by `method`, and
    /// removes it from the source.
    pub async fn move_one(
        &self,
        method: MigrationMethod,
        point: Point,
        (program, probe): (Option<&crate::program::UserProgram>, Option<&ProbeOptions>),
        name: &str,
        run: &RunId,
        stop: &Stop,
    ) -> Result<Migration> {
        let options = MigrateOptions {
            engine: self.kind(),
            method,
            point,
            link_rate: None,
            program: program.cloned(),
            probe: probe.cloned(),
        };
        move_one(
            &self.source,
            &options,
            name,
            run,
            stop,
            (&self.host, &self.client),
            &self.dir,
        )
        .await
    }
}

/// The workload being moved: its container, the image and command it
/// runs, and a directory of the source's for files on their way.
struct Workload<'a> {
    container: &'a Container,
    image: &'a Image,
    args: &'a [String],
    scratch: &'a Path,
    /// The network of a service moved with its clients.
    segment: Option<&'a Segment>,
}

/// Moves the workload once it is ready.
async fn move_running(
    source: &AnyEngine,
    workload: &Workload<'_>,
    options: &MigrateOptions,
    stop: &Stop,
    host: &Host,
    stream: &mut Stream,
) -> Result<Migration> {
    let container = workload.container;
    let processes_before = start::wait_until_ready(source, container, options, stop).await?;
    stop.check()?;
    let tcp = stream.get_ref().0.get_ref();
    let (local, peer) = (tcp.local_addr()?, tcp.peer_addr()?);
    wire::send(stream, &hello(source, container, options)?).await?;
    // Another machine's clock stamps the destination's ticks.
    let clock = match host {
        Host::Remote { .. } => Some(clock_offset(stream).await?),
        Host::Throwaway { .. } => None,
    };
    let bytes_before = host.bytes(stream)?;
    let mut mover = Mover {
        source,
        container,
        peer: peer.ip(),
        lazy_at: host.lazy_address(local.ip()),
        phases: Vec::new(),
        criu_page_bytes: None,
        criu_dump: None,
        criu_restore: None,
        program: options.program.is_some(),
        segment: workload.segment,
        detached: None,
        window: None,
        connections_closed: None,
    };
    // The program's description first (the destination's own bundle for
    // runc), then Docker's and Podman's image: one "prepare" phase.
    if options.program.is_some() || options.engine.has_daemon() {
        let prepared = async {
            if let Some(program) = &options.program {
                let netns = workload.segment.map(Segment::destination_name);
                let point = &options.point;
                program::prepare_destination(stream, program, source, container, point, netns)
                    .await?;
            }
            if options.engine.has_daemon() {
                prepare_destination(stream, source, workload).await?;
            }
            Ok(())
        };
        mover.timed("prepare", prepared).await?;
    }
    // The program's check at the source.
    let state_before = match &options.program {
        Some(program) => program.check(source, container, &options.point).await?,
        None => None,
    };
    // The program's state was read before the probe wrote anything.
    let probe = match (&options.probe, workload.segment) {
        (Some(probe), Some(segment)) => Some(clients::start(probe, segment).await?),
        _ => None,
    };
    let moved = mover.run(stream, options.method).await;
    let (client, client_timeline) = match probe {
        Some(probe) => {
            let mut seen = clients::finish(probe, mover.window).await?;
            if let Some(closed) = mover.connections_closed {
                seen.summary.problems.push(format!("Docker cannot checkpoint established connections (its API passes no --tcp-established): ckpt closed the service's {closed} before the dump, so its clients lost them and reconnected to the restored service"));
            }
            (Some(seen.summary), seen.timeline)
        }
        None => (None, None),
    };
    let (downtime, total) = match (moved, &client) {
        (Ok(moved), _) => moved,
        (Err(e), Some(client)) => return Err(e.context(clients::one_line(client))),
        (Err(e), None) => return Err(e),
    };
    if client.is_some() {
        // The probe has removed its keys: the destination checks now.
        wire::send(stream, &Message::Check).await?;
    }
    let check = wire::recv(stream).await?;
    let gap_ms = gap_across(source, container, &check, clock).await;
    let (state_ok, state_problem) =
        program::state_verdict(options.program.as_ref(), state_before.as_deref(), &check);
    let (bytes_sent, bytes_counted) =
        finish(stream, host, bytes_before, mover.criu_page_bytes).await?;
    let image_bytes = checkpoint_on_source(source, container)
        .and_then(|p| crate::engine::dir_size(&p).or_else(|| Some(p.metadata().ok()?.len())));
    // With stop-and-copy the pages are in the images (criu_page_bytes 0).
    let checkpoint_bytes = image_bytes.zip(mover.criu_page_bytes).map(|(i, p)| i + p);
    Ok(Migration {
        engine: options.engine,
        method: options.method,
        phases: mover.phases,
        downtime_ms: ms(downtime),
        total_ms: ms(total),
        bytes_sent,
        bytes_counted,
        image_bytes,
        checkpoint_bytes,
        criu_dump: mover.criu_dump,
        criu_restore: mover.criu_restore,
        clock,
        client,
        client_timeline,
        processes_before,
        gap_ms,
        check,
        // The image, or for the criu engine's tree on the host its command.
        program: options
            .program
            .as_ref()
            .map(|p| match p.user.image.is_empty() {
                true => p.user.cmd.clone(),
                false => p.user.image.clone(),
            }),
        state_ok,
        state_problem,
    })
}

/// The longest pause of the workload's ticks across the move (None
/// without ticks on both hosts: a program of the user's prints none), the
/// destination's ticks put on the source's clock when it has its own.
async fn gap_across(
    source: &AnyEngine,
    container: &Container,
    check: &Message,
    clock: Option<ClockOffset>,
) -> Option<f64> {
    let source_ticks = tick_times(&source.logs(container).await.unwrap_or_default());
    let Message::Verified { ticks_us, .. } = check else {
        return None;
    };
    let theirs: Vec<u64> = match clock {
        Some(clock) => ticks_us.iter().map(|&t| clock.to_source(t)).collect(),
        None => ticks_us.clone(),
    };
    longest_gap_ms(&source_ticks, &theirs)
}

/// Exchanges of the time with the destination, before the checkpoint.
const CLOCK_EXCHANGES: usize = 5;

/// How far the destination's wall clock is ahead of this host's.
async fn clock_offset(stream: &mut Stream) -> Result<ClockOffset> {
    let mut exchanges = Vec::with_capacity(CLOCK_EXCHANGES);
    for _ in 0..CLOCK_EXCHANGES {
        let sent = wall_us();
        wire::send(stream, &Message::Clock).await?;
        let theirs = wire::expect(stream, "the destination's time", |m| match m {
            Message::ClockIs { wall_us } => Some(wall_us),
            _ => None,
        })
        .await?;
        exchanges.push((sent, theirs, wall_us()));
    }
    ClockOffset::from_exchanges(&exchanges).context("no clock exchange")
}

/// Counts the move's bytes, then has the destination remove what it made.
async fn finish(
    stream: &mut Stream,
    host: &Host,
    bytes_before: u64,
    criu_page_bytes: Option<u64>,
) -> Result<(u64, BytesCounted)> {
    let moved = host.bytes(stream)?.saturating_sub(bytes_before);
    let counted = bytes_of_move(host, moved, criu_page_bytes);
    wire::send(stream, &Message::Finish).await?;
    wire::expect(stream, "done", |m| matches!(m, Message::Done).then_some(())).await?;
    Ok(counted)
}

/// What the destination hears first: the container, the workload's point,
/// and for a plain process tree the file its output goes to.
fn hello(source: &AnyEngine, container: &Container, options: &MigrateOptions) -> Result<Message> {
    let log = match options.engine {
        EngineKind::Criu => Some(
            source
                .container_dir(container)
                .context("the source keeps no files")?
                .join("out.log"),
        ),
        _ => None,
    };
    Ok(Message::Hello {
        engine: options.engine,
        method: options.method,
        name: container.name.clone(),
        point: options.point,
        log,
    })
}

/// Refuses a destination whose engine cannot restore what this host
/// checkpoints: one without the engine, or with an older CRIU (CRIU
/// reads the images of its own and older versions only).
fn check_destination_engine(
    kind: EngineKind,
    ours: &(Option<String>, Option<String>),
    theirs: &(Option<String>, Option<String>),
) -> Result<()> {
    let Some(their_criu) = &theirs.0 else {
        bail!("the destination has no working CRIU (`criu --version` failed there): install CRIU there (./scripts/setup)");
    };
    if kind == EngineKind::Runc && theirs.1.is_none() {
        bail!("the destination has no runc (`runc --version` failed there): install runc there, or move with --engine criu");
    }
    let numbers =
        |v: &str| -> Vec<u32> { v.split('.').filter_map(|n| n.trim().parse().ok()).collect() };
    if let Some(our_criu) = &ours.0 {
        if numbers(their_criu) < numbers(our_criu) {
            bail!("the destination's CRIU is {their_criu}, older than this host's {our_criu}: CRIU restores images of its own and older versions only; install CRIU {our_criu} or newer there");
        }
    }
    Ok(())
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
pub(super) struct Mover<'a> {
    pub(super) source: &'a AnyEngine,
    pub(super) container: &'a Container,
    /// The destination's address, as the source reaches it.
    peer: IpAddr,
    /// Where the source serves lazy pages.
    lazy_at: SocketAddr,
    phases: Vec<Phase>,
    /// What CRIU sent over its own connection, when its statistics say.
    criu_page_bytes: Option<u64>,
    /// CRIU's phases of the dump and of the destination's restore.
    criu_dump: Option<criu_image::DumpStatsEntry>,
    criu_restore: Option<criu_image::RestoreStatsEntry>,
    /// A program of the user's: the destination made its own bundle.
    program: bool,
    /// A service's network: detached at the source before the dump,
    /// attached at the destination once restored.
    segment: Option<&'a Segment>,
    /// When the source's port was detached, and the clients' window: from
    /// then to the attaching, at the destination or back at the source.
    detached: Option<Instant>,
    window: Option<(Instant, Instant)>,
    /// Docker: the established connections closed before the dump.
    connections_closed: Option<usize>,
}

impl Mover<'_> {
    pub(super) async fn timed<T>(
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
        let sent = send_bundle(stream, source, container, self.program);
        self.timed("transfer", sent).await?;
        wire::send(stream, &Message::Restore { lazy_from }).await?;
        let restored = wire::expect(stream, "restored", |m| match m {
            Message::Restored { criu, .. } => Some(criu),
            _ => None,
        });
        self.criu_restore = self.timed("restore", restored).await?;
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
        if let (Some(segment), EngineKind::Podman) = (self.segment, self.source.kind()) {
            if let Err(again) = segment.take_back_source_path() {
                return e.context(format!("the destination failed, and the source's network namespace could not be given back: {again:#}"));
            }
        }
        match self.source.restore(self.container, CHECKPOINT).await {
            Ok(_) => {
                if let (Some(segment), EngineKind::Docker) = (self.segment, self.source.kind()) {
                    let pid = self.source.root_pid(self.container).await;
                    if let Err(e) = pid.and_then(|pid| segment.rejoin_source(pid)) {
                        eprintln!("ckpt migrate: joining the restored service to its clients again failed: {e:#}");
                    }
                }
                self.back_to_source();
                e.context("the destination failed; the workload was restored at the source from its checkpoint, nothing lost")
            }
            Err(again) => e.context(format!(
                "the destination failed, and restoring at the source failed too: {again:#}"
            )),
        }
    }

    /// The service runs at the source again: its clients reach it there.
    fn back_to_source(&mut self) {
        if let (Some(segment), Some(detached)) = (self.segment, self.detached) {
            if let Err(e) = segment.back_to_source() {
                eprintln!(
                    "ckpt migrate: reattaching the source's service to its clients failed: {e:#}"
                );
            }
            self.window = Some((detached, Instant::now()));
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
                PageDestination::PageServer(SocketAddr::new(self.peer, port))
            }
            MigrationMethod::Lazy => PageDestination::Lazy(self.lazy_at),
        };
        if let Some(segment) = self.segment {
            segment.detach_source()?;
            self.detached = Some(Instant::now());
        }
        let started = Instant::now();
        let (source, container) = (self.source, self.container);
        if let (Some(_), EngineKind::Docker) = (self.segment, source.kind()) {
            // Docker cannot checkpoint established connections: they are
            // closed (the clients will reconnect to the restored service).
            let closed = async {
                crate::engine::os::sockets::destroy_established(source.root_pid(container).await?)
            };
            match closed.await {
                Ok(n) => self.connections_closed = Some(n),
                Err(e) => {
                    self.back_to_source();
                    return Err(e);
                }
            }
        }
        let dumped = self
            .timed(
                "checkpoint",
                source.checkpoint_for_migration(container, CHECKPOINT, pages),
            )
            .await;
        let mut dumped = match dumped {
            Ok(dumped) => dumped,
            Err(e) => {
                self.back_to_source();
                return Err(dump_failed(source, container, e));
            }
        };
        if dumped.serving.is_none() {
            // The dump killed the processes; the source's runc forgets them.
            self.timed("stop", source.stop(container)).await?;
        }
        if let (Some(segment), EngineKind::Podman) = (self.segment, source.kind()) {
            // Podman restores into the namespace path its archive names.
            if let Err(e) = segment.lend_source_path() {
                return Err(self.after_failed_hand_over(method, e).await);
            }
        }
        let lazy_from = matches!(pages, PageDestination::Lazy(_)).then_some(self.lazy_at);
        if let Err(e) = self.hand_over(stream, lazy_from).await {
            return Err(self.after_failed_hand_over(method, e).await);
        }
        if let Some(segment) = self.segment {
            segment.attach_destination()?;
            self.window = Some((started, Instant::now()));
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
        let total = started.elapsed();
        let stats = dumped.stats.dump();
        tracing::debug!("the migration dump's statistics: {stats:?}");
        let images = source
            .container_dir(container)
            .map(|d| d.join("images").join(CHECKPOINT));
        self.criu_page_bytes = match images {
            Some(images) => meter::criu_page_bytes(method, stats.as_ref(), &images),
            // Docker's and Podman's stop-and-copy: every page is in the
            // checkpoint they wrote.
            None => (method == MigrationMethod::Copy).then_some(0),
        };
        // A lazy dump's statistics are written after it served the pages,
        // with its frozen time counted to then: not the dump's phases.
        self.criu_dump = stats.filter(|_| method != MigrationMethod::Lazy);
        Ok((downtime, total))
    }
}

/// A failed dump left the workload running at the source (CRIU resumes
/// it), whatever the method: says so, with CRIU's words for runc (the
/// criu engine already gives them).
fn dump_failed(source: &AnyEngine, container: &Container, e: anyhow::Error) -> anyhow::Error {
    let log = source
        .container_dir(container)
        .map(|d| d.join("work").join(CHECKPOINT).join("dump.log"))
        .filter(|log| source.kind() == EngineKind::Runc && log.exists());
    let e = match log {
        Some(log) => e.context(crate::engine::criu::criu_log_errors(&log)),
        None => e,
    };
    e.context("the dump failed, so nothing left the source: CRIU resumed the workload there")
}

/// Sends what the destination needs: the checkpoint's images, and for
/// runc the root filesystem its config.json names, never the config.json
/// (only the images for a program of the user's: the destination made its
/// own bundle from its own image), for a plain process tree its pid and
/// output files; Docker's checkpoint directory as `checkpoint/`, Podman's
/// exported archive as `checkpoint.tar`.
async fn send_bundle<S: AsyncWrite + Unpin>(
    stream: &mut S,
    source: &AnyEngine,
    container: &Container,
    program: bool,
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
        EngineKind::Runc if program => return Ok(sent),
        EngineKind::Runc => {
            let config =
                std::fs::read(dir.join("config.json")).context("the bundle has no config.json")?;
            let config: serde_json::Value = serde_json::from_slice(&config)?;
            let rootfs = config["root"]["path"]
                .as_str()
                .context("config.json names no root")?;
            sent += wire::send_tree(stream, Path::new(rootfs), Path::new("rootfs"), &none).await?;
            return Ok(sent);
        }
        _ => &["pid", "out.log"],
    };
    let not_wanted = |p: &Path| {
        p.parent() != Some(dir) || !top_files.iter().any(|f| p.file_name() == Some(f.as_ref()))
    };
    sent += wire::send_tree(stream, dir, Path::new(""), &not_wanted).await?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_without_the_engine_or_with_an_older_criu_is_refused() {
        let ours = (
            Some("4.1.1".to_string()),
            Some("runc version 1.1.5".to_string()),
        );
        let check = |criu: Option<&str>, runc: Option<&str>, kind| {
            let theirs = (criu.map(str::to_string), runc.map(str::to_string));
            check_destination_engine(kind, &ours, &theirs).map_err(|e| e.to_string())
        };
        assert!(check(Some("4.1.1"), Some("runc version 1.1.12"), EngineKind::Runc).is_ok());
        assert!(check(Some("4.2"), None, EngineKind::Criu).is_ok());
        assert!(check(Some("4.1"), Some("r"), EngineKind::Runc)
            .unwrap_err()
            .contains("older than this host's 4.1.1"));
        assert!(check(Some("3.17.1"), Some("r"), EngineKind::Runc).is_err());
        assert!(check(None, Some("r"), EngineKind::Runc)
            .unwrap_err()
            .contains("no working CRIU"));
        assert!(check(Some("4.1.1"), None, EngineKind::Runc)
            .unwrap_err()
            .contains("no runc"));
    }
}
