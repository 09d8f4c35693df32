//! `ckpt migrate`, `ckpt serve` and `ckpt credentials`: move a running
//! container to another host (a `ckpt serve` elsewhere, or a throwaway one
//! on this machine) and measure the downtime.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use ckpt::migrate::{self, tls::Credentials, MigrateOptions, Migration, Remote, Target};
use ckpt::model::{EngineKind, MigrationMethod, Point};
use ckpt::run::{self as cleanup, RunId, Stop};

#[derive(clap::Args, Debug)]
pub(super) struct MigrateArgs {
    /// Engine of the container to move
    #[arg(long, value_enum, default_value_t = EngineKind::Runc)]
    engine: EngineKind,
    /// Move a running container of yours (name or id; Docker) to a throwaway host and back into the same container, both moves timed and checked (--check-cmd runs in it); by copy only
    #[arg(long, value_name = "NAME_OR_ID", conflicts_with_all = ["image", "cmd", "probe", "to", "link_rate", "children", "memory_mib"])]
    container: Option<String>,
    /// copy (stop-and-copy), page-server (pages streamed to the destination's CRIU), lazy (post-copy)
    #[arg(long, value_enum, default_value_t = MigrationMethod::Copy)]
    method: MigrationMethod,
    /// Child processes of the workload
    #[arg(long, default_value_t = 1)]
    children: u32,
    /// Move a program of yours instead of ckpt's workload: an image already in Docker's or Podman's storage on both hosts (never pulled), running --cmd (on docker and podman by copy)
    #[arg(long, requires = "cmd", value_name = "IMG")]
    image: Option<String>,
    #[command(flatten)]
    program: super::program::ProgramArgs,
    /// MiB each process writes and keeps resident
    #[arg(long, default_value_t = 0)]
    memory_mib: u32,
    /// Move a service with its clients connected: a client in a namespace of ckpt's keeps it busy (tcp:PORT a line echoed, http:PORT[/PATH] a GET, redis:PORT an INCR per connection) and says what it saw; with --cmd (and --image but on criu), to the throwaway host; connections are dumped established (Docker's are closed, and the clients reconnect)
    #[arg(long, value_name = "KIND:PORT", requires = "cmd")]
    probe: Option<ckpt::probe::ProbeSpec>,
    /// With --probe: persistent connections
    #[arg(long, value_name = "N", default_value_t = ckpt::probe::DEFAULT_CONNECTIONS, requires = "probe")]
    probe_connections: usize,
    /// With --probe: each connection's time between requests
    #[arg(long, value_name = "DURATION", default_value = "10ms", value_parser = super::positive_duration, requires = "probe")]
    probe_interval: std::time::Duration,
    /// With --probe: the client's minimum TCP retransmission timeout (the kernel's is 200 ms, doubling: it stretches the gap clients see past the service's own pause)
    #[arg(long, value_name = "DURATION", value_parser = super::positive_duration, requires = "probe")]
    probe_rto_min: Option<std::time::Duration>,
    /// With --probe: also write every request the clients sent to FILE as CSV (sent_ms since the checkpoint request, latency_ms, connection, outcome, the move's window_end_ms)
    #[arg(long, value_name = "FILE", requires = "probe")]
    probe_timeline: Option<PathBuf>,
    /// Limit the throwaway link's rate (tc syntax: 1gbit, 100mbit; default: unshaped)
    #[arg(long, value_name = "RATE", value_parser = rate, conflicts_with = "to")]
    link_rate: Option<String>,
    /// Move to the `ckpt serve` at HOST:PORT (another host) instead of a throwaway one here
    #[arg(long, value_name = "HOST:PORT", requires_all = ["ca", "cert", "key"])]
    to: Option<String>,
    /// With --to: the CA certificate (PEM) that issued the destination's certificate
    #[arg(long, requires = "to")]
    ca: Option<PathBuf>,
    /// With --to: this host's certificate (PEM), from the CA the destination trusts
    #[arg(long, requires = "to")]
    cert: Option<PathBuf>,
    /// With --to: this host's private key (PEM)
    #[arg(long, requires = "to")]
    key: Option<PathBuf>,
    /// With --to and --method lazy: where this host serves the pages (IP or IP:PORT; default: the address it reaches the destination from, port 7208)
    #[arg(long, value_name = "ADDR", value_parser = lazy_listen, requires = "to")]
    lazy_listen: Option<SocketAddr>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub(super) struct ServeArgs {
    /// Address to listen on
    #[arg(long)]
    listen: SocketAddr,
    /// CA certificate (PEM) that clients' certificates must come from
    #[arg(long)]
    ca: PathBuf,
    /// This server's certificate (PEM)
    #[arg(long)]
    cert: PathBuf,
    /// This server's private key (PEM)
    #[arg(long)]
    key: PathBuf,
    /// Serve one migration, then exit
    #[arg(long)]
    once: bool,
    /// Restore Docker containers with the dockerd on this socket (default: DOCKER_HOST or /var/run/docker.sock)
    #[arg(long, value_name = "PATH")]
    docker_socket: Option<PathBuf>,
    /// Restore Podman containers with the Podman service on this socket (default: a service ckpt starts)
    #[arg(long, value_name = "PATH")]
    podman_socket: Option<PathBuf>,
}

pub(super) async fn migrate(args: MigrateArgs) -> Result<u8> {
    let stop = Stop::watch();
    if let Some(container) = &args.container {
        if args.method != MigrationMethod::Copy {
            anyhow::bail!("--container moves by copy only: with {} the container's memory would leave this host during the move, and a failure could lose it", args.method.name());
        }
        let options = migrate::existing::ContainerOptions {
            engine: args.engine,
            container: container.clone(),
            check: args.program.container_check()?,
        };
        return super::container::migrate(&options, args.json, &stop).await;
    }
    let probe = probe_options(&args)?;
    let options = MigrateOptions {
        engine: args.engine,
        method: args.method,
        point: Point {
            children: args.children,
            memory_mib: args.memory_mib,
            ..Default::default()
        },
        link_rate: args.link_rate,
        program: args
            .program
            .program(args.image.as_deref(), args.engine == EngineKind::Criu)?,
        probe,
    };
    if options.method != MigrationMethod::Copy {
        eprintln!(
            "ckpt migrate: with {} the memory leaves the source during the move: if the destination fails, the workload is lost",
            options.method.name()
        );
    }
    let target = match (args.to, args.ca, args.cert, args.key) {
        (Some(to), Some(ca), Some(cert), Some(key)) => Target::Remote(Remote {
            to,
            creds: Credentials { ca, cert, key },
            lazy_listen: args.lazy_listen,
        }),
        _ => Target::Throwaway {
            link_rate: options.link_rate.clone(),
            once: true,
        },
    };
    let run = RunId::new();
    let moving = migrate::migrate_to(&options, &target, &run, &stop);
    let moved = cleanup::run_stoppable(&stop, moving).await;
    let moved = super::clean_cut_short(Some(options.engine), moved).await?;
    if args.json {
        ckpt::stdout::println(&serde_json::to_string_pretty(&moved)?)?;
    } else {
        ckpt::stdout::print(&describe(&moved))?;
    }
    if let Some(path) = &args.probe_timeline {
        write_timeline(path, &moved)?;
    }
    Ok(u8::from(!moved.verified()))
}

/// Writes the clients' timeline (--probe-timeline), once what the move
/// measured is printed: a file that cannot be written loses nothing else.
fn write_timeline(path: &Path, m: &Migration) -> Result<()> {
    let Some(timeline) = &m.client_timeline else {
        anyhow::bail!(
            "the move has no window of its clients' requests, so {} was not written",
            path.display()
        );
    };
    std::fs::write(path, timeline.to_csv()?).with_context(|| {
        format!(
            "cannot write the clients' timeline to {} (the move's figures are above)",
            path.display()
        )
    })
}

/// --probe and its settings, checked.
fn probe_options(args: &MigrateArgs) -> Result<Option<migrate::ProbeOptions>> {
    let Some(spec) = args.probe.clone() else {
        return Ok(None);
    };
    let spec = spec
        .with_connections(args.probe_connections)?
        .with_interval(args.probe_interval)?;
    Ok(Some(migrate::ProbeOptions {
        spec,
        rto_min: args.probe_rto_min,
    }))
}

fn describe(m: &Migration) -> String {
    let mut out = format!(
        "migration of a {} container by {}\n",
        m.engine,
        m.method.name()
    );
    for phase in &m.phases {
        out.push_str(&format!("  {:<12} {:>9.1} ms\n", phase.name, phase.ms));
    }
    // Only ckpt's forker ticks: a program's pause is unknown, not zero.
    let gap = match (m.gap_ms, &m.program) {
        (Some(g), _) => format!("{g:.1} ms"),
        (None, Some(_)) => "unknown (your program prints no ticks)".to_string(),
        (None, None) => "- ms".to_string(),
    };
    let gap = match m.clock {
        Some(c) if m.gap_ms.is_some() => format!(
            "{gap} (±{:.1} ms: the destination's clock, {:+.1} ms from this host's, was read over the link)",
            c.uncertainty_ms, c.offset_ms
        ),
        _ => gap,
    };
    let known = |b: Option<u64>| b.map_or("unknown".to_string(), |b| b.to_string());
    out.push_str(&format!(
        "  downtime     {:>9.1} ms\n  total        {:>9.1} ms\n  ticks' gap   {:>12}\n  bytes sent   {:>9} ({})\n  checkpoint   {:>9} bytes (images on the source: {}; the rest is the pages CRIU sent itself)\n",
        m.downtime_ms,
        m.total_ms,
        gap,
        m.bytes_sent,
        m.bytes_counted.label(),
        known(m.checkpoint_bytes),
        known(m.image_bytes),
    ));
    if let Some(client) = &m.client {
        out.push_str(&client_view(client));
    }
    let verdict = if let Some(image) = &m.program {
        program_verdict(m, image)
    } else if m.verified() {
        format!("verified: the same {} processes run at the destination, memory, threads and files intact", m.processes_before)
    } else {
        format!(
            "NOT verified ({} processes before): {:?}",
            m.processes_before, m.check
        )
    };
    out.push_str(&format!("  {verdict}\n"));
    out
}

/// What the probe's clients saw, beside ckpt's own downtime.
fn client_view(c: &ckpt::probe::ProbeSummary) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut out = format!(
        "  clients      {} {} connection(s), {} kept; {} request(s): {} ok, {} failed, {} unknown (sent, then the connection was lost); {} reconnect(s)\n",
        c.connections, c.kind, c.connections_kept, c.requests, c.requests_ok, c.requests_failed, c.requests_unknown, c.reconnects
    );
    out.push_str(&format!(
        "  client gap   {:>9.1} ms (the longest any connection waited for a reply)\n  latency      during the move p50 {} p99 {} max {} ms; outside it p50 {} p99 {} max {} ms\n",
        c.gap_ms,
        ms(c.inside.p50_ms), ms(c.inside.p99_ms), ms(c.inside.max_ms),
        ms(c.outside.p50_ms), ms(c.outside.p99_ms), ms(c.outside.max_ms),
    ));
    if let Some(ok) = c.counters_ok {
        let verdict = match ok {
            true => "every connection's counter holds each INCR it saw answered, none twice",
            false => "a counter lost or repeated a write",
        };
        out.push_str(&format!("  counters     {verdict}\n"));
    }
    for problem in &c.problems {
        out.push_str(&format!("  probe        {problem}\n"));
    }
    out
}

