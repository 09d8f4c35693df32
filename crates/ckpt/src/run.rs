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

/// How an owner is recorded (owner files, runc.conf's marker lines): this
/// process's pid and its start time, "pid starttime", so that the pid
/// reused by another process, even another ckpt, is not taken for it.
pub(crate) fn owner_record() -> String {
    let pid = std::process::id();
    match start_time(pid) {
        Some(start) => format!("{pid} {start}"),
        None => pid.to_string(),
    }
}

/// When process `pid` started, in clock ticks after boot: field 22 of
/// `/proc/<pid>/stat`.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command, may hold spaces and parentheses: count from
    // after its closing parenthesis, where field 3 starts.
    let after_command = stat.rsplit_once(')')?.1;
    after_command.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A recorded owner: its pid, and its start time when recorded (files of
/// older ckpt versions hold only the pid).
fn parse_owner(record: &str) -> Option<(u32, Option<u64>)> {
    let mut fields = record.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start = match fields.next() {
        Some(start) => Some(start.parse().ok()?),
        None => None,
    };
    fields.next().is_none().then_some((pid, start))
}

/// Whether the process `pid` runs and, when its start time is known, is
/// the one that started then.
fn runs_since(pid: u32, start: Option<u64>) -> bool {
    match start {
        Some(start) => start_time(pid) == Some(start),
        None => std::path::Path::new(&format!("/proc/{pid}")).exists(),
    }
}

/// True when the ckpt process recorded as `owner` ("pid" or "pid
/// starttime") still runs; used by `gc` to leave a live run's objects
/// alone.
pub(crate) fn owner_alive(owner: Option<&str>) -> bool {
    let Some((pid, start)) = owner.and_then(parse_owner) else {
        return false;
    };
    let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
        return false;
    };
    // A recycled pid that now belongs to another program does not count,
    // nor one of another ckpt process when the start time was recorded.
    comm.trim() == "ckpt" && pid != std::process::id() && runs_since(pid, start)
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

/// Context on `Interrupted` when a second signal dropped the step in
/// flight: what that step was making may be left, so the caller cleans up
/// by search (as `ckpt gc` does) and says so.
#[derive(Debug, thiserror::Error)]
#[error("stopped at once, in the middle of a step")]
pub struct CutShort;

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
        _ = requested.wait_for(|r| r.1 >= 2) => {
            Err(anyhow::Error::new(stop.check().unwrap_err()).context(CutShort))
        }
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
        assert!(!owner_alive(Some("1 2 3")));
        // Our own pid never protects objects from our own gc.
        assert!(!owner_alive(Some(&std::process::id().to_string())));
        assert!(!owner_alive(Some(&owner_record())));
    }

    #[test]
    fn the_owner_is_recorded_with_its_start_time() {
        let own = std::process::id();
        let (pid, start) = parse_owner(&owner_record()).unwrap();
        assert_eq!(pid, own);
        let start = start.expect("a start time");
        assert!(runs_since(own, Some(start)));
        assert!(runs_since(own, None), "a file with only the pid");
        assert!(
            !runs_since(own, Some(start + 1)),
            "another process, same pid"
        );

        let dead = testing::dead_pid();
        assert!(start_time(dead).is_none());
        assert!(!runs_since(dead, None));
        assert!(!runs_since(dead, Some(start)));
    }

    #[test]
    fn another_ckpt_on_a_reused_pid_is_not_the_owner() {
        let other = testing::FakeCkpt::start();
        assert!(owner_alive(Some(&other.record())));
        assert!(owner_alive(Some(&other.pid().to_string())), "an older file");
        let start = start_time(other.pid()).unwrap();
        let reused = format!("{} {}", other.pid(), start.saturating_sub(1));
        assert!(!owner_alive(Some(&reused)));
        let dead = testing::dead_pid();
        assert!(!owner_alive(Some(&format!("{dead} {start}"))));
    }
}

/// Owners for the tests of what `ckpt gc` leaves alone.
#[cfg(test)]
pub(crate) mod testing {
    use std::process::{Child, Command};

    /// Another live process named `ckpt` (a `sleep` started through a link
    /// of that name), as a concurrent run would be.
    pub(crate) struct FakeCkpt {
        child: Child,
        _dir: tempfile::TempDir,
    }

    impl FakeCkpt {
        pub(crate) fn start() -> FakeCkpt {
            let dir = tempfile::tempdir().unwrap();
            let link = dir.path().join("ckpt");
            std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
            let child = Command::new(&link).arg("60").spawn().unwrap();
            // comm changes at exec: wait for it.
            let comm = format!("/proc/{}/comm", child.id());
            for _ in 0..500 {
                if std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "ckpt") {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            FakeCkpt { child, _dir: dir }
        }

        pub(crate) fn pid(&self) -> u32 {
            self.child.id()
        }

        /// Its owner record, "pid starttime".
        pub(crate) fn record(&self) -> String {
            format!("{} {}", self.pid(), super::start_time(self.pid()).unwrap())
        }
    }

    impl Drop for FakeCkpt {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The pid of a process that has exited and been reaped.
    pub(crate) fn dead_pid() -> u32 {
        let mut child = Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }
}
