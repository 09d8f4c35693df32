//! What the Docker stack itself leaves behind for a container: files that
//! containerd and dockerd make on ckpt's behalf and never remove. ckpt
//! removes its own with the container they belong to, and nobody else's.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where containerd (started by dockerd, TMPDIR unset) makes its temporary
/// checkpoint copies.
const CONTAINERD_TMP: &str = "/tmp";

/// Where dockerd keeps the namespace files of its network sandboxes.
const SANDBOX_DIR: &str = "/var/run/docker/netns";

/// containerd 1.6 leaves a full copy of every Docker checkpoint in
/// `/tmp/ctrd-checkpoint*` (containerd/containerd#10166): process memory,
/// in a directory nobody removes. A copy is ours when its inventory.img is
/// byte for byte one of `ours` (the inventory holds the dump's own ids and
/// uptime), so only our copies go.
pub(crate) fn remove_containerd_copies(ours: &[Vec<u8>]) {
    if ours.is_empty() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(CONTAINERD_TMP) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_copy = entry
            .file_name()
            .to_string_lossy()
            .starts_with("ctrd-checkpoint");
        if is_copy && std::fs::read(path.join("inventory.img")).is_ok_and(|inv| ours.contains(&inv))
        {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!("cannot remove containerd's copy {}: {e}", path.display());
            }
        }
    }
}

/// The network sandboxes Docker made for each container, by container id.
/// dockerd 20.10 leaves the empty namespace file of every sandbox it made
/// for `--network none` in /var/run/docker/netns when the container goes
/// (two per trial: the start's and the restore's); with networking
/// disabled it makes none.
#[derive(Default)]
pub struct Sandboxes {
    seen: Mutex<HashMap<String, Vec<PathBuf>>>,
}

impl Sandboxes {
    /// Notes the sandbox a container has now (from an inspect: ckpt
    /// inspects its containers after every start and restore anyway).
    pub(crate) fn note(&self, id: &str, key: Option<String>) {
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let keys = seen.entry(id.to_string()).or_default();
        if !keys.iter().any(|k| k.as_os_str() == key.as_str()) {
            keys.push(PathBuf::from(key));
        }
    }

    /// After the container is gone: removes the files of its sandboxes that
    /// nothing is mounted on any more (a mounted one is still alive).
    pub(crate) fn remove_dead(&self, id: &str) {
        let keys = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.remove(id).unwrap_or_default()
        };
        if keys.is_empty() {
            return;
        }
        let mounted = mount_points();
        // The key says /var/run, mountinfo says where that leads (/run).
        let real_dir = std::fs::canonicalize(SANDBOX_DIR).unwrap_or_else(|_| SANDBOX_DIR.into());
        for key in keys {
            let real = key.file_name().map(|name| real_dir.join(name));
            let dead = key.parent() == Some(Path::new(SANDBOX_DIR))
                && !mounted.contains(&key)
                && !real.is_some_and(|r| mounted.contains(&r))
                && std::fs::metadata(&key).is_ok_and(|m| m.is_file() && m.len() == 0);
            if dead {
                if let Err(e) = std::fs::remove_file(&key) {
                    tracing::warn!("cannot remove Docker's sandbox file {}: {e}", key.display());
                }
            }
        }
    }
}

/// The mount points of this mount namespace (dockerd's: ckpt runs beside
/// it on the host), from /proc/self/mountinfo's fifth field.
fn mount_points() -> HashSet<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_are_noted_once_and_forgotten_with_their_container() {
        let sandboxes = Sandboxes::default();
        sandboxes.note("c1", Some("/var/run/docker/netns/aaa".into()));
        sandboxes.note("c1", Some("/var/run/docker/netns/aaa".into()));
        sandboxes.note("c1", Some("/var/run/docker/netns/bbb".into()));
        sandboxes.note("c2", Some(String::new()));
        sandboxes.note("c3", None);
        let seen = sandboxes.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "no key, nothing noted: {seen:?}");
        assert_eq!(seen["c1"].len(), 2);
        // The files do not exist here: nothing to remove, and c1 is forgotten.
        sandboxes.remove_dead("c1");
        assert!(sandboxes.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn mount_points_include_the_root() {
        assert!(mount_points().contains(Path::new("/")));
    }
}
