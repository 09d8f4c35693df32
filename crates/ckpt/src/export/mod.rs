//! `ckpt export`: checkpoint archives every tool can read. ckpt starts its
//! workload on an engine, checkpoints it, writes the checkpoint in the
//! layout Podman and CRI-O use (see `archive`), and removes everything it
//! made. Podman writes its own archive (libpod's export), so that `podman
//! container restore --import` takes it. An archive, whoever wrote it, can
//! also become a checkpoint OCI image (see `oci`).

pub mod archive;
pub mod oci;
pub mod pending;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::engine::any::AnyEngine;
use crate::engine::criu_stats::StatsCapture;
use crate::engine::{Container, Engine, Image};
use crate::model::{EngineKind, ImageSpec, Point, RunSpec};
use crate::program::UserProgram;
use crate::run::{RunId, Stop};
use archive::{Compression, ContainerFacts};
use pending::Pending;

/// Where the checkpoint comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A fresh workload at `point` on `engine`: ckpt's forker (from the
    /// user's image when given: it must run ckpt's workload, and it is
    /// never removed), or a program of the user's.
    Workload {
        engine: EngineKind,
        point: Point,
        user_image: Option<String>,
        /// Boxed: it is large, and an archive has none.
        program: Option<Box<UserProgram>>,
    },
    /// An archive that exists (Podman's, CRI-O's, or one ckpt wrote).
    Archive(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub source: Source,
    pub output: PathBuf,
    /// Replace an existing output file.
    pub replace: bool,
    pub compression: Compression,
    /// Write a checkpoint OCI image by this name instead of the archive.
    pub oci_image: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub path: PathBuf,
    pub bytes: u64,
    /// "archive" or "oci-archive".
    pub format: &'static str,
    pub engine: Option<EngineKind>,
}

/// The checkpoint's name in the engines that name one.
const CHECKPOINT: &str = "export";
/// How often the exported workload ticks: it only needs to be running.
const INTERVAL_MS: u64 = 100;

/// Refuses, before anything is made, what cannot be exported.
pub fn refuse_unsupported(options: &ExportOptions) -> Result<()> {
    match &options.source {
        Source::Workload {
            engine: EngineKind::Criu,
            ..
        } => bail!(
            "the criu engine checkpoints a plain process tree, which has no container spec or configuration: its archive could be neither shown by checkpointctl (which needs spec.dump and config.dump) nor restored by a container engine. Export a container (--engine docker, podman or runc), or inspect the tree's checkpoint directory itself with `ckpt inspect DIR`"
        ),
        Source::Workload {
            engine: EngineKind::Runc,
            user_image: Some(_),
            program: None,
            ..
        } => bail!("runc has no image store: --image without --cmd (an image of ckpt's workload) works with --engine docker or podman; with --cmd, runc runs your program from the image"),
        Source::Archive(path) if !path.is_file() => {
            bail!("{} is not a file: give a checkpoint archive to --from", path.display())
        }
        _ => Ok(()),
    }
}

/// Writes the archive (or the OCI image) `options` ask for.
pub async fn export(options: &ExportOptions, run: &RunId, stop: &Stop) -> Result<Exported> {
    refuse_unsupported(options)?;
    if let Source::Workload {
        program: Some(_), ..
    } = &options.source
    {
        crate::host::doctor::require_sockets("exporting a program of yours (--cmd)")?;
    }
    // The output's directory is checked before any engine work.
    let mut out = Pending::create(&options.output, options.replace)?;
    let gzip = options.compression == Compression::Gzip;
    let engine = match &options.source {
        Source::Archive(from) => {
            let name = options
                .oci_image
                .as_deref()
                .context("--from converts an archive into an image: give --oci-image NAME")?;
            to_oci_image(from, name, gzip, &mut out)?;
            None
        }
        Source::Workload { engine, .. } => {
            match &options.oci_image {
                None => from_workload(options, options.compression, run, stop, out.file()).await?,
                Some(name) => {
                    // The archive waits beside the output until it is an image.
                    let mut archive =
                        Pending::create(&scratch_beside(&options.output, "archive"), true)?;
                    // Plain: the layer is compressed (or not) on its own.
                    from_workload(options, Compression::None, run, stop, archive.file()).await?;
                    to_oci_image(archive.path(), name, gzip, &mut out)?;
                }
            }
            Some(*engine)
        }
    };
    let bytes = out.file().metadata()?.len();
    let path = out.persist()?;
    Ok(Exported {
        path,
        bytes,
        format: if options.oci_image.is_some() {
            "oci-archive"
        } else {
            "archive"
        },
        engine,
    })
}

