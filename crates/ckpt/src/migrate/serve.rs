//! `ckpt serve`: the destination half of a migration. It accepts only
//! clients whose certificate comes from its CA (a failed handshake creates
//! nothing), receives a checkpoint, restores it with its own engine state,
//! checks the restored workload and removes it when the client is done.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, Command};

mod accept;
mod bundle;
mod limits;
mod names;
mod outlog;
mod owned;
mod received;
mod steps;

use limits::Timed;
use owned::Owned;

use super::described::Program;
use super::program::make_bundle;
use super::tls::Credentials;
use super::wire::{self, Message};
use crate::engine::any::AnyEngine;
use crate::engine::criu::CriuEngine;
use crate::engine::moby::DockerEngine;
use crate::engine::runc::RuncEngine;
use crate::engine::{Container, Engine, Image};
use crate::model::{EngineKind, Point, RunSpec};
use crate::run::RunId;

/// The checkpoint's name on both hosts.
pub(crate) const CHECKPOINT: &str = "migrated";

/// The daemons a destination restores Docker and Podman containers with:
/// given sockets (a throwaway host's second daemons), or else this host's
/// dockerd and a Podman service ckpt starts.
#[derive(Debug, Clone, Default)]
pub struct Daemons {
    pub docker: Option<PathBuf>,
    pub podman: Option<PathBuf>,
}

/// Serves migrations on `listen` until `once` is done (a throwaway
/// destination serves exactly one).
pub async fn serve(
    listen: SocketAddr,
    creds: &Credentials,
    once: bool,
    daemons: &Daemons,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(creds.server_config()?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("ckpt serve: listening on {listen}");
    let serving = accept::Serving {
        acceptor,
        criu_tls: creds.criu_options(),
        daemons,
    };
    accept::serve_all(listener, serving, once).await
}

/// One migration, from the client's hello to its finish. Whatever it
/// created is removed on every path.
async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut Timed<S>,
    (own_ip, peer_ip): (IpAddr, IpAddr),
    criu_tls: Vec<String>,
    daemons: &Daemons,
) -> Result<()> {
    stream.allow(limits::HELLO_WAIT);
    let (kind, method, name, point, log) = wire::expect(stream, "a hello", |m| match m {
        Message::Hello {
            engine,
            method,
            name,
            point,
            log,
        } => Some((engine, method, name, point, log)),
        _ => None,
    })
    .await?;
    // The client's name is a label only; serve names what it makes.
    names::check_label(&name)?;
    let log = match kind {
        EngineKind::Criu => log
            .map(|l| outlog::check_shape(&l).map(|_| l))
            .transpose()?,
        _ => None,
    };
    let run = RunId::new();
    eprintln!("ckpt serve: receiving {name} as run {run}");
    let engine = destination_engine(kind, &run, daemons).await?;
    // Docker's and Podman's files arrive beside their daemon's storage.
    let scratch = match kind.has_daemon() {
        true => Some(crate::engine::os::rundir::create("serve", &run)?),
        false => None,
    };
    let own = names::own_container(&run);
    let mut host = Destination {
        engine,
        kind,
        run,
        scratch,
        image: None,
        container: Container {
            id: own.clone(),
            name: own,
        },
        owned: Owned::default(),
        source_log: log,
        criu_tls,
        helpers: Vec::new(),
        program: None,
        source_name: name.clone(),
    };
    let result = host.take(stream, method, point, (own_ip, peer_ip)).await;
    host.clean_up().await;
    result?;
    wire::send(stream, &Message::Done).await
}

