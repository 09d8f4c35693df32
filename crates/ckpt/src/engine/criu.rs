//! Plain CRIU: the workload as an ordinary process tree on the host (no
//! container), checkpointed and restored through CRIU's RPC (`criu swrk`).
//! This is the floor under every container engine: what CRIU itself costs.
//!
//! The RPC client is the rust-criu crate (the checkpoint-restore project's
//! own, also used by youki): it speaks `criu swrk`'s protobuf protocol, so we
//! neither parse CLI output nor maintain RPC message definitions. It is
//! blocking, so its calls run on tokio's blocking pool; it returns no
//! statistics, which we read from the work directory ourselves.
//!
//! Layout, per run: /run/ckpt/criu/<run>/{owner.pid, <container>/{out.log,
//! pid, images/<checkpoint>/, work/<checkpoint>/}}. CRIU restores the same
//! pids, so the pid file stays right across a restore.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::criu_stats::{PhaseStats, STATS_DUMP, STATS_RESTORE};
use super::os::netns::ScratchNetns;
use super::os::{logfile, rundir, status_fd};
use super::{Container, Dumped, Engine, Image, PageDestination};
use crate::model::{EngineKind, ImageSpec, RunSpec};
use crate::run::RunId;
use crate::workload;

pub struct CriuEngine {
    dir: Mutex<Option<PathBuf>>,
    /// Root pid of each tree, kept in memory too: removal must work even
    /// when the run directory's filesystem is full.
    pids: Mutex<std::collections::HashMap<String, u32>>,
    /// Added to a migration dump that talks to another host (TLS).
    migration_options: Vec<String>,
    /// A user's program (`--cmd`) runs in a network namespace of ckpt's
    /// (loopback up), by container name; CRIU runs inside it too, so the
    /// namespace is not the tree's to dump. Dropped with the container.
    netns: Mutex<std::collections::HashMap<String, ProgramNetns>>,
    /// Checkpoint and restore established TCP connections.
    pub(crate) tcp_established: bool,
}

/// The network namespace a user's program runs in: one of the engine's
/// own, or one it was given by path (a service's on a segment of ckpt's,
/// which the engine does not remove).
enum ProgramNetns {
    Own(ScratchNetns),
    Joined(PathBuf),
}

impl ProgramNetns {
    fn path(&self) -> PathBuf {
        match self {
            ProgramNetns::Own(netns) => netns.path(),
            ProgramNetns::Joined(path) => path.clone(),
        }
    }
}

/// What a CRIU call needs beyond its directories.
#[derive(Debug, Clone, Default)]
struct CallOptions {
    /// Run CRIU inside this network namespace.
    netns: Option<PathBuf>,
    tcp_established: bool,
}

/// How long a lazy dump may take to start serving pages.
const LAZY_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a killed tree may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a directory for CRIU: the fd must survive into `criu swrk`, so it
/// is opened without close-on-exec (Rust's own opens always set it).
fn open_dir_inheritable(dir: &Path) -> Result<OwnedFd> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: a plain open(2) of a NUL-terminated path; the fd is owned below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot open {}", dir.display()));
    }
    // SAFETY: fd was just returned by open(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What one CRIU call needs.
enum Call {
    Dump { pid: u32 },
    Restore,
}

/// Runs one CRIU RPC call on the blocking pool.
async fn criu_call(
    call: Call,
    (images, work): (PathBuf, PathBuf),
    what: String,
    options: CallOptions,
) -> Result<()> {
    tokio::task::spawn_blocking(move || -> Result<()> {
        match options.netns.clone() {
            Some(netns) => super::os::netns::on_this_thread_in(&netns, || {
                criu_call_here(call, images, work, what, options.tcp_established)
            })?,
            None => criu_call_here(call, images, work, what, options.tcp_established),
        }
    })
    .await
    .map_err(|e| anyhow!("the CRIU call did not finish: {e}"))?
}

