//! The client's view of a move: a probe that keeps a service busy
//! (`--probe KIND:PORT`) and records what its clients saw.
//!
//! The probe opens C persistent TCP connections to the service (an
//! address inside a network namespace, in practice) and on each sends one
//! request every interval, waiting for its reply before the next: `tcp`
//! (a line, echoed back), `http` (GET a path, 2xx) or `redis` (INCR on a
//! key of the connection's own, whose final value proves no write was
//! lost or repeated). Every request's send and reply times are read on
//! one monotonic clock, with its connection, that connection's generation
//! (a reconnect starts a new one) and its outcome. A lost connection is
//! made again, within bounds; the request it carried is unknown.
//!
//! `start` connects and runs it, `RunningProbe::stop` ends it and returns
//! the `ProbeLog`; `summarise` turns the log and the move's window into
//! the `ProbeSummary` that goes into records: requests, failed, unknown,
//! reconnects, connections kept, the client-visible gap, latency inside
//! and outside the window, and for redis each counter's verdict.
//! `Timeline::of` keeps every request against the move's window instead,
//! for a figure of the stall (a CSV file of its own: it is large).
//! The log keeps every request (about 100 bytes each): C connections at
//! the default 10 ms make some 40 MB an hour, so the probe is for the span
//! of a move, not for days.
//!
//! `start_on_thread` runs it on a thread and runtime of its own, after a
//! hook that can enter the client's network namespace.
//! `rto` sets a namespace's minimum TCP retransmission timeout
//! (`--probe-rto-min`), so that the gap shows the service's pause rather
//! than TCP's backoff.

mod counters;
mod framing;
mod http;
mod kinds;
mod log;
mod resp;
pub mod rto;
mod runner;
mod spec;
mod summary;
mod thread;
mod timeline;

#[cfg(test)]
mod test_servers;
#[cfg(test)]
mod tests;

pub use log::{ConnectionLog, Outcome, ProbeLog, RequestRecord, Window};
pub use runner::{start, RunningProbe};
pub use spec::{
    ProbeKind, ProbeLimits, ProbeSpec, SpecError, DEFAULT_CONNECTIONS, DEFAULT_INTERVAL,
};
pub use summary::{longest_wait, percentile, summarise, CounterCheck, Latency, ProbeSummary};
pub use thread::{start_on_thread, ProbeThread};
pub use timeline::{TimedRequest, Timeline};
