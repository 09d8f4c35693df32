//! Docker through its Engine API (bollard).
//!
//! bollard covers everything but starting a container from a checkpoint
//! (`POST /containers/{id}/start?checkpoint=NAME`). Its request-modifier
//! hook lets us add that query parameter to its own start call, so the
//! request still goes through bollard's connection, version negotiation and
//! error handling; no fork, no second HTTP client.

mod copy;
pub mod existing;
mod leftovers;
mod migration;
pub mod podman;
pub mod rootfs;
pub mod second;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::container::CreateCheckpointOptions;
use bollard::errors::Error as ApiError;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};

use super::criu_stats::{PhaseStats, StatsCapture, STATS_DUMP, STATS_RESTORE};
use super::{Container, Dumped, Engine, Executed, Image, PageDestination};
use crate::model::{EngineKind, ImageSpec, Network, RunSpec};
use crate::run::{owner_alive, RunId, PID_LABEL, RUN_LABEL};
use crate::workload;

/// Which daemon answers the Docker Engine API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Docker,
    /// Podman's service speaks the same API, except for checkpoints, which
    /// only its own (libpod) endpoints offer.
    Podman,
}

/// A connected Docker (or Podman) daemon that can checkpoint.
pub struct DockerEngine {
    client: Docker,
    flavor: Flavor,
    /// The `podman system service` ckpt started, stopped when dropped:
    /// held here only for that.
    _service: Option<podman::Service>,
    /// The daemon's data directory, where checkpoints live on disk.
    root_dir: Option<PathBuf>,
    /// Where CRIU leaves its statistics, when ckpt arranged it.
    stats: Option<Arc<StatsCapture>>,
    /// The network sandboxes Docker made for each container, whose files
    /// dockerd leaves behind.
    sandboxes: leftovers::Sandboxes,
    /// Podman: checkpoint and restore established TCP connections. Each
    /// container then joins a network namespace of ckpt's (loopback up,
    /// `ns:PATH`): the one Podman makes at a restore has loopback down, too
    /// late for CRIU to reconnect the sockets (CRIU issue 590).
    pub(crate) tcp_established: bool,
    /// Images ckpt copied here from the other daemon (removed at the end).
    copies: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Those namespaces, by container id; dropped with the container.
    netns: std::sync::Mutex<HashMap<String, crate::engine::os::netns::ScratchNetns>>,
}

/// Facts about the daemon, for doctor and env.json.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DaemonFacts {
    pub version: String,
    pub api_version: String,
    pub experimental: bool,
    pub root_dir: Option<String>,
    pub containerd: Option<String>,
    pub runc: Option<String>,
}

impl DockerEngine {
    /// Connects and checks that checkpoints are possible (experimental mode).
    pub async fn connect_checked() -> Result<(DockerEngine, DaemonFacts)> {
        let (engine, facts) = DockerEngine::connect_any().await?;
        if !facts.experimental {
            bail!(
                "the Docker daemon {} runs without experimental mode, which checkpoints need: \
                 set \"experimental\": true in /etc/docker/daemon.json and restart dockerd (scripts/setup does this)",
                facts.version
            );
        }
        Ok((engine, facts))
    }

    /// Connects without requiring experimental mode (for doctor and gc).
    pub(crate) async fn connect_any() -> Result<(DockerEngine, DaemonFacts)> {
        let client = negotiated_client().await?;
        let facts = facts(&client).await?;
        let engine = DockerEngine {
            client,
            flavor: Flavor::Docker,
            _service: None,
            root_dir: facts.root_dir.clone().map(PathBuf::from),
            stats: None,
            sandboxes: Default::default(),
            tcp_established: false,
            netns: Default::default(),
            copies: Default::default(),
        };
        Ok((engine, facts))
    }