/// This host's engine of `kind`, with state of its own for the run.
async fn destination_engine(kind: EngineKind, run: &RunId, daemons: &Daemons) -> Result<AnyEngine> {
    Ok(match kind {
        EngineKind::Runc => AnyEngine::Runc(RuncEngine::destination(run)?),
        EngineKind::Criu => AnyEngine::Criu(CriuEngine::destination(run)?),
        EngineKind::Docker => AnyEngine::Docker(match &daemons.docker {
            Some(socket) => DockerEngine::connect_socket(kind, socket).await?,
            None => DockerEngine::connect_checked().await?.0,
        }),
        EngineKind::Podman => AnyEngine::Docker(match &daemons.podman {
            Some(socket) => DockerEngine::connect_socket(kind, socket).await?,
            None => DockerEngine::podman(crate::engine::moby::podman::Service::start(run)?).await?,
        }),
    })
}

/// The destination's state for one migration.
struct Destination {
    engine: AnyEngine,
    kind: EngineKind,
    run: RunId,
    /// Where Docker's and Podman's files arrive (their daemons keep the
    /// rest); None for runc and criu, whose bundle is their own.
    scratch: Option<PathBuf>,
    /// The workload's image, loaded here for the move.
    image: Option<Image>,
    /// Where the process tree's output went at the source (criu engine).
    source_log: Option<PathBuf>,
    /// This host's credentials as CRIU's options, for the page server and
    /// the lazy-pages daemon.
    criu_tls: Vec<String>,
    container: Container,
    /// CRIU's page server or lazy-pages daemon, while they run.
    helpers: Vec<Child>,
    /// A program of the user's, whose bundle this host made itself.
    program: Option<Program>,
    /// What this host made for the move: removed, and nothing else.
    owned: Owned,
    /// The source's name for the container (a checked label).
    source_name: String,
}

impl Destination {
    fn bundle(&self) -> Result<PathBuf> {
        if let Some(scratch) = &self.scratch {
            return Ok(scratch.clone());
        }
        self.engine
            .container_dir(&self.container)
            .context("the destination has no bundle")
    }

    fn images(&self) -> Result<PathBuf> {
        Ok(self.bundle()?.join("images").join(CHECKPOINT))
    }

    fn work(&self) -> Result<PathBuf> {
        Ok(self.bundle()?.join("work").join(CHECKPOINT))
    }

    /// Loads the image that came as `image.tar` under its reference,
    /// which this daemon must not hold yet (serve never loads over, nor
    /// removes, an image it did not make); Docker's container is created
    /// now, under serve's own name, running ckpt's forker at the point
    /// (the client's arguments must be those), and started from the
    /// checkpoint later (Podman makes its container from the archive).
    async fn prepare(&mut self, image: String, args: Vec<String>, point: &Point) -> Result<()> {
        let AnyEngine::Docker(daemon) = &self.engine else {
            bail!("only Docker and Podman moves send an image");
        };
        names::check_image_reference(&image)?;
        let forker = crate::workload::forker_args(point, super::TICK_MS);
        // A program of the user's runs what its description says (Docker:
        // the process serve creates; Podman: what its archive says, whose
        // configuration is not yet inspected: see docs/migration.md).
        let described = self.program.as_ref().map(|p| p.process.argv.clone());
        if described.is_none() && args != forker {
            bail!(
                "the client asked to run {args:?}: serve runs ckpt's forker with {forker:?} only"
            );
        }
        if daemon.holds_image(&image).await? {
            bail!("the destination's daemon holds an image named {image} already: serve does not load over it (remove it there, or move another image)");
        }
        daemon.load_image(&self.bundle()?.join("image.tar")).await?;
        let image = Image {
            reference: image,
            size_bytes: 0,
            owned: true,
        };
        self.owned.image(&image);
        if self.kind == EngineKind::Docker {
            let (entrypoint, args) = match described {
                Some(mut argv) if !argv.is_empty() => {
                    let rest = argv.split_off(1);
                    (Some(argv), rest)
                }
                Some(_) => bail!("the program's description runs nothing"),
                None => (None, forker),
            };
            let spec = RunSpec {
                name: self.container.name.clone(),
                args,
                entrypoint,
                network: Default::default(),
                netns: None,
            };
            self.container = daemon.create(&self.run, &image, &spec).await?;
            self.owned.container(&self.container);
        }
        self.image = Some(image);
        Ok(())
    }

