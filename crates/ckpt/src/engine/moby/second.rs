//! A second Docker or Podman daemon on this machine: the destination host
//! of a migration when no other machine is at hand. It has state of its own
//! (data root, exec root, socket, pid file, cgroup parent, containerd for
//! Docker; storage, run root, tmp dir and locks for Podman) so that nothing
//! of the first daemon's is shared, and it runs inside the destination's
//! network namespace. ckpt starts it and stops it; `ckpt gc` stops one a
//! killed run left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::engine::os::rundir;
use crate::model::EngineKind;
use crate::run::RunId;

/// The run directories' name (`/run/ckpt/daemon2/<run>`): short, because
/// Podman refuses a run root longer than 50 characters.
const DIR: &str = "daemon2";
/// How long a daemon may take to open its socket, and to stop.
const START: Duration = Duration::from_secs(30);
const STOP: Duration = Duration::from_secs(20);

/// A running second daemon; stopped when dropped.
pub struct SecondDaemon {
    kind: EngineKind,
    child: Option<Child>,
    dir: PathBuf,
}

impl SecondDaemon {
    /// Starts a `kind` daemon (docker or podman) inside the network
    /// namespace `netns` (entered with `nsenter --net` only: `ip netns
    /// exec` would also make a mount namespace, hiding the daemon's mounts
    /// from ckpt), and waits until it answers on its socket.
    pub fn start(kind: EngineKind, run: &RunId, netns: &str) -> Result<SecondDaemon> {
        let dir = rundir::create(DIR, run)?.join(kind.name());
        rundir::make_private_dir(&dir)?;
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{netns}"));
        match kind {
            EngineKind::Docker => dockerd_args(&mut command, &dir, run)?,
            EngineKind::Podman => podman_args(&mut command, &dir)?,
            other => bail!("the {other} engine has no daemon to start"),
        }
        // A group of its own: a Ctrl-C at the terminal is ckpt's to
        // handle, and must not stop the daemon (and what runs on it).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start a second {kind} daemon"))?;
        std::fs::write(dir.join("daemon.pid"), child.id().to_string())?;
        let mut daemon = SecondDaemon {
            kind,
            child: Some(child),
            dir,
        };
        daemon.wait_for_socket()?;
        Ok(daemon)
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The daemon's API socket.
    pub fn socket(&self) -> PathBuf {
        socket_of(self.kind, &self.dir)
    }

    fn wait_for_socket(&mut self) -> Result<()> {
        let deadline = Instant::now() + START;
        while !self.socket().exists() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
                let last: Vec<&str> = log.lines().rev().take(3).collect();
                bail!(
                    "the second {} daemon exited ({status}) before opening its socket; it said: {}",
                    self.kind,
                    last.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the second {} daemon did not open {} within {} s",
                    self.kind,
                    self.socket().display(),
                    START.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the daemon (SIGTERM, then SIGKILL after a while), takes down
    /// the mounts it left and removes its directories.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        stop_process(child.id());
        let _ = child.wait();
        remove_dir(&self.dir)?;
        // The run's directory goes with its last daemon.
        let run_dir = self
            .dir
            .parent()
            .context("a daemon directory without a parent")?;
        let others = std::fs::read_dir(run_dir)?
            .flatten()
            .any(|e| e.file_name() != "owner.pid");
        if !others {
            rundir::remove(run_dir)?;
        }
        Ok(())
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "ckpt: removing the second {} daemon failed: {e:#}; run `ckpt gc`",
                self.kind
            );
        }
    }
}

fn socket_of(kind: EngineKind, dir: &Path) -> PathBuf {
    dir.join(format!("{}.sock", kind.name()))
}

/// dockerd with every path of its own, and a configuration file of its own
/// so that it does not read the first daemon's /etc/docker/daemon.json.
fn dockerd_args(command: &mut Command, dir: &Path, run: &RunId) -> Result<()> {
    let config = dir.join("daemon.json");
    std::fs::write(&config, "{}")?;
    command
        .arg("dockerd")
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("-H")
        .arg(format!(
            "unix://{}",
            socket_of(EngineKind::Docker, dir).display()
        ))
        .arg("--pidfile")
        .arg(dir.join("dockerd.pid"))
        .arg("--cgroup-parent")
        .arg(format!("ckpt-{}", run.as_str()))
        .arg("--config-file")
        .arg(config)
        .args([
            "--experimental",
            "--bridge",
            "none",
            "--iptables=false",
            "--ip-masq=false",
        ]);
    Ok(())
}