/// A name for a scratch file beside `output`.
fn scratch_beside(output: &Path, what: &str) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}"));
    output.with_file_name(name)
}

/// Turns the archive at `from` into a checkpoint OCI image in `out`.
fn to_oci_image(from: &Path, name: &str, gzip: bool, out: &mut Pending) -> Result<()> {
    let (_, container) = crate::inspect::load_archive(from)?;
    let host = oci::HostFacts::here();
    let annotations = oci::annotations(&container, &host);
    let reader = crate::inspect::archive_reader(from)?;
    let scratch = scratch_beside(out.path(), "layer");
    oci::write(
        out.file(),
        name,
        reader,
        annotations,
        &host.arch,
        gzip,
        &scratch,
    )?;
    Ok(())
}

/// Starts the workload, checkpoints it into `out`, and removes everything
/// it made (on success, failure and interruption alike).
async fn from_workload(
    options: &ExportOptions,
    compression: Compression,
    run: &RunId,
    stop: &Stop,
    out: &mut std::fs::File,
) -> Result<()> {
    let Source::Workload {
        engine: kind,
        point,
        user_image,
        program,
    } = &options.source
    else {
        bail!("no workload to export");
    };
    // Docker deletes CRIU's work directory, and with it stats-dump: a
    // work-dir line of this run's in runc.conf keeps it (as sweeps do).
    let capture = match kind {
        EngineKind::Docker => StatsCapture::install(run)
            .ok()
            .flatten()
            .map(std::sync::Arc::new),
        _ => None,
    };
    let exported = async {
        let (engines, _) = crate::engine::any::open(&[*kind], run, capture.clone()).await?;
        let engine = engines.into_iter().next().context("no engine opened")?;
        let spec = ImageSpec {
            user_image: user_image.clone(),
            ..Default::default()
        };
        let what = What {
            image: &spec,
            program: program.as_deref(),
            point: *point,
        };
        let result = checkpoint_into(&engine, &what, compression, run, stop, out).await;
        let cleaned = engine.remove_run(run).await;
        let result = result.and(cleaned.map(|_| ()));
        drop(engine);
        result
    }
    .await;
    if let Some(capture) = capture {
        if let Err(e) = capture.uninstall() {
            eprintln!("ckpt export: cannot take back the work-dir line from runc.conf ({e:#}): run `ckpt gc`");
        }
    }
    exported
}

/// What to start: the image, and ckpt's forker at `point` or the user's
/// program.
struct What<'a> {
    image: &'a ImageSpec,
    program: Option<&'a UserProgram>,
    point: Point,
}