/// One CRIU RPC call from this thread (its `criu swrk` starts in the
/// thread's network namespace).
fn criu_call_here(
    call: Call,
    images: PathBuf,
    work: PathBuf,
    what: String,
    tcp_established: bool,
) -> Result<()> {
    {
        let images_fd = open_dir_inheritable(&images)?;
        let work_fd = open_dir_inheritable(&work)?;
        let mut criu = rust_criu::Criu::new().map_err(|e| anyhow!("{what} failed: {e}"))?;
        criu.set_images_dir_fd(images_fd.as_raw_fd());
        criu.set_work_dir_fd(work_fd.as_raw_fd());
        criu.set_log_level(4);
        criu.set_tcp_established(tcp_established);
        let result = match call {
            Call::Dump { pid } => {
                criu.set_log_file("dump.log".into());
                criu.set_pid(pid as i32);
                criu.set_leave_running(false);
                criu.dump()
            }
            Call::Restore => {
                criu.set_log_file("restore.log".into());
                criu.restore()
            }
        };
        result.map_err(|e| {
            let log = if matches!(call, Call::Restore) {
                "restore.log"
            } else {
                "dump.log"
            };
            let last_error = std::fs::read_to_string(work.join(log))
                .unwrap_or_default()
                .lines()
                .rev()
                .find(|l| l.contains("Error"))
                .map(str::to_string)
                .unwrap_or_default();
            anyhow!(
                "{what} failed: CRIU said: {e} {last_error} (log: {})",
                work.join(log).display()
            )
        })
    }
}

/// Runs the criu command line (migrations need its page-server and
/// lazy-pages options, which CRIU's RPC can only give to a call that
/// blocks until the last page has been fetched).
async fn criu_cli(args: &[String], work: &Path, log: &str, what: &str) -> Result<()> {
    criu_cli_with(args, (work, log), what, &CallOptions::default()).await
}

/// `criu ARGS`, inside the namespace `options` names (entered with
/// nsenter), with established connections when they say so.
async fn criu_cli_with(
    args: &[String],
    (work, log): (&Path, &str),
    what: &str,
    options: &CallOptions,
) -> Result<()> {
    let mut command = match &options.netns {
        Some(netns) => {
            let mut nsenter = tokio::process::Command::new("nsenter");
            nsenter
                .arg(format!("--net={}", netns.display()))
                .arg("criu");
            nsenter
        }
        None => tokio::process::Command::new("criu"),
    };
    if options.tcp_established {
        command.arg("--tcp-established");
    }
    let status = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| anyhow!("{what} failed: cannot run criu ({e})"))?;
    if !status.success() {
        bail!("{what} failed: {}", criu_log_errors(&work.join(log)));
    }
    Ok(())
}

/// The lines of a CRIU log that say what failed.
pub(crate) fn criu_log_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .take(3)
        .collect();
    format!("CRIU said: {} (log: {})", errors.join(" | "), log.display())
}

/// The error lines of a CRIU log written since `since` (a log left by an
/// earlier call says nothing about this one); None when there are none.
pub(crate) fn criu_errors_since(log: &Path, since: std::time::SystemTime) -> Option<String> {
    let modified = std::fs::metadata(log).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None;
    }
    let text = std::fs::read_to_string(log).ok()?;
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .take(3)
        .collect();
    (!errors.is_empty()).then(|| errors.join(" | "))
}

/// Adds CRIU's own error lines (from `logs`, the first that has any) to a
/// failed engine call's error: engines report only that CRIU failed.
pub(crate) async fn quoting_criu<T>(
    logs: &[PathBuf],
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = std::time::SystemTime::now();
    call.await.map_err(
        |e| match logs.iter().find_map(|log| criu_errors_since(log, started)) {
            Some(lines) => anyhow!("{e:#}; CRIU said: {lines}"),
            None => e,
        },
    )
}

