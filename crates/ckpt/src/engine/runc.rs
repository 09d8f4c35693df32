//! runc without any daemon: ckpt writes an OCI bundle (config.json through
//! the oci-spec crate, a rootfs holding the workload binary), starts it with
//! `runc run -d`, and checkpoints and restores it with `runc checkpoint` and
//! `runc restore -d`. The container's stdout and stderr go to a log file:
//! runc passes its own stdio to the container and, on restore, to the
//! restored processes.
//!
//! Layout, per run: /run/ckpt/runc/<run>/{owner.pid, rootfs-f<filler MiB>/, <container>/
//! {config.json, out.log, images/<checkpoint>/, work/}}. Every container
//! of a grid point shares that point's read-only rootfs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Process, Root, Spec};
use tokio::process::Command;

use super::criu_stats::{PhaseStats, StatsCapture, STATS_DUMP, STATS_RESTORE};
use super::os::netns::ScratchNetns;
use super::os::status_fd;
use super::os::{logfile, rundir};
use super::{Container, Dumped, Engine, Image, PageDestination};
use crate::model::{EngineKind, ImageSpec, RunSpec};
use crate::run::RunId;
use crate::workload;

pub struct RuncEngine {
    /// The run's directory, created by `build_image`.
    dir: Mutex<Option<PathBuf>>,
    /// CRIU writes its statistics into runc's work directory, unless
    /// /etc/criu/runc.conf redirects it (another engine of the same sweep
    /// arranged that): then they land in this shared directory.
    shared_stats: Option<std::sync::Arc<StatsCapture>>,
    /// runc's state directory when not runc's default (a destination host
    /// on this machine keeps its own).
    root: Option<PathBuf>,
    /// A read-only root breaks lazy restores (CRIU issue 575), so
    /// migrations run their containers with a writable one.
    writable_rootfs: bool,
    /// A CRIU configuration file for this engine's containers (runc's
    /// `org.criu.config` annotation): a migration's TLS options.
    criu_config: Option<PathBuf>,
    /// Checkpoint and restore established TCP connections: each container
    /// then gets a network namespace of ckpt's (loopback up), which runc
    /// treats as external and restores into, because the namespace runc
    /// makes itself comes back with loopback down, too late for CRIU to
    /// reconnect the sockets (CRIU issue 590).
    pub(crate) tcp_established: bool,
    /// Those namespaces, by container name; dropped with the container.
    netns: Mutex<std::collections::HashMap<String, ScratchNetns>>,
    /// The user's image, unpacked once per run (`--image`).
    user_rootfs: Mutex<Option<super::user_rootfs::UserRootfs>>,
}

/// Where a destination host's runc keeps its state, inside its run directory.
const RUNC_ROOT: &str = "runc-root";
/// How long a lazy dump may take to start serving pages.
const LAZY_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// runc with its state under `root` when given (a destination host's own
/// engine state), else in runc's default place.
fn runc_command(root: Option<&Path>) -> Command {
    let mut command = Command::new("runc");
    if let Some(root) = root {
        command.arg("--root").arg(root);
    }
    command
}