    /// Docker: the checkpoint goes where `start --checkpoint` finds it, in
    /// the container's own directory (dockerd 20.10 refuses a custom
    /// checkpoint directory, moby#37344). Podman: libpod imports the
    /// archive, making the container.
    async fn restore_in_daemon(
        &mut self,
    ) -> Result<(usize, Option<criu_image::RestoreStatsEntry>)> {
        let AnyEngine::Docker(daemon) = &self.engine else {
            bail!("not a Docker or Podman destination");
        };
        let scratch = self.bundle()?;
        if self.kind == EngineKind::Docker {
            // Where `start --checkpoint` looks: the container's own directory.
            let target = daemon
                .checkpoint_path(&self.container, CHECKPOINT)
                .context("the Docker daemon did not say where it keeps its data")?;
            move_dir(&scratch.join("checkpoint"), &target)?;
            let restored =
                crate::engine::restore_with_retry(&self.engine, &self.container, CHECKPOINT)
                    .await?;
            if let Some(program) = &self.program {
                self.join_program_network(program).await?;
            }
            let processes = self.engine.processes(&self.container).await?.len();
            return Ok((processes, restored.stats.restore()));
        } else {
            // With established connections the archive's name stays: the
            // source's (a label checked at the hello).
            let name = match daemon.tcp_established {
                true => self.source_name.clone(),
                false => self.container.name.clone(),
            };
            self.container = daemon
                .import_checkpoint(&scratch.join("checkpoint.tar"), &name)
                .await?;
            self.owned.container(&self.container);
            if self.program.is_some() {
                // A namespace Podman made comes back with loopback down
                // (ckpt's own, a service's with clients, has it up).
                crate::engine::serve_on_loopback(&self.engine, &self.container).await?;
            }
        }
        Ok((self.engine.processes(&self.container).await?.len(), None))
    }

    /// A program restored by Docker, in the namespace Docker made: its
    /// loopback up, and for a service with clients the destination's
    /// interface on the segment handed to it (from ckpt's namespace the
    /// client named, checked to be one of ckpt's).
    async fn join_program_network(&self, program: &Program) -> Result<()> {
        crate::engine::serve_on_loopback(&self.engine, &self.container).await?;
        if let Some(netns) = &program.netns {
            crate::engine::os::netns::ckpt_netns_path(netns)?;
            let pid = self.engine.root_pid(&self.container).await?;
            crate::engine::os::iface::hand_to(netns, super::segment::HOST_IF, pid)?;
        }
        Ok(())
    }

    /// A CRIU page server for the dump's pages, on a free port.
    fn start_page_server(&mut self, own_ip: IpAddr) -> Result<u16> {
        let port = free_port(own_ip)?;
        let child = Command::new("criu")
            .arg("page-server")
            .arg("--images-dir")
            .arg(self.images()?)
            .args([
                "--address",
                &own_ip.to_string(),
                "--port",
                &port.to_string(),
            ])
            .args(&self.criu_tls)
            .arg("-o")
            .arg(self.work()?.join("page-server.log"))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start criu page-server")?;
        self.helpers.push(child);
        wait_listening(SocketAddr::new(own_ip, port))?;
        Ok(port)
    }