/// Builds, runs, waits until ready, checkpoints, writes.
async fn checkpoint_into(
    engine: &AnyEngine,
    what: &What<'_>,
    compression: Compression,
    run: &RunId,
    stop: &Stop,
    out: &mut std::fs::File,
) -> Result<()> {
    stop.check()?;
    let image = engine.build_image(run, what.image).await?;
    stop.check()?;
    let name = run.name("export");
    let spec = match what.program {
        Some(program) => program.run_spec(&name, &what.point),
        None => RunSpec {
            name,
            args: crate::workload::forker_args(&what.point, INTERVAL_MS),
            entrypoint: None,
            network: Default::default(),
            netns: None,
        },
    };
    let created = chrono::Utc::now();
    let container = engine.run(run, &image, &spec).await?;
    wait_until_ready(engine, &container, what, stop).await?;
    stop.check()?;
    if let AnyEngine::Docker(docker) = engine {
        if engine.kind() == EngineKind::Podman {
            docker.podman_export(&container, out).await?;
            return Ok(());
        }
    }
    // Docker's spec lives only while the container runs: read it first.
    let runtime_spec = engine
        .runtime_spec(&container)
        .and_then(|p| std::fs::read(p).ok());
    let stats = engine.checkpoint(&container, CHECKPOINT).await?;
    let image_name = what.program.map(|p| p.user.image.as_str());
    let facts = facts(engine.kind(), &container, &image, image_name, created);
    let images = engine
        .checkpoint_path(&container, CHECKPOINT)
        .context("the engine keeps its checkpoint where ckpt cannot read it")?;
    archive::write(
        &mut *out,
        compression,
        &images,
        &archive::config_dump(&facts)?,
        &archive::spec_dump(runtime_spec.as_deref(), &facts)?,
        stats.bytes().as_deref(),
    )?;
    Ok(())
}

/// Waits for the forker's ready line, or for the program's pattern (or
/// delay) and then its --setup-cmd.
async fn wait_until_ready(
    engine: &AnyEngine,
    container: &Container,
    what: &What<'_>,
    stop: &Stop,
) -> Result<()> {
    if let Some(program) = what.program {
        program.ready(engine, container, &what.point, stop).await?;
        return Ok(());
    }
    let ready = engine.wait_for_line(
        container,
        0,
        &crate::workload::is_ready,
        Duration::from_secs(60),
    );
    stop.unless_stopped(ready).await.map(drop)
}

/// `program_image`: the image a program of the user's came from, which
/// names a runc bundle's root (ckpt's own runc root is a directory, not
/// an image).
fn facts(
    kind: EngineKind,
    container: &Container,
    image: &Image,
    program_image: Option<&str>,
    created: chrono::DateTime<chrono::Utc>,
) -> ContainerFacts {
    let image = match kind {
        EngineKind::Runc => program_image.map(String::from),
        _ => Some(image.reference.clone()),
    };
    ContainerFacts {
        engine: kind.name().to_string(),
        id: container.id.clone(),
        name: container.name.clone(),
        image,
        runtime: "runc".into(),
        created,
        checkpointed: chrono::Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(source: Source) -> ExportOptions {
        ExportOptions {
            source,
            output: PathBuf::from("/tmp/x.tar"),
            replace: false,
            compression: Compression::None,
            oci_image: None,
        }
    }

    fn workload(engine: EngineKind, user_image: Option<&str>) -> Source {
        Source::Workload {
            engine,
            point: Point::default(),
            user_image: user_image.map(String::from),
            program: None,
        }
    }

    #[test]
    fn what_cannot_be_exported_is_refused_up_front() {
        let err = refuse_unsupported(&options(workload(EngineKind::Criu, None))).unwrap_err();
        assert!(err.to_string().contains("no container spec"), "{err}");
        let err = refuse_unsupported(&options(workload(EngineKind::Runc, Some("x")))).unwrap_err();
        assert!(err.to_string().contains("no image store"), "{err}");
        let err =
            refuse_unsupported(&options(Source::Archive("/nonexistent.tar".into()))).unwrap_err();
        assert!(err.to_string().contains("is not a file"), "{err}");
        for engine in [EngineKind::Docker, EngineKind::Podman, EngineKind::Runc] {
            assert!(refuse_unsupported(&options(workload(engine, None))).is_ok());
        }
    }

    #[test]
    fn scratch_files_sit_beside_the_output() {
        assert_eq!(
            scratch_beside(Path::new("/a/b/out.tar"), "layer"),
            Path::new("/a/b/out.tar.layer")
        );
    }
}
