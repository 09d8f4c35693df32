//! The workload a move starts at the source: ckpt's forker, ticking
//! every 10 ms so that the pause across the move shows in its ticks, or a
//! program of the user's; and the wait until it is ready.

use std::time::Duration;

use anyhow::Result;

use super::MigrateOptions;
use crate::engine::any::AnyEngine;
use crate::engine::{Container, Engine};
use crate::model::{ImageSpec, Point, RunSpec};
use crate::run::Stop;

/// The image and the container to start, named `name`.
pub(super) fn specs(options: &MigrateOptions, name: &str) -> (ImageSpec, RunSpec) {
    match &options.program {
        Some(program) => (program.image_spec(), program.run_spec(name, &options.point)),
        None => (ImageSpec::default(), forker_spec(name, &options.point)),
    }
}

/// ckpt's forker, ticking every 10 ms: the gap across the move is
/// measured in its ticks.
fn forker_spec(name: &str, point: &Point) -> RunSpec {
    RunSpec {
        name: name.to_string(),
        args: crate::workload::forker_args(point, super::TICK_MS),
        entrypoint: None,
        network: Default::default(),
        netns: None,
    }
}

/// Waits until the workload is ready; returns its processes: the
/// forker's ready line names them, a program of the user's is counted.
pub(super) async fn wait_until_ready(
    source: &AnyEngine,
    container: &Container,
    options: &MigrateOptions,
    stop: &Stop,
) -> Result<usize> {
    if let Some(program) = &options.program {
        return program.ready(source, container, &options.point, stop).await;
    }
    let ready = stop
        .unless_stopped(source.wait_for_line(
            container,
            0,
            &crate::workload::is_ready,
            Duration::from_secs(60),
        ))
        .await?;
    Ok(crate::workload::ready_pids(&ready).map_or(0, |p| p.len()))
}
