//! A user's image as a plain root filesystem, for the engine that has no
//! image storage of its own (runc): exported from a container created, and
//! never started, from the image in Docker's or Podman's storage (one
//! flattened tree, whatever the layers), with the image's configuration.

use std::path::Path;

use anyhow::{Context, Result};
use bollard::models::ContainerCreateBody;
use futures_util::StreamExt;
use std::io::Write;

use super::DockerEngine;
use crate::run::RunId;

/// What of an image's configuration a container started from it gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as the image says.
    pub user: Option<String>,
}

impl DockerEngine {
    /// The image's configuration, or None when this daemon does not have it.
    pub(crate) async fn image_config(&self, reference: &str) -> Option<ImageConfig> {
        let inspect = self.client.inspect_image(reference).await.ok()?;
        let config = inspect.config.unwrap_or_default();
        Some(ImageConfig {
            env: config.env.unwrap_or_default(),
            working_dir: config.working_dir.filter(|d| !d.is_empty()),
            user: config.user.filter(|u| !u.is_empty()),
        })
    }

    /// Unpacks the image's root filesystem into `dest` (an empty
    /// directory): exports a container created from it (labelled with the
    /// run, so `ckpt gc` finds it if ckpt dies meanwhile) and removes that
    /// container again.
    pub(crate) async fn export_rootfs(
        &self,
        run: &RunId,
        reference: &str,
        dest: &Path,
    ) -> Result<()> {
        let body = ContainerCreateBody {
            image: Some(reference.to_string()),
            // Never started: any command will do, and an image without one
            // could not be created otherwise.
            cmd: Some(vec!["/ckpt-never-started".into()]),
            entrypoint: Some(vec![]),
            labels: Some(run.labels().into_iter().collect()),
            ..Default::default()
        };
        let what = format!("exporting image {reference}'s root filesystem");
        let created = self
            .client
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(|e| self.api_error(e, &what))?;
        let unpacked = self.unpack_export(&created.id, dest).await;
        let removed = self.force_remove(&created.id).await;
        unpacked.with_context(|| what.clone())?;
        removed
    }

    /// Streams the container's export into a tar file beside `dest`, then
    /// unpacks it with owners and modes kept.
    async fn unpack_export(&self, id: &str, dest: &Path) -> Result<()> {
        let tar_path = dest.with_extension("tar");
        let mut file = std::fs::File::create(&tar_path)
            .with_context(|| format!("cannot create {}", tar_path.display()))?;
        let mut stream = std::pin::pin!(self.client.export_container(id));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.api_error(e, "reading the export"))?;
            file.write_all(&chunk)
                .with_context(|| format!("cannot write {}", tar_path.display()))?;
        }
        drop(file);
        let unpacked = unpack(&tar_path, dest);
        let _ = std::fs::remove_file(&tar_path);
        unpacked
    }
}

fn unpack(tar_path: &Path, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(tar_path)?;
    let mut archive = tar::Archive::new(file);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive
        .unpack(dest)
        .with_context(|| format!("cannot unpack the image into {}", dest.display()))
}