    /// Restores the received checkpoint; with `lazy_from`, its memory comes
    /// from the source through a lazy-pages daemon. Returns the processes.
    async fn restore(
        &mut self,
        lazy_from: Option<SocketAddr>,
        point: &Point,
    ) -> Result<(usize, Option<criu_image::RestoreStatsEntry>)> {
        if self.kind.has_daemon() {
            return self.restore_in_daemon().await;
        }
        match self.kind {
            // A program's bundle is this host's own already.
            EngineKind::Runc if self.program.is_some() => {}
            EngineKind::Runc => bundle::write_forker_config(&self.engine, &self.container, point)?,
            _ => self.reopen_source_log()?,
        }
        // The page server exits once the dump has sent every page.
        for helper in &mut self.helpers {
            helper.wait().await?;
        }
        let restored = match lazy_from {
            Some(source) => {
                self.start_lazy_pages(source)?;
                self.engine
                    .restore_lazily(&self.container, CHECKPOINT)
                    .await
            }
            None => self.engine.restore(&self.container, CHECKPOINT).await,
        };
        // CRIU's own words, from its log: it goes with the run directory.
        let log = self.work()?.join("restore.log");
        let stats = restored.map_err(|e| e.context(crate::engine::criu::criu_log_errors(&log)))?;
        if self.program.is_some() {
            // runc restores a network namespace with loopback down: a
            // program serving on it would answer nobody, its check included.
            crate::engine::serve_on_loopback(&self.engine, &self.container).await?;
        }
        let processes = self.engine.processes(&self.container).await?.len();
        Ok((processes, stats.restore()))
    }

    /// The lazy-pages daemon: serves the restored processes' page faults
    /// from the source's memory. It listens in the checkpoint's work dir.
    fn start_lazy_pages(&mut self, source: SocketAddr) -> Result<()> {
        let child = Command::new("criu")
            .args(["lazy-pages", "--page-server", "--address"])
            .arg(source.ip().to_string())
            .args(["--port", &source.port().to_string()])
            .arg("--images-dir")
            .arg(self.images()?)
            .arg("--work-dir")
            .arg(self.work()?)
            .args(&self.criu_tls)
            .arg("-o")
            .arg(self.work()?.join("lazy-pages.log"))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start criu lazy-pages")?;
        self.helpers.push(child);
        wait_for_file(&self.work()?.join("lazy-pages.socket"))
    }

    /// A plain process tree's output file is restored at the path it had at
    /// the source (CRIU reopens files by path; its shape was checked): made
    /// there from the copy that came along when missing, and read through
    /// this host's own `out.log`.
    fn reopen_source_log(&mut self) -> Result<()> {
        let source = self
            .source_log
            .clone()
            .context("the client named no output file")?;
        let own = self.bundle()?.join("out.log");
        self.owned.paths(outlog::place(&source, &own)?);
        std::fs::remove_file(&own)?;
        std::os::unix::fs::symlink(&source, &own)?;
        Ok(())
    }

    /// Checks the restored workload as a sweep does: its processes, and
    /// each one's memory, threads and files.
    async fn verify(&mut self, point: Point, restore_began_us: u64) -> Message {
        // The ticks the workload printed on its own, up to the last page:
        // the pause its users saw. ckpt's check reads every page, which in
        // post-copy would fetch them all at once and pause the ticks for
        // ckpt's sake, not the move's.
        self.wait_for_pages().await;
        if let Some(program) = &self.program {
            return super::program::verify(&self.engine, &self.container, program).await;
        }
        tokio::time::sleep(Duration::from_millis(5 * super::TICK_MS)).await;
        let ticks = super::tick_times(&self.engine.logs(&self.container).await.unwrap_or_default());
        let ticks_us = limits::ticks_to_send(ticks, restore_began_us);
        let pids = match self.engine.processes(&self.container).await {
            Ok(pids) => pids,
            Err(e) => return Message::failed_check(0, format!("{e:#}")),
        };
        match crate::verify::check_state(
            &self.engine,
            &self.container,
            &pids,
            (point.threads, point.files),
        )
        .await
        {
            Ok(v) => Message::Verified {
                processes: pids.len(),
                memory_ok: Some(v.memory),
                threads_ok: Some(v.threads),
                files_ok: Some(v.files),
                problem: v.problem,
                ticks_us,
                state: None,
            },
            Err(e) => Message::failed_check(pids.len(), format!("{e:#}")),
        }
    }

