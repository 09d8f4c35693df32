//! What the clients saw, from a probe's log and the move's window:
//! counts, connections kept, the longest wait for a reply, latency inside
//! and outside the window, and for redis whether every counter is right.

use super::log::{ConnectionLog, Outcome, ProbeLog, RequestRecord, Window};

/// Latency of the requests that got a reply, in ms (None: no request).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// A redis connection's counter against its INCRs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CounterCheck {
    pub connection: usize,
    pub key: String,
    /// INCRs answered with an integer.
    pub incr_ok: u64,
    /// INCRs sent whose reply never came.
    pub incr_unknown: u64,
    pub final_counter: Option<i64>,
    /// incr_ok <= final <= incr_ok + incr_unknown: no write lost or
    /// repeated (false when the final counter could not be read).
    pub counter_ok: bool,
}

/// The client's view of a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeSummary {
    pub kind: &'static str,
    pub connections: usize,
    /// Connections whose TCP connection was never replaced.
    pub connections_kept: usize,
    pub requests: usize,
    pub requests_ok: usize,
    pub requests_failed: usize,
    pub requests_unknown: usize,
    pub reconnects: u32,
    /// The longest any connection waited for a reply (see `longest_wait`).
    pub gap_ms: f64,
    /// The connection that waited it.
    pub gap_connection: Option<usize>,
    pub window: Option<Window>,
    /// Requests whose send-to-reply interval overlaps the window.
    pub inside: Latency,
    pub outside: Latency,
    /// Per redis connection (None for other kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters: Option<Vec<CounterCheck>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counters_ok: Option<bool>,
    pub problems: Vec<String>,
}

/// Summarises a stopped probe's log; without a window every request is
/// outside.
pub fn summarise(log: &ProbeLog, window: Option<Window>) -> ProbeSummary {
    let count = |outcome| log.requests.iter().filter(|r| r.outcome == outcome).count();
    let (gap_us, gap_connection) = longest_wait(log);
    let (inside, outside) = split_latencies(&log.requests, window);
    let counters = matches!(log.kind, super::ProbeKind::Redis).then(|| counter_checks(log));
    ProbeSummary {
        kind: log.kind.name(),
        connections: log.connections.len(),
        connections_kept: log.connections.iter().filter(|c| c.kept()).count(),
        requests: log.requests.len(),
        requests_ok: count(Outcome::Ok),
        requests_failed: count(Outcome::Failed),
        requests_unknown: count(Outcome::Unknown),
        reconnects: log.connections.iter().map(ConnectionLog::reconnects).sum(),
        gap_ms: ms(gap_us),
        gap_connection,
        window,
        inside: latency(inside),
        outside: latency(outside),
        counters_ok: counters.as_ref().map(|c| c.iter().all(|c| c.counter_ok)),
        counters,
        problems: log.problems.clone(),
    }
}

/// The longest a connection waited for a reply, and which one. A wait
/// starts when a request is sent and ends at the next reply on that
/// connection; requests that got none (a lost connection, a timeout)
/// stretch the wait across the reconnect to the first reply after it, or
/// to the stop. (It starts at the unanswered request's send rather than
/// at the reply before it: the connection was idle until then, at most
/// one interval.)
pub fn longest_wait(log: &ProbeLog) -> (u64, Option<usize>) {
    let mut longest = (0, None);
    for connection in &log.connections {
        let wait = connection_wait(log, connection.index);
        if wait > longest.0 {
            longest = (wait, Some(connection.index));
        }
    }
    longest
}

fn connection_wait(log: &ProbeLog, index: usize) -> u64 {
    let mut longest = 0;
    let mut waiting_since: Option<u64> = None;
    for request in log.requests.iter().filter(|r| r.connection == index) {
        match request.reply_us {
            Some(reply) => {
                let since = waiting_since.take().unwrap_or(request.sent_us);
                longest = longest.max(reply.saturating_sub(since));
            }
            None => {
                waiting_since.get_or_insert(request.sent_us);
            }
        }
    }
    if let Some(since) = waiting_since {
        longest = longest.max(log.stopped_us.saturating_sub(since));
    }
    longest
}

