//! Ownership of what ckpt creates, and interruption.
//!
//! Every object ckpt creates carries two labels: the run id, so a run can
//! remove all of its own objects at the end whatever happened, and the pid of
//! the ckpt process, so `ckpt gc` can tell a dead run's leftovers from a live
//! run's objects. Objects without the run label are never touched.

use std::fmt;
use std::future::Future;

/// Label naming the run an object belongs to.
pub(crate) const RUN_LABEL: &str = "io.ckpt.run";
/// Label naming the pid of the ckpt process that created the object.
pub(crate) const PID_LABEL: &str = "io.ckpt.pid";
/// Prefix of every name ckpt gives (containers, images, checkpoints).
pub(crate) const NAME_PREFIX: &str = "ckpt";

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

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Labels to attach to every object of this run.
    pub(crate) fn labels(&self) -> Vec<(String, String)> {
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
pub(crate) fn owner_alive(pid_label: Option<&str>) -> bool {
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

/// Resolves when SIGINT or SIGTERM arrives.
async fn interrupted() -> Signal {
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

/// A request to stop, seen by the work in progress.
///
/// Dropping a future in the middle of an engine call that creates something
/// (a container, an image) would leave the daemon finishing that call after
/// our cleanup has listed what to remove. So a first signal only raises this
/// flag: the work stops at its next step boundary (waits and sleeps end at
/// once), returns `Interrupted`, and the caller cleans up with nothing in
/// flight. A second signal stops at once.
#[derive(Clone)]
pub struct Stop {
    requested: tokio::sync::watch::Receiver<Option<Signal>>,
}

impl Stop {
    /// `Err(Interrupted)` once a stop was requested.
    pub(crate) fn check(&self) -> Result<(), Interrupted> {
        match *self.requested.borrow() {
            Some(signal) => Err(Interrupted(signal)),
            None => Ok(()),
        }
    }

    /// Runs `work` unless a stop is requested first. Only for work that
    /// creates nothing (waiting for a log line, sleeping).
    pub(crate) async fn unless_stopped<T>(
        &self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        self.check()?;
        let mut requested = self.requested.clone();
        tokio::select! {
            result = work => result,
            _ = requested.wait_for(Option::is_some) => Err(self.check().unwrap_err().into()),
        }
    }
}

/// Runs `work` with signal handling: the first SIGINT or SIGTERM raises its
/// `Stop` flag and lets it finish its current step; a second one drops it.
pub async fn run_stoppable<T, F>(work: impl FnOnce(Stop) -> F) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let (tx, requested) = tokio::sync::watch::channel(None);
    let work = work(Stop { requested });
    tokio::pin!(work);
    let signal = tokio::select! {
        result = &mut work => return result,
        signal = interrupted() => signal,
    };
    eprintln!("ckpt: {signal}: stopping after the current step, then cleaning up (send it again to stop at once)");
    let _ = tx.send(Some(signal));
    tokio::select! {
        result = &mut work => result,
        again = interrupted() => Err(Interrupted(again).into()),
    }
}

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

    #[tokio::test]
    async fn stop_ends_waits_but_not_before_it_is_raised() {
        let (tx, requested) = tokio::sync::watch::channel(None);
        let stop = Stop { requested };
        assert!(stop.check().is_ok());
        let quick = stop.unless_stopped(async { Ok(7) }).await.unwrap();
        assert_eq!(quick, 7);
        tx.send(Some(Signal::Terminate)).unwrap();
        let waited = stop
            .unless_stopped(async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                Ok(())
            })
            .await;
        let err = waited.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Interrupted>(),
            Some(Interrupted(Signal::Terminate))
        ));
    }

    #[test]
    fn missing_or_dead_owner_is_not_alive() {
        assert!(!owner_alive(None));
        assert!(!owner_alive(Some("not-a-pid")));
        // Our own pid never protects objects from our own gc.
        assert!(!owner_alive(Some(&std::process::id().to_string())));
    }
}
