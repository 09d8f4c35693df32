//! Which files a destination takes from its client: for each engine, the
//! checkpoint's own files and nothing else (no config.json: serve writes
//! its own; nothing once the restore has begun).

use std::path::{Component, Path};

use anyhow::{bail, Result};

use super::CHECKPOINT;
use crate::model::EngineKind;

/// What serve does with a file the client announced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Stored under serve's own directory.
    Store,
    /// Read and dropped: an older client's config.json, which serve
    /// replaces with its own.
    Drop,
}

/// Decides about the file `rel` of a move on `kind` (`program`: a user's
/// program, whose bundle serve made itself); refuses, with the reason,
/// what the checkpoint has no use for.
pub(crate) fn take(kind: EngineKind, program: bool, rel: &Path) -> Result<Take> {
    super::super::wire::store::check_relative(rel)?;
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let images = parts.len() > 2 && parts[0] == "images" && parts[1] == CHECKPOINT;
    let taken = match (kind, parts.as_slice()) {
        (EngineKind::Runc | EngineKind::Criu, _) if images => true,
        (EngineKind::Runc, ["config.json"]) if !program => return Ok(Take::Drop),
        (EngineKind::Runc, ["rootfs", _, ..]) => !program,
        (EngineKind::Criu, ["pid" | "out.log"]) => true,
        (EngineKind::Docker | EngineKind::Podman, ["image.tar"]) => true,
        (EngineKind::Docker, ["checkpoint", _, ..]) => true,
        (EngineKind::Podman, ["checkpoint.tar"]) => true,
        _ => false,
    };
    if !taken {
        bail!(
            "the client sent {}, which a {kind} move has no use for: refused",
            rel.display()
        );
    }
    Ok(Take::Store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use EngineKind::*;

    #[test]
    fn each_engine_takes_its_checkpoint_files_only() {
        let ok = |k, p, f: &str| take(k, p, Path::new(f)).unwrap();
        assert_eq!(ok(Runc, false, "images/migrated/pages-1.img"), Take::Store);
        assert_eq!(ok(Runc, false, "rootfs/bin/ckpt-workload"), Take::Store);
        assert_eq!(ok(Runc, false, "config.json"), Take::Drop);
        assert_eq!(ok(Runc, true, "images/migrated/core-1.img"), Take::Store);
        assert_eq!(ok(Criu, false, "out.log"), Take::Store);
        assert_eq!(ok(Docker, false, "checkpoint/pages-1.img"), Take::Store);
        assert_eq!(ok(Podman, false, "checkpoint.tar"), Take::Store);
        for (k, p, f) in [
            (Runc, true, "config.json"),
            (Runc, true, "rootfs/bin/sh"),
            (Runc, false, "out.log"),
            (Runc, false, "images/other/x.img"),
            (Runc, false, "images/migrated"),
            (Criu, false, "config.json"),
            (Docker, false, "checkpoint.tar"),
            (Podman, false, "checkpoint/x"),
            (Runc, false, "/etc/passwd"),
            (Runc, false, "images/migrated/../../x"),
        ] {
            assert!(take(k, p, Path::new(f)).is_err(), "{k} {f}");
        }
    }
}
