//! `ckpt migrate` and `ckpt serve`: move a running container to another
//! host (here a throwaway one on this machine) and measure the downtime.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;

use ckpt::migrate::{self, tls::Credentials, MigrateOptions, Migration};
use ckpt::model::{EngineKind, MigrationMethod, Point};
use ckpt::run::{self as cleanup, RunId, Stop};

#[derive(clap::Args, Debug)]
pub(super) struct MigrateArgs {
    /// Engine of the container to move
    #[arg(long, value_enum, default_value_t = EngineKind::Runc)]
    engine: EngineKind,
    /// copy (stop-and-copy), page-server (pages streamed to the destination's CRIU), lazy (post-copy)
    #[arg(long, value_enum, default_value_t = MigrationMethod::Copy)]
    method: MigrationMethod,
    /// Child processes of the workload
    #[arg(long, default_value_t = 1)]
    children: u32,
    /// MiB each process writes and keeps resident
    #[arg(long, default_value_t = 0)]
    memory_mib: u32,
    /// Limit the link's rate (tc syntax: 1gbit, 100mbit)
    #[arg(long, value_name = "RATE")]
    link_rate: Option<String>,
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
    let options = MigrateOptions {
        engine: args.engine,
        method: args.method,
        point: Point {
            children: args.children,
            memory_mib: args.memory_mib,
            ..Default::default()
        },
        link_rate: args.link_rate,
    };
    if options.method != MigrationMethod::Copy {
        eprintln!(
            "ckpt migrate: with {} the memory leaves the source during the move: if the destination fails, the workload is lost",
            options.method.name()
        );
    }
    let run = RunId::new();
    let moved =
        cleanup::run_stoppable(&stop, migrate::migrate_to_throwaway(&options, &run, &stop)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&moved)?);
    } else {
        print!("{}", describe(&moved));
    }
    Ok(u8::from(!moved.verified()))
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
    out.push_str(&format!(
        "  downtime     {:>9.1} ms\n  total        {:>9.1} ms\n  ticks' gap   {:>9} ms\n  bytes sent   {:>9} ({} of images on the source)\n",
        m.downtime_ms,
        m.total_ms,
        m.gap_ms.map_or("-".to_string(), |g| format!("{g:.1}")),
        m.bytes_sent,
        m.image_bytes
    ));
    let verdict = if m.verified() {
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
