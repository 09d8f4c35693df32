//! The system a sweep ran on (env.json): what the seed listed by hand, read
//! from the machine and the engines.

use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::engine::docker::DaemonFacts;

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
}

impl Environment {
    pub fn collect(daemon: Option<&DaemonFacts>) -> Environment {
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
    fn collects_this_machine() {
        let env = Environment::collect(None);
        assert!(env.cores.unwrap() >= 1);
        assert!(env.memory_bytes.unwrap() > 0);
        assert!(env.kernel.is_some());
    }
}
