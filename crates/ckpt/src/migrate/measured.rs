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
    /// they went elsewhere).
    pub image_bytes: u64,
    pub processes_before: usize,
    /// The longest interval between two consecutive ticks of the
    /// workload's first process across the move (it ticks every 10 ms):
    /// the pause its users saw. Unknown (None) for a program of the
    /// user's, which prints no ticks.
    pub gap_ms: Option<f64>,
    pub check: Message,
    /// The image of the user's program moved (None: ckpt's forker).
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
