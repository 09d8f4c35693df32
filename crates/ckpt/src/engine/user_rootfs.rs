//! A user's image on the runc engine, which has no image storage: its root
//! filesystem unpacked once per run into the run's directory (from Docker's
//! storage, else Podman's; never pulled), and its configuration
//! (environment, working directory, user) applied to the OCI process.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Process, User};

use super::moby::rootfs::ImageConfig;
use super::moby::{podman, DockerEngine};
use crate::run::RunId;

/// The environment a process gets when the image sets none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An unpacked image.
#[derive(Debug, Clone)]
pub(crate) struct UserRootfs {
    pub reference: String,
    pub path: PathBuf,
    pub config: ImageConfig,
}

/// Unpacks `reference` into `dir/rootfs-user`, from whichever of Docker
/// and Podman holds it.
pub(crate) async fn unpack(run: &RunId, reference: &str, dir: &Path) -> Result<UserRootfs> {
    let path = dir.join("rootfs-user");
    super::os::rundir::make_private_dir(&path)?;
    let (store, config) = locate(run, reference).await?;
    store.export_rootfs(run, reference, &path).await?;
    Ok(UserRootfs {
        reference: reference.into(),
        path,
        config,
    })
}

/// Refuses an image that neither Docker's nor Podman's storage holds,
/// before anything is made (ckpt never pulls).
pub(crate) async fn require(run: &RunId, reference: &str) -> Result<()> {
    locate(run, reference).await.map(drop)
}

/// The storage holding `reference` (Docker's first, else Podman's, whose
/// service goes when the engine is dropped) and the image's configuration.
async fn locate(run: &RunId, reference: &str) -> Result<(DockerEngine, ImageConfig)> {
    let docker = DockerEngine::connect_any().await.ok().map(|(d, _)| d);
    if let Some(docker) = docker {
        if let Some(config) = docker.image_config(reference).await {
            return Ok((docker, config));
        }
    }
    let service = podman::Service::start_tagged(run, "image")
        .context("starting Podman's service to look for the image there")?;
    let podman = DockerEngine::podman(service).await?;
    let Some(config) = podman.image_config(reference).await else {
        bail!(
            "image {reference} is in neither Docker's nor Podman's storage: build or load it first (`docker build -t {reference} DIR`, `docker load`, or scripts/make-image); ckpt does not pull"
        );
    };
    Ok((podman, config))
}

impl UserRootfs {
    /// The OCI process running `argv` as the image would: its
    /// environment, working directory and user.
    pub(crate) fn process(&self, argv: Vec<String>) -> Result<Process> {
        let mut env = self.config.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(DEFAULT_PATH.into());
        }
        let (uid, gid) = match &self.config.user {
            Some(user) => resolve_user(user, &self.path)?,
            None => (0, 0),
        };
        let mut owner = User::default();
        owner.set_uid(uid).set_gid(gid);
        let mut process = Process::default();
        process
            .set_args(Some(argv))
            .set_env(Some(env))
            .set_cwd(
                self.config
                    .working_dir
                    .clone()
                    .unwrap_or_else(|| "/".into())
                    .into(),
            )
            .set_user(owner)
            .set_terminal(Some(false));
        Ok(process)
    }
}

/// `name`, `uid`, `name:group` or `uid:gid`, names looked up in the
/// image's own /etc/passwd and /etc/group.
fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32)> {
    let (name, group) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let (uid, primary) = match name.parse::<u32>() {
        Ok(uid) => (uid, lookup(&passwd, |f| f[2] == name).map_or(uid, |f| f[3])),
        Err(_) => {
            let fields = lookup(&passwd, |f| f[0] == name).with_context(|| {
                format!("the image runs as user '{name}', whom its /etc/passwd does not name")
            })?;
            (fields[2], fields[3])
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                lookup(&groups, |f| f[0] == g)
                    .with_context(|| format!("the image's /etc/group does not name group '{g}'"))?
                    [2]
            }
        },
    };
    Ok((uid, gid))
}

/// The numeric fields (2 and 3; others 0) of the first line of a
/// passwd/group file whose fields satisfy `wanted`.
fn lookup(file: &str, wanted: impl Fn(&[&str]) -> bool) -> Option<[u32; 4]> {
    file.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find_map(|f| {
            if f.len() < 3 || !wanted(&f) {
                return None;
            }
            let num = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            Some([0, 0, num(2), num(3)])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_and_number() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nredis:x:101:102::/var/lib/redis:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("etc/group"),
            "root:x:0:\nredis:x:102:\nstaff:x:50:\n",
        )
        .unwrap();
        assert_eq!(resolve_user("redis", root.path()).unwrap(), (101, 102));
        assert_eq!(resolve_user("101", root.path()).unwrap(), (101, 102));
        assert_eq!(resolve_user("redis:staff", root.path()).unwrap(), (101, 50));
        assert_eq!(
            resolve_user("1000:1000", root.path()).unwrap(),
            (1000, 1000)
        );
        assert_eq!(resolve_user("0", root.path()).unwrap(), (0, 0));
        let err = resolve_user("nobody", root.path()).unwrap_err();
        assert!(format!("{err:#}").contains("does not name"), "{err:#}");
        assert!(resolve_user("redis:nogroup", root.path()).is_err());
    }

    #[test]
    fn the_process_gets_the_image_environment_and_a_path() {
        let rootfs = UserRootfs {
            reference: "x".into(),
            path: PathBuf::from("/nonexistent"),
            config: ImageConfig {
                env: vec!["A=1".into()],
                working_dir: Some("/srv".into()),
                user: None,
            },
        };
        let process = rootfs.process(vec!["prog".into()]).unwrap();
        let env = process.env().clone().unwrap();
        assert!(env.contains(&"A=1".to_string()) && env.iter().any(|e| e.starts_with("PATH=")));
        assert_eq!(process.cwd(), &PathBuf::from("/srv"));
        assert_eq!(process.user().uid(), 0);
    }
}
