//! What a destination made for one move, and only that: the containers it
//! created or imported and the images it loaded, recorded as they are made
//! and removed by what the engine answered (their ids), never by a name
//! the client sent; and the paths it made for a process tree's output.

use std::path::PathBuf;

use crate::engine::any::AnyEngine;
use crate::engine::{Container, Engine, Image};

#[derive(Default)]
pub(crate) struct Owned {
    containers: Vec<Container>,
    images: Vec<Image>,
    paths: Vec<PathBuf>,
}

impl Owned {
    pub(crate) fn container(&mut self, container: &Container) {
        self.containers.push(container.clone());
    }

    pub(crate) fn image(&mut self, image: &Image) {
        self.images.push(image.clone());
    }

    pub(crate) fn paths(&mut self, paths: Vec<PathBuf>) {
        self.paths.extend(paths);
    }

    /// Removes everything recorded, containers before their images.
    pub(crate) async fn remove(&mut self, engine: &AnyEngine) {
        for container in self.containers.drain(..) {
            if let Err(e) = engine.remove_container(&container).await {
                eprintln!(
                    "ckpt serve: removing container {} failed: {e:#}",
                    container.id
                );
            }
        }
        for image in self.images.drain(..) {
            if let Err(e) = engine.remove_image(&image).await {
                eprintln!(
                    "ckpt serve: removing image {} failed: {e:#}",
                    image.reference
                );
            }
        }
        super::outlog::remove(&self.paths);
        self.paths.clear();
    }
}
