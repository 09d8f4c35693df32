//! Migration: move a running container to another host and measure what
//! its users see. The source checkpoints (memory pages into the images, to
//! a CRIU page server at the destination, or left at the source for
//! post-copy), sends the rest over a mutual-TLS link to `ckpt serve`, which
//! restores and checks it. Downtime runs on the source's monotonic clock
//! from the checkpoint request to the destination's "restored".

pub mod link;
pub mod meter;
pub mod program;
pub mod serve;
mod start;
pub mod tls;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
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
use crate::model::{EngineKind, MigrationMethod, Point};
use crate::run::{RunId, Stop};
use link::Link;
use meter::{BytesCounted, Counted};
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
    /// A program of the user's (runc) instead of ckpt's forker.
    pub program: Option<crate::program::UserProgram>,
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
    /// Bytes that crossed to and from the destination, counted as
    /// `bytes_counted` says.
    pub bytes_sent: u64,
    pub bytes_counted: BytesCounted,
    /// The checkpoint's images on the source's disk (pages excluded when
    /// they went elsewhere).
    pub image_bytes: u64,
    pub processes_before: usize,
    /// The longest interval between two consecutive ticks of the
    /// workload's first process across the move (it ticks every 10 ms):
    /// the pause its users saw. Unknown (None) for a program of the
    /// user's, which prints no ticks.
    pub gap_ms: Option<f64>,
    pub check: Message,
    /// The image of the user's program moved (None: ckpt's forker).
    pub program: Option<String>,
    /// Whether the program's check (--check-cmd) printed at the
    /// destination after the restore what it printed at the source before
    /// the dump (None: no check).
    pub state_ok: Option<bool>,
    /// What differed, when state_ok is false.
    pub state_problem: Option<String>,
}

