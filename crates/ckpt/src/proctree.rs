//! Reading a container's processes from the host's /proc.
//!
//! ckpt runs as root on the engine's host, so it can see a container's
//! processes without exec'ing anything inside the container (a `FROM
//! scratch` image has no `ps`). The pids a container's programs see are the
//! innermost entry of `NSpid` in /proc/<pid>/status.

use std::fs;

use anyhow::{Context, Result};

/// The innermost-namespace pids of `root` and all its descendants, sorted.
pub fn namespace_pids(root: u32) -> Result<Vec<u32>> {
    let mut pending = vec![root];
    let mut pids = Vec::new();
    while let Some(pid) = pending.pop() {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} is gone (reading /proc/{pid}/status)"))?;
        pids.push(inner_pid(&status).unwrap_or(pid));
        pending.extend(children(pid));
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Children of every thread of `pid` (CONFIG_PROC_CHILDREN). A process that
/// exits while we read simply has none.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The last pid on the `NSpid:` line: the pid inside the innermost namespace.
fn inner_pid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_pid_is_the_last_nspid_entry() {
        assert_eq!(inner_pid("Name:\tx\nNSpid:\t4242\t7\n"), Some(7));
        assert_eq!(inner_pid("NSpid:\t12\n"), Some(12));
        assert_eq!(inner_pid("Name:\tx\n"), None);
    }

    #[test]
    fn sees_own_child_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pids = namespace_pids(std::process::id()).unwrap();
        let found = pids.contains(&child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "{pids:?} should contain {}", child.id());
    }
}
