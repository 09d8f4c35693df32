//! What a move measured: its phases, downtime and bytes, the pause its
//! users saw (from the workload's ticks), and the destination's verdict.

use super::meter::BytesCounted;
use super::wire::Message;
use crate::model::{EngineKind, MigrationMethod};

/// One step of a migration and how long it took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub ms: f64,
}

/// What a migration measured and what the destination found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Migration {
    pub engine: EngineKind,
    pub method: MigrationMethod,
    pub phases: Vec<Phase>,
    /// From the checkpoint request to the destination's "restored".
    pub downtime_ms: f64,
    /// Until the source is gone and the last page has arrived.
    pub total_ms: f64,
    /// Bytes that crossed to and from the destination, counted as
    /// `bytes_counted` says.
    pub bytes_sent: u64,
    pub bytes_counted: BytesCounted,
    /// The checkpoint's images on the source's disk (pages excluded when
    /// they went elsewhere); None when unreadable.
    pub image_bytes: Option<u64>,
    /// The whole checkpoint: the images plus the memory pages CRIU sent
    /// over its own connection (page server, post-copy); None when either
    /// part is unknown.
    pub checkpoint_bytes: Option<u64>,
    /// CRIU's phases of the dump (at the source) and of the restore (at
    /// the destination), when CRIU left them.
    pub criu_dump: Option<criu_image::DumpStatsEntry>,
    pub criu_restore: Option<criu_image::RestoreStatsEntry>,
    /// The destination's wall clock against the source's, when it is
    /// another machine's: the gap's tick times were corrected by it.
    pub clock: Option<ClockOffset>,
    /// What the clients of a service moved with them saw (`--probe`).
    pub client: Option<crate::probe::ProbeSummary>,
    /// Their every request across the move: tens of thousands for a long
    /// one, so never in the JSON (`--probe-timeline` writes it as CSV).
    #[serde(skip)]
    pub client_timeline: Option<crate::probe::Timeline>,
    pub processes_before: usize,
    /// The longest interval between two consecutive ticks of the
    /// workload's first process across the move (it ticks every 10 ms):
    /// the pause its users saw. Unknown (None) for a program of the
    /// user's, which prints no ticks.
    pub gap_ms: Option<f64>,
    pub check: Message,
    /// The image of the user's program moved, or the criu engine's
    /// command (None: ckpt's forker).
    pub program: Option<String>,
    /// Whether the program's check (--check-cmd) printed at the
    /// destination after the restore what it printed at the source before
    /// the dump (None: no check).
    pub state_ok: Option<bool>,
    /// What differed, when state_ok is false.
    pub state_problem: Option<String>,
}

impl Migration {
    /// Same processes, and every one found its memory, threads and files;
    /// for a program of the user's, as many processes and its state kept.
    pub fn verified(&self) -> bool {
        if self.program.is_some() {
            return self.state_ok != Some(false)
                && matches!(&self.check, Message::Verified {
                    processes,
                    problem: None,
                    ..
                } if *processes == self.processes_before);
        }
        matches!(&self.check, Message::Verified {
            processes,
            memory_ok: Some(true),
            threads_ok: Some(true),
            files_ok: Some(true),
            problem: None,
            ..
        } if *processes == self.processes_before)
    }
}

/// How far the destination's wall clock is ahead of the source's,
/// measured over the link: the exchange with the shortest round trip,
/// whose half is the uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClockOffset {
    pub offset_ms: f64,
    pub uncertainty_ms: f64,
}

impl ClockOffset {
    /// From exchanges of (source's send time, destination's time, source's
    /// receive time), all wall clock in µs; None without any.
    pub(crate) fn from_exchanges(exchanges: &[(u64, u64, u64)]) -> Option<ClockOffset> {
        let &(sent, theirs, back) = exchanges
            .iter()
            .min_by_key(|(s, _, b)| b.saturating_sub(*s))?;
        let midpoint = (sent as f64 + back as f64) / 2.0;
        Some(ClockOffset {
            offset_ms: (theirs as f64 - midpoint) / 1000.0,
            uncertainty_ms: back.saturating_sub(sent) as f64 / 2000.0,
        })
    }

    /// A destination tick time on the source's clock.
    pub(crate) fn to_source(self, their_us: u64) -> u64 {
        (their_us as f64 - self.offset_ms * 1000.0).max(0.0) as u64
    }
}

/// The wall clock in µs since the epoch (0 before it).
pub(crate) fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// How often the moved workload ticks.
pub(crate) const TICK_MS: u64 = 10;

/// The wall-clock times of the first process's ticks in `lines`.
pub(crate) fn tick_times(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| crate::workload::Tick::parse(l).ok())
        .filter(|t| t.role == crate::workload::Role::Parent)
        .filter_map(|t| t.at_us)
        .collect()
}

/// The longest interval between consecutive ticks of the source's and the
/// destination's logs together (one host's log may hold the other's
/// lines: a plain process tree writes to one file by path).
pub(super) fn longest_gap_ms(source: &[u64], destination: &[u64]) -> Option<f64> {
    let mut all: Vec<u64> = source.iter().chain(destination).copied().collect();
    all.sort_unstable();
    all.dedup();
    if destination.is_empty() || source.is_empty() {
        return None;
    }
    all.windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1000.0)
        .reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_comes_from_the_quickest_exchange() {
        // The destination is 5 s ahead; the second exchange is quickest.
        let exchanges = [(1_000, 5_002_000, 5_000), (10_000, 5_010_500, 11_000)];
        let clock = ClockOffset::from_exchanges(&exchanges).unwrap();
        assert_eq!(clock.offset_ms, 5_000.0);
        assert_eq!(clock.uncertainty_ms, 0.5);
        assert_eq!(clock.to_source(5_020_000), 20_000);
        assert_eq!(ClockOffset::from_exchanges(&[]), None);
    }

    #[test]
    fn the_gap_is_the_longest_pause_across_both_logs() {
        let source = [1_000, 11_000, 21_000];
        let destination = [21_000, 480_000, 490_000];
        assert_eq!(longest_gap_ms(&source, &destination), Some(459.0));
        assert_eq!(longest_gap_ms(&source, &[]), None);
        let lines = vec![
            "ckpt parent pid=1 tick=1 t_us=5".to_string(),
            "ckpt child pid=2 tick=1 t_us=6".to_string(),
            "ckpt parent pid=1 tick=2".to_string(),
        ];
        assert_eq!(tick_times(&lines), vec![5]);
    }
}