/// The verdict on a program of the user's: its process count and state_ok.
fn program_verdict(m: &Migration, image: &str) -> String {
    let state = match (m.state_ok, &m.state_problem) {
        (Some(true), _) => "state_ok true: --check-cmd printed the same at the destination after the restore as at the source before the dump".to_string(),
        (Some(false), problem) => format!("state_ok false: {}", problem.as_deref().unwrap_or("")),
        (None, _) => "state_ok unknown: no --check-cmd".to_string(),
    };
    let head = match m.verified() {
        true => format!(
            "verified: {image} runs at the destination as {} process(es), as at the source",
            m.processes_before
        ),
        false => format!(
            "NOT verified ({} processes before): {:?}",
            m.processes_before, m.check
        ),
    };
    format!("{head}\n  {state}")
}

/// A rate in tc's syntax, checked before anything is made.
fn rate(text: &str) -> Result<String, String> {
    migrate::link::parse_rate(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

/// `IP` (port 7208) or `IP:PORT`.
fn lazy_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, migrate::LAZY_PORT))
        })
        .map_err(|_| format!("'{text}' is neither IP nor IP:PORT"))
}

#[derive(clap::Args, Debug)]
pub(super) struct CredentialsArgs {
    /// Directory to write into (made 0700; existing credentials are never overwritten)
    dir: PathBuf,
    /// An address or DNS name each host is reached on; name both hosts (CRIU checks its peer's certificate against the address it uses)
    #[arg(long = "host", value_name = "IP_OR_NAME", required = true)]
    hosts: Vec<String>,
    /// How many days the certificates are valid (1 to 3650); make new ones before they expire
    #[arg(long, default_value_t = 365)]
    days: u32,
}

pub(super) fn credentials(args: CredentialsArgs) -> Result<u8> {
    let (serve, migrate) = migrate::tls::for_hosts(&args.dir, &args.hosts, args.days)?;
    ckpt::stdout::println(&format!(
        "made in {} (0600; the CA's key was not kept):\n  ca.pem                   both hosts\n  serve.pem, serve.key     the destination: ckpt serve --listen ADDR:PORT --ca {} --cert {} --key {}\n  migrate.pem, migrate.key the source: ckpt migrate --to HOST:PORT --ca {} --cert {} --key {}",
        args.dir.display(),
        serve.ca.display(),
        serve.cert.display(),
        serve.key.display(),
        migrate.ca.display(),
        migrate.cert.display(),
        migrate.key.display()
    ))?;
    Ok(0)
}

pub(super) async fn serve(args: ServeArgs) -> Result<u8> {
    let creds = Credentials {
        ca: args.ca,
        cert: args.cert,
        key: args.key,
    };
    let daemons = migrate::serve::Daemons {
        docker: args.docker_socket,
        podman: args.podman_socket,
    };
    migrate::serve::serve(args.listen, &creds, args.once, &daemons).await?;
    Ok(0)
}
