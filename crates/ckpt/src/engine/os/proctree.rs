//! Reading a container's processes from the host's /proc.
//!
//! ckpt runs as root on the engine's host, so it can see a container's
//! processes without exec'ing anything inside the container (a `FROM
//! scratch` image has no `ps`). The pids a container's programs see are the
//! innermost entry of `NSpid` in /proc/<pid>/status.

use std::fs;

use anyhow::{Context, Result};

/// The /proc/<pid>/status text of `root` and each of its descendants,
/// with the host pid.
fn tree_status(root: u32) -> Result<Vec<(u32, String)>> {
    let mut pending = vec![root];
    let mut out = Vec::new();
    while let Some(pid) = pending.pop() {
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("process {pid} is gone (reading /proc/{pid}/status)"))?;
        out.push((pid, status));
        pending.extend(children(pid));
    }
    Ok(out)
}

/// The innermost-namespace pids of `root` and all its descendants, sorted.
pub(crate) fn namespace_pids(root: u32) -> Result<Vec<u32>> {
    let mut pids: Vec<u32> = tree_status(root)?
        .iter()
        .map(|(pid, status)| inner_pid(status).unwrap_or(*pid))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Resident memory (VmRSS) of `root` and all its descendants, in bytes.
/// Pages shared copy-on-write count once per process, as CRIU dumps them.
pub(crate) fn resident_bytes(root: u32) -> Result<u64> {
    Ok(tree_status(root)?
        .iter()
        .filter_map(|(_, status)| vm_rss_kib(status))
        .sum::<u64>()
        * 1024)
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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

/// Makes this process the reaper of its orphaned descendants. The sandbox's
/// PID 1 here does not reap orphans, so a killed workload tree whose parent
/// is gone would stay as zombies for ever, holding its pids (CRIU cannot
/// restore onto a pid a zombie holds). With this, such orphans come to us
/// and `reap` collects them.
pub(crate) fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Waits (up to `timeout`) until each of `pids` has exited and collects
/// the ones that are our children. Pids that are not our children (their
/// parent reaps them) count as done once they are gone.
pub(crate) fn reap(pids: &[u32], timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut pending: Vec<u32> = pids.to_vec();
    while !pending.is_empty() {
        pending.retain(|&pid| {
            let mut status = 0;
            // SAFETY: waitpid on a specific pid with WNOHANG never blocks and
            // only collects that pid, so it cannot steal another child.
            let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
            let not_ours = r < 0;
            let reaped = r == pid as i32;
            !(reaped || (not_ours && !std::path::Path::new(&format!("/proc/{pid}")).exists()))
        });
        if pending.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    pending.is_empty()
}

/// Whether the process `pid` has ended, and how: None while it runs.
/// A zombie child of ours is collected here for its exit status (a zombie
/// runs nothing, though /proc still lists it).
pub(crate) fn ended(pid: u32) -> Option<String> {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Some("it exited".into());
    };
    let state = stat
        .rfind(')')
        .and_then(|c| stat[c + 1..].split_whitespace().next());
    if state != Some("Z") {
        return None;
    }
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG never blocks.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    if r != pid as i32 {
        return Some("it exited".into());
    }
    Some(if libc::WIFEXITED(status) {
        format!("it exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("it was killed by signal {}", libc::WTERMSIG(status))
    } else {
        "it exited".into()
    })
}

/// Collects the exited workload processes that were handed to us as the
/// subreaper: a container's first process, after runc detached from it,
/// becomes our child, and when a checkpoint or a delete ends it, our
/// zombie. Only processes named like the workload are collected, so the
/// exit status of a tool that tokio waits for is never stolen.
pub(crate) fn reap_exited_workloads() -> usize {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut reaped = 0;
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if exited_workload_of(&stat, me) && reap(&[pid], std::time::Duration::ZERO) {
            reaped += 1;
        }
    }
    reaped
}

/// `/proc/<pid>/stat` says: a zombie named ckpt-workload whose parent is
/// `parent`. The name is in parentheses and may hold spaces, so the fields
/// after it are read from the last ')'.
fn exited_workload_of(stat: &str, parent: u32) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let name = &stat[open + 1..close];
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next();
    let ppid = rest.next().and_then(|p| p.parse::<u32>().ok());
    name.starts_with("ckpt-workload") && state == Some("Z") && ppid == Some(parent)
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
    fn reads_resident_memory() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t   2048 kB\n"), Some(2048));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        // This test process holds at least a few pages.
        assert!(resident_bytes(std::process::id()).unwrap() > 64 * 1024);
    }

    #[test]
    fn recognises_only_our_exited_workloads() {
        assert!(exited_workload_of("42 (ckpt-workload) Z 7 42 42", 7));
        assert!(!exited_workload_of("42 (ckpt-workload) S 7 42 42", 7));
        assert!(!exited_workload_of("42 (ckpt-workload) Z 8 42 42", 7));
        assert!(!exited_workload_of("42 (runc) Z 7 42 42", 7));
        assert!(!exited_workload_of("42 (a ) Z 7) S 7", 7));
    }

    #[test]
    // `ended` collects the child itself: that is what it is for.
    #[allow(clippy::zombie_processes)]
    fn says_how_a_child_ended() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let started = std::time::Instant::now();
        let mut how = ended(pid);
        while how.is_none() && started.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(5));
            how = ended(pid);
        }
        assert_eq!(how.as_deref(), Some("it exited with status 3"));
        assert_eq!(ended(std::process::id()), None);
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
