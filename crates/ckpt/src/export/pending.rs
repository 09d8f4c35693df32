//! The file an export writes: made first (so a directory that cannot take
//! it fails the export before any engine work), private (0600: a checkpoint
//! holds the container's whole memory), written under a temporary name
//! beside the target and renamed into place only when complete, so a
//! reader never sees half an archive. An existing file is kept unless the
//! user asked to replace it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A file being written; removed when dropped before `persist`.
#[derive(Debug)]
pub struct Pending {
    temp: PathBuf,
    target: PathBuf,
    replace: bool,
    file: Option<File>,
}

impl Pending {
    /// Creates the temporary file beside `target`.
    pub fn create(target: &Path, replace: bool) -> Result<Pending> {
        refuse_existing(target, replace)?;
        let name = target
            .file_name()
            .with_context(|| format!("{} names no file", target.display()))?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temp = dir.join(format!(
            ".{}.ckpt-{}.partial",
            name.to_string_lossy(),
            std::process::id()
        ));
        // Readable too: an OCI image's layer is read back once hashed.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| {
                format!(
                    "cannot write into {} (give -o a file in a directory you can write)",
                    dir.display()
                )
            })?;
        Ok(Pending {
            temp,
            target: target.to_path_buf(),
            replace,
            file: Some(file),
        })
    }

    /// The open file to write into.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("the file is open until persist")
    }

    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// Flushes the file to disk and gives it its name. Without `replace`,
    /// a file that appeared meanwhile is kept: a hard link, unlike a
    /// rename, never replaces one.
    pub fn persist(mut self) -> Result<PathBuf> {
        let file = self.file.take().expect("persist runs once");
        file.sync_all()
            .with_context(|| format!("writing {}", self.temp.display()))?;
        drop(file);
        if self.replace {
            std::fs::rename(&self.temp, &self.target)
        } else {
            std::fs::hard_link(&self.temp, &self.target)
                .and_then(|()| std::fs::remove_file(&self.temp))
        }
        .map_err(|e| exists_error(&self.target, e))?;
        Ok(self.target.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Persisted or not, the temporary name goes.
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// Refuses an existing target unless asked to replace it.
pub fn refuse_existing(target: &Path, replace: bool) -> Result<()> {
    if !replace && target.symlink_metadata().is_ok() {
        bail!(
            "{} exists: give another file, or --force to replace it",
            target.display()
        );
    }
    if target.is_dir() {
        bail!("{} is a directory: give a file name", target.display());
    }
    Ok(())
}

fn exists_error(target: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        anyhow::anyhow!(
            "{} appeared while the export ran: it is kept; give another file, or --force",
            target.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot name the archive {}", target.display()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_file_appears_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.tar");
        let mut pending = Pending::create(&target, false).unwrap();
        pending.file().write_all(b"data").unwrap();
        assert!(!target.exists(), "nothing under the name before persist");
        let temp = pending.path().to_path_buf();
        assert_eq!(pending.persist().unwrap(), target);
        assert_eq!(std::fs::read(&target).unwrap(), b"data");
        assert!(!temp.exists());
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_existing_file_is_kept_unless_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.tar");
        std::fs::write(&target, b"old").unwrap();
        let err = Pending::create(&target, false).unwrap_err();
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        // One that appears while the export runs is kept too.
        std::fs::remove_file(&target).unwrap();
        let mut pending = Pending::create(&target, false).unwrap();
        pending.file().write_all(b"new").unwrap();
        std::fs::write(&target, b"other").unwrap();
        assert!(pending.persist().is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"other");
        let mut pending = Pending::create(&target, true).unwrap();
        pending.file().write_all(b"new").unwrap();
        pending.persist().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn an_unfinished_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.tar");
        let pending = Pending::create(&target, false).unwrap();
        drop(pending);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_unwritable_place_is_refused() {
        let err = Pending::create(Path::new("/proc/ckpt-no/a.tar"), false).unwrap_err();
        assert!(format!("{err:#}").contains("cannot write into"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let err = Pending::create(dir.path(), true).unwrap_err();
        assert!(format!("{err:#}").contains("directory"), "{err:#}");
    }
}
