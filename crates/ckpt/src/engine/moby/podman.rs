//! Podman, through the Docker-compatible API of a `podman system service`
//! that ckpt starts on a socket of its own and stops at the end. Everything
//! but checkpoint and restore goes through bollard as for Docker (see
//! `docker.rs`, flavor Podman); those two use podman's libpod endpoints,
//! because the compatible API has no checkpoints for Podman. No CLI call is
//! needed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::models::ResourcesUlimits;

use crate::engine::os::rundir;
use crate::run::RunId;

/// Where Podman (as root) keeps its containers.
pub(crate) const STORAGE_ROOT: &str = "/var/lib/containers/storage";

/// Limits below the host's: runc refuses to start Podman's containers
/// otherwise here.
pub(crate) fn ulimits() -> Vec<ResourcesUlimits> {
    ["nofile", "nproc"]
        .iter()
        .map(|name| ResourcesUlimits {
            name: Some((*name).to_string()),
            soft: Some(1024),
            hard: Some(1024),
        })
        .collect()
}

/// A running `podman system service`; killed when dropped.
pub struct Service {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Service {
    /// Starts the service on /run/ckpt/podman/<run>/podman.sock and waits
    /// until the socket exists.
    pub(crate) fn start(run: &RunId) -> Result<Service> {
        Service::start_in(rundir::create("podman", run)?)
    }

    /// A second service for the same run, on `/run/ckpt/podman/<run>-<tag>/`
    /// (a migration's source beside a sweep's own service).
    pub(crate) fn start_tagged(run: &RunId, tag: &str) -> Result<Service> {
        Service::start_in(rundir::create_named(
            "podman",
            &format!("{}-{tag}", run.as_str()),
        )?)
    }

    fn start_in(dir: PathBuf) -> Result<Service> {
        let socket = dir.join("podman.sock");
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start `podman system service`: install podman with scripts/setup")?;
        std::fs::write(dir.join("service.pid"), child.id().to_string())?;
        let service = Service { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !service.socket.exists() {
            if Instant::now() > deadline {
                bail!(
                    "podman's service did not open {} within 20 s",
                    service.socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(service)
    }

    pub(crate) fn socket_uri(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = rundir::remove(&self.dir);
    }
}

/// For `ckpt gc`: stops the services of runs whose ckpt process is gone.
pub(crate) fn remove_orphans() -> Result<usize> {
    let mut removed = 0;
    for dir in rundir::orphans("podman") {
        if let Some(pid) = read_pid(&dir.join("service.pid")) {
            let is_podman = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "podman");
            if is_podman {
                // SAFETY: signalling the podman service we started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                crate::engine::os::proctree::reap(&[pid], Duration::from_secs(5));
            }
        }
        rundir::remove(&dir)?;
        removed += 1;
    }
    Ok(removed)
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
