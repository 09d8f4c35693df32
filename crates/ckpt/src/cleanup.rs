//! Ownership of what ckpt creates, and interruption.
//!
//! Every object ckpt creates carries two labels: the run id, so a run can
//! remove all of its own objects at the end whatever happened, and the pid of
//! the ckpt process, so `ckpt gc` can tell a dead run's leftovers from a live
//! run's objects. Objects without the run label are never touched.

use std::fmt;

/// Label naming the run an object belongs to.
pub const RUN_LABEL: &str = "io.ckpt.run";
/// Label naming the pid of the ckpt process that created the object.
pub const PID_LABEL: &str = "io.ckpt.pid";
/// Prefix of every name ckpt gives (containers, images, checkpoints).
pub const NAME_PREFIX: &str = "ckpt";

/// The id of one ckpt invocation: time plus a random suffix, safe to use in
/// container names, image tags and file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId(String);

impl RunId {
    pub fn new() -> RunId {
        let now = chrono::Local::now().format("%Y%m%d-%H%M%S");
        let suffix: u16 = rand::random();
        RunId(format!("{now}-{suffix:04x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Labels to attach to every object of this run.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![
            (RUN_LABEL.to_string(), self.0.clone()),
            (PID_LABEL.to_string(), std::process::id().to_string()),
        ]
    }

    /// A name for an object of this run: `ckpt-<run>-<what>`.
    pub fn name(&self, what: &str) -> String {
        format!("{NAME_PREFIX}-{}-{what}", self.0)
    }
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True when a ckpt process with this pid still runs; used by `gc` to leave
/// a live run's objects alone.
pub fn owner_alive(pid_label: Option<&str>) -> bool {
    let Some(pid) = pid_label.and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    // A recycled pid that now belongs to another program does not count.
    comm.trim() == "ckpt" && pid != std::process::id()
}

/// The signal that interrupted a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// Conventional exit status for a process ended by this signal.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// Resolves when SIGINT or SIGTERM arrives. Racing the work against this in
/// `tokio::select!` drops the work at its next await point, after which the
/// caller removes the run's objects.
pub async fn interrupted() -> Signal {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handling we simply never report an interruption.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}

/// Error returned when a run was interrupted by a signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub Signal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_are_prefixed_and_labelled() {
        let run = RunId::new();
        assert!(run.name("demo").starts_with("ckpt-"));
        assert!(run.name("demo").ends_with("-demo"));
        let labels = run.labels();
        assert_eq!(labels[0], (RUN_LABEL.to_string(), run.as_str().to_string()));
    }

    #[test]
    fn missing_or_dead_owner_is_not_alive() {
        assert!(!owner_alive(None));
        assert!(!owner_alive(Some("not-a-pid")));
        // Our own pid never protects objects from our own gc.
        assert!(!owner_alive(Some(&std::process::id().to_string())));
    }
}
