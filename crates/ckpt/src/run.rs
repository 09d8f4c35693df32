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
/// flight. A second signal also ends the step in flight (`run_stoppable`).
#[derive(Clone)]
pub struct Stop {
    /// The first signal, and how many have arrived.
    requested: tokio::sync::watch::Receiver<(Option<Signal>, u32)>,
}

impl Stop {
    /// Takes over SIGINT and SIGTERM for the rest of the command, in every
    /// phase (planning, opening engines, building images, trials, analysis):
    /// from here on they raise this flag instead of killing ckpt, so every
    /// exit path runs the same cleanup. Call it first, inside the runtime.
    pub fn watch() -> Stop {
        use tokio::signal::unix::{signal, SignalKind};
        let (tx, requested) = tokio::sync::watch::channel((None, 0));
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            // Without signal handling the default (being killed) stays.
            return Stop { requested };
        };
        tokio::spawn(async move {
            loop {
                let signal = tokio::select! {
                    _ = int.recv() => Signal::Interrupt,
                    _ = term.recv() => Signal::Terminate,
                };
                let (first, count) = *tx.borrow();
                if count == 0 {
                    eprintln!("ckpt: {signal}: stopping after the current step, then cleaning up (send it again to stop at once)");
                }
                if tx.send((first.or(Some(signal)), count + 1)).is_err() {
                    return;
                }
            }
        });
        Stop { requested }
    }

    /// `Err(Interrupted)` once a stop was requested.
    pub fn check(&self) -> Result<(), Interrupted> {
        match self.requested.borrow().0 {
            Some(signal) => Err(Interrupted(signal)),
            None => Ok(()),
        }
    }

    /// `check` after a step that blocked the thread (the analysis): the
    /// signal watcher runs on this thread too, so it is given a moment to
    /// record a signal that arrived meanwhile.
    pub async fn check_after_blocking(&self) -> Result<(), Interrupted> {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.check()
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
            _ = requested.wait_for(|r| r.0.is_some()) => Err(self.check().unwrap_err().into()),
        }
    }
}

/// Runs `work`, which sees `stop` raised at the first signal and stops at
/// its next step; a second signal drops it in the middle of its step.
pub async fn run_stoppable<T>(
    stop: &Stop,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let mut requested = stop.requested.clone();
    tokio::select! {
        result = work => result,
        _ = requested.wait_for(|r| r.1 >= 2) => Err(stop.check().unwrap_err().into()),
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
        let (tx, requested) = tokio::sync::watch::channel((None, 0));
        let stop = Stop { requested };
        assert!(stop.check().is_ok());
        let quick = stop.unless_stopped(async { Ok(7) }).await.unwrap();
        assert_eq!(quick, 7);
        tx.send((Some(Signal::Terminate), 1)).unwrap();
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