    /// Post-copy: until the lazy-pages daemon has delivered every page
    /// and exited (bounded; the check then finds what is missing).
    async fn wait_for_pages(&mut self) {
        for helper in &mut self.helpers {
            let _ = tokio::time::timeout(PAGES, helper.wait()).await;
        }
    }

    async fn clean_up(&mut self) {
        for helper in &mut self.helpers {
            let _ = helper.kill().await;
        }
        // What serve made, by the ids its engine gave: never by a name of
        // the client's (the source's labels name the source's run).
        self.owned.remove(&self.engine).await;
        if let Some(scratch) = &self.scratch {
            let _ = crate::engine::os::rundir::remove(scratch);
        }
        if let Err(e) = self.engine.remove_run(&self.run).await {
            eprintln!("ckpt serve: cleaning up {} failed: {e:#}", self.run);
        }
    }
}

/// A port nobody listens on now (the kernel picks it).
fn free_port(ip: IpAddr) -> Result<u16> {
    let probe = std::net::TcpListener::bind(SocketAddr::new(ip, 0))?;
    Ok(probe.local_addr()?.port())
}

/// How long post-copy may take to deliver every page before the check.
const PAGES: Duration = Duration::from_secs(600);

/// How long CRIU's helpers may take to start listening.
const HELPER_START: Duration = Duration::from_secs(10);

/// Waits, at most HELPER_START, until `ready` holds; `what` names the wait.
fn wait_until(what: &str, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = std::time::Instant::now() + HELPER_START;
    while !ready() {
        if std::time::Instant::now() > deadline {
            bail!("{what} within {} s", HELPER_START.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Waits until something listens on `addr`'s port, read from this network
/// namespace's socket table (connecting would be taken for the dump: CRIU's
/// page server serves its first connection).
fn wait_listening(addr: SocketAddr) -> Result<()> {
    wait_until(
        &format!("CRIU's page server did not listen on {addr}"),
        || listening(addr.port()),
    )
}

/// Whether something listens on `port`, over IPv4 or IPv6 (a page server
/// on an IPv6 address, or on `::`, shows in tcp6 only).
fn listening(port: u16) -> bool {
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .any(|path| listens_in(&std::fs::read_to_string(path).unwrap_or_default(), port))
}

/// Whether a socket table as /proc/net/tcp or /proc/net/tcp6 prints it
/// holds a listening socket on `port`.
fn listens_in(table: &str, port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    // Columns: sl, local address (hex ip:port), remote, state (0A: LISTEN).
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() > 3 && cols[1].ends_with(&wanted) && cols[3] == "0A"
    })
}

fn wait_for_file(path: &Path) -> Result<()> {
    wait_until(&format!("{} did not appear", path.display()), || {
        path.exists()
    })
}

/// Moves a directory tree: a rename, or a copy where `to` is on another
/// file system (Docker's data root on disk, the files on /run).
fn move_dir(from: &Path, to: &Path) -> Result<()> {
    let parent = to
        .parent()
        .context("a checkpoint directory without a parent")?;
    crate::engine::os::rundir::make_private_dir(parent)?;
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    crate::engine::os::rundir::copy_tree(from, to)?;
    crate::engine::os::rundir::remove(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1C8C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1C8D 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1C8E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1C8F 0000000000000000FFFF00000100007F:A1B3 01 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn listeners_are_found_in_both_tables() {
        assert!(listens_in(TCP, 7308));
        assert!(listens_in(TCP6, 7310), "an IPv6 listener");
        assert!(!listens_in(TCP, 7309), "a connection, not a listener");
        assert!(!listens_in(TCP6, 7311), "a connection, not a listener");
        assert!(!listens_in(TCP, 7310) && !listens_in("", 7308));
    }

    #[test]
    fn a_listener_on_ipv6_is_seen() {
        // Hosts without IPv6 have nothing to show.
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            return;
        };
        let port = listener.local_addr().unwrap().port();
        assert!(listening(port), "port {port}");
    }
}
