//! Working directories of daemon-less engines (runc bundles, CRIU images),
//! one per run under /run/ckpt/<engine>/, with the owner's pid and start
//! time so that `ckpt gc` removes only what dead runs left.
//!
//! A run directory appears with its owner file already in it: it is made
//! under a temporary name that names the owner (`.new-<pid>-<start>.<name>`)
//! and renamed into place, so a `ckpt gc` running meanwhile never finds a
//! live run's directory without its owner and takes it for a dead run's.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::run::{owner_alive, owner_record, RunId};

const OWNER_FILE: &str = "owner.pid";
/// How the temporary name of a directory in the making starts.
const MAKING: &str = ".new-";

/// `/run/ckpt/<engine>/<run>/`, created 0700 (checkpoints hold memory).
pub(crate) fn create(engine: &str, run: &RunId) -> Result<PathBuf> {
    create_named(engine, run.as_str())
}

/// `/run/ckpt/<engine>/<name>/`: a second directory for one run, e.g.
/// `<run>-migrate` (`ckpt gc` reads its owner like any other).
pub(crate) fn create_named(engine: &str, name: &str) -> Result<PathBuf> {
    create_in(Path::new(crate::model::STATE_ROOT), engine, name)
}

/// `<root>/<engine>/<name>/` with this process's owner file in it from the
/// moment it appears. Asking again for a directory this run made returns it.
fn create_in(root: &Path, engine: &str, name: &str) -> Result<PathBuf> {
    let parent = root.join(engine);
    make_private_dir(&parent)?;
    let dir = parent.join(name);
    let owner = owner_record();
    if dir.is_dir() {
        write_owner(&dir, &owner)?;
        return Ok(dir);
    }
    let making = parent.join(format!("{MAKING}{}.{name}", owner.replace(' ', "-")));
    make_private_dir(&making)?;
    write_owner(&making, &owner)?;
    match std::fs::rename(&making, &dir) {
        Ok(()) => Ok(dir),
        // Made meanwhile by another thread of this run.
        Err(_) if dir.is_dir() => {
            remove(&making)?;
            write_owner(&dir, &owner)?;
            Ok(dir)
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
}

/// Writes the owner file whole (a temporary file renamed over it): a
/// reader never finds it empty or half written.
fn write_owner(dir: &Path, owner: &str) -> Result<()> {
    let path = dir.join(OWNER_FILE);
    let new = dir.join(format!("{OWNER_FILE}.new"));
    std::fs::write(&new, owner)
        .and_then(|()| std::fs::rename(&new, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The owner a temporary name records ("pid starttime"), if it is one.
fn making_owner(name: &str) -> Option<String> {
    let (owner, _) = name.strip_prefix(MAKING)?.split_once('.')?;
    Some(owner.replace('-', " "))
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
    orphans_in(Path::new(crate::model::STATE_ROOT), engine)
}

/// The directories under `<root>/<engine>/` whose ckpt process is gone,
/// those in the making included; a live owner's are never among them.
pub(crate) fn orphans_in(root: &Path, engine: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join(engine)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let owner = making_owner(&entry.file_name().to_string_lossy())
                .or_else(|| std::fs::read_to_string(entry.path().join(OWNER_FILE)).ok());
            !owner_alive(owner.as_deref().map(str::trim))
        })
        .map(|e| e.path())
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

/// Copies a directory tree (regular files and directories, the only kinds
/// a checkpoint holds) into `to`, made 0700; returns the bytes copied.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    make_private_dir(to)?;
    let mut bytes = 0;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        bytes += if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy to {}", target.display()))?
        };
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::testing::{dead_pid, FakeCkpt};

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_run_directory_appears_with_its_owner() {
        let root = tempfile::tempdir().unwrap();
        let dir = create_in(root.path(), "runc", "run-1").unwrap();
        assert_eq!(dir, root.path().join("runc/run-1"));
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE)).unwrap();
        assert_eq!(owner, owner_record());
        assert_eq!(names(&root.path().join("runc")), ["run-1"]);
        // Asked again (an image, then a container): the same directory.
        std::fs::write(dir.join("bundle"), "kept").unwrap();
        assert_eq!(create_in(root.path(), "runc", "run-1").unwrap(), dir);
        assert_eq!(names(&dir), ["bundle", OWNER_FILE]);
    }

    #[test]
    fn no_run_directory_is_ever_seen_without_its_owner() {
        let root = tempfile::tempdir().unwrap();
        let engine = root.path().join("criu");
        make_private_dir(&engine).unwrap();
        let path = root.path().to_path_buf();
        let maker = std::thread::spawn(move || {
            for i in 0..300 {
                create_in(&path, "criu", &format!("run-{i}")).unwrap();
            }
        });
        // What `ckpt gc` would read, as often as it can meanwhile.
        while !maker.is_finished() {
            for entry in std::fs::read_dir(&engine).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if making_owner(&name).is_none() {
                    let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE));
                    assert!(owner.is_ok_and(|o| !o.is_empty()), "{name} has no owner");
                }
            }
        }
        maker.join().unwrap();
        assert_eq!(names(&engine).len(), 300, "no temporary name is left");
    }

    #[test]
    fn orphans_spare_live_owners_and_their_directories_in_the_making() {
        let root = tempfile::tempdir().unwrap();
        let engine = root.path().join("runc");
        let live = FakeCkpt::start();
        let dead = format!("{} 1", dead_pid());
        for (name, owner) in [
            ("live", Some(live.record())),
            ("dead", Some(dead.clone())),
            ("unowned", None),
            (
                &format!("{MAKING}{}.live2", live.record().replace(' ', "-")),
                None,
            ),
            (&format!("{MAKING}{}.dead2", dead.replace(' ', "-")), None),
        ] {
            make_private_dir(&engine.join(name)).unwrap();
            if let Some(owner) = owner {
                std::fs::write(engine.join(name).join(OWNER_FILE), owner).unwrap();
            }
        }
        let mut found: Vec<String> = orphans_in(root.path(), "runc")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        found.sort();
        let dead_making = format!("{MAKING}{}.dead2", dead.replace(' ', "-"));
        assert_eq!(found, [dead_making.as_str(), "dead", "unowned"]);
        assert_eq!(making_owner(&dead_making), Some(dead));
        assert_eq!(making_owner("run-1"), None);
    }
}
