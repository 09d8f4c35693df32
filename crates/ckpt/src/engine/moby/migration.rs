//! What a migration needs of Docker and Podman beyond a checkpoint on one
//! host: connecting to another daemon's socket, moving the workload's image
//! (`docker save` / `load` through the API), and Podman's checkpoint export
//! and import (libpod's `checkpoint?export=true` and
//! `restore?import=true`, streamed through bollard's connection as the
//! other libpod calls are). Docker has no export: its checkpoint directory
//! is moved file by file (see `checkpoint_dir`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use bollard::query_parameters::{ImportImageOptionsBuilder, InspectContainerOptions};
use bollard::Docker;
use std::os::unix::fs::OpenOptionsExt;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{with_path, DockerEngine, Flavor};
use crate::engine::{Container, Engine};
use crate::model::EngineKind;

/// The file Podman's checkpoint export is written to, in the container's
/// own directory (it goes with the container).
const EXPORT_FILE: &str = "ckpt-migration.tar";
/// libpod's API version prefix (Podman 4.x).
const LIBPOD: &str = "/v4.0.0/libpod";

impl DockerEngine {
    /// Connects to the daemon (Docker) or service (Podman) answering on
    /// `socket`: a destination's own.
    pub async fn connect_socket(kind: EngineKind, socket: &Path) -> Result<DockerEngine> {
        let uri = format!("unix://{}", socket.display());
        let unreachable = |e| anyhow!("cannot reach the {kind} daemon at {uri}: {e}");
        let client = Docker::connect_with_socket(&uri, 120, bollard::API_DEFAULT_VERSION)
            .map_err(unreachable)?
            .negotiate_version()
            .await
            .map_err(unreachable)?;
        let facts = super::facts(&client).await?;
        Ok(DockerEngine {
            client,
            flavor: match kind {
                EngineKind::Podman => Flavor::Podman,
                _ => Flavor::Docker,
            },
            _service: None,
            root_dir: facts.root_dir.map(PathBuf::from),
            stats: None,
            sandboxes: Default::default(),
            tcp_established: false,
            netns: Default::default(),
            copies: Default::default(),
        })
    }

    /// Writes image `reference` as a `docker save` tar to `to`; returns its
    /// size.
    pub(crate) async fn save_image(&self, reference: &str, to: &Path) -> Result<u64> {
        let what = format!("saving image {reference}");
        let stream = self.client.export_image(reference);
        write_stream(stream.map(|c| c.map_err(|e| self.api_error(e, &what))), to).await
    }

    /// Whether this daemon holds an image named `reference` (a
    /// destination never loads over, nor removes, an image it did not make).
    pub(crate) async fn holds_image(&self, reference: &str) -> Result<bool> {
        match self.client.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(self.api_error(e, &format!("looking up image {reference}"))),
        }
    }

    /// Loads a `docker save` tar.
    pub(crate) async fn load_image(&self, from: &Path) -> Result<()> {
        let body = read_stream(from).await?;
        let mut progress =
            self.client
                .import_image_stream(ImportImageOptionsBuilder::new().build(), body, None);
        while let Some(step) = progress.next().await {
            step.map_err(|e| self.api_error(e, "loading the workload image"))?;
        }
        Ok(())
    }

    /// Where the migration's checkpoint of `container` is: Docker's
    /// checkpoint directory, or the archive Podman exported.
    pub(crate) fn migration_checkpoint(
        &self,
        container: &Container,
        name: &str,
    ) -> Option<PathBuf> {
        match self.flavor {
            Flavor::Docker => self.checkpoint_path(container, name),
            Flavor::Podman => Some(self.checkpoints_dir(&container.id)?.join(EXPORT_FILE)),
        }
    }

    /// Podman: checkpoints `container` (it exits) and writes the archive
    /// libpod exports (checkpoint/, config.dump, spec.dump, ...) next to
    /// the container's own files.
    pub(crate) async fn export_checkpoint(&self, container: &Container) -> Result<u64> {
        let to = self
            .migration_checkpoint(container, EXPORT_FILE)
            .context("Podman did not say where it keeps its storage")?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&to)
            .with_context(|| format!("cannot create {}", to.display()))?;
        self.podman_export(container, &mut file).await
    }

    /// Podman: makes container `name` from an exported checkpoint archive
    /// and restores it (the image it names must be here already). With
    /// established connections the container keeps the archive's name
    /// (Podman 4.3 refuses a new name with them): the container made is
    /// then the one that was not there before the import, never one
    /// found by a name the client gave.
    pub(crate) async fn import_checkpoint(&self, archive: &Path, name: &str) -> Result<Container> {
        let before = self.container_ids().await?;
        let query = match self.tcp_established {
            true => "import=true&tcpEstablished=true".to_string(),
            false => format!("import=true&name={name}"),
        };
        let path = format!("{LIBPOD}/containers/{name}/restore?{query}");
        let client = self
            .client
            .clone()
            .with_request_modifier(move |mut request| {
                *request.uri_mut() = with_path(request.uri(), &path);
                request
            });
        let body = read_stream(archive).await?;
        let mut answer =
            client.import_image_stream(ImportImageOptionsBuilder::new().build(), body, None);
        let what = format!("restoring container {name} from the imported checkpoint");
        while let Some(step) = answer.next().await {
            step.map_err(|e| self.api_error(e, &what))?;
        }
        if self.tcp_established {
            let mut made: Vec<String> = self
                .container_ids()
                .await?
                .into_iter()
                .filter(|id| !before.contains(id))
                .collect();
            let (Some(id), true) = (made.pop(), made.is_empty()) else {
                bail!("{what}: Podman's containers did not gain exactly one");
            };
            return Ok(Container {
                id,
                name: name.to_string(),
            });
        }
        let inspect = self
            .client
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.api_error(e, &format!("looking up container {name}")))?;
        Ok(Container {
            id: inspect.id.context("Podman gave no container id")?,
            name: name.to_string(),
        })
    }
}

impl DockerEngine {
    /// The ids of every container this daemon holds.
    async fn container_ids(&self) -> Result<std::collections::HashSet<String>> {
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .build();
        let listed = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| self.api_error(e, "listing the containers"))?;
        Ok(listed.into_iter().filter_map(|c| c.id).collect())
    }
}

/// Writes a byte stream to a new 0600 file; returns the bytes written.
async fn write_stream(
    stream: impl futures_util::Stream<Item = Result<bytes::Bytes>>,
    to: &Path,
) -> Result<u64> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)
        .await
        .with_context(|| format!("cannot create {}", to.display()))?;
    let mut stream = std::pin::pin!(stream);
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    file.flush().await?;
    Ok(written)
}

/// A file as a stream of chunks, for a request body that is never held in
/// memory whole.
async fn read_stream(
    from: &Path,
) -> Result<impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static> {
    let file = tokio::fs::File::open(from)
        .await
        .with_context(|| format!("cannot open {}", from.display()))?;
    Ok(futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 1 << 20];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    }))
}
