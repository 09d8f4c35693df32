//! Network namespaces of ckpt's own: made with `ip netns add`, named
//! `ckpt-m<pid>-<what>` so that `ckpt gc` finds those whose ckpt is gone,
//! and removed (with whatever still runs inside) when dropped.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::run::owner_alive;

/// The prefix of every namespace ckpt makes.
pub(crate) const PREFIX: &str = "ckpt-m";

/// Runs `ip ARGS`, failing with what ip said.
pub(crate) fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2): install it")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The name of this process's namespace for `what`.
pub(crate) fn name_for(what: &str) -> String {
    format!("{PREFIX}{}-{what}", std::process::id())
}

/// A namespace with only loopback, up; removed when dropped.
pub(crate) struct ScratchNetns {
    pub name: String,
}

impl ScratchNetns {
    pub(crate) fn create(what: &str) -> Result<ScratchNetns> {
        let netns = ScratchNetns {
            name: name_for(what),
        };
        ip(&["netns", "add", &netns.name])?;
        ip(&["-n", &netns.name, "link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Where the namespace is bound (`ip netns add`).
    pub(crate) fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.name)
    }

    /// nsenter's option that joins this namespace (and only it).
    pub(crate) fn nsenter_arg(&self) -> String {
        format!("--net=/run/netns/{}", self.name)
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// Kills what still runs in the namespace and deletes it. Idempotent.
pub(crate) fn remove(netns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", netns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: processes inside a namespace this run made.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = ip(&["netns", "del", netns]);
}

/// For `ckpt gc`: the namespaces of runs whose ckpt process is gone.
pub fn remove_orphans() -> Result<usize> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !owner_alive(Some(pid)) {
            remove(&name);
            removed += 1;
        }
    }
    Ok(removed)
}

/// Sets loopback up in the network namespace of `pid`, when that is not
/// ckpt's own. runc restores a container's new network namespace with its
/// loopback down (CRIU issue 590, containerd issue 4683; seen with runc
/// 1.1.5 under Docker and Podman), so a program serving on 127.0.0.1
/// answers nothing after the restore until something brings it up.
pub(crate) fn loopback_up(pid: u32) -> Result<()> {
    let own =
        std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .with_context(|| format!("cannot read the network namespace of pid {pid}"))?;
    if own.ok() == Some(theirs) {
        return Ok(());
    }
    ip_in_pid(pid, &["link", "set", "lo", "up"])
        .context("cannot set loopback up in the restored container")
}

/// `ip ARGS` inside the network namespace of `pid`.
pub(crate) fn ip_in_pid(pid: u32, args: &[&str]) -> Result<()> {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "ip"])
        .args(args)
        .output()
        .context("cannot run nsenter and ip (util-linux, iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` in the container (pid {pid}) failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The inode that names a network namespace file.
fn netns_inode(path: &std::path::Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// Whether `pid` runs in a namespace of ckpt's (one of this process's
/// or of another ckpt's): how the criu engine recognises a user's program
/// tree as its own before it kills it.
pub(crate) fn in_ckpt_netns(pid: u32) -> bool {
    let Some(theirs) = netns_inode(std::path::Path::new(&format!("/proc/{pid}/ns/net"))) else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(PREFIX)
            && netns_inode(&e.path()) == Some(theirs)
    })
}

/// Whether `name` names a namespace of ckpt's that exists: what `ckpt
/// serve` accepts from a client, which may name no other path.
pub(crate) fn ckpt_netns_path(name: &str) -> Result<std::path::PathBuf> {
    let shaped = name.starts_with(PREFIX)
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !shaped {
        bail!("'{name}' is not the name of a network namespace of ckpt's ({PREFIX}...)");
    }
    let path = std::path::Path::new("/run/netns").join(name);
    if !path.exists() {
        bail!("there is no network namespace {name} on this host");
    }
    // The destination's side of a segment waits empty for the restore:
    // a namespace something runs in (a client's, another move's service)
    // is not a client's to name.
    let pids = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .context("cannot run `ip netns pids`")?;
    if !pids.status.success() || !pids.stdout.iter().all(u8::is_ascii_whitespace) {
        bail!("network namespace {name} is in use: refused");
    }
    Ok(path)
}

/// Moves the calling thread into the network namespace at `path` for the
/// rest of its life (a thread of its own: a probe's).
pub(crate) fn enter_for_good(path: &std::path::Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let target = std::fs::File::open(path)
        .with_context(|| format!("cannot open the network namespace {}", path.display()))?;
    // SAFETY: setns on an fd we own; only this thread's namespace changes.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot enter {}", path.display()));
    }
    Ok(())
}

/// Runs `work` with the calling thread in the network namespace at `path`
/// (a namespace is a per-thread attribute for the network), and puts the
/// thread back afterwards: processes it starts meanwhile (CRIU) start in
/// that namespace.
pub(crate) fn on_this_thread_in<T>(path: &std::path::Path, work: impl FnOnce() -> T) -> Result<T> {
    use std::os::fd::AsRawFd;
    let home = std::fs::File::open("/proc/thread-self/ns/net")
        .context("cannot open this thread's network namespace")?;
    let target = std::fs::File::open(path)
        .with_context(|| format!("cannot open the network namespace {}", path.display()))?;
    // SAFETY: setns on fds we own; only this thread's namespace changes.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot enter {}", path.display()));
    }
    let out = work();
    // SAFETY: as above, back to where the thread was.
    // (It cannot fail: the fd is of the namespace the thread came from.)
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("cannot return a thread to its own network namespace");
    }
    Ok(out)
}
