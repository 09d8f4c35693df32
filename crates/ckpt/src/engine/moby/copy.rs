//! A user's image that only the other daemon has: Docker's copied into
//! Podman's storage or the other way round (`save`, then `load`; never
//! pulled), for a sweep on both engines. The copy is ckpt's: it is
//! removed at the end of the run; the original is never touched.

use anyhow::{Context, Result};

use super::{podman, DockerEngine, Flavor};
use crate::engine::os::rundir;
use crate::engine::Engine;
use crate::run::RunId;

impl DockerEngine {
    /// Loads `reference` from the other daemon's storage into this one;
    /// false when the other does not have it either.
    pub(crate) async fn copy_from_other(&self, run: &RunId, reference: &str) -> Result<bool> {
        let other = match self.flavor {
            Flavor::Docker => {
                let service = podman::Service::start_tagged(run, "image-copy")
                    .context("starting Podman's service to look for the image there")?;
                DockerEngine::podman(service).await?
            }
            Flavor::Podman => match DockerEngine::connect_any().await {
                Ok((docker, _)) => docker,
                Err(_) => return Ok(false),
            },
        };
        if other.image_config(reference).await.is_none() {
            return Ok(false);
        }
        // Under migrate's run directories: `ckpt gc` removes a killed run's.
        let dir = rundir::create_named("migrate", &format!("{}-image-copy", run.as_str()))?;
        let archive = dir.join("image.tar");
        let copied = async {
            other.save_image(reference, &archive).await?;
            self.load_image(&archive).await
        }
        .await;
        let _ = rundir::remove(&dir);
        copied.with_context(|| {
            format!(
                "copying image {reference} from {}'s storage into {}'s",
                other.name(),
                self.name()
            )
        })?;
        if let Ok(mut copies) = self.copies.lock() {
            copies.insert(reference.to_string());
        }
        Ok(true)
    }

    /// Whether ckpt made this daemon's copy of `reference`.
    pub(crate) fn is_copy(&self, reference: &str) -> bool {
        self.copies.lock().is_ok_and(|c| c.contains(reference))
    }

    /// Removes the copies this run made (idempotent).
    pub(crate) async fn remove_copies(&self) -> Result<usize> {
        let copies: Vec<String> = match self.copies.lock() {
            Ok(mut c) => c.drain().collect(),
            Err(_) => Vec::new(),
        };
        for reference in &copies {
            self.remove_image_ref(reference).await?;
        }
        Ok(copies.len())
    }
}