/// Runs runc and turns a failure into an error carrying runc's own words.
async fn runc(root: Option<&Path>, args: &[&str], what: &str) -> Result<String> {
    let out = runc_command(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| {
            anyhow!("{what} failed: cannot run runc ({e}): install it with scripts/setup")
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("{what} failed: runc said: {}", stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl RuncEngine {
    pub(crate) fn new(shared_stats: Option<std::sync::Arc<StatsCapture>>) -> RuncEngine {
        // runc detaches from a container's first process, which then falls
        // to the nearest subreaper: that must be us, because this machine's
        // PID 1 never reaps, and `remove_container` collects them.
        crate::engine::os::proctree::become_subreaper();
        RuncEngine {
            dir: Mutex::new(None),
            shared_stats,
            root: None,
            writable_rootfs: false,
            criu_config: None,
            user_rootfs: Mutex::new(None),
            tcp_established: false,
            netns: Mutex::new(Default::default()),
        }
    }

    /// Containers whose CRIU reads `path` too (runc passes CRIU no TLS
    /// options; a migration's page transfers need them).
    pub(crate) fn with_criu_config(mut self, path: PathBuf) -> RuncEngine {
        self.criu_config = Some(path);
        self
    }

    /// Containers with a writable root filesystem (migrations).
    pub(crate) fn with_writable_rootfs(mut self) -> RuncEngine {
        self.writable_rootfs = true;
        self
    }

    /// A destination host's engine: its bundles in a run directory of its
    /// own, its runc state beside them (runc's default place is the source
    /// host's).
    pub(crate) fn destination(run: &RunId) -> Result<RuncEngine> {
        let dir = rundir::create("runc", run)?;
        let root = dir.join(RUNC_ROOT);
        rundir::make_private_dir(&root)?;
        let mut engine = RuncEngine::new(None).with_writable_rootfs();
        engine.dir = Mutex::new(Some(dir));
        engine.root = Some(root);
        Ok(engine)
    }

    /// `runc restore` from the bundle's images of `checkpoint`; `lazy`: the
    /// memory comes from a lazy-pages daemon listening in the work directory.
    async fn restore_with(
        &self,
        container: &Container,
        checkpoint: &str,
        lazy: bool,
    ) -> Result<PhaseStats> {
        let bundle = self.bundle(container)?;
        let images = bundle.join("images").join(checkpoint).display().to_string();
        let work = bundle.join("work").join(checkpoint);
        let work_arg = work.display().to_string();
        let bundle_arg = bundle.display().to_string();
        let what = format!(
            "restoring container {} from checkpoint {checkpoint}",
            container.name
        );
        let mut args = vec!["restore", "-d"];
        if lazy {
            args.push("--lazy-pages");
        }
        if self.tcp_established {
            args.push("--tcp-established");
        }
        args.extend([
            "--image-path",
            &images,
            "--work-path",
            &work_arg,
            "--bundle",
            &bundle_arg,
            &container.name,
        ]);
        self.detached(container, &args, &what).await?;
        Ok(PhaseStats::at(
            Some(&work),
            STATS_RESTORE,
            self.shared_stats.as_deref(),
        ))
    }

    /// Where CRIU writes its log `name`: runc's work directory, or the
    /// run's shared one when /etc/criu/runc.conf redirects it.
    fn criu_logs(&self, work: &Path, name: &str) -> Vec<PathBuf> {
        let shared = self.shared_stats.iter().map(|s| s.path(name));
        std::iter::once(work.join(name)).chain(shared).collect()
    }

    /// The images and work directories of one checkpoint, created private.
    fn checkpoint_dirs(
        &self,
        container: &Container,
        checkpoint: &str,
    ) -> Result<(PathBuf, PathBuf)> {
        let bundle = self.bundle(container)?;
        let images = bundle.join("images").join(checkpoint);
        let work = bundle.join("work").join(checkpoint);
        rundir::make_private_dir(&images)?;
        rundir::make_private_dir(&work)?;
        Ok((images, work))
    }

    fn run_dir(&self) -> Result<PathBuf> {
        self.dir
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))?
            .clone()
            .context("the runc engine has no bundle yet (build_image first)")
    }

    fn bundle(&self, container: &Container) -> Result<PathBuf> {
        Ok(self.run_dir()?.join(&container.name))
    }

    /// The OCI configuration: the workload as PID 1 of a container with its
    /// own PID, mount, IPC, UTS and network namespaces and a read-only root
    /// (writable with --writable-rootfs). A user's command runs as its
    /// image says (environment, working directory, user).
    fn config(&self, rootfs: &Path, spec: &RunSpec) -> Result<Spec> {
        let argv = match &spec.entrypoint {
            Some(entrypoint) => [entrypoint.clone(), spec.args.clone()].concat(),
            None => [
                vec![workload::BINARY_IN_IMAGE.to_string()],
                spec.args.clone(),
            ]
            .concat(),
        };
        let user = self
            .user_rootfs
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))?
            .clone();
        let process = match user.filter(|u| u.path == rootfs) {
            Some(user) => user.process(argv)?,
            None => {
                let mut process = Process::default();
                process.set_args(Some(argv)).set_terminal(Some(false));
                process
            }
        };
        Ok(self.spec_for(rootfs, process))
    }

    /// The container's OCI configuration around `process`.
    fn spec_for(&self, rootfs: &Path, process: Process) -> Spec {
        let readonly = !self.writable_rootfs;
        let mut spec = Spec::default();
        let mut root = Root::default();
        root.set_path(rootfs.to_path_buf())
            .set_readonly(Some(readonly));
        spec.set_process(Some(process))
            .set_root(Some(root))
            .set_hostname(Some("ckpt".into()));
        if let Some(conf) = &self.criu_config {
            let annotation = ("org.criu.config".to_string(), conf.display().to_string());
            spec.set_annotations(Some([annotation].into_iter().collect()));
        }
        spec
    }

    /// A bundle for `container` that this engine writes itself, around a
    /// process described elsewhere (a migration's destination, which takes
    /// no config.json from the source): `rootfs` is this host's own.
    pub(crate) fn write_bundle(
        &self,
        container: &Container,
        rootfs: &Path,
        process: Process,
        netns: Option<&Path>,
    ) -> Result<()> {
        let bundle = self.bundle(container)?;
        rundir::make_private_dir(&bundle)?;
        let mut spec = self.spec_for(rootfs, process);
        if let Some(path) = netns {
            join_netns(&mut spec, path)?;
        }
        spec.save(bundle.join("config.json"))
            .map_err(|e| anyhow!("cannot write config.json for {}: {e}", container.name))
    }

    /// The user's image, unpacked into the run's directory the first time
    /// it is asked for.
    async fn user_image(&self, run: &RunId, reference: &str) -> Result<Image> {
        let known = self
            .user_rootfs
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))?
            .clone();
        let unpacked = match known.filter(|u| u.reference == reference) {
            Some(u) => u,
            None => {
                let dir = match self.run_dir() {
                    Ok(dir) => dir,
                    Err(_) => rundir::create("runc", run)?,
                };
                *self
                    .dir
                    .lock()
                    .map_err(|_| anyhow!("internal lock poisoned"))? = Some(dir.clone());
                let u = super::user_rootfs::unpack(run, reference, &dir).await?;
                *self
                    .user_rootfs
                    .lock()
                    .map_err(|_| anyhow!("internal lock poisoned"))? = Some(u.clone());
                u
            }
        };
        Ok(Image {
            reference: unpacked.path.display().to_string(),
            size_bytes: super::dir_size(&unpacked.path).unwrap_or(0),
            // The run's copy: it goes with the run's directory.
            owned: true,
        })
    }

    async fn state_pid(&self, container: &Container) -> Result<u32> {
        let text = runc(
            self.root.as_deref(),
            &["state", &container.name],
            &format!("asking runc about {}", container.name),
        )
        .await?;
        let state: serde_json::Value =
            serde_json::from_str(&text).context("runc state printed no JSON")?;
        match (state["status"].as_str(), state["pid"].as_u64()) {
            (Some("running"), Some(pid)) if pid > 0 => Ok(pid as u32),
            (status, _) => bail!(
                "container {} is {}",
                container.name,
                status.unwrap_or("unknown")
            ),
        }
    }

    /// Starts `runc run` or `runc restore` detached. The container's stdio
    /// is a pipe that a thread copies into the log file: CRIU cannot dump a
    /// regular file that lies outside the container's mounts, while runc
    /// hands pipes over from the checkpoint to the restore by itself.
    async fn detached(&self, container: &Container, args: &[&str], what: &str) -> Result<()> {
        let bundle = self.bundle(container)?;
        let writer = logfile::pump_into(&bundle.join("out.log"))
            .with_context(|| format!("cannot open the output log of {}", container.name))?;
        let (stdout, stderr) = (writer.try_clone()?, writer);
        // `status()`, not `output()`: tokio's output() would swap our pipe
        // for its own, which the container would then hold open for ever.
        let status = runc_command(self.root.as_deref())
            .args(args)
            .current_dir(&bundle)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .status()
            .await
            .map_err(|e| anyhow!("{what} failed: cannot run runc ({e})"))?;
        if !status.success() {
            let said = logfile::lines(&bundle.join("out.log")).unwrap_or_default();
            bail!(
                "{what} failed: runc said: {}",
                said.last().map_or("nothing", String::as_str)
            );
        }
        Ok(())
    }
}

