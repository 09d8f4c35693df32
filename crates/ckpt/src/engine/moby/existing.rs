//! A container of the user's, as ckpt reads it before moving it: what it
//! runs (image, command, environment, ...) to make its twin on another
//! daemon, and what it holds that cannot move with it (volumes, devices,
//! networks of its own). ckpt never changes the container's configuration.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, InspectContainerOptions};

use super::DockerEngine;
use crate::engine::Container;
use crate::run::RunId;

/// A container of the user's: its identity, what it runs, and what ckpt
/// must know before it moves it.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    pub container: Container,
    /// The image's id (`sha256:...`): the name may point elsewhere since.
    pub image_id: String,
    /// The name the user gave (for messages only).
    pub image_name: String,
    /// Docker's state: running, exited, paused, ...
    pub status: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: HashMap<String, String>,
    pub tty: bool,
    /// Where each volume or bind mount is mounted in the container.
    pub mounts: Vec<String>,
    pub devices: usize,
    pub privileged: bool,
    /// `default`, `bridge`, `none`, `host`, `container:ID` or a network's
    /// name.
    pub network_mode: String,
    /// The networks Docker attached it to (`none` for loopback only).
    pub networks: Vec<String>,
    /// Docker's restart policy (`no` or empty: none).
    pub restart_policy: String,
    /// Removed by Docker when it stops (`--rm`).
    pub auto_remove: bool,
    /// Published ports (`-p`): not recreated on the throwaway host.
    pub published_ports: bool,
}

impl Existing {
    fn from_inspect(inspect: ContainerInspectResponse) -> Result<Existing> {
        let config = inspect.config.unwrap_or_default();
        let host = inspect.host_config.unwrap_or_default();
        let id = inspect.id.context("the daemon gave no container id")?;
        let networks = inspect
            .network_settings
            .and_then(|n| n.networks)
            // A network Docker did not set up (no id: its bridge is
            // disabled) gives the container nothing.
            .map(|n| {
                n.into_iter()
                    .filter(|(_, e)| e.network_id.as_ref().is_some_and(|id| !id.is_empty()))
                    .map(|(name, _)| name)
                    .collect()
            })
            .unwrap_or_default();
        let name = inspect
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.get(..12).unwrap_or(&id).to_string());
        Ok(Existing {
            container: Container { id, name },
            image_id: inspect.image.context("the daemon gave no image id")?,
            image_name: config.image.unwrap_or_default(),
            status: inspect
                .state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into()),
            cmd: config.cmd,
            entrypoint: config.entrypoint,
            env: config.env,
            working_dir: config.working_dir.filter(|d| !d.is_empty()),
            user: config.user.filter(|u| !u.is_empty()),
            hostname: config.hostname.filter(|h| !h.is_empty()),
            labels: config.labels.unwrap_or_default(),
            tty: config.tty.unwrap_or(false),
            mounts: inspect
                .mounts
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.destination.unwrap_or_default())
                .collect(),
            devices: host.devices.map_or(0, |d| d.len()),
            privileged: host.privileged.unwrap_or(false),
            network_mode: host.network_mode.unwrap_or_else(|| "default".into()),
            networks,
            restart_policy: host
                .restart_policy
                .as_ref()
                .and_then(|p| p.name)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            auto_remove: host.auto_remove.unwrap_or(false),
            published_ports: host.port_bindings.is_some_and(|p| {
                p.values()
                    .any(|b| b.as_ref().is_some_and(|b| !b.is_empty()))
            }),
        })
    }
}

impl DockerEngine {
    /// Reads container `name_or_id` of the user's.
    pub async fn existing(&self, name_or_id: &str) -> Result<Existing> {
        match self
            .client
            .inspect_container(name_or_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspect) => Existing::from_inspect(inspect),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => bail!(
                "no container '{name_or_id}' on {}: `{} ps` lists the running ones",
                self.daemon_name(),
                self.kind_name()
            ),
            Err(e) => Err(self.api_error(e, &format!("looking up container {name_or_id}"))),
        }
    }

    /// Creates (does not start) a twin of `original` here, named `name`:
    /// the same image (loaded here already), command, environment, working
    /// directory, user, hostname and labels, plus the run's labels; no
    /// network but loopback, no published port.
    pub async fn create_twin(
        &self,
        run: &RunId,
        original: &Existing,
        name: &str,
    ) -> Result<Container> {
        let mut labels = original.labels.clone();
        labels.extend(run.labels());
        let body = ContainerCreateBody {
            image: Some(original.image_id.clone()),
            cmd: original.cmd.clone(),
            entrypoint: original.entrypoint.clone(),
            env: original.env.clone(),
            working_dir: original.working_dir.clone(),
            user: original.user.clone(),
            hostname: original.hostname.clone(),
            labels: Some(labels),
            tty: Some(original.tty),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = self
            .client
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.api_error(e, &format!("creating container {name}")))?;
        Ok(Container {
            id: created.id,
            name: name.to_string(),
        })
    }

    pub(super) fn daemon_name(&self) -> &'static str {
        match self.flavor {
            super::Flavor::Docker => "the Docker daemon",
            super::Flavor::Podman => "Podman's API service",
        }
    }

    fn kind_name(&self) -> &'static str {
        match self.flavor {
            super::Flavor::Docker => "docker",
            super::Flavor::Podman => "podman",
        }
    }
}
