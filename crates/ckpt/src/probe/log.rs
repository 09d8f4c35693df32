//! What a probe's run recorded: every request's times on one monotonic
//! clock (µs since the probe started), its connection and that
//! connection's generation, and its outcome.

use super::spec::ProbeKind;
use std::time::Instant;

/// A request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The expected reply.
    Ok,
    /// A reply, but a wrong one (a wrong echo, a non-2xx status, an error
    /// reply, a reply the probe could not frame).
    Failed,
    /// Sent, then the connection was lost, or no reply within the bound:
    /// the service may or may not have acted on it.
    Unknown,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequestRecord {
    pub connection: usize,
    /// 0 for the connection's first TCP connection, +1 at each reconnect:
    /// the same generation before and after a move is the same TCP
    /// connection kept.
    pub generation: u32,
    /// The request's number on its connection (across generations).
    pub seq: u64,
    pub sent_us: u64,
    /// None when no reply came (unknown).
    pub reply_us: Option<u64>,
    pub outcome: Outcome,
    /// INCR's reply (redis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Why it failed or is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl RequestRecord {
    /// From send to reply, when a reply came.
    pub fn latency_us(&self) -> Option<u64> {
        self.reply_us
            .map(|reply| reply.saturating_sub(self.sent_us))
    }
}

/// One of the probe's persistent connections, over its whole run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionLog {
    pub index: usize,
    /// How many TCP connections it used: 1 means it was kept throughout.
    pub generations: u32,
    /// A lost connection could not be made again within the bound; it
    /// sent nothing more.
    pub gave_up: bool,
    /// Its redis key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its key's value after the stop (redis; None: could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_counter: Option<i64>,
}

impl ConnectionLog {
    pub fn reconnects(&self) -> u32 {
        self.generations.saturating_sub(1)
    }

    pub fn kept(&self) -> bool {
        self.generations == 1 && !self.gave_up
    }
}

/// A stopped probe's record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeLog {
    /// Flattened: `"kind": "http", "path": "/"`.
    #[serde(flatten)]
    pub kind: ProbeKind,
    pub interval_us: u64,
    /// When the stop was asked, on the probe's clock.
    pub stopped_us: u64,
    /// In send order.
    pub requests: Vec<RequestRecord>,
    pub connections: Vec<ConnectionLog>,
    /// What went wrong outside requests (final counters unread, keys not
    /// deleted, a connection task that panicked).
    pub problems: Vec<String>,
    /// The clock's zero.
    #[serde(skip)]
    pub started: Instant,
}

/// An interval on the probe's clock: the move's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub start_us: u64,
    pub end_us: u64,
}

impl Window {
    /// Whether `[from, to]` overlaps the window: a request sent before
    /// the move and answered after it was inside it.
    pub fn overlaps(&self, from: u64, to: u64) -> bool {
        from <= self.end_us && to >= self.start_us
    }
}

impl ProbeLog {
    /// `at` on the probe's clock (0 if before the probe started).
    pub fn offset_us(&self, at: Instant) -> u64 {
        micros_between(self.started, at)
    }

    /// The window between two instants of the caller's (e.g. the
    /// checkpoint's request and the destination's "ready").
    pub fn window(&self, from: Instant, to: Instant) -> Window {
        Window {
            start_us: self.offset_us(from),
            end_us: self.offset_us(to.max(from)),
        }
    }
}

pub(super) fn micros_between(zero: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(zero).as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn windows_from_instants_and_overlap() {
        let started = Instant::now();
        let log = ProbeLog {
            kind: ProbeKind::Tcp,
            interval_us: 10_000,
            stopped_us: 0,
            requests: vec![],
            connections: vec![],
            problems: vec![],
            started,
        };
        let window = log.window(
            started + Duration::from_millis(5),
            started + Duration::from_millis(7),
        );
        assert_eq!(
            window,
            Window {
                start_us: 5_000,
                end_us: 7_000
            }
        );
        assert!(window.overlaps(4_000, 5_000));
        assert!(window.overlaps(1_000, 9_000));
        assert!(!window.overlaps(7_001, 8_000));
        assert!(!window.overlaps(1_000, 4_999));
    }
}