/// A namespace name's part for a container: its trial and point
/// (`t3-n1` of `ckpt-<run>-t3-n1`), short enough for /run/netns.
fn short_name(container: &str) -> String {
    let tail: Vec<&str> = container.rsplitn(3, '-').take(2).collect();
    format!(
        "{}-{}",
        tail.get(1).unwrap_or(&"c"),
        tail.first().unwrap_or(&"0")
    )
}

/// Makes the spec's network namespace the one at `path`.
fn join_netns(config: &mut Spec, path: &Path) -> Result<()> {
    use oci_spec::runtime::LinuxNamespaceType;
    let linux = config
        .linux_mut()
        .as_mut()
        .context("the OCI spec has no linux section")?;
    let namespaces = linux
        .namespaces_mut()
        .as_mut()
        .context("the OCI spec has no namespaces")?;
    let network = namespaces
        .iter_mut()
        .find(|n| n.typ() == LinuxNamespaceType::Network)
        .context("the OCI spec has no network namespace")?;
    network.set_path(Some(path.to_path_buf()));
    Ok(())
}

impl Engine for RuncEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Runc
    }

    async fn build_image(&self, run: &RunId, spec: &ImageSpec) -> Result<Image> {
        if let Some(reference) = &spec.user_image {
            return self.user_image(run, reference).await;
        }
        let dir = rundir::create("runc", run)?;
        let rootfs = dir.join(format!("rootfs-f{}", spec.filler_mib));
        rundir::make_private_dir(&rootfs)?;
        let binary = workload::locate_binary()?;
        let target = rootfs.join(workload::BINARY_IN_IMAGE.trim_start_matches('/'));
        std::fs::copy(&binary, &target)
            .with_context(|| format!("cannot copy the workload into {}", rootfs.display()))?;
        if spec.filler_mib > 0 {
            let filler = rootfs.join(workload::FILLER_IN_IMAGE.trim_start_matches('/'));
            workload::write_filler(&filler, spec.filler_mib)?;
        }
        // The default mounts need their mount points in a read-only root.
        for mount_point in ["proc", "dev", "sys"] {
            rundir::make_private_dir(&rootfs.join(mount_point))?;
        }
        *self
            .dir
            .lock()
            .map_err(|_| anyhow!("internal lock poisoned"))? = Some(dir);
        Ok(Image {
            reference: rootfs.display().to_string(),
            size_bytes: super::dir_size(&rootfs).unwrap_or(0),
            owned: true,
        })
    }

    async fn run(&self, _run: &RunId, image: &Image, spec: &RunSpec) -> Result<Container> {
        let container = Container {
            id: spec.name.clone(),
            name: spec.name.clone(),
        };
        let bundle = self.bundle(&container)?;
        rundir::make_private_dir(&bundle)?;
        let mut config = self.config(Path::new(&image.reference), spec)?;
        if let Some(path) = &spec.netns {
            join_netns(&mut config, path)?;
        } else if self.tcp_established {
            let netns = ScratchNetns::create(&short_name(&spec.name))?;
            join_netns(&mut config, &netns.path())?;
            self.netns
                .lock()
                .map_err(|_| anyhow!("internal lock poisoned"))?
                .insert(spec.name.clone(), netns);
        }
        config
            .save(bundle.join("config.json"))
            .map_err(|e| anyhow!("cannot write config.json for {}: {e}", spec.name))?;
        self.detached(
            &container,
            &["run", "-d", &spec.name],
            &format!("starting container {}", spec.name),
        )
        .await?;
        Ok(container)
    }

    async fn wait_for_line(
        &self,
        container: &Container,
        skip: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        timeout: Duration,
    ) -> Result<String> {
        let log = self.bundle(container)?.join("out.log");
        // The container's first process: once it ends, nothing more comes.
        let pid = self.state_pid(container).await.ok();
        let ended = || match pid {
            Some(pid) => super::os::proctree::ended(pid),
            None => Some("the container is not running".into()),
        };
        logfile::wait_for_line(&log, skip, wanted, timeout, ended)
            .await
            .with_context(|| format!("container {}", container.name))
    }

    async fn logs(&self, container: &Container) -> Result<Vec<String>> {
        logfile::lines(&self.bundle(container)?.join("out.log"))
    }

    async fn exec(&self, container: &Container, argv: &[String]) -> Result<super::Executed> {
        let out = runc_command(self.root.as_deref())
            .arg("exec")
            .arg(&container.id)
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| anyhow!("cannot run runc exec ({e}): install runc with scripts/setup"))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(super::Executed {
            code: out.status.code().map_or(-1, i64::from),
            output,
        })
    }

    async fn checkpoint(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let (images, work) = self.checkpoint_dirs(container, checkpoint)?;
        let (images_arg, work_arg) = (images.display().to_string(), work.display().to_string());
        let what = format!("checkpointing container {}", container.name);
        let tcp = self.tcp_established.then_some("--tcp-established");
        let args: Vec<&str> = ["checkpoint", "--image-path", &images_arg]
            .into_iter()
            .chain(["--work-path", &work_arg])
            .chain(tcp)
            .chain([container.name.as_str()])
            .collect();
        let call = runc(self.root.as_deref(), &args, &what);
        super::criu::quoting_criu(&self.criu_logs(&work, "dump.log"), call).await?;
        Ok(PhaseStats::at(
            Some(&work),
            STATS_DUMP,
            self.shared_stats.as_deref(),
        ))
    }

    async fn stop(&self, container: &Container) -> Result<()> {
        // The checkpoint killed the processes; runc keeps the stopped
        // container's state, which must go before a restore can reuse the id.
        runc(
            self.root.as_deref(),
            &["delete", "--force", &container.name],
            &format!("stopping container {}", container.name),
        )
        .await?;
        Ok(())
    }

    async fn restore(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let work = self.bundle(container)?.join("work").join(checkpoint);
        let logs = self.criu_logs(&work, "restore.log");
        super::criu::quoting_criu(&logs, self.restore_with(container, checkpoint, false)).await
    }

    async fn restore_lazily(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        self.restore_with(container, checkpoint, true).await
    }

    async fn checkpoint_for_migration(
        &self,
        container: &Container,
        checkpoint: &str,
        pages: PageDestination,
    ) -> Result<Dumped> {
        let (images, work) = self.checkpoint_dirs(container, checkpoint)?;
        let mut args: Vec<String> = ["checkpoint", "--image-path"].map(String::from).to_vec();
        args.push(images.display().to_string());
        args.extend(["--work-path".to_string(), work.display().to_string()]);
        if self.tcp_established {
            args.push("--tcp-established".to_string());
        }
        match pages {
            PageDestination::Images => {}
            PageDestination::PageServer(addr) => {
                args.extend(["--page-server".to_string(), addr.to_string()])
            }
            PageDestination::Lazy(addr) => args.extend([
                "--lazy-pages".to_string(),
                "--page-server".to_string(),
                addr.to_string(),
                "--status-fd".to_string(),
                status_fd::STATUS_FD.to_string(),
            ]),
        }
        args.push(container.name.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let what = format!("checkpointing container {} for migration", container.name);
        let stats = PhaseStats::at(Some(&work), STATS_DUMP, self.shared_stats.as_deref());
        let serving = if matches!(pages, PageDestination::Lazy(_)) {
            let mut command = runc_command(self.root.as_deref());
            command
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            Some(status_fd::spawn_until_ready(&mut command, LAZY_READY_TIMEOUT, &what).await?)
        } else {
            runc(self.root.as_deref(), &args, &what).await?;
            None
        };
        Ok(Dumped { stats, serving })
    }

    fn container_dir(&self, container: &Container) -> Option<PathBuf> {
        self.bundle(container).ok()
    }

    async fn root_pid(&self, container: &Container) -> Result<u32> {
        self.state_pid(container).await
    }

    fn runtime_spec(&self, container: &Container) -> Option<PathBuf> {
        Some(self.bundle(container).ok()?.join("config.json"))
    }

    fn checkpoint_path(&self, container: &Container, checkpoint: &str) -> Option<PathBuf> {
        Some(self.bundle(container).ok()?.join("images").join(checkpoint))
    }

    async fn remove_checkpoint(&self, container: &Container, checkpoint: &str) -> Result<()> {
        let bundle = self.bundle(container)?;
        rundir::remove(&bundle.join("images").join(checkpoint))?;
        rundir::remove(&bundle.join("work").join(checkpoint))
    }

    async fn remove_container(&self, container: &Container) -> Result<()> {
        // `delete --force` kills a running container; a missing one is fine.
        let _ = runc(
            self.root.as_deref(),
            &["delete", "--force", &container.name],
            "removing a container",
        )
        .await;
        if runc(self.root.as_deref(), &["state", &container.name], "")
            .await
            .is_ok()
        {
            bail!("runc could not remove container {}", container.name);
        }
        crate::engine::os::proctree::reap_exited_workloads();
        if let Ok(mut namespaces) = self.netns.lock() {
            namespaces.remove(&container.name);
        }
        rundir::remove(&self.bundle(container)?)
    }

    async fn remove_image(&self, image: &Image) -> Result<()> {
        rundir::remove(Path::new(&image.reference))
    }

    async fn remove_run(&self, run: &RunId) -> Result<usize> {
        let dir = Path::new(crate::model::STATE_ROOT)
            .join("runc")
            .join(run.as_str());
        remove_runc_dir(&dir).await
    }

    async fn remove_orphans(&self) -> Result<usize> {
        let mut removed = 0;
        for dir in rundir::orphans("runc") {
            removed += remove_runc_dir(&dir).await?;
        }
        Ok(removed)
    }
}

/// Deletes the containers of a run directory (each bundle is named after
/// its container) and the directory itself; returns how many containers.
async fn remove_runc_dir(dir: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    // A destination host's run keeps its own runc state beside its bundles.
    let root = Some(dir.join(RUNC_ROOT)).filter(|r| r.exists());
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("config.json").exists() {
            let _ = runc(
                root.as_deref(),
                &["delete", "--force", &name],
                "removing a container",
            )
            .await;
            removed += 1;
        }
    }
    rundir::remove(dir)?;
    Ok(removed)
}