/// `-D images -W work -o LOG -v4`, the options every criu call here takes.
fn criu_dirs(images: &Path, work: &Path, log: &str) -> Vec<String> {
    vec![
        "-D".into(),
        images.display().to_string(),
        "-W".into(),
        work.display().to_string(),
        "-o".into(),
        log.into(),
        "-v4".into(),
    ]
}

impl CriuEngine {
    /// A destination host's engine, with a run directory of its own.
    pub(crate) fn destination(run: &RunId) -> Result<CriuEngine> {
        let engine = CriuEngine::new();
        *engine
            .dir
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))? = Some(rundir::create("criu", run)?);
        Ok(engine)
    }

    /// A destination: restores `container` into the namespace at `path`
    /// (a service's, on a segment of ckpt's), with its established
    /// connections.
    pub(crate) fn restore_into(&mut self, container: &Container, path: PathBuf) -> Result<()> {
        self.tcp_established = true;
        self.netns
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))?
            .insert(container.name.clone(), ProgramNetns::Joined(path));
        Ok(())
    }

    /// Options for every migration dump's connections (a migration's TLS).
    pub(crate) fn with_criu_options(mut self, options: Vec<String>) -> CriuEngine {
        self.migration_options = options;
        self
    }

    pub(crate) fn new() -> CriuEngine {
        // Orphans of our workload trees must come back to us to be reaped.
        crate::engine::os::proctree::become_subreaper();
        CriuEngine {
            dir: Mutex::new(None),
            pids: Mutex::new(std::collections::HashMap::new()),
            migration_options: Vec::new(),
            netns: Mutex::new(Default::default()),
            tcp_established: false,
        }
    }

    fn container_dir(&self, container: &Container) -> Result<PathBuf> {
        let dir = self
            .dir
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))?
            .clone();
        Ok(dir
            .context("the criu engine has no run directory yet")?
            .join(&container.name))
    }

    fn pid_of(&self, container: &Container) -> Result<u32> {
        if let Some(pid) = self
            .pids
            .lock()
            .ok()
            .and_then(|p| p.get(&container.name).copied())
        {
            return Ok(pid);
        }
        let file = self.container_dir(container)?.join("pid");
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("no pid recorded for {}", container.name))
    }

    /// How CRIU is called for `container`: inside its namespace, if it
    /// has one of ckpt's.
    fn call_options(&self, container: &Container) -> Result<CallOptions> {
        let netns = self
            .netns
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))?
            .get(&container.name)
            .map(ProgramNetns::path);
        Ok(CallOptions {
            netns,
            tcp_established: self.tcp_established,
        })
    }

    /// The program and arguments to start: ckpt's workload, or the user's
    /// `--cmd` (then in a network namespace of ckpt's, returned too).
    fn program(
        &self,
        image: &Image,
        spec: &RunSpec,
    ) -> Result<(std::process::Command, Option<ProgramNetns>)> {
        let Some(entrypoint) = &spec.entrypoint else {
            let mut command = std::process::Command::new(&image.reference);
            command.args(&spec.args);
            return Ok((command, None));
        };
        let (program, rest) = entrypoint.split_first().context("--cmd is empty")?;
        let mut command = std::process::Command::new(program);
        command.args(rest).args(&spec.args);
        let netns = match &spec.netns {
            Some(path) => ProgramNetns::Joined(path.clone()),
            None => {
                let tail = &spec.name[spec.name.len().saturating_sub(12)..];
                ProgramNetns::Own(ScratchNetns::create(tail)?)
            }
        };
        Ok((command, Some(netns)))
    }

    fn dirs(&self, container: &Container, checkpoint: &str) -> Result<(PathBuf, PathBuf)> {
        let base = self.container_dir(container)?;
        let (images, work) = (
            base.join("images").join(checkpoint),
            base.join("work").join(checkpoint),
        );
        rundir::make_private_dir(&images)?;
        rundir::make_private_dir(&work)?;
        Ok((images, work))
    }
}

