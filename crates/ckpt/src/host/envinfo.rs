//! The system a sweep ran on (env.json): what the seed listed by hand, read
//! from the machine and the engines.

use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::engine::moby::DaemonFacts;
use crate::model::{Capacity, ProcessLimits};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub cpu_model: Option<String>,
    pub cores: Option<usize>,
    pub memory_bytes: Option<u64>,
    pub kernel: Option<String>,
    pub distro: Option<String>,
    pub docker: Option<String>,
    pub docker_api: Option<String>,
    pub containerd: Option<String>,
    pub runc: Option<String>,
    pub criu: Option<String>,
    pub podman: Option<String>,
    pub ckpt: String,
    /// This machine's memory copy bandwidth (a large memcpy), the yardstick
    /// for checkpoint throughput.
    #[serde(default)]
    pub memcpy_mib_per_s: Option<f64>,
    /// Which machine, so that `ckpt report` can tell hosts apart when it
    /// merges their runs (None in directories of an older ckpt).
    #[serde(default)]
    pub host: Option<HostId>,
}

/// A machine's name and identity.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostId {
    pub hostname: Option<String>,
    /// 16 hex digits derived from /etc/machine-id, never the ID itself:
    /// machine-id(5) asks that it stay confidential, and results are
    /// shared. Two runs with the same value ran on the same installation.
    pub machine: Option<String>,
}

impl HostId {
    pub(crate) fn read() -> HostId {
        let trimmed = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        HostId {
            hostname: trimmed("/proc/sys/kernel/hostname"),
            machine: trimmed("/etc/machine-id").map(|id| machine_digest(&id)),
        }
    }
}

/// ckpt's own digest of the machine ID: stable across builds and
/// machines, and its 64 bits cannot give back the 128 of the ID.
fn machine_digest(machine_id: &str) -> String {
    format!("{:016x}", fnv1a(&format!("ckpt-host:{machine_id}")))
}

/// FNV-1a, 64 bits.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What this machine can hold now: available memory, and free space on
/// the tmpfs where runc and CRIU checkpoints go.
pub fn capacity() -> Capacity {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available_kib = field(&meminfo, "MemAvailable", ':')
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    Capacity {
        memory_available_mib: available_kib / 1024,
        state_free_mib: free_mib(std::path::Path::new("/run")).unwrap_or(0),
    }
}

/// How many tasks this machine lets ckpt start: kernel.pid_max,
/// kernel.threads-max, this user's RLIMIT_NPROC and what runs now.
pub fn process_limits() -> ProcessLimits {
    let number =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    // SAFETY: getrlimit only writes the struct it is given.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    let user_processes = (unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY)
        .then_some(limit.rlim_cur);
    // /proc/loadavg's fourth field is "runnable/total tasks".
    let running = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0);
    ProcessLimits {
        pid_max: number("/proc/sys/kernel/pid_max").unwrap_or(32_768),
        threads_max: number("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX),
        user_processes,
        running,
    }
}

fn free_mib(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given from a valid C string.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64 / (1 << 20))
}

/// This machine's memory copy bandwidth in MiB/s: the workload's `memcpy`
/// copies 256 MiB five times and reports the best rate (a read and a write
/// of every byte, as CRIU moves pages). It runs as its own process so that
/// its half a GiB of buffers never counts in ckpt's memory.
pub(crate) fn memcpy_bandwidth() -> Option<f64> {
    let binary = crate::workload::locate_binary().ok()?;
    let out = Command::new(binary).arg("memcpy").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = ckpt_protocol::Memcpy::parse(text.lines().next()?).ok()?;
    Some(line.mib_per_s)
}

impl Environment {
    /// The machine's details; with `bandwidth`, also its memory copy
    /// bandwidth (a child process that briefly holds 512 MiB).
    pub fn collect(daemon: Option<&DaemonFacts>, bandwidth: bool) -> Environment {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Environment {
            cpu_model: field(&cpuinfo, "model name", ':'),
            cores: std::thread::available_parallelism().ok().map(|n| n.get()),
            memory_bytes: field(&meminfo, "MemTotal", ':')
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
            distro: field(&os_release, "PRETTY_NAME", '=').map(|v| v.trim_matches('"').to_string()),
            docker: daemon.map(|d| d.version.clone()),
            docker_api: daemon.map(|d| d.api_version.clone()),
            containerd: daemon.and_then(|d| d.containerd.clone()),
            // Docker reports the runc it uses; without Docker, the one on PATH.
            runc: daemon
                .and_then(|d| d.runc.clone())
                .or_else(|| first_line("runc", "--version")),
            criu: criu_version(),
            podman: first_line("podman", "--version"),
            ckpt: env!("CARGO_PKG_VERSION").to_string(),
            memcpy_mib_per_s: if bandwidth { memcpy_bandwidth() } else { None },
            host: Some(HostId::read()),
        }
    }
}

/// The value of the first `key<sep>value` line.
fn field(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The first line a tool prints for `arg`, e.g. "runc version 1.1.5".
fn first_line(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program).arg(arg).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
}

/// This host's CRIU version ("4.1.1") and runc's first line, as a
/// migration's two ends compare them.
pub(crate) fn engine_versions() -> (Option<String>, Option<String>) {
    (criu_version(), first_line("runc", "--version"))
}

fn criu_version() -> Option<String> {
    let out = Command::new("criu").arg("--version").output().ok()?;
    field(&String::from_utf8_lossy(&out.stdout), "Version", ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields() {
        assert_eq!(
            field("model name\t: Intel i7\nflags: x", "model name", ':').as_deref(),
            Some("Intel i7")
        );
        assert_eq!(
            field("PRETTY_NAME=\"Debian\"", "PRETTY_NAME", '=').as_deref(),
            Some("\"Debian\"")
        );
        assert_eq!(field("a: b", "c", ':'), None);
    }

    #[test]
    fn names_this_host_without_its_machine_id() {
        let host = HostId::read();
        assert!(host.hostname.is_some());
        let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        if let Some(machine) = &host.machine {
            assert_eq!(machine.len(), 16);
            assert!(!id.contains(machine.as_str()) && *machine == machine_digest(id.trim()));
        }
        // FNV-1a's published test values.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    #[ignore = "needs the static workload binary (scripts/build): ./scripts/test"]
    fn collects_this_machine() {
        let env = Environment::collect(None, true);
        assert!(env.cores.unwrap() >= 1);
        assert!(env.memory_bytes.unwrap() > 0);
        assert!(env.kernel.is_some());
        // Any machine copies faster than 100 MiB/s and slower than 1 TiB/s.
        let copy = env.memcpy_mib_per_s.unwrap();
        assert!((100.0..1e6).contains(&copy), "{copy}");
        let limits = process_limits();
        assert!(limits.pid_max >= 301 && limits.running > 0 && limits.available() > 0);
        let cap = capacity();
        assert!(cap.memory_available_mib > 0 && cap.state_free_mib > 0);
    }
}
