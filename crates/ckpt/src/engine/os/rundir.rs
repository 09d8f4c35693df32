//! Working directories of daemon-less engines (runc bundles, CRIU images),
//! one per run under /run/ckpt/<engine>/, with the owner's pid and start
//! time so that `ckpt gc` removes only what dead runs left.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::run::{owner_alive, owner_record, RunId};

const OWNER_FILE: &str = "owner.pid";

/// `/run/ckpt/<engine>/<run>/`, created 0700 (checkpoints hold memory).
pub(crate) fn create(engine: &str, run: &RunId) -> Result<PathBuf> {
    create_named(engine, run.as_str())
}

/// `/run/ckpt/<engine>/<name>/`: a second directory for one run, e.g.
/// `<run>-migrate` (`ckpt gc` reads its owner like any other).
pub(crate) fn create_named(engine: &str, name: &str) -> Result<PathBuf> {
    let dir = Path::new(crate::model::STATE_ROOT).join(engine).join(name);
    make_private_dir(&dir)?;
    std::fs::write(dir.join(OWNER_FILE), owner_record())
        .with_context(|| format!("cannot write {}", dir.join(OWNER_FILE).display()))?;
    Ok(dir)
}

pub(crate) fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// The run directories of `engine` whose ckpt process is gone.
pub(crate) fn orphans(engine: &str) -> Vec<PathBuf> {
    let root = Path::new(crate::model::STATE_ROOT).join(engine);
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|dir| {
            let owner = std::fs::read_to_string(dir.join(OWNER_FILE)).ok();
            !owner_alive(owner.as_deref().map(str::trim))
        })
        .collect()
}

/// Removes a directory tree; a missing one is fine.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}