impl Migration {
    /// Same processes, and every one found its memory, threads and files;
    /// for a program of the user's, as many processes and its state kept.
    pub fn verified(&self) -> bool {
        if self.program.is_some() {
            return self.state_ok != Some(false)
                && matches!(&self.check, Message::Verified {
                    processes,
                    problem: None,
                    ..
                } if *processes == self.processes_before);
        }
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
pub const LAZY_PORT: u16 = 7208;
/// How long `ckpt serve` may take to start listening.
const SERVE_START: Duration = Duration::from_secs(15);

/// How long connecting to a remote `ckpt serve` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    let outcome = move_one(
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

/// A destination host (a throwaway one with its `ckpt serve`, or the
/// user's), and the source's engine: one migration's, or all the migration
/// trials of a sweep.
pub struct Session {
    dir: PathBuf,
    host: Host,
    client: tls::Credentials,
    source: AnyEngine,
    kind: EngineKind,
}

/// The destination host.
enum Host {
    /// On this machine, made for the run: removed at its end.
    Throwaway {
        link: Link,
        serving: tokio::process::Child,
        /// Docker's or Podman's second daemon, the destination's engine
        /// (boxed: it is large, and a remote host has none).
        daemon: Option<Box<SecondDaemon>>,
    },
    /// Elsewhere, run by the user.
    Remote {
        to: String,
        lazy_listen: Option<SocketAddr>,
    },
}

impl Session {
    /// Makes the source's side and, for a throwaway destination, the host,
    /// its credentials and its server.
    pub async fn open(kind: EngineKind, run: &RunId, target: &Target) -> Result<Session> {
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
        let made = match target {
            Target::Throwaway { link_rate, once } => {
                throwaway_host(&dir, kind, run, link_rate.as_deref(), *once)
            }
            Target::Remote(remote) => remote_host(&dir, remote),
        };
        let (host, client, criu_conf) = match made {
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
            host,
            client,
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
            program: None,
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

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Removes the source's state and, for a throwaway destination, its
    /// state, server and link; then the credentials ckpt made.
    pub async fn close(mut self, run: &RunId) {
        let _ = self.source.remove_run(run).await;
        if let Host::Throwaway {
            link,
            serving,
            daemon,
        } = &mut self.host
        {
            let _ = tokio::time::timeout(Duration::from_secs(10), serving.wait()).await;
            let _ = serving.kill().await;
            // The second daemon goes with everything it held.
            if let Some(mut daemon) = daemon.take() {
                if let Err(e) = daemon.stop() {
                    eprintln!(
                        "ckpt migrate: stopping the destination's daemon failed: {e:#}; run `ckpt gc`"
                    );
                }
            }
            // A runc or criu destination that died kept its state: the
            // throwaway host is ours, so its leftovers are too (those of
            // dead runs only, which for this process's own engines would be
            // all: Docker's and Podman's destination went with their daemon).
            if !self.kind.has_daemon() {
                if let Err(e) = crate::engine::any::remove_orphans(self.kind).await {
                    eprintln!(
                        "ckpt migrate: cleaning up the destination failed: {e:#}; run `ckpt gc`"
                    );
                }
            }
            link.remove();
        }
        let _ = crate::engine::os::rundir::remove(&self.dir);
    }
}

/// A throwaway host: its link, credentials made for it, its server.
/// Returns the host, the source's credentials and its CRIU configuration.
fn throwaway_host(
    dir: &Path,
    kind: EngineKind,
    run: &RunId,
    link_rate: Option<&str>,
    once: bool,
) -> Result<(Host, tls::Credentials, PathBuf)> {
    let link = Link::create(run, link_rate)?;
    // One directory per host: a sweep over two engines makes two.
    let own = dir.join(&link.netns);
    crate::engine::os::rundir::make_private_dir(&own)?;
    let ips = [link.peer_addr.into(), link.host_addr.into()];
    let (server, client) = tls::throwaway(&own, &ips)?;
    // CRIU's own connections use the same credentials: runc reads them
    // from a configuration file its containers name.
    let criu_conf = own.join("criu-tls.conf");
    std::fs::write(&criu_conf, client.criu_config())?;
    let daemon = kind
        .has_daemon()
        .then(|| SecondDaemon::start(kind, run, &link.netns).map(Box::new))
        .transpose()?;
    let serving = spawn_serve(&link, &server, &own, once, daemon.as_deref())?;
    let host = Host::Throwaway {
        link,
        serving,
        daemon,
    };
    Ok((host, client, criu_conf))
}

/// The user's destination: nothing to make there; CRIU's configuration
/// names the user's credentials (absolute paths: runc's CRIU runs
/// elsewhere).
fn remote_host(dir: &Path, remote: &Remote) -> Result<(Host, tls::Credentials, PathBuf)> {
    let absolute =
        |p: &Path| std::fs::canonicalize(p).with_context(|| format!("cannot read {}", p.display()));
    let client = tls::Credentials {
        ca: absolute(&remote.creds.ca)?,
        cert: absolute(&remote.creds.cert)?,
        key: absolute(&remote.creds.key)?,
    };
    // Read now, so that a wrong file is named before anything starts.
    client.client_config()?;
    let criu_conf = dir.join("criu-tls.conf");
    std::fs::write(&criu_conf, client.criu_config())?;
    let host = Host::Remote {
        to: remote.to.clone(),
        lazy_listen: remote.lazy_listen,
    };
    Ok((host, client, criu_conf))
}

/// ckpt's TLS stream to the destination, counted.
type Stream = tokio_rustls::client::TlsStream<Counted<tokio::net::TcpStream>>;

impl Host {
    /// Connects to the destination's `ckpt serve`.
    async fn connect(&self, creds: &tls::Credentials) -> Result<Stream> {
        match self {
            Host::Throwaway { link, .. } => {
                connect(SocketAddr::new(link.peer_addr.into(), SERVE_PORT), creds).await
            }
            Host::Remote { to, .. } => connect_remote(to, creds).await,
        }
    }

    /// Where the source serves lazy pages, given the local address of
    /// the connection to the destination.
    fn lazy_address(&self, local: IpAddr) -> SocketAddr {
        match self {
            Host::Remote {
                lazy_listen: Some(addr),
                ..
            } => *addr,
            _ => SocketAddr::new(local, LAZY_PORT),
        }
    }

    fn name(&self) -> String {
        match self {
            Host::Throwaway { link, .. } => format!("{}:{SERVE_PORT}", link.peer_addr),
            Host::Remote { to, .. } => to.clone(),
        }
    }

    /// Bytes so far: the link's counters, or the stream's.
    fn bytes(&self, stream: &Stream) -> Result<u64> {
        match self {
            Host::Throwaway { link, .. } => link.bytes(),
            Host::Remote { .. } => Ok(stream.get_ref().0.bytes()),
        }
    }
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

/// Connects to the throwaway host's `ckpt serve`, retrying while it
/// starts (bounded).
async fn connect(addr: SocketAddr, creds: &tls::Credentials) -> Result<Stream> {
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let deadline = Instant::now() + SERVE_START;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => return tls::handshake(creds, name, tcp, &addr.to_string()).await,
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

/// Connects to a `ckpt serve` elsewhere, once, within CONNECT_TIMEOUT.
async fn connect_remote(to: &str, creds: &tls::Credentials) -> Result<Stream> {
    let host = to
        .rsplit_once(':')
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
        .with_context(|| format!("--to {to}: give HOST:PORT"))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .with_context(|| format!("--to {to}: '{host}' is neither an IP address nor a DNS name"))?;
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(to)).await
    {
        Err(_) => bail!(
            "the destination {to} did not answer within {} s: check the address and port, that the host is up, and that no firewall drops the port",
            CONNECT_TIMEOUT.as_secs()
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => bail!(
            "nothing listens at {to} (connection refused): start `ckpt serve --listen ADDR:PORT --ca CA.pem --cert CERT.pem --key KEY.pem` there, or check the port"
        ),
        Ok(Err(e)) => return Err(e).with_context(|| format!("cannot reach the destination {to}")),
        Ok(Ok(tcp)) => tcp,
    };
    tls::handshake(creds, name, tcp, to).await
}

/// Starts the workload, waits until it is ready, and moves it.
async fn move_one(
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
    let (image_spec, spec) = start::specs(options, name);
    let image = source.build_image(run, &image_spec).await?;
    let container = source.run(run, &image, &spec).await?;
    let workload = Workload {
        container: &container,
        image: &image,
        args: &spec.args,
        scratch,
    };
    let moved = move_running(source, &workload, options, stop, host, &mut stream).await;
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
    host: &Host,
    stream: &mut Stream,
) -> Result<Migration> {
    let container = workload.container;
    let processes_before = start::wait_until_ready(source, container, options, stop).await?;
    stop.check()?;
    let tcp = stream.get_ref().0.get_ref();
    let (local, peer) = (tcp.local_addr()?, tcp.peer_addr()?);
    wire::send(stream, &hello(source, container, options)?).await?;
    let bytes_before = host.bytes(stream)?;
    let mut mover = Mover {
        source,
        container,
        peer: peer.ip(),
        lazy_at: host.lazy_address(local.ip()),
        phases: Vec::new(),
        criu_page_bytes: None,
        program: options.program.is_some(),
    };
    if options.engine.has_daemon() {
        mover
            .timed("prepare", prepare_destination(stream, source, workload))
            .await?;
    }
    let state_before = match &options.program {
        Some(program) => program::before_dump(&mut mover, stream, program, &options.point).await?,
        None => None,
    };
    let (downtime, total) = mover.run(stream, options.method).await?;
    let check = wire::recv(stream).await?;
    let gap_ms = gap_across(source, container, &check).await;
    let (state_ok, state_problem) =
        program::state_verdict(options.program.as_ref(), state_before.as_deref(), &check);
    let (bytes_sent, bytes_counted) =
        finish(stream, host, bytes_before, mover.criu_page_bytes).await?;
    let image_bytes = checkpoint_on_source(source, container)
        .and_then(|p| crate::engine::dir_size(&p).or_else(|| Some(p.metadata().ok()?.len())));
    Ok(Migration {
        engine: options.engine,
        method: options.method,
        phases: mover.phases,
        downtime_ms: ms(downtime),
        total_ms: ms(total),
        bytes_sent,
        bytes_counted,
        image_bytes: image_bytes.unwrap_or(0),
        processes_before,
        gap_ms,
        check,
        program: options.program.as_ref().map(|p| p.user.image.clone()),
        state_ok,
        state_problem,
    })
}

/// The longest pause of the workload's ticks across the move (None
/// without ticks on both hosts: a program of the user's prints none).
async fn gap_across(source: &AnyEngine, container: &Container, check: &Message) -> Option<f64> {
    let source_ticks = tick_times(&source.logs(container).await.unwrap_or_default());
    match check {
        Message::Verified { ticks_us, .. } => longest_gap_ms(&source_ticks, ticks_us),
        _ => None,
    }
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

/// The bytes a move sent and how they were counted: the throwaway link's
/// counters hold everything; to a remote host ckpt counted its own stream
/// and adds CRIU's pages when it knows them.
fn bytes_of_move(host: &Host, counted: u64, criu_pages: Option<u64>) -> (u64, BytesCounted) {
    match (host, criu_pages) {
        (Host::Throwaway { .. }, _) => (counted, BytesCounted::Link),
        (Host::Remote { .. }, Some(pages)) => (counted + pages, BytesCounted::StreamAndCriuPages),
        (Host::Remote { .. }, None) => (counted, BytesCounted::StreamOnly),
    }
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
struct Mover<'a> {
    source: &'a AnyEngine,
    container: &'a Container,
    /// The destination's address, as the source reaches it.
    peer: IpAddr,
    /// Where the source serves lazy pages.
    lazy_at: SocketAddr,
    phases: Vec<Phase>,
    /// What CRIU sent over its own connection, when its statistics say.
    criu_page_bytes: Option<u64>,
    /// A program of the user's: the destination made its own bundle.
    program: bool,
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
        let sent = send_bundle(stream, source, container, self.program);
        self.timed("transfer", sent).await?;
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
                PageDestination::PageServer(SocketAddr::new(self.peer, port))
            }
            MigrationMethod::Lazy => PageDestination::Lazy(self.lazy_at),
        };
        let started = Instant::now();
        let (source, container) = (self.source, self.container);
        let dumped = self
            .timed(
                "checkpoint",
                source.checkpoint_for_migration(container, CHECKPOINT, pages),
            )
            .await;
        let mut dumped = dumped.map_err(|e| dump_failed(source, container, e))?;
        if dumped.serving.is_none() {
            // The dump killed the processes; the source's runc forgets them.
            self.timed("stop", source.stop(container)).await?;
        }
        let lazy_from = matches!(pages, PageDestination::Lazy(_)).then_some(self.lazy_at);
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
        let total = started.elapsed();
        let stats = dumped.stats.dump();
        tracing::debug!("the migration dump's statistics: {stats:?}");
        let images = source
            .container_dir(container)
            .map(|d| d.join("images").join(CHECKPOINT));
        self.criu_page_bytes =
            images.and_then(|images| meter::criu_page_bytes(method, stats.as_ref(), &images));
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