/// Latencies (µs) of answered requests, inside and outside the window.
fn split_latencies(requests: &[RequestRecord], window: Option<Window>) -> (Vec<u64>, Vec<u64>) {
    let mut inside = Vec::new();
    let mut outside = Vec::new();
    for request in requests {
        let (Some(reply), Some(latency)) = (request.reply_us, request.latency_us()) else {
            continue;
        };
        match window {
            Some(window) if window.overlaps(request.sent_us, reply) => inside.push(latency),
            _ => outside.push(latency),
        }
    }
    (inside, outside)
}

fn latency(mut micros: Vec<u64>) -> Latency {
    micros.sort_unstable();
    Latency {
        count: micros.len(),
        p50_ms: percentile(&micros, 0.50).map(ms),
        p99_ms: percentile(&micros, 0.99).map(ms),
        max_ms: micros.last().copied().map(ms),
    }
}

/// Nearest rank: the smallest value with at least `p` of them at or
/// below it (so p99 of fewer than 100 requests is their max).
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn counter_checks(log: &ProbeLog) -> Vec<CounterCheck> {
    log.connections
        .iter()
        .map(|connection| {
            let of = |outcome| {
                log.requests
                    .iter()
                    .filter(|r| r.connection == connection.index && r.outcome == outcome)
                    .count() as u64
            };
            counter_check(connection, of(Outcome::Ok), of(Outcome::Unknown))
        })
        .collect()
}