    /// Podman through the service ckpt started on its own socket.
    pub(crate) async fn podman(service: podman::Service) -> Result<DockerEngine> {
        let client =
            Docker::connect_with_socket(&service.socket_uri(), 120, bollard::API_DEFAULT_VERSION)
                .map_err(|e| anyhow!("cannot connect to podman's service: {e}"))?
                .negotiate_version()
                .await
                .map_err(|e| anyhow!("podman's service does not answer: {e}"))?;
        Ok(DockerEngine {
            client,
            flavor: Flavor::Podman,
            _service: Some(service),
            root_dir: Some(PathBuf::from(podman::STORAGE_ROOT)),
            stats: None,
            sandboxes: Default::default(),
            tcp_established: false,
            netns: Default::default(),
            copies: Default::default(),
        })
    }

    /// bollard's start call with its URI rewritten: how ckpt reaches the
    /// two endpoints bollard lacks (Docker's start from a checkpoint,
    /// libpod's checkpoint and restore) while keeping bollard's connection,
    /// version negotiation and error handling.
    async fn start_rewritten(
        &self,
        container: &Container,
        rewrite: impl Fn(&http::Uri) -> http::Uri + Send + Sync + 'static,
        what: &str,
    ) -> Result<()> {
        let client = self
            .client
            .clone()
            .with_request_modifier(move |mut request| {
                *request.uri_mut() = rewrite(request.uri());
                request
            });
        client
            .start_container(&container.id, None)
            .await
            .map_err(|e| self.api_error(e, what))
    }

    /// Calls a libpod endpoint (podman's own API) for `container`.
    async fn libpod_post(&self, container: &Container, action: &str, what: &str) -> Result<()> {
        let query = if self.tcp_established {
            "?tcpEstablished=true"
        } else {
            ""
        };
        let path = format!("/v4.0.0/libpod/containers/{}/{action}{query}", container.id);
        self.start_rewritten(container, move |uri| with_path(uri, &path), what)
            .await
    }

