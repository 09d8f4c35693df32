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
    let out = Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .args(["-n", "ip", "link", "set", "lo", "up"])
        .output()
        .context("cannot run nsenter and ip (util-linux, iproute2)")?;
    if !out.status.success() {
        bail!(
            "cannot set loopback up in the restored container (pid {pid}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
