//! The clients of a service moved with them connected: ckpt's probe runs
//! in the segment's client namespace from before the dump until a settle
//! time after the destination has restored the service, and its log
//! becomes what the clients saw (requests failed or lost, connections
//! kept, the longest wait, latency inside and outside the move's window).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::segment::Segment;
use crate::probe::{self, ProbeLimits, ProbeSpec, ProbeSummary, ProbeThread, Timeline};

/// `--probe` and its settings.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub spec: ProbeSpec,
    /// The client namespace's routes' minimum retransmission timeout
    /// (`--probe-rto-min`); None: the kernel's default (200 ms).
    pub rto_min: Option<Duration>,
}

/// How long the probe goes on after the service is back, beyond the
/// move's own length: a client's TCP retransmits its request at most about
/// the outage after the service returned (the timeout doubles), then each
/// connection is given this long to show it flows again.
const SETTLE: Duration = Duration::from_secs(1);

/// Starts the probe in the client's namespace; returns once every
/// connection is made.
pub(super) async fn start(options: &ProbeOptions, segment: &Segment) -> Result<ProbeThread> {
    if let Some(rto_min) = options.rto_min {
        probe::rto::set_rto_min(segment.client_name(), rto_min)?;
        if !probe::rto::cap_rto_max(segment.client_name())? {
            eprintln!("ckpt migrate: this kernel has no net.ipv4.tcp_rto_max_ms (Linux 6.15): the clients' retransmissions back off up to two minutes");
        }
    }
    let path = segment.client_path();
    let service = segment.service(options.spec.port);
    let enter = move || crate::engine::os::netns::enter_for_good(&path);
    probe::start_on_thread(&options.spec, service, ProbeLimits::default(), enter).await
}

/// What the clients saw, in a line (for a move that failed).
pub(super) fn one_line(c: &ProbeSummary) -> String {
    format!(
        "its clients saw: {} of {} connection(s) kept, {} request(s) ok, {} failed, {} unknown, the longest wait {:.0} ms",
        c.connections_kept, c.connections, c.requests_ok, c.requests_failed, c.requests_unknown, c.gap_ms
    )
}

/// What the clients saw: the summary, and every request against the
/// move's window (None when the move had none: it failed before).
pub(super) struct Seen {
    pub summary: ProbeSummary,
    pub timeline: Option<Timeline>,
}

/// Lets the clients settle, stops the probe (it removes what it wrote) and
/// says what they saw; `window`: the move's, from the checkpoint request
/// to the destination's attaching (from the port's detaching to its
/// attaching back at the source, when the move failed and came back).
pub(super) async fn finish(
    running: ProbeThread,
    window: Option<(Instant, Instant)>,
) -> Result<Seen> {
    let outage = window.map_or(Duration::ZERO, |(from, to)| {
        to.saturating_duration_since(from)
    });
    tokio::time::sleep(outage + SETTLE).await;
    let log = running.stop().await?;
    let window = window.map(|(from, to)| log.window(from, to));
    Ok(Seen {
        summary: probe::summarise(&log, window),
        timeline: window.map(|window| Timeline::of(&log, window)),
    })
}