    /// Podman's own checkpoint archive of `container`: libpod's checkpoint
    /// with `export=true` answers with the archive as its body, which is
    /// streamed into `out` (never held whole). The container is stopped
    /// afterwards, as with `checkpoint`. Returns the bytes written.
    pub(crate) async fn podman_export(
        &self,
        container: &Container,
        out: &mut impl std::io::Write,
    ) -> Result<u64> {
        if self.flavor != Flavor::Podman {
            bail!("only Podman exports its own checkpoint archives");
        }
        let established = match self.tcp_established {
            true => "&tcpEstablished=true",
            false => "",
        };
        let path = format!(
            "/v4.0.0/libpod/containers/{}/checkpoint?export=true{established}",
            container.id
        );
        // bollard's container export is a GET that streams its answer: the
        // same call, made a POST to libpod's endpoint.
        let client = self
            .client
            .clone()
            .with_request_modifier(move |mut request| {
                *request.uri_mut() = with_path(request.uri(), &path);
                *request.method_mut() = http::Method::POST;
                request
            });
        let what = format!("exporting the checkpoint of container {}", container.name);
        let mut stream = client.export_container(&container.id);
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.api_error(e, &what))?;
            out.write_all(&chunk).with_context(|| what.clone())?;
            written += chunk.len() as u64;
        }
        if written == 0 {
            bail!("{what}: Podman sent an empty archive");
        }
        Ok(written)
    }

    /// Where containerd keeps the OCI runtime spec of a running Docker
    /// container (its task's bundle), gone once the container stops: under
    /// the state directory of the containerd dockerd started itself, or of
    /// the system's containerd when dockerd uses that one.
    fn docker_runtime_spec(&self, container: &Container) -> Option<PathBuf> {
        if self.flavor == Flavor::Podman {
            // Podman keeps it in the container's own userdata.
            let path = self.checkpoints_dir(&container.id)?.join("config.json");
            return path.is_file().then_some(path);
        }
        ["/var/run/docker/containerd/daemon", "/run/containerd"]
            .iter()
            .map(|state| {
                PathBuf::from(state)
                    .join("io.containerd.runtime.v2.task/moby")
                    .join(&container.id)
                    .join("config.json")
            })
            .find(|path| path.is_file())
    }

    fn label_filter(&self, label: &str) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_string(), vec![label.to_string()])])
    }

    /// Removes every container, then every image, with `label`. Goes on
    /// after a failure so that one stuck object does not keep the others
    /// alive, and reports all failures at the end.
    async fn remove_labelled(&self, label: &str, only_orphans: bool) -> Result<usize> {
        let filters = self.label_filter(label);
        let containers = self
            .client
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .context("listing ckpt's containers")?;
        let mut removed = 0;
        let mut failures = Vec::new();
        for c in containers {
            let labels = c.labels.unwrap_or_default();
            if only_orphans && owner_alive(labels.get(PID_LABEL).map(String::as_str)) {
                continue;
            }
            let Some(id) = c.id else { continue };
            match self.force_remove(&id).await {
                Ok(()) => removed += 1,
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        let images = self
            .client
            .list_images(Some(
                ListImagesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .context("listing ckpt's images")?;
        for image in images {
            if only_orphans && owner_alive(image.labels.get(PID_LABEL).map(String::as_str)) {
                continue;
            }
            match self.remove_image_ref(&image.id).await {
                Ok(()) => removed += 1,
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(removed)
    }

    /// The user's image, from this daemon's storage or copied from the
    /// other's: ckpt never pulls (there may be no registry) and never
    /// removes the user's own; only a copy it made is its to remove.
    async fn user_image(&self, run: &RunId, reference: &str) -> Result<Image> {
        if self.client.inspect_image(reference).await.is_err() {
            self.copy_from_other(run, reference).await?;
        }
        let inspect = self.client.inspect_image(reference).await.map_err(|e| {
            self.api_error(e, &format!("looking up image {reference}")).context(format!(
                "image {reference} is in neither Docker's nor Podman's storage: build or load it first (`{} build -t {reference} DIR` or `{} load`); ckpt does not pull",
                self.name(),
                self.name()
            ))
        })?;
        Ok(Image {
            reference: reference.to_string(),
            size_bytes: inspect.size.unwrap_or(0).max(0) as u64,
            owned: self.is_copy(reference),
        })
    }

    /// Removes a container, whatever state it is in. When a removal is
    /// already under way (a cancelled earlier request the daemon still
    /// carries out), waits for it to finish instead of failing.
    async fn force_remove(&self, id: &str) -> Result<()> {
        self.remove_containerd_copies(id, None);
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.client.remove_container(id, Some(options)).await {
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                self.sandboxes.remove_dead(id);
                Ok(())
            }
            Err(ApiError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => self.wait_until_gone(id).await,
            Err(e) => Err(self.api_error(e, &format!("removing container {id}"))),
        }
    }

    async fn wait_until_gone(&self, id: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            match self
                .client
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Err(ApiError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(()),
                Err(e) => {
                    return Err(self.api_error(e, &format!("waiting for container {id} to go")))
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        bail!("container {id} was still being removed after 60 s: run `ckpt gc` later")
    }

    async fn remove_image_ref(&self, reference: &str) -> Result<()> {
        let options = RemoveImageOptionsBuilder::new().force(true).build();
        match self
            .client
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_)
            | Err(ApiError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.api_error(e, &format!("removing image {reference}"))),
        }
    }

    /// Creates (does not start) the workload's container: `run` starts it,
    /// a migration's destination starts it from the checkpoint.
    pub(crate) async fn create(
        &self,
        run: &RunId,
        image: &Image,
        spec: &RunSpec,
    ) -> Result<Container> {
        // Docker's network hook execs dockerd at every start and restore
        // (~90 ms each here); Podman has no such hook and its own defaults.
        let network_disabled = self.flavor == Flavor::Docker && spec.network == Network::Disabled;
        if spec.netns.is_some() && self.flavor == Flavor::Docker {
            bail!("Docker cannot join a network namespace given by path (a service moved with its clients): use --engine podman or runc");
        }
        // A namespace of ckpt's given by path, else one of its own for
        // Podman's established connections.
        let own_netns =
            (self.flavor == Flavor::Podman && self.tcp_established && spec.netns.is_none())
                .then(|| {
                    crate::engine::os::netns::ScratchNetns::create(
                        &spec.name[spec.name.len().saturating_sub(12)..],
                    )
                })
                .transpose()?;
        let network_mode = match (&spec.netns, &own_netns) {
            (Some(path), _) => format!("ns:{}", path.display()),
            (None, Some(netns)) => format!("ns:{}", netns.path().display()),
            (None, None) => "none".into(),
        };
        let body = ContainerCreateBody {
            image: Some(image.reference.clone()),
            network_disabled: network_disabled.then_some(true),
            cmd: Some(spec.args.clone()),
            entrypoint: spec.entrypoint.clone(),
            labels: Some(run.labels().into_iter().collect()),
            host_config: Some(HostConfig {
                // Checkpointing a container with network namespaces that
                // Docker manages is not needed here and bridge is disabled.
                network_mode: Some(network_mode),
                // Podman: crun fails here, and runc only starts containers
                // with limits below the host's (see the environment notes).
                runtime: (self.flavor == Flavor::Podman).then(|| "runc".into()),
                ulimits: (self.flavor == Flavor::Podman).then(podman::ulimits),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.api_error(e, &format!("creating container {}", spec.name)))?;
        if let Some(netns) = own_netns {
            self.netns
                .lock()
                .map_err(|_| anyhow!("internal lock poisoned"))?
                .insert(created.id.clone(), netns);
        }
        Ok(Container {
            id: created.id,
            name: spec.name.clone(),
        })
    }

    /// Reads CRIU's statistics from where `capture` made CRIU leave them
    /// (Docker itself deletes them; see `criu_stats`).
    pub(crate) fn use_criu_stats(&mut self, capture: Option<Arc<StatsCapture>>) {
        self.stats = capture;
    }

    /// The checkpoints directory of a container given by name or id.
    pub(crate) async fn checkpoints_dir_of(&self, container: &str) -> Result<PathBuf> {
        let inspect = self
            .client
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.api_error(e, &format!("looking up container {container}")))?;
        let id = inspect.id.context("the daemon gave no container id")?;
        self.checkpoints_dir(&id)
            .context("the daemon did not say where it keeps its data (DockerRootDir)")
    }

    /// On restore, Docker packs the checkpoint directory into a tar and
    /// writes it to containerd's content store. That tar can be byte for
    /// byte the one containerd stored when it took the checkpoint, whose
    /// blob is only collected a little later, and then the write fails
    /// with "content sha256:... already exists" (moby#42900). A file of
    /// our own in the directory makes the restore's tar, and so its
    /// digest, new; CRIU reads only the image files it knows.
    fn make_checkpoint_unique(&self, container: &Container, checkpoint: &str) {
        let Some(dir) = self
            .checkpoints_dir(&container.id)
            .map(|d| d.join(checkpoint))
        else {
            return;
        };
        let nonce = format!("{} {}\n", container.id, chrono::Utc::now().to_rfc3339());
        // Best effort: without it a restore may need its retry, nothing more.
        let _ = std::fs::write(dir.join("ckpt-unique"), nonce);
    }

    /// The directory where Docker keeps a container's checkpoints.
    fn checkpoints_dir(&self, id: &str) -> Option<PathBuf> {
        if self.flavor == Flavor::Podman {
            // Podman keeps one checkpoint per container, in its userdata.
            return Some(
                self.root_dir
                    .as_ref()?
                    .join("overlay-containers")
                    .join(id)
                    .join("userdata"),
            );
        }
        Some(
            self.root_dir
                .as_ref()?
                .join("containers")
                .join(id)
                .join("checkpoints"),
        )
    }

    /// Removes containerd's copies (see `leftovers`) of the container's
    /// checkpoint `checkpoint`, or of all its checkpoints.
    fn remove_containerd_copies(&self, id: &str, checkpoint: Option<&str>) {
        if self.flavor == Flavor::Podman {
            return;
        }
        let Some(dir) = self.checkpoints_dir(id) else {
            return;
        };
        let ours: Vec<Vec<u8>> = match checkpoint {
            Some(name) => vec![dir.join(name)],
            None => std::fs::read_dir(&dir)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default(),
        }
        .iter()
        .filter_map(|cp| std::fs::read(cp.join("inventory.img")).ok())
        .collect();
        leftovers::remove_containerd_copies(&ours);
    }

    /// Turns an API error into a message that says what failed and which
    /// daemon said so; the daemon's own message is kept verbatim because it
    /// is usually the useful part.
    fn api_error(&self, e: ApiError, what: &str) -> anyhow::Error {
        let daemon = self.daemon_name();
        match e {
            ApiError::DockerResponseServerError {
                status_code,
                message,
            } => anyhow!(
                "{what} failed: {daemon} answered {status_code}: {}",
                message.trim()
            ),
            other => anyhow!("{what} failed ({daemon}): {other}"),
        }
    }

    /// Docker's or libpod's checkpoint call.
    async fn checkpoint_only(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let stats = PhaseStats::at(None, STATS_DUMP, self.stats.as_deref());
        if self.flavor == Flavor::Podman {
            let what = format!("checkpointing container {}", container.name);
            self.libpod_post(container, "checkpoint", &what).await?;
            return Ok(stats);
        }
        let options = CreateCheckpointOptions {
            checkpoint_id: checkpoint.to_string(),
            checkpoint_dir: None,
            exit: true,
        };
        self.client
            .create_checkpoint(&container.id, options)
            .await
            .map_err(|e| {
                self.api_error(e, &format!("checkpointing container {}", container.name))
            })?;
        self.make_checkpoint_unique(container, checkpoint);
        Ok(stats)
    }

    /// Docker's start from a checkpoint, or libpod's restore.
    async fn restore_only(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let stats = PhaseStats::at(None, STATS_RESTORE, self.stats.as_deref());
        if self.flavor == Flavor::Podman {
            let what = format!("restoring container {} from its checkpoint", container.name);
            self.libpod_post(container, "restore", &what).await?;
            return Ok(stats);
        }
        let query = format!("checkpoint={checkpoint}");
        let what = format!(
            "restoring container {} from checkpoint {checkpoint}",
            container.name
        );
        self.start_rewritten(container, move |uri| with_query(uri, &query), &what)
            .await?;
        Ok(stats)
    }

    /// Where CRIU left its log of `name` (dump.log, restore.log), when ckpt
    /// arranged its work directory: Docker deletes its own copy.
    fn criu_log(&self, name: &str) -> Vec<PathBuf> {
        self.stats.iter().map(|s| s.path(name)).collect()
    }

    /// "exited with status N" (or what the daemon knows) of a stopped
    /// container.
    async fn how_it_ended(&self, container: &Container) -> String {
        let state = self
            .client
            .inspect_container(&container.id, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state);
        match state {
            Some(s) if s.oom_killed == Some(true) => "killed for want of memory".into(),
            Some(s) => match (s.exit_code, s.error.filter(|e| !e.is_empty())) {
                (_, Some(error)) => format!("the engine said: {error}"),
                (Some(code), None) => format!("it exited with status {code}"),
                (None, None) => "how is unknown".into(),
            },
            None => "how is unknown".into(),
        }
    }

    fn log_stream(&self, id: &str, follow: bool) -> impl Stream<Item = Result<String>> + '_ {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .build();
        self.client.logs(id, Some(options)).map(|chunk| {
            chunk
                .map(|c| String::from_utf8_lossy(&c.into_bytes()).into_owned())
                .map_err(|e| self.api_error(e, "reading container logs"))
        })
    }
}

/// A client for DOCKER_HOST (or the default socket) speaking the daemon's
/// API version: the daemon here speaks 1.41, older than bollard's default.
async fn negotiated_client() -> Result<Docker> {
    let client = Docker::connect_with_defaults().map_err(unreachable_daemon)?;
    client.negotiate_version().await.map_err(unreachable_daemon)
}

/// Collects what doctor and env.json report about the daemon.
async fn facts(client: &Docker) -> Result<DaemonFacts> {
    let version = client.version().await.map_err(unreachable_daemon)?;
    let info = client.info().await.map_err(unreachable_daemon)?;
    let component = |name: &str| {
        version
            .components
            .as_ref()?
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map(|c| c.version.clone())
    };
    Ok(DaemonFacts {
        version: version.version.clone().unwrap_or_default(),
        api_version: version.api_version.clone().unwrap_or_default(),
        experimental: info.experimental_build.unwrap_or(false),
        root_dir: info.docker_root_dir.clone(),
        containerd: component("containerd"),
        runc: component("runc"),
    })
}

fn unreachable_daemon(e: ApiError) -> anyhow::Error {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    anyhow!(
        "cannot reach the Docker daemon at {host} ({e}): start dockerd (scripts/setup starts it) or fix DOCKER_HOST"
    )
}

/// Splits the chunks of a log stream into whole lines.
#[derive(Default)]
struct LineSplitter {
    partial: String,
}

impl LineSplitter {
    fn push(&mut self, chunk: &str) -> Vec<String> {
        self.partial.push_str(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            lines.push(line.trim_end().to_string());
        }
        lines
    }
}

impl Engine for DockerEngine {
    fn kind(&self) -> EngineKind {
        match self.flavor {
            Flavor::Docker => EngineKind::Docker,
            Flavor::Podman => EngineKind::Podman,
        }
    }

    async fn build_image(&self, run: &RunId, spec: &ImageSpec) -> Result<Image> {
        if let Some(user) = &spec.user_image {
            return self.user_image(run, user).await;
        }
        let binary = workload::locate_binary()?;
        let context = workload::build_context_stream(&binary, spec.filler_mib)?;
        let tag = format!("{}:f{}", run.name("workload"), spec.filler_mib);
        let labels: HashMap<String, String> = run.labels().into_iter().collect();
        let options = BuildImageOptionsBuilder::new()
            .t(&tag)
            .labels(&labels)
            .rm(true)
            .forcerm(true)
            .build();
        let mut progress =
            self.client
                .build_image(options, None, Some(bollard::body_stream(context)));
        while let Some(step) = progress.next().await {
            let step = step.map_err(|e| self.api_error(e, "building the workload image"))?;
            if let Some(detail) = step.error_detail {
                bail!(
                    "building the workload image failed: {}",
                    detail.message.unwrap_or_default()
                );
            }
        }
        let inspect = self
            .client
            .inspect_image(&tag)
            .await
            .map_err(|e| self.api_error(e, "inspecting the workload image"))?;
        Ok(Image {
            reference: tag,
            size_bytes: inspect.size.unwrap_or(0).max(0) as u64,
            owned: true,
        })
    }

    async fn run(&self, run: &RunId, image: &Image, spec: &RunSpec) -> Result<Container> {
        let container = self.create(run, image, spec).await?;
        self.client
            .start_container(&container.id, None)
            .await
            .map_err(|e| self.api_error(e, &format!("starting container {}", spec.name)))?;
        Ok(container)
    }

    async fn wait_for_line(
        &self,
        container: &Container,
        skip: usize,
        wanted: &(dyn Fn(&str) -> bool + Sync),
        timeout: Duration,
    ) -> Result<String> {
        let mut seen: Vec<String> = Vec::new();
        let search = async {
            let mut stream = std::pin::pin!(self.log_stream(&container.id, true));
            let mut splitter = LineSplitter::default();
            let mut matches = 0;
            while let Some(chunk) = stream.next().await {
                for line in splitter.push(&chunk?) {
                    if wanted(&line) {
                        if matches == skip {
                            return Ok(line);
                        }
                        matches += 1;
                    }
                    seen.push(line);
                }
            }
            Ok(String::new())
        };
        match tokio::time::timeout(timeout, search).await {
            // The log ended: the container stopped.
            Ok(Ok(line)) if line.is_empty() => bail!(
                "container {} ended before printing the expected line ({}); its last lines: {}",
                container.name,
                self.how_it_ended(container).await,
                last_lines(&seen, 5)
            ),
            Ok(result) => result,
            Err(_) => bail!(
                "timed out after {:.1} s waiting for container {} to print the expected line; its last lines: {}",
                timeout.as_secs_f64(),
                container.name,
                last_lines(&seen, 5)
            ),
        }
    }

    async fn logs(&self, container: &Container) -> Result<Vec<String>> {
        let mut stream = std::pin::pin!(self.log_stream(&container.id, false));
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        while let Some(chunk) = stream.next().await {
            lines.extend(splitter.push(&chunk?));
        }
        Ok(lines)
    }

    async fn exec(&self, container: &Container, argv: &[String]) -> Result<Executed> {
        let what = format!("running a command in container {}", container.name);
        let config = bollard::exec::CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv.to_vec()),
            ..Default::default()
        };
        let created = self
            .client
            .create_exec(&container.id, config)
            .await
            .map_err(|e| self.api_error(e, &what))?;
        let started = self
            .client
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.api_error(e, &what))?;
        let mut text = String::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                let chunk = chunk.map_err(|e| self.api_error(e, &what))?;
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        let inspected = self
            .client
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.api_error(e, &what))?;
        Ok(Executed {
            // No exit code once the output has ended: the daemon lost it.
            code: inspected.exit_code.unwrap_or(-1),
            output: text,
        })
    }

    async fn checkpoint(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let logs = self.criu_log("dump.log");
        super::criu::quoting_criu(&logs, self.checkpoint_only(container, checkpoint)).await
    }

    async fn restore(&self, container: &Container, checkpoint: &str) -> Result<PhaseStats> {
        let logs = self.criu_log("restore.log");
        super::criu::quoting_criu(&logs, self.restore_only(container, checkpoint)).await
    }

    /// Stop-and-copy only: Docker checkpoints into its own directory,
    /// Podman exports its archive (both leave the container exited).
    async fn checkpoint_for_migration(
        &self,
        container: &Container,
        checkpoint: &str,
        pages: PageDestination,
    ) -> Result<Dumped> {
        if pages != PageDestination::Images {
            bail!("{} can only move a container by stop-and-copy", self.name());
        }
        let stats = match self.flavor {
            Flavor::Docker => self.checkpoint(container, checkpoint).await?,
            Flavor::Podman => {
                self.export_checkpoint(container).await?;
                PhaseStats::at(None, STATS_DUMP, self.stats.as_deref())
            }
        };
        Ok(Dumped {
            stats,
            serving: None,
        })
    }

    async fn stop(&self, container: &Container) -> Result<()> {
        let options = StopContainerOptionsBuilder::new().t(5).build();
        match self
            .client
            .stop_container(&container.id, Some(options))
            .await
        {
            // 304: already stopped, which is what a checkpoint with exit leaves.
            Ok(())
            | Err(ApiError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.api_error(e, &format!("stopping container {}", container.name))),
        }
    }

    /// dockerd's pid from its pid file (Podman's service is ckpt's own:
    /// it does not restart under a sweep).
    fn incarnation(&self) -> Option<String> {
        if self.flavor == Flavor::Podman {
            return None;
        }
        std::fs::read_to_string("/var/run/docker.pid")
            .ok()
            .map(|p| p.trim().to_string())
    }

    /// containerd's "content sha256:... already exists" when `start
    /// --checkpoint` uploads a checkpoint whose blob its content store still
    /// holds: the container stays stopped and the checkpoint intact.
    fn is_transient_restore_error(&self, message: &str) -> bool {
        message.contains("already exists") && message.contains("content")
    }

    fn restore_retry_delays(&self) -> &'static [u64] {
        self.kind().restore_retry_delays_ms()
    }

    async fn root_pid(&self, container: &Container) -> Result<u32> {
        let inspect = self
            .client
            .inspect_container(&container.id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.api_error(e, &format!("inspecting container {}", container.name)))?;
        let sandbox = inspect.network_settings.and_then(|n| n.sandbox_key);
        self.sandboxes.note(&container.id, sandbox);
        let pid = inspect.state.and_then(|s| s.pid).unwrap_or(0);
        if pid <= 0 {
            bail!("container {} is not running", container.name);
        }
        Ok(pid as u32)
    }

    fn runtime_spec(&self, container: &Container) -> Option<PathBuf> {
        self.docker_runtime_spec(container)
    }

    fn checkpoint_path(&self, container: &Container, checkpoint: &str) -> Option<PathBuf> {
        let name = if self.flavor == Flavor::Podman {
            "checkpoint"
        } else {
            checkpoint
        };
        Some(self.checkpoints_dir(&container.id)?.join(name))
    }

    async fn remove_checkpoint(&self, container: &Container, checkpoint: &str) -> Result<()> {
        if self.flavor == Flavor::Podman {
            // Podman deletes the checkpoint with its container.
            return Ok(());
        }
        self.remove_containerd_copies(&container.id, Some(checkpoint));
        self.client
            .delete_checkpoint(&container.id, checkpoint, None)
            .await
            .map_err(|e| self.api_error(e, &format!("removing checkpoint {checkpoint}")))
    }

    async fn remove_container(&self, container: &Container) -> Result<()> {
        let removed = self.force_remove(&container.id).await;
        if let Ok(mut namespaces) = self.netns.lock() {
            namespaces.remove(&container.id);
        }
        removed
    }

    async fn remove_image(&self, image: &Image) -> Result<()> {
        if !image.owned {
            return Ok(());
        }
        if let Ok(mut copies) = self.copies.lock() {
            copies.remove(&image.reference);
        }
        self.remove_image_ref(&image.reference).await
    }

    async fn remove_run(&self, run: &RunId) -> Result<usize> {
        let objects = self
            .remove_labelled(&format!("{RUN_LABEL}={}", run.as_str()), false)
            .await?;
        Ok(objects + self.remove_copies().await?)
    }

    async fn remove_orphans(&self) -> Result<usize> {
        let objects = self.remove_labelled(RUN_LABEL, true).await?;
        Ok(objects + super::criu_stats::remove_orphans()?)
    }

    async fn healthy(&self) -> Result<()> {
        self.client
            .ping()
            .await
            .map(|_| ())
            .map_err(unreachable_daemon)
    }
}

