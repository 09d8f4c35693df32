//! `ckpt diff`: what changed between two checkpoints.

use anyhow::{Context, Result};

use ckpt::diff;

#[derive(clap::Args, Debug)]
pub(super) struct DiffArgs {
    /// The first checkpoint: a checkpoint directory (CRIU's image files) or a checkpoint archive (Podman's, CRI-O's or `ckpt export`'s; plain, gzip or zstd); a Docker container's checkpoint by its directory, not the container's name
    a: String,
    /// The second checkpoint, compared with the first (deltas are B - A)
    b: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: DiffArgs) -> Result<u8> {
    let a = diff::load(&args.a)
        .await
        .with_context(|| format!("checkpoint A ({})", args.a))?;
    let b = diff::load(&args.b)
        .await
        .with_context(|| format!("checkpoint B ({})", args.b))?;
    let found = diff::diff(&a, &b)?;
    if args.json {
        ckpt::stdout::println(&diff::to_json(&found)?)?;
    } else {
        ckpt::stdout::print(&diff::render(&found))?;
    }
    Ok(0)
}
