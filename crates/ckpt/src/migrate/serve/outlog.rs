//! A plain process tree's output file (the criu engine). CRIU reopens the
//! tree's open files by the paths they had at the source, so the restored
//! tree writes to the source's `out.log` path. serve takes that path only
//! in the shape ckpt's own source gives it (`/run/ckpt/criu/<run>/<name>/
//! out.log`, plain names), never follows a link on it, and creates there
//! only what is missing, from its own copy, recording what it made so
//! that its clean-up removes exactly that.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::names::check_label;
use crate::model::STATE_ROOT;

/// Refuses a log path other than ckpt's criu layout under its state root.
pub(crate) fn check_shape(log: &Path) -> Result<()> {
    let refused = || {
        format!("the client named {} as its output file: serve takes only {STATE_ROOT}/criu/<run>/<name>/out.log", log.display())
    };
    let rest = log.strip_prefix(STATE_ROOT).with_context(refused)?;
    let parts: Vec<&str> = rest
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str().unwrap_or("/"),
            _ => "/",
        })
        .collect();
    match parts.as_slice() {
        ["criu", run, name, "out.log"] if check_label(run).is_ok() && check_label(name).is_ok() => {
            Ok(())
        }
        _ => bail!(refused()),
    }
}

/// Makes `wanted` (checked already) from `copy` where it is missing;
/// returns what it created, deepest last.
pub(crate) fn place(wanted: &Path, copy: &Path) -> Result<Vec<PathBuf>> {
    check_shape(wanted)?;
    let mut made = Vec::new();
    let mut dir = PathBuf::from(STATE_ROOT);
    let parents: Vec<_> = wanted
        .strip_prefix(STATE_ROOT)?
        .parent()
        .context("a log path without a directory")?
        .components()
        .collect();
    for part in parents {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("{} is not a directory: refused", dir.display()),
            Err(_) => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                made.push(dir.clone());
            }
        }
    }
    if std::fs::symlink_metadata(wanted).is_err() {
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(wanted)
            .with_context(|| format!("cannot make {}", wanted.display()))?;
        std::io::copy(&mut std::fs::File::open(copy)?, &mut to)?;
        made.push(wanted.to_path_buf());
    }
    Ok(made)
}

/// Removes what `place` made, deepest first (a directory only when empty).
pub(crate) fn remove(made: &[PathBuf]) {
    for path in made.iter().rev() {
        let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ckpts_own_layout_is_taken() {
        check_shape(Path::new(
            "/run/ckpt/criu/20261204-1-ab12/ckpt-x-t0/out.log",
        ))
        .unwrap();
        for bad in [
            "/etc/cron.d/evil",
            "/run/ckpt/criu/../../etc/out.log",
            "/run/ckpt/criu/a/b/c/out.log",
            "/run/ckpt/runc/a/b/out.log",
            "/run/ckpt/criu/.a/b/out.log",
            "/run/ckpt/criu/a/b/other.log",
            "run/ckpt/criu/a/b/out.log",
        ] {
            let e = check_shape(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains("serve takes only"), "{bad}: {e}");
        }
    }
}
