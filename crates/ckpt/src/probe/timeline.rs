//! Every request of one move, for a figure of the stall: when it was sent
//! relative to the checkpoint request, how long its reply took, on which
//! connection, and how it ended. A move of tens of seconds at the default
//! 4 connections x 10 ms is tens of thousands of requests: a CSV file of
//! its own (about 40 bytes a request), never part of a record or the JSON.

use std::io::Read;

use anyhow::{bail, Context, Result};

use super::log::{Outcome, ProbeLog, Window};

/// One request, its times in ms since the checkpoint request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimedRequest {
    pub connection: usize,
    /// The connection's TCP connection: +1 at each reconnect.
    pub generation: u32,
    /// Negative before the checkpoint request.
    pub sent_ms: f64,
    /// From send to reply; None when no reply came (unknown).
    pub latency_ms: Option<f64>,
    pub outcome: Outcome,
}

/// A move's requests in send order, and the move's window: from the
/// checkpoint request (0) to the destination's being ready.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timeline {
    pub window_end_ms: f64,
    pub requests: Vec<TimedRequest>,
}

/// A line of the CSV: a request and the window's end, repeated on every
/// line so that the file stands alone (8 bytes a line).
#[derive(serde::Serialize, serde::Deserialize)]
struct Row {
    connection: usize,
    generation: u32,
    sent_ms: f64,
    latency_ms: Option<f64>,
    outcome: Outcome,
    window_end_ms: f64,
}

impl Row {
    /// A figure can be drawn from it: no NaN, no infinity, no latency
    /// below zero (a file edited by hand, or not ckpt's).
    fn times_are_real(&self) -> bool {
        self.sent_ms.is_finite()
            && self.window_end_ms.is_finite()
            && self.latency_ms.is_none_or(|ms| ms.is_finite() && ms >= 0.0)
    }
}

impl Timeline {
    /// A stopped probe's requests against the move's window.
    pub fn of(log: &ProbeLog, window: Window) -> Timeline {
        let since_start = |us: u64| (us as f64 - window.start_us as f64) / 1000.0;
        Timeline {
            window_end_ms: since_start(window.end_us),
            requests: log
                .requests
                .iter()
                .map(|r| TimedRequest {
                    connection: r.connection,
                    generation: r.generation,
                    sent_ms: since_start(r.sent_us),
                    latency_ms: r.latency_us().map(|us| us as f64 / 1000.0),
                    outcome: r.outcome,
                })
                .collect(),
        }
    }

    /// The CSV: a header, then a line per request.
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let mut csv = csv::Writer::from_writer(Vec::new());
        for r in &self.requests {
            csv.serialize(Row {
                connection: r.connection,
                generation: r.generation,
                sent_ms: r.sent_ms,
                latency_ms: r.latency_ms,
                outcome: r.outcome,
                window_end_ms: self.window_end_ms,
            })?;
        }
        csv.into_inner().context("writing the timeline's CSV")
    }

    /// Reads what `to_csv` wrote; `what` names the file in errors.
    pub fn from_csv(input: impl Read, what: &str) -> Result<Timeline> {
        let mut window_end_ms = None;
        let mut requests = Vec::new();
        for (i, row) in csv::Reader::from_reader(input).deserialize().enumerate() {
            let line = i + 2;
            let row: Row =
                row.with_context(|| format!("{what}, line {line}: not a request of a timeline"))?;
            if !row.times_are_real() {
                bail!("{what}, line {line}: a time that is not a number, or a negative latency");
            }
            window_end_ms.get_or_insert(row.window_end_ms);
            requests.push(TimedRequest {
                connection: row.connection,
                generation: row.generation,
                sent_ms: row.sent_ms,
                latency_ms: row.latency_ms,
                outcome: row.outcome,
            });
        }
        let Some(window_end_ms) = window_end_ms else {
            bail!("{what} holds no request: the probe sent none, or the file was cut");
        };
        Ok(Timeline {
            window_end_ms,
            requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::log::RequestRecord;
    use super::super::ProbeKind;
    use super::*;

    fn log(requests: Vec<RequestRecord>) -> ProbeLog {
        ProbeLog {
            kind: ProbeKind::Tcp,
            interval_us: 10_000,
            stopped_us: 2_000_000,
            requests,
            connections: vec![],
            problems: vec![],
            started: std::time::Instant::now(),
        }
    }

    fn request(connection: usize, sent_us: u64, reply_us: Option<u64>) -> RequestRecord {
        RequestRecord {
            connection,
            generation: u32::from(sent_us > 900_000),
            seq: 0,
            sent_us,
            reply_us,
            outcome: match reply_us {
                Some(_) => Outcome::Ok,
                None => Outcome::Unknown,
            },
            value: None,
            problem: None,
        }
    }

    /// A move from 100 ms to 900 ms of the probe's clock: one request
    /// before, one that waited across it, one lost, one after.
    fn stalled() -> Timeline {
        let log = log(vec![
            request(0, 90_000, Some(90_450)),
            request(0, 100_250, Some(905_000)),
            request(1, 100_500, None),
            request(1, 950_000, Some(950_300)),
        ]);
        Timeline::of(
            &log,
            Window {
                start_us: 100_000,
                end_us: 900_000,
            },
        )
    }

    #[test]
    fn times_count_from_the_checkpoint_request() {
        let timeline = stalled();
        assert_eq!(timeline.window_end_ms, 800.0);
        let sent: Vec<f64> = timeline.requests.iter().map(|r| r.sent_ms).collect();
        assert_eq!(sent, [-10.0, 0.25, 0.5, 850.0]);
        let latency: Vec<Option<f64>> = timeline.requests.iter().map(|r| r.latency_ms).collect();
        assert_eq!(latency, [Some(0.45), Some(804.75), None, Some(0.3)]);
        assert_eq!(timeline.requests[3].generation, 1);
    }

    #[test]
    fn the_csv_reads_back_as_written() {
        let timeline = stalled();
        let csv = timeline.to_csv().unwrap();
        let text = String::from_utf8(csv.clone()).unwrap();
        assert!(
            text.starts_with(
                "connection,generation,sent_ms,latency_ms,outcome,window_end_ms\n0,0,-10.0,0.45,ok,800.0\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n1,0,0.5,,unknown,800.0\n"), "{text}");
        assert_eq!(Timeline::from_csv(&csv[..], "t.csv").unwrap(), timeline);
    }

    #[test]
    fn an_empty_or_broken_csv_is_an_error_that_names_the_file() {
        let empty = Timeline {
            window_end_ms: 5.0,
            requests: vec![],
        };
        let said = Timeline::from_csv(&empty.to_csv().unwrap()[..], "t.csv").unwrap_err();
        assert!(
            said.to_string().contains("t.csv holds no request"),
            "{said}"
        );
        let broken =
            "connection,generation,sent_ms,latency_ms,outcome,window_end_ms\n0,0,x,,ok,1\n";
        let said = Timeline::from_csv(broken.as_bytes(), "t.csv").unwrap_err();
        assert!(said.to_string().contains("t.csv, line 2"), "{said}");
        for bad in ["0,0,NaN,,ok,1", "0,0,1,-2,ok,1", "0,0,1,2,ok,inf"] {
            let csv =
                format!("connection,generation,sent_ms,latency_ms,outcome,window_end_ms\n{bad}\n");
            let said = Timeline::from_csv(csv.as_bytes(), "t.csv").unwrap_err();
            assert!(said.to_string().contains("not a number"), "{bad}: {said}");
        }
    }
}