impl Default for CriuEngine {
    fn default() -> Self {
        CriuEngine::new()
    }
}

/// The pids of a workload tree, checking first that the root still is
/// one of ours (a pid can be reused by an unrelated process).
fn workload_tree(root: u32) -> Vec<u32> {
    let is_workload = std::fs::read_to_string(format!("/proc/{root}/comm"))
        .is_ok_and(|c| c.trim() == "ckpt-workload")
        || super::os::netns::in_ckpt_netns(root);
    if !is_workload {
        return Vec::new();
    }
    // Without a pid namespace the "namespace" pids are the host's.
    crate::engine::os::proctree::namespace_pids(root).unwrap_or_else(|_| vec![root])
}

/// Kills a workload tree and collects its processes.
fn kill_tree(root: u32) {
    let pids = workload_tree(root);
    if pids.is_empty() {
        return;
    }
    // The root leads a process group of its own (setsid at spawn, kept by
    // CRIU's restore): killing the group also stops children that a tree
    // still forking makes after the snapshot above.
    // SAFETY: the group of a workload tree we started (checked above).
    unsafe { libc::kill(-(root as i32), libc::SIGKILL) };
    for &pid in &pids {
        // SAFETY: sending SIGKILL to processes we started (checked above).
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    crate::engine::os::proctree::reap(&pids, EXIT_TIMEOUT);
}

impl Engine for CriuEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Criu
    }

    /// There is no image: the workload runs on the host (a sweep with a
    /// filler layer or a user's image is refused before it starts).
    async fn build_image(&self, run: &RunId, _spec: &ImageSpec) -> Result<Image> {
        let dir = rundir::create("criu", run)?;
        let binary = workload::locate_binary()?;
        let size = std::fs::metadata(&binary)?.len();
        *self
            .dir
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))? = Some(dir);
        Ok(Image {
            reference: binary.display().to_string(),
            size_bytes: size,
            owned: false,
        })
    }

    async fn run(&self, _run: &RunId, image: &Image, spec: &RunSpec) -> Result<Container> {
        let container = Container {
            id: spec.name.clone(),
            name: spec.name.clone(),
        };
        let dir = self.container_dir(&container)?;
        rundir::make_private_dir(&dir)?;
        let log = std::fs::File::create(dir.join("out.log"))?;
        let (mut command, netns) = self.program(image, spec)?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let netns_fd = match &netns {
            Some(n) => {
                Some(std::fs::File::open(n.path()).context("opening the program's namespace")?)
            }
            None => None,
        };
        let netns_raw = netns_fd.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: setsid and close_range are async-signal-safe. A session
        // of its own keeps the tree out of ckpt's process group (a Ctrl-C
        // at the terminal is ckpt's to handle) and inside the dumped tree
        // for CRIU. Descriptors ckpt inherited without close-on-exec (a
        // caller's lock file, say) are not the workload's: CRIU would dump
        // them, and a lock would outlive ckpt in the workload.
        unsafe {
            command.pre_exec(move || {
                libc::setsid();
                // A user's program joins its network namespace.
                if let Some(fd) = netns_raw {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Marked close-on-exec, not closed: std's spawn waits on
                // a pipe of its own among them to learn that exec happened.
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the workload {}", spec.name))?;
        drop(netns_fd);
        let pid = child.id();
        if let Some(netns) = netns {
            if let Ok(mut namespaces) = self.netns.lock() {
                namespaces.insert(container.name.clone(), netns);
            }
        }
        if let Ok(mut pids) = self.pids.lock() {
            pids.insert(container.name.clone(), pid);
        }
        if let Err(e) = std::fs::write(dir.join("pid"), pid.to_string()) {
            // Without the pid file a killed ckpt could not find the tree
            // again (gc): do not leave it running.
            kill_tree(pid);
            return Err(e).with_context(|| format!("cannot record the pid of {}", container.name));
        }
        // Not waited for here: `reap` collects the tree when it ends.
        drop(child);
        Ok(container)
    }

    async fn wait_for_line(
        &self,
        container: &Container,
        skip: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        timeout: Duration,
    ) -> Result<String> {
        let log = self.container_dir(container)?.join("out.log");
        let pid = self.pid_of(container)?;
        let ended = || super::os::proctree::ended(pid);
        logfile::wait_for_line(&log, skip, wanted, timeout, ended)
            .await
            .with_context(|| format!("process tree {}", container.name))
    }

    async fn logs(&self, container: &Container) -> Result<Vec<String>> {
        logfile::lines(&self.container_dir(container)?.join("out.log"))
    }

    /// The command runs on the host, in the program's network namespace.
    async fn exec(&self, container: &Container, argv: &[String]) -> Result<super::Executed> {
        let pid = self.pid_of(container)?;
        let out = tokio::process::Command::new("nsenter")
            .arg("-t")
            .arg(pid.to_string())
            .arg("-n")
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run nsenter (util-linux)")?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(super::Executed {
            code: out.status.code().map_or(-1, i64::from),
            output,
        })
    }

    async fn checkpoint_for_migration(
        &self,
        container: &Container,
        checkpoint: &str,
        pages: PageDestination,
    ) -> Result<Dumped> {
        let (images, work) = self.dirs(container, checkpoint)?;
        let pid = self.pid_of(container)?;
        let tree: Vec<String> = workload_tree(pid).iter().map(u32::to_string).collect();
        std::fs::write(
            CriuEngine::container_dir(self, container)?.join("tree"),
            tree.join(" "),
        )?;
        let mut args = vec!["dump".to_string(), "-t".into(), pid.to_string()];
        args.extend(criu_dirs(&images, &work, "dump.log"));
        let endpoint = |a: std::net::SocketAddr| {
            [
                "--address".to_string(),
                a.ip().to_string(),
                "--port".into(),
                a.port().to_string(),
            ]
        };
        match pages {
            PageDestination::Images => {}
            PageDestination::PageServer(a) => {
                args.push("--page-server".into());
                args.extend(endpoint(a));
                args.extend(self.migration_options.iter().cloned());
            }
            PageDestination::Lazy(a) => {
                args.push("--lazy-pages".into());
                args.extend(endpoint(a));
                args.extend(["--status-fd".into(), status_fd::STATUS_FD.to_string()]);
                args.extend(self.migration_options.iter().cloned());
            }
        }
        let what = format!(
            "checkpointing process tree {} for migration",
            container.name
        );
        let stats = PhaseStats::at(Some(&work), STATS_DUMP, None);
        if matches!(pages, PageDestination::Lazy(_)) {
            let mut command = tokio::process::Command::new("criu");
            command
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let serving =
                status_fd::spawn_until_ready(&mut command, LAZY_READY_TIMEOUT, &what).await?;
            return Ok(Dumped {
                stats,
                serving: Some(serving),
            });
        }
        // A service's tree is dumped from inside its namespace, with its
        // connections (by copy: CRIU there reaches only the clients).
        let options = self.call_options(container)?;
        criu_cli_with(&args, (&work, "dump.log"), &what, &options).await?;
        Ok(Dumped {
            stats,
            serving: None,
        })
    }

    async fn restore_lazily(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let (images, work) = self.dirs(container, checkpoint)?;
        let mut args = vec!["restore".to_string(), "-d".into(), "--lazy-pages".into()];
        args.extend(criu_dirs(&images, &work, "restore.log"));
        let what = format!("restoring process tree {} lazily", container.name);
        criu_cli(&args, &work, "restore.log", &what).await?;
        Ok(PhaseStats::at(Some(&work), STATS_RESTORE, None))
    }

    fn container_dir(&self, container: &Container) -> Option<PathBuf> {
        CriuEngine::container_dir(self, container).ok()
    }

    async fn checkpoint(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let (images, work) = self.dirs(container, checkpoint)?;
        let pid = self.pid_of(container)?;
        let tree: Vec<String> = workload_tree(pid).iter().map(u32::to_string).collect();
        std::fs::write(self.container_dir(container)?.join("tree"), tree.join(" "))?;
        let what = format!("checkpointing process tree {}", container.name);
        let options = self.call_options(container)?;
        criu_call(Call::Dump { pid }, (images, work.clone()), what, options).await?;
        Ok(PhaseStats::at(Some(&work), STATS_DUMP, None))
    }

    async fn stop(&self, container: &Container) -> Result<()> {
        // The dump killed the tree. Its processes must be gone, zombies
        // included, before CRIU can give the same pids to the restored tree.
        let tree: Vec<u32> = std::fs::read_to_string(self.container_dir(container)?.join("tree"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        let gone = tokio::task::spawn_blocking(move || {
            crate::engine::os::proctree::reap(&tree, EXIT_TIMEOUT)
        })
        .await?;
        if !gone {
            bail!(
                "process tree {} still runs after its checkpoint",
                container.name
            );
        }
        Ok(())
    }

    async fn restore(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let (images, work) = self.dirs(container, checkpoint)?;
        let what = format!(
            "restoring process tree {} from checkpoint {checkpoint}",
            container.name
        );
        let options = self.call_options(container)?;
        criu_call(Call::Restore, (images, work.clone()), what, options).await?;
        Ok(PhaseStats::at(Some(&work), STATS_RESTORE, None))
    }

    async fn root_pid(&self, container: &Container) -> Result<u32> {
        self.pid_of(container)
    }

    fn checkpoint_path(&self, container: &Container, checkpoint: &str) -> Option<PathBuf> {
        Some(
            self.container_dir(container)
                .ok()?
                .join("images")
                .join(checkpoint),
        )
    }

    async fn remove_checkpoint(&self, container: &Container, checkpoint: &str) -> Result<()> {
        let base = self.container_dir(container)?;
        rundir::remove(&base.join("images").join(checkpoint))?;
        rundir::remove(&base.join("work").join(checkpoint))
    }

    async fn remove_container(&self, container: &Container) -> Result<()> {
        if let Ok(pid) = self.pid_of(container) {
            // Reaping waits for the tree to exit: off the async thread, so
            // that a trial starting meanwhile is not held up.
            tokio::task::spawn_blocking(move || kill_tree(pid)).await?;
        }
        if let Ok(mut pids) = self.pids.lock() {
            pids.remove(&container.name);
        }
        // After the tree: its namespace is how a user's tree is known.
        if let Ok(mut namespaces) = self.netns.lock() {
            namespaces.remove(&container.name);
        }
        // The tree CRIU's dump ended is ours to collect too.
        crate::engine::os::proctree::reap_exited_workloads();
        rundir::remove(&self.container_dir(container)?)
    }

    async fn remove_image(&self, _image: &Image) -> Result<()> {
        // The "image" is the workload binary itself: nothing was copied.
        Ok(())
    }

    async fn remove_run(&self, run: &RunId) -> Result<usize> {
        remove_criu_dir(
            &Path::new(crate::model::STATE_ROOT)
                .join("criu")
                .join(run.as_str()),
        )
    }

    async fn remove_orphans(&self) -> Result<usize> {
        rundir::orphans("criu")
            .iter()
            .map(|d| remove_criu_dir(d))
            .sum()
    }
}

/// Kills the process trees of a run directory and removes it.
fn remove_criu_dir(dir: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if let Some(pid) = std::fs::read_to_string(entry.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            kill_tree(pid);
            removed += 1;
        }
    }
    rundir::remove(dir)?;
    Ok(removed)
}
