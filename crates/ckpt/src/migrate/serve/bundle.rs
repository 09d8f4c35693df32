//! ckpt's forker on runc: the destination writes the bundle's config.json
//! itself around the root filesystem that came (confined to the bundle),
//! never taking the client's: the process is ckpt's workload binary with
//! the forker's own flags, derived from the point's numbers, and the
//! configuration has no hooks and no mounts beyond runc's defaults.

use std::path::Path;

use anyhow::{bail, Result};
use oci_spec::runtime::Process;

use crate::engine::any::AnyEngine;
use crate::engine::Container;
use crate::model::Point;
use crate::workload::{forker_args, BINARY_IN_IMAGE};

/// The forker's argv at `point`, as the source started it.
pub(crate) fn forker_argv(point: &Point) -> Vec<String> {
    [
        vec![BINARY_IN_IMAGE.to_string()],
        forker_args(point, super::super::TICK_MS),
    ]
    .concat()
}

/// Writes serve's own config.json for the forker into its bundle (the
/// root filesystem is the bundle's `rootfs/`).
pub(crate) fn write_forker_config(
    engine: &AnyEngine,
    container: &Container,
    point: &Point,
) -> Result<()> {
    let AnyEngine::Runc(runc) = engine else {
        bail!("only a runc destination writes a bundle");
    };
    let mut process = Process::default();
    process
        .set_args(Some(forker_argv(point)))
        .set_terminal(Some(false));
    runc.write_bundle(container, Path::new("rootfs"), process, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forker_runs_with_its_own_flags_only() {
        let point = Point::default();
        let argv = forker_argv(&point);
        assert_eq!(argv[0], BINARY_IN_IMAGE);
        assert_eq!(argv[1], "forker");
        for pair in argv[2..].chunks(2) {
            assert!(pair[0].starts_with("--"), "{argv:?}");
            assert!(pair[1].parse::<u64>().is_ok(), "{argv:?}");
        }
    }
}