/// A Podman service with its own storage, run root and tmp dir. Two
/// Podmans share the lock memory `/dev/shm/libpod_lock` unless told
/// otherwise: with `lock_type = "file"` this one keeps its locks under its
/// own tmp dir.
fn podman_args(command: &mut Command, dir: &Path) -> Result<()> {
    let config = dir.join("containers.conf");
    std::fs::write(&config, "[engine]\nlock_type = \"file\"\n")?;
    command
        .env("CONTAINERS_CONF", config)
        .arg("podman")
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .args(["system", "service", "--time=0"])
        .arg(format!(
            "unix://{}",
            socket_of(EngineKind::Podman, dir).display()
        ));
    Ok(())
}

/// SIGTERM, then SIGKILL if the process is still there after STOP.
fn stop_process(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: signalling a daemon this module started (or a dead run's,
    // checked by its command name in `remove_orphans`).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    crate::engine::os::proctree::reap(&[pid as u32], Duration::from_secs(5));
}

fn alive(pid: i32) -> bool {
    // A zombie (our child not yet waited for) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Unmounts whatever is still mounted under `dir` (Podman's storage keeps
/// a bind mount of its overlay directory), deepest first, then removes it;
/// a mount that stays refuses the removal, which would otherwise descend
/// into whatever is mounted there.
fn remove_dir(dir: &Path) -> Result<()> {
    for mount in mounts_under(dir) {
        let path = std::ffi::CString::new(mount.as_str())?;
        // SAFETY: a valid C string; MNT_DETACH never blocks.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            let error = std::io::Error::last_os_error();
            // EINVAL: not a mount point any more (a parent's went first).
            if error.raw_os_error() != Some(libc::EINVAL) {
                bail!("cannot unmount {mount} ({error}), so {} is left in place: unmount it and run `ckpt gc`", dir.display());
            }
        }
    }
    if let Some(still) = mounts_under(dir).first() {
        bail!(
            "{still} is still mounted, so {} is left in place: unmount it and run `ckpt gc`",
            dir.display()
        );
    }
    rundir::remove(dir)
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut under: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    under
}

/// For `ckpt gc`: stops the second daemons of runs whose ckpt process is
/// gone and removes their directories; returns how many.
pub fn remove_orphans() -> Result<usize> {
    let mut removed = 0;
    for run_dir in rundir::orphans(DIR) {
        for kind in [EngineKind::Docker, EngineKind::Podman] {
            let dir = run_dir.join(kind.name());
            let pid = std::fs::read_to_string(dir.join("daemon.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(pid) = pid.filter(|p| runs(*p, &["nsenter", "dockerd", "podman"])) {
                stop_process(pid);
                removed += 1;
            }
            remove_dir(&dir)?;
        }
        rundir::remove(&run_dir)?;
    }
    Ok(removed)
}

/// Whether `pid` runs one of `commands` (a recycled pid runs something else).
fn runs(pid: u32, commands: &[&str]) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| commands.contains(&c.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount_tmpfs(at: &Path) -> bool {
        std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success())
    }

    #[test]
    #[ignore = "needs root (mounts a tmpfs): ./scripts/test"]
    fn a_directory_is_removed_only_once_nothing_is_mounted_under_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("daemon");
        let inner = dir.join("storage/overlay");
        std::fs::create_dir_all(&inner).unwrap();
        assert!(mount_tmpfs(&inner), "mount needs root");
        assert!(mount_tmpfs(&inner), "a second mount over the first");
        std::fs::write(inner.join("file"), b"x").unwrap();
        assert_eq!(mounts_under(&dir).len(), 2);
        remove_dir(&dir).unwrap();
        assert!(!dir.exists());
        assert!(mounts_under(&dir).is_empty());
    }
}
