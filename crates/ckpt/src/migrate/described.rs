//! The description of a user's program that travels to the destination
//! (`Message::Program`): the image's name and the process it runs, never a
//! path or a configuration file of the source's.

use anyhow::{Context, Result};
use oci_spec::runtime::{Process, Spec, User};
use serde::{Deserialize, Serialize};

/// What the destination hears about the program, ahead of the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// The image, as the destination's Docker or Podman knows it.
    pub image: String,
    pub process: ProcessDescription,
    /// The check command, rendered, to run after the restore.
    pub check: Option<Vec<String>>,
    /// A service moved with its clients connected: the name of the
    /// network namespace of ckpt's (on the throwaway host's machine) to
    /// restore it into, with its established connections. Never a path:
    /// serve takes only a name of ckpt's own namespaces.
    #[serde(default)]
    pub netns: Option<String>,
    /// The destination runs the program's check only when the client asks
    /// (`Message::Check`): after its probe has stopped and removed what it
    /// wrote, so that the check sees the program's own state.
    #[serde(default)]
    pub check_on_request: bool,
}

/// The process the source runs, as its image configured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessDescription {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
}

impl ProcessDescription {
    /// The process of an OCI configuration.
    pub(super) fn of_spec(spec: &Spec) -> Result<ProcessDescription> {
        let process = spec
            .process()
            .as_ref()
            .context("the bundle has no process")?;
        Ok(ProcessDescription {
            argv: process.args().clone().unwrap_or_default(),
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().display().to_string(),
            uid: process.user().uid(),
            gid: process.user().gid(),
        })
    }

    /// The process `pid` runs, read from /proc (a process tree on the
    /// host: the criu engine's).
    pub(super) fn of_pid(pid: u32) -> Result<ProcessDescription> {
        let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
        let read = |what: &str| {
            std::fs::read(proc_dir.join(what))
                .with_context(|| format!("cannot read /proc/{pid}/{what}"))
        };
        let nul_split = |bytes: Vec<u8>| -> Vec<String> {
            bytes
                .split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        };
        let status = String::from_utf8_lossy(&read("status")?).into_owned();
        let id_of = |field: &str| -> u32 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcessDescription {
            argv: nul_split(read("cmdline")?),
            env: nul_split(read("environ")?),
            cwd: std::fs::read_link(proc_dir.join("cwd"))
                .with_context(|| format!("cannot read /proc/{pid}/cwd"))?
                .display()
                .to_string(),
            uid: id_of("Uid:"),
            gid: id_of("Gid:"),
        })
    }

    /// The OCI process it describes (as the source's was made).
    pub(crate) fn to_oci(&self) -> Process {
        let mut user = User::default();
        user.set_uid(self.uid).set_gid(self.gid);
        let mut process = Process::default();
        process
            .set_args(Some(self.argv.clone()))
            .set_env(Some(self.env.clone()))
            .set_cwd(self.cwd.clone().into())
            .set_user(user)
            .set_terminal(Some(false));
        process
    }
}
