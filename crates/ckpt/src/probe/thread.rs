//! The probe on a thread of its own, with a runtime of its own: its
//! sockets can be made inside the client's network namespace (`enter`
//! runs on that thread first, e.g. a setns, which changes that thread
//! alone), and ckpt's own work on its runtime never delays the probe's
//! clock readings.

use super::log::ProbeLog;
use super::runner::start;
use super::spec::{ProbeLimits, ProbeSpec};
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::oneshot;

/// A probe running on its own thread.
pub struct ProbeThread {
    started: Instant,
    stop: oneshot::Sender<()>,
    finished: oneshot::Receiver<ProbeLog>,
    thread: std::thread::JoinHandle<()>,
}

/// The thread's ends of the channels.
struct ThreadEnds {
    ready: oneshot::Sender<anyhow::Result<Instant>>,
    stop: oneshot::Receiver<()>,
    finished: oneshot::Sender<ProbeLog>,
}

/// Runs `enter` on a new thread, then starts the probe there; returns
/// once its connections are made (or with why they could not be).
pub async fn start_on_thread<F>(
    spec: &ProbeSpec,
    addr: SocketAddr,
    limits: ProbeLimits,
    enter: F,
) -> anyhow::Result<ProbeThread>
where
    F: FnOnce() -> anyhow::Result<()> + Send + 'static,
{
    let spec = spec.clone();
    let (ready, ready_rx) = oneshot::channel();
    let (stop, stop_rx) = oneshot::channel();
    let (finished_tx, finished) = oneshot::channel();
    let ends = ThreadEnds {
        ready,
        stop: stop_rx,
        finished: finished_tx,
    };
    let thread = std::thread::Builder::new()
        .name("ckpt-probe".into())
        .spawn(move || run_thread(spec, addr, limits, enter, ends))
        .context("probe: starting its thread")?;
    let started = ready_rx
        .await
        .context("probe: its thread ended before starting")??;
    Ok(ProbeThread {
        started,
        stop,
        finished,
        thread,
    })
}

fn run_thread<F>(spec: ProbeSpec, addr: SocketAddr, limits: ProbeLimits, enter: F, ends: ThreadEnds)
where
    F: FnOnce() -> anyhow::Result<()>,
{
    let runtime = enter().and_then(|()| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("probe: building its runtime")
    });
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ends.ready.send(Err(error));
            return;
        }
    };
    runtime.block_on(async move {
        let probe = match start(&spec, addr, limits).await {
            Ok(probe) => probe,
            Err(error) => {
                let _ = ends.ready.send(Err(error));
                return;
            }
        };
        let _ = ends.ready.send(Ok(probe.started()));
        // A dropped ProbeThread stops the probe too.
        let _ = ends.stop.await;
        let _ = ends.finished.send(probe.stop().await);
    });
}

impl ProbeThread {
    /// The probe clock's zero.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the probe and returns its log (see `RunningProbe::stop`).
    pub async fn stop(self) -> anyhow::Result<ProbeLog> {
        let _ = self.stop.send(());
        let log = self
            .finished
            .await
            .context("probe: its thread ended without its log")?;
        // The thread has sent its log: it is returning, so this join is
        // short; it runs on the blocking pool all the same.
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("probe: joining its thread")?
            .map_err(|_| anyhow::anyhow!("probe: its thread panicked"))?;
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{summarise, test_servers, ProbeKind};
    use std::time::Duration;

    #[tokio::test]
    async fn runs_on_its_own_thread_after_enter() {
        let server = test_servers::echo().await;
        let spec = ProbeSpec::new(ProbeKind::Tcp, server.addr.port())
            .with_connections(2)
            .unwrap();
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let enter = move || {
            entered_tx.send(std::thread::current().name().map(String::from))?;
            Ok(())
        };
        let probe = start_on_thread(&spec, server.addr, ProbeLimits::default(), enter)
            .await
            .unwrap();
        assert_eq!(entered.recv().unwrap().as_deref(), Some("ckpt-probe"));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let log = probe.stop().await.unwrap();
        let summary = summarise(&log, None);
        assert!(summary.requests >= 4, "{summary:?}");
        assert_eq!(summary.requests_ok, summary.requests);
        assert_eq!(summary.connections_kept, 2);
    }

    #[tokio::test]
    async fn a_failing_enter_is_the_start_error() {
        let spec: ProbeSpec = "tcp:9".parse().unwrap();
        let addr = ([127, 0, 0, 1], 9).into();
        let enter = || anyhow::bail!("setns: no such namespace");
        let error = start_on_thread(&spec, addr, ProbeLimits::default(), enter)
            .await
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("setns"), "{error:#}");
    }
}
