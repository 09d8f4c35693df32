//! `ckpt inspect`: what a checkpoint holds.

use std::path::PathBuf;

use anyhow::Result;

use ckpt::inspect;

#[derive(clap::Args, Debug)]
pub(super) struct InspectArgs {
    /// A checkpoint directory, a checkpoint archive, or a Docker container
    target: String,
    /// With a Docker container: the checkpoint's name (default: the newest)
    #[arg(long)]
    checkpoint: Option<String>,
    /// CRIU's work directory holding stats-dump / stats-restore, when it is not the image directory
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    json: bool,
    /// Show the process tree
    #[arg(long)]
    ps_tree: bool,
    /// Show each process's memory areas
    #[arg(long)]
    mem: bool,
    /// Show each process's open files
    #[arg(long)]
    files: bool,
    /// Show CRIU's dump and restore statistics
    #[arg(long)]
    stats: bool,
    /// Show the sockets: family, state, local and peer address, TCP stream saved
    #[arg(long)]
    sockets: bool,
}

pub(super) async fn run(args: InspectArgs) -> Result<u8> {
    let found = inspect::inspect(
        &args.target,
        args.checkpoint.as_deref(),
        args.work_dir.as_deref(),
    )
    .await?;
    let parts = inspect::Parts {
        ps_tree: args.ps_tree,
        mem: args.mem,
        files: args.files,
        stats: args.stats,
        sockets: args.sockets,
    };
    if args.json {
        ckpt::stdout::println(&inspect::to_json(&found, parts)?)?;
    } else {
        ckpt::stdout::print(&inspect::render(&found, parts))?;
    }
    Ok(0)
}
