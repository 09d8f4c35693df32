//! `ckpt export`: a checkpoint archive (or checkpoint OCI image) of a
//! fresh workload, or an image made from an existing archive.

use std::path::PathBuf;

use anyhow::{bail, Result};

use ckpt::export::{self, archive::Compression, ExportOptions, Source};
use ckpt::model::{EngineKind, Point};
use ckpt::run::{self as cleanup, RunId, Stop};

#[derive(clap::Args, Debug)]
pub(super) struct ExportArgs {
    /// Engine to start, checkpoint and remove the workload on (docker, podman, runc; criu is refused: a plain process tree has no container spec)
    #[arg(
        long,
        value_enum,
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    engine: Option<EngineKind>,
    /// Instead of a workload: an existing checkpoint archive (Podman's, CRI-O's or ckpt's) to make into an image with --oci-image
    #[arg(long, value_name = "ARCHIVE", requires = "oci_image")]
    from: Option<PathBuf>,
    /// Child processes of the workload
    #[arg(long, default_value_t = 1)]
    children: u32,
    /// MiB each process writes and keeps resident
    #[arg(long, default_value_t = 0)]
    memory_mib: u32,
    /// With --cmd: the image of a program of yours, already in Docker's or Podman's storage (never pulled; runc unpacks it). Without --cmd: an image of ckpt's workload, built by you (docker and podman only). Kept afterwards, so the checkpoint can be restored from it
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    #[command(flatten)]
    program: super::program::ProgramArgs,
    /// The file to write (mode 0600)
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Replace the output file when it exists
    #[arg(long)]
    force: bool,
    /// How ckpt compresses its archives: none by default (ckpt's workload fills its memory with pseudo-random bytes, which gzip cannot shrink); Podman's own export comes as Podman writes it
    #[arg(long, value_enum, default_value_t = Compression::None)]
    compress: Compression,
    /// Write a checkpoint OCI image of this name (an oci-archive for `podman load -i`) instead of the archive
    #[arg(long, value_name = "NAME")]
    oci_image: Option<String>,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: ExportArgs) -> Result<u8> {
    let stop = Stop::watch();
    let source = match (args.engine, args.from) {
        (Some(engine), None) => Source::Workload {
            engine,
            point: Point {
                children: args.children,
                memory_mib: args.memory_mib,
                ..Default::default()
            },
            program: args
                .program
                .program(args.image.as_deref(), false)?
                .map(Box::new),
            user_image: args.image,
        },
        (None, Some(from)) => Source::Archive(from),
        _ => bail!("give either --engine (a fresh workload) or --from ARCHIVE"),
    };
    let options = ExportOptions {
        source,
        output: args.output,
        replace: args.force,
        compression: args.compress,
        oci_image: args.oci_image,
    };
    let run = RunId::new();
    let kind = match &options.source {
        Source::Workload { engine, .. } => Some(*engine),
        Source::Archive(_) => None,
    };
    let done = cleanup::run_stoppable(&stop, export::export(&options, &run, &stop)).await;
    let done = super::clean_cut_short(kind, done).await?;
    if args.json {
        ckpt::stdout::println(&serde_json::to_string_pretty(&done)?)?;
    } else {
        ckpt::stdout::println(&format!(
            "wrote {} ({}, {} bytes)",
            done.path.display(),
            done.format,
            done.bytes
        ))?;
    }
    Ok(0)
}
