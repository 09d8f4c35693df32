//! Where a move goes: a throwaway host made on this machine (a network
//! namespace, its link, credentials and its own `ckpt serve`) or the
//! user's `ckpt serve` elsewhere; and the source's engine.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::link::Link;
use super::meter::{BytesCounted, Counted};
use super::{tls, Remote, Target, LAZY_PORT};
use crate::engine::any::AnyEngine;
use crate::engine::criu::CriuEngine;
use crate::engine::moby::podman::Service;
use crate::engine::moby::second::SecondDaemon;
use crate::engine::moby::DockerEngine;
use crate::engine::runc::RuncEngine;
use crate::engine::Engine;
use crate::model::EngineKind;
use crate::run::RunId;

/// The port `ckpt serve` listens on at the throwaway destination.
const SERVE_PORT: u16 = 7207;
/// How long `ckpt serve` may take to start listening.
const SERVE_START: Duration = Duration::from_secs(15);

/// How long connecting to a remote `ckpt serve` may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A destination host (a throwaway one with its `ckpt serve`, or the
/// user's), and the source's engine: one migration's, or all the migration
/// trials of a sweep.
pub struct Session {
    pub(super) dir: PathBuf,
    pub(super) host: Host,
    pub(super) client: tls::Credentials,
    pub(super) source: AnyEngine,
    kind: EngineKind,
}

/// The destination host.
pub(super) enum Host {
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
    /// `established`: the source's engine dumps established connections
    /// (a service moved with its clients).
    pub async fn open(
        kind: EngineKind,
        run: &RunId,
        target: &Target,
        established: bool,
    ) -> Result<Session> {
        // The source's daemon first: when it is not there, nothing is made.
        let daemon_source = match kind {
            EngineKind::Docker => Some(AnyEngine::Docker(DockerEngine::connect_checked().await?.0)),
            // A service of its own: a sweep's podman engine has the run's.
            EngineKind::Podman => {
                let mut podman =
                    DockerEngine::podman(Service::start_tagged(run, "migrate")?).await?;
                podman.tcp_established = established;
                Some(AnyEngine::Docker(podman))
            }
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
                let mut criu = CriuEngine::new().with_criu_options(client.criu_options());
                criu.tcp_established = established;
                AnyEngine::Criu(criu)
            }
            EngineKind::Docker | EngineKind::Podman => match daemon_source {
                Some(engine) => engine,
                None => bail!("no {kind} engine was opened at the source"),
            },
            EngineKind::Runc => {
                let mut runc = RuncEngine::new(None)
                    .with_writable_rootfs()
                    .with_criu_config(criu_conf);
                runc.tcp_established = established;
                AnyEngine::Runc(runc)
            }
        };
        Ok(Session {
            dir,
            host,
            client,
            source,
            kind,
        })
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
pub(super) type Stream = tokio_rustls::client::TlsStream<Counted<tokio::net::TcpStream>>;

impl Host {
    /// Connects to the destination's `ckpt serve`.
    pub(super) async fn connect(&self, creds: &tls::Credentials) -> Result<Stream> {
        match self {
            Host::Throwaway { link, .. } => {
                connect(SocketAddr::new(link.peer_addr.into(), SERVE_PORT), creds).await
            }
            Host::Remote { to, .. } => connect_remote(to, creds).await,
        }
    }

    /// Where the source serves lazy pages, given the local address of
    /// the connection to the destination.
    pub(super) fn lazy_address(&self, local: IpAddr) -> SocketAddr {
        match self {
            Host::Remote {
                lazy_listen: Some(addr),
                ..
            } => *addr,
            _ => SocketAddr::new(local, LAZY_PORT),
        }
    }

    pub(super) fn name(&self) -> String {
        match self {
            Host::Throwaway { link, .. } => format!("{}:{SERVE_PORT}", link.peer_addr),
            Host::Remote { to, .. } => to.clone(),
        }
    }

    /// Bytes so far: the link's counters, or the stream's.
    pub(super) fn bytes(&self, stream: &Stream) -> Result<u64> {
        match self {
            Host::Throwaway { link, .. } => link.bytes(),
            Host::Remote { .. } => Ok(stream.get_ref().0.bytes()),
        }
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

/// The bytes a move sent and how they were counted: the throwaway link's
/// counters hold everything; to a remote host ckpt counted its own stream
/// and adds CRIU's pages when it knows them.
pub(super) fn bytes_of_move(
    host: &Host,
    counted: u64,
    criu_pages: Option<u64>,
) -> (u64, BytesCounted) {
    match (host, criu_pages) {
        (Host::Throwaway { .. }, _) => (counted, BytesCounted::Link),
        (Host::Remote { .. }, Some(pages)) => (counted + pages, BytesCounted::StreamAndCriuPages),
        (Host::Remote { .. }, None) => (counted, BytesCounted::StreamOnly),
    }
}