/// The counter started at 0 (the key was deleted first), every INCR
/// answered added one, and each unknown one added one or none.
fn counter_check(connection: &ConnectionLog, incr_ok: u64, incr_unknown: u64) -> CounterCheck {
    let counter_ok = connection.final_counter.is_some_and(|last| {
        u64::try_from(last).is_ok_and(|last| incr_ok <= last && last <= incr_ok + incr_unknown)
    });
    CounterCheck {
        connection: connection.index,
        key: connection.key.clone().unwrap_or_default(),
        incr_ok,
        incr_unknown,
        final_counter: connection.final_counter,
        counter_ok,
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeKind;
    use std::time::Instant;

    fn request(connection: usize, generation: u32, sent: u64, reply: Option<u64>) -> RequestRecord {
        RequestRecord {
            connection,
            generation,
            seq: 0,
            sent_us: sent,
            reply_us: reply,
            outcome: if reply.is_some() {
                Outcome::Ok
            } else {
                Outcome::Unknown
            },
            value: None,
            problem: None,
        }
    }

    fn connection(index: usize, generations: u32) -> ConnectionLog {
        ConnectionLog {
            index,
            generations,
            gave_up: false,
            key: Some(format!("k:{index}")),
            final_counter: None,
        }
    }

    fn log(
        kind: ProbeKind,
        requests: Vec<RequestRecord>,
        connections: Vec<ConnectionLog>,
    ) -> ProbeLog {
        ProbeLog {
            kind,
            interval_us: 10_000,
            stopped_us: 1_000_000,
            requests,
            connections,
            problems: vec![],
            started: Instant::now(),
        }
    }

    /// Connection 0 answers in 1 ms, stalls 300 ms once; connection 1 loses
    /// its connection at 100 ms, reconnects, first reply at 450 ms.
    fn stalled_and_lost() -> ProbeLog {
        let mut requests = vec![
            request(0, 0, 0, Some(1_000)),
            request(0, 0, 10_000, Some(11_000)),
            request(0, 0, 200_000, Some(500_000)),
            request(0, 0, 510_000, Some(511_000)),
            request(1, 0, 90_000, Some(91_000)),
            request(1, 0, 100_000, None),
            request(1, 1, 440_000, Some(450_000)),
        ];
        requests.sort_by_key(|r| r.sent_us);
        log(
            ProbeKind::Tcp,
            requests,
            vec![connection(0, 1), connection(1, 2)],
        )
    }

    #[test]
    fn the_gap_spans_a_stall_and_a_reconnect() {
        let log = stalled_and_lost();
        // Connection 1 waited from 100 ms (sent, lost) to 450 ms: 350 ms,
        // longer than connection 0's 300 ms stall.
        assert_eq!(longest_wait(&log), (350_000, Some(1)));
        let summary = summarise(&log, None);
        assert_eq!(summary.gap_ms, 350.0);
        assert_eq!(summary.connections_kept, 1);
        assert_eq!(summary.reconnects, 1);
        assert_eq!(summary.requests, 7);
        assert_eq!(summary.requests_unknown, 1);
        assert_eq!(summary.requests_ok, 6);
    }

    #[test]
    fn an_unanswered_tail_waits_until_the_stop() {
        let mut log = stalled_and_lost();
        log.requests.push(request(0, 0, 600_000, None));
        log.connections[0].gave_up = true;
        assert_eq!(longest_wait(&log), (400_000, Some(0)));
        assert_eq!(summarise(&log, None).connections_kept, 0);
    }

    #[test]
    fn latency_inside_and_outside_the_window() {
        let log = stalled_and_lost();
        let window = Window {
            start_us: 300_000,
            end_us: 460_000,
        };
        let summary = summarise(&log, Some(window));
        // Inside: the 300 ms stall (overlaps) and the 10 ms first reply
        // after the reconnect.
        assert_eq!(summary.inside.count, 2);
        assert_eq!(summary.inside.max_ms, Some(300.0));
        assert_eq!(summary.inside.p50_ms, Some(10.0));
        assert_eq!(summary.outside.count, 4);
        assert_eq!(summary.outside.max_ms, Some(1.0));
        let all = summarise(&log, None);
        assert_eq!(all.inside.count, 0);
        assert_eq!(all.inside.p99_ms, None);
        assert_eq!(all.outside.count, 6);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 0.5), Some(50));
        assert_eq!(percentile(&hundred, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 0.99), Some(4));
        assert_eq!(percentile(&[], 0.5), None);
    }

    fn incr(connection: usize, outcome: Outcome) -> RequestRecord {
        let mut record = request(connection, 0, 0, Some(1));
        record.outcome = outcome;
        if outcome == Outcome::Unknown {
            record.reply_us = None;
        }
        record
    }

    #[test]
    fn counters_lie_between_successes_and_unknowns() {
        let requests = vec![
            incr(0, Outcome::Ok),
            incr(0, Outcome::Ok),
            incr(0, Outcome::Unknown),
            incr(0, Outcome::Failed),
        ];
        let verdict = |last: Option<i64>| {
            let mut connection = connection(0, 1);
            connection.final_counter = last;
            let summary = summarise(
                &log(ProbeKind::Redis, requests.clone(), vec![connection]),
                None,
            );
            let check = &summary.counters.as_ref().unwrap()[0];
            assert_eq!((check.incr_ok, check.incr_unknown), (2, 1));
            assert_eq!(summary.counters_ok, Some(check.counter_ok));
            check.counter_ok
        };
        assert!(!verdict(Some(1)), "a write lost");
        assert!(verdict(Some(2)));
        assert!(verdict(Some(3)), "the unknown INCR applied");
        assert!(!verdict(Some(4)), "a write repeated");
        assert!(!verdict(Some(-1)));
        assert!(!verdict(None), "an unread counter proves nothing");
    }

    #[test]
    fn other_kinds_have_no_counters() {
        let summary = summarise(&stalled_and_lost(), None);
        assert_eq!(summary.counters, None);
        let json = serde_json::to_value(&summary).unwrap();
        assert!(json.get("counters_ok").is_none());
        assert_eq!(json["kind"], "tcp");
        assert_eq!(json["gap_ms"], 350.0);
    }
}
