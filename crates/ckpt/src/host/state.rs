//! What on the host can make an engine slower over a long run, read once
//! per trial beside its record: memory cgroups removed but not yet freed,
//! mounts, network namespace files, containerd's content store, the
//! daemons' memory and CPU time, free memory and load. Each is a few
//! small files under /proc, /sys and /run (see `read`'s cost in
//! docs/sweep.md), so reading them never disturbs a timed call.

use std::io::ErrorKind;
use std::path::Path;

/// The host's state at one moment; None where it could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HostState {
    /// Memory cgroups removed but still held by the kernel (their pages
    /// are still charged); they slow every cgroup operation as they pile up.
    pub(crate) memcg_dying: Option<u64>,
    /// Lines of /proc/self/mountinfo.
    pub(crate) mounts: Option<u64>,
    /// Files under /run/docker/netns and /run/netns.
    pub(crate) netns: Option<u64>,
    /// Blobs in containerd's content stores (the system's and Docker's own).
    pub(crate) content_items: Option<u64>,
    pub(crate) dockerd: Option<Daemon>,
    pub(crate) containerd: Option<Daemon>,
    pub(crate) mem_available_mib: Option<u64>,
    /// The 1-minute load average.
    pub(crate) load1: Option<f64>,
}

/// A daemon's resident memory and CPU time, summed over its processes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Daemon {
    pub(crate) rss_kib: u64,
    pub(crate) cpu_ms: u64,
}

const MEMORY_CGROUP_V1: &str = "/sys/fs/cgroup/memory";
const NETNS_DIRS: [&str; 2] = ["/run/docker/netns", "/run/netns"];
const CONTENT_DIRS: [&str; 2] = [
    "/var/lib/containerd/io.containerd.content.v1.content/blobs/sha256",
    "/var/lib/docker/containerd/daemon/io.containerd.content.v1.content/blobs/sha256",
];

impl HostState {
    /// Reads everything now.
    pub(crate) fn read() -> HostState {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let [dockerd, containerd] = daemons(["dockerd", "containerd"]);
        HostState {
            memcg_dying: memcg_dying(),
            mounts: std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .map(|m| m.lines().count() as u64),
            netns: count_entries(&NETNS_DIRS),
            content_items: count_entries(&CONTENT_DIRS),
            dockerd,
            containerd,
            mem_available_mib: kib_field(&meminfo, "MemAvailable").map(|k| k / 1024),
            load1: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse().ok()),
        }
    }
}

/// Memory cgroups that were removed but not freed. cgroup v1 has no
/// counter for them: the kernel's count (/proc/cgroups) less the
/// directories that still exist. cgroup v2 counts them itself.
fn memcg_dying() -> Option<u64> {
    if Path::new(MEMORY_CGROUP_V1).is_dir() {
        let cgroups = std::fs::read_to_string("/proc/cgroups").ok()?;
        let kernel = memory_cgroups(&cgroups)?;
        return Some(kernel.saturating_sub(count_dirs(Path::new(MEMORY_CGROUP_V1))));
    }
    let stat = std::fs::read_to_string("/sys/fs/cgroup/cgroup.stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("nr_dying_descendants "))
        .and_then(|v| v.trim().parse().ok())
}

/// num_cgroups of the memory controller in /proc/cgroups.
fn memory_cgroups(proc_cgroups: &str) -> Option<u64> {
    proc_cgroups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            ["memory", _, count, ..] => count.parse().ok(),
            _ => None,
        }
    })
}

/// A directory and every directory below it (each is a live cgroup).
fn count_dirs(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let below: u64 = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| count_dirs(&e.path()))
        .sum();
    1 + below
}

/// Entries in the directories that exist (a missing one holds none);
/// None when one exists but cannot be read.
fn count_entries(dirs: &[&str]) -> Option<u64> {
    dirs.iter()
        .try_fold(0u64, |sum, dir| match std::fs::read_dir(dir) {
            Ok(entries) => Some(sum + entries.count() as u64),
            Err(e) if e.kind() == ErrorKind::NotFound => Some(sum),
            Err(_) => None,
        })
}

/// The processes whose command is each of `names`, by /proc/*/comm (a
/// daemon can restart during a run, so its pid is looked up each time).
fn daemons<const K: usize>(names: [&str; K]) -> [Option<Daemon>; K] {
    let mut found = [None; K];
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    let pids = procs
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(is_pid));
    for entry in pids {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let Some(k) = names.iter().position(|n| *n == comm.trim_end()) else {
            continue;
        };
        if let Some(process) = daemon_process(&entry.path()) {
            let sum = found[k].get_or_insert_with(Daemon::default);
            sum.rss_kib += process.rss_kib;
            sum.cpu_ms += process.cpu_ms;
        }
    }
    found
}

fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// One process's resident memory (VmRSS) and CPU time (utime + stime).
fn daemon_process(proc_dir: &Path) -> Option<Daemon> {
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    Some(Daemon {
        rss_kib: kib_field(&status, "VmRSS")?,
        cpu_ms: cpu_ticks(&stat)? * 1000 / clock_ticks_per_second(),
    })
}

/// utime + stime, in clock ticks, from /proc/PID/stat. The command name
/// (field 2) may hold spaces and parentheses, so fields count from the
/// last ')': utime and stime are fields 14 and 15.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// A `Key:   123 kB` line of /proc/meminfo or /proc/PID/status, in KiB.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim().trim_end_matches("kB").trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_files() {
        let cgroups =
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t2\t1\nmemory\t4\t35\t1\n";
        assert_eq!(memory_cgroups(cgroups), Some(35));
        assert_eq!(memory_cgroups("cpu 1 2 1\n"), None);
        let stat = "8209 (my (odd) name) S 1 8209 8209 0 -1 4194560 5 0 0 0 1200 345 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(1545));
        let status = "Name:\tdockerd\nVmRSS:\t   81234 kB\nThreads:\t9\n";
        assert_eq!(kib_field(status, "VmRSS"), Some(81234));
        assert_eq!(kib_field(status, "VmSwap"), None);
        assert!(is_pid("8209") && !is_pid("self") && !is_pid(""));
    }

    #[test]
    fn missing_directories_hold_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("f"), "").unwrap();
        assert_eq!(count_dirs(dir.path()), 3);
        let root = dir.path().to_str().unwrap();
        assert_eq!(count_entries(&[root, "/nonexistent/ckpt"]), Some(2));
    }

    /// Read once per trial: it must cost far less than the times it sits
    /// beside. The median of many reads, so a busy shared machine cannot
    /// fail it by one slow read.
    #[test]
    fn reads_this_machine_in_well_under_10_ms() {
        let mut took: Vec<f64> = (0..21)
            .map(|_| {
                let started = std::time::Instant::now();
                let state = HostState::read();
                assert!(state.mounts.unwrap() > 0 && state.load1.is_some());
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        took.sort_by(f64::total_cmp);
        eprintln!(
            "HostState::read: median {:.2} ms, max {:.2} ms",
            took[10], took[20]
        );
        assert!(took[10] < 10.0, "{took:?}");
    }
}
