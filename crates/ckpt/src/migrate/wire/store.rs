//! Where a received file may go: under the receiver's own directory, by a
//! relative path of plain components, never through a symbolic link and
//! never over a file that is already there.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Refuses a path that is empty, absolute or holds anything but plain
/// components (`..`, `.`).
pub(crate) fn check_relative(rel: &Path) -> Result<()> {
    let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if rel.as_os_str().is_empty() || !plain {
        bail!(
            "the other host sent a file named {}, outside its directory",
            rel.display()
        );
    }
    Ok(())
}

/// Creates `root/rel` for writing: its missing directories private (as
/// every directory ckpt makes, and as CRIU wants the root it restores
/// into), each existing one a real directory (not a link), the file new
/// (`O_CREAT|O_EXCL|O_NOFOLLOW`: never one that exists, never through a
/// link).
pub(crate) fn create_confined(root: &Path, rel: &Path, mode: u32) -> Result<(File, PathBuf)> {
    check_relative(rel)?;
    let mut dir = root.to_path_buf();
    let mut parts: Vec<_> = rel.components().collect();
    let name = parts.pop().context("a file without a name")?;
    for part in parts {
        dir.push(part);
        enter_dir(&dir)?;
    }
    let path = dir.join(name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot create {} (a received file never replaces one)",
                path.display()
            )
        })?;
    Ok((file, path))
}

/// Makes `dir` (private) unless it is there; refuses a link or a file.
fn enter_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => bail!(
            "{} is not a directory: a received file does not go through it",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_stay_inside_and_never_follow_a_link_or_replace_a_file() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let (_, path) = create_confined(root.path(), Path::new("a/b/c.img"), 0o600).unwrap();
        assert_eq!(path, root.path().join("a/b/c.img"));
        for bad in ["/etc/passwd", "../x", "a/../../x", "", "./x"] {
            let e = create_confined(root.path(), Path::new(bad), 0o600).unwrap_err();
            assert!(e.to_string().contains("outside"), "{bad}: {e}");
        }
        // A link to elsewhere, as a directory and as the file itself.
        std::os::unix::fs::symlink(outside.path(), root.path().join("dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("f")).unwrap();
        assert!(create_confined(root.path(), Path::new("dir/x"), 0o600).is_err());
        assert!(create_confined(root.path(), Path::new("f"), 0o600).is_err());
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        // A file sent twice.
        assert!(create_confined(root.path(), Path::new("a/b/c.img"), 0o600).is_err());
    }
}