/// Replaces the path (and query) of a request URI, keeping its scheme and
/// authority (for a unix socket, bollard encodes the socket path there).
fn with_path(uri: &http::Uri, path_and_query: &str) -> http::Uri {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// Adds `query` to a request URI that may already carry parameters.
fn with_query(uri: &http::Uri, query: &str) -> http::Uri {
    let text = uri.to_string();
    let sep = if uri.query().is_some() { '&' } else { '?' };
    format!("{text}{sep}{query}")
        .parse()
        .unwrap_or_else(|_| uri.clone())
}

fn last_lines(lines: &[String], n: usize) -> String {
    if lines.is_empty() {
        return "(none)".into();
    }
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_chunks_into_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push("ckpt fib in"), Vec::<String>::new());
        assert_eq!(
            s.push("dex=1\nckpt x\n"),
            vec!["ckpt fib index=1", "ckpt x"]
        );
    }

    #[test]
    fn swaps_the_path_and_keeps_the_socket() {
        let uri: http::Uri = "unix://2f72756e2f736f636b/v1.41/containers/abc/start"
            .parse()
            .unwrap();
        let swapped = with_path(&uri, "/v4.0.0/libpod/containers/abc/checkpoint");
        assert_eq!(
            swapped.to_string(),
            "unix://2f72756e2f736f636b/v4.0.0/libpod/containers/abc/checkpoint"
        );
    }

    #[test]
    fn adds_checkpoint_query() {
        let uri: http::Uri = "http://localhost/v1.41/containers/abc/start"
            .parse()
            .unwrap();
        assert_eq!(
            with_query(&uri, "checkpoint=cp").to_string(),
            "http://localhost/v1.41/containers/abc/start?checkpoint=cp"
        );
        let uri: http::Uri = "http://localhost/x?detachKeys=a".parse().unwrap();
        assert_eq!(
            with_query(&uri, "checkpoint=cp").to_string(),
            "http://localhost/x?detachKeys=a&checkpoint=cp"
        );
    }
}
