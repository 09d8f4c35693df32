//! A program of the user's moved on runc (`ckpt migrate --image IMG --cmd
//! TEMPLATE`). The source sends the image's name and a description of the
//! process it runs (argv, environment, working directory, uid and gid),
//! never a path or a config.json of its own: the destination unpacks the
//! image from its own Docker or Podman storage (ckpt never pulls) and
//! writes its own bundle around that process. The program's own check
//! (--check-cmd), run at the source before the dump and at the destination
//! after the restore, says whether its state came across (state_ok).

use std::path::Path;

use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use tokio::io::{AsyncRead, AsyncWrite};

use super::described::{ProcessDescription, Program};
use super::wire::{self, Message};
use crate::engine::any::AnyEngine;
use crate::engine::{Container, Engine};
use crate::model::{EngineKind, ImageSpec, Point};
use crate::program::UserProgram;
use crate::run::RunId;

/// Refuses, before anything changes on this host, what cannot move:
/// another engine than runc, a CRIU that cannot dump sockets, an image this
/// host does not hold (the template and patterns were parsed already).
pub(super) async fn check_plan(
    program: &UserProgram,
    engine: EngineKind,
    run: &RunId,
) -> Result<()> {
    let on_host = program.user.image.is_empty();
    match (engine, on_host) {
        (EngineKind::Criu, false) => bail!(
            "the criu engine runs --cmd as a process tree on the host, from no image: drop --image (or move the image's program with --engine runc, docker or podman)"
        ),
        (EngineKind::Criu, true) => {}
        (_, true) => bail!("--cmd runs in your image on the {engine} engine: give --image"),
        (_, false) => {}
    }
    crate::host::doctor::require_sockets("moving a program of yours")?;
    if on_host {
        return Ok(());
    }
    crate::engine::user_rootfs::require(run, &program.user.image).await
}

/// What the destination needs: the image's name, the process the source's
/// bundle runs, the check.
async fn describe(
    program: &UserProgram,
    source: &AnyEngine,
    container: &Container,
    point: &Point,
) -> Result<Program> {
    let process = match source.runtime_spec(container) {
        Some(config) => {
            let spec = Spec::load(&config)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
            ProcessDescription::of_spec(&spec)?
        }
        // The criu engine's tree runs on the host, from no bundle.
        None if source.kind() == EngineKind::Criu => {
            ProcessDescription::of_pid(source.root_pid(container).await?)?
        }
        None => bail!("the source keeps no bundle"),
    };
    Ok(Program {
        image: program.user.image.clone(),
        process,
        check: program.check_argv(point),
        netns: None,
        check_on_request: false,
    })
}

/// Has the destination unpack the image from its own storage and write its
/// bundle, ahead of the checkpoint (outside the downtime); a destination
/// without the image fails here, before the dump.
pub(super) async fn prepare_destination<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    program: &UserProgram,
    source: &AnyEngine,
    container: &Container,
    point: &Point,
    netns: Option<&str>,
) -> Result<()> {
    let mut described = describe(program, source, container, point).await?;
    // A service with clients: restored into the destination's side of the
    // segment, and checked once the probe has gone.
    described.netns = netns.map(str::to_string);
    described.check_on_request = netns.is_some();
    wire::send(stream, &Message::Program(described)).await?;
    wire::expect(stream, "the program's bundle", |m| {
        matches!(m, Message::ProgramReady).then_some(())
    })
    .await
}

/// The program's check at the destination, compared with the source's
/// (None, None for ckpt's forker, which the destination checks itself).
pub(super) fn state_verdict(
    program: Option<&UserProgram>,
    before: Option<&str>,
    check: &Message,
) -> (Option<bool>, Option<String>) {
    let Some(program) = program else {
        return (None, None);
    };
    let after = match check {
        Message::Verified { state, .. } => state.as_deref(),
        _ => None,
    };
    program.state_verdict(before, after)
}

/// The destination's side: unpacks the image from this host's own storage
/// into the run's directory and writes the bundle around the described
/// process.
pub(super) async fn make_bundle(
    engine: &AnyEngine,
    run: &RunId,
    container: &Container,
    program: &Program,
) -> Result<()> {
    let AnyEngine::Runc(runc) = engine else {
        bail!("a program of the user's moves with runc only");
    };
    let wanted = ImageSpec {
        user_image: Some(program.image.clone()),
        ..Default::default()
    };
    let image = runc
        .build_image(run, &wanted)
        .await
        .context("the destination cannot unpack the program's image")?;
    let netns = program
        .netns
        .as_deref()
        .map(crate::engine::os::netns::ckpt_netns_path)
        .transpose()?;
    runc.write_bundle(
        container,
        Path::new(&image.reference),
        program.process.to_oci(),
        netns.as_deref(),
    )
}

/// The destination's check of the restored program: its processes, and
/// what its check command prints here.
pub(super) async fn verify(
    engine: &AnyEngine,
    container: &Container,
    program: &Program,
) -> Message {
    let (processes, problem) = match engine.processes(container).await {
        Ok(pids) => (pids.len(), None),
        Err(e) => (0, Some(format!("{e:#}"))),
    };
    let state = match (&program.check, &problem) {
        (Some(argv), None) => match crate::program::run_check(engine, container, argv).await {
            Ok(output) => Some(output),
            Err(e) => {
                return Message::failed_check(processes, format!("at the destination: {e:#}"))
            }
        },
        _ => None,
    };
    Message::Verified {
        processes,
        memory_ok: None,
        threads_ok: None,
        files_ok: None,
        problem,
        ticks_us: Vec::new(),
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_crosses_whole() {
        let description = ProcessDescription {
            argv: vec!["redis-server".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/srv".into(),
            uid: 101,
            gid: 102,
        };
        let mut spec = Spec::default();
        spec.set_process(Some(description.to_oci()));
        assert_eq!(ProcessDescription::of_spec(&spec).unwrap(), description);
    }
}
