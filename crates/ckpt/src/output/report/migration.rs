//! "Migration": downtime, total time and bytes per method and point.

use super::{strings, Block, Report};

impl Report<'_> {
    /// "Migration": downtime, total time and bytes per method and point,
    /// and how downtime grows with memory.
    pub(super) fn migration_blocks(&self) -> Vec<Block> {
        let header = strings(&[
            "engine+method",
            "N",
            "MiB per process",
            "n",
            "downtime (ms)",
            "95% CI",
            "total (ms)",
            "gap (ms)",
            "MB on the link",
        ]);
        let rows = self
            .analysis
            .migrations
            .iter()
            .map(|m| {
                vec![
                    m.engine.clone(),
                    m.children.to_string(),
                    m.memory_mib.to_string(),
                    m.downtime.n.to_string(),
                    format!("{:.1}", m.downtime.mean),
                    format!("{:.1}..{:.1}", m.downtime.ci_low, m.downtime.ci_high),
                    format!("{:.1}", m.total.mean),
                    m.gap
                        .as_ref()
                        .map_or("-".into(), |g| format!("{:.1}", g.mean)),
                    format!("{:.1}", m.bytes_mean / 1e6),
                ]
            })
            .collect();
        let growth: Vec<String> = self
            .analysis
            .downtime_fits
            .iter()
            .map(|f| {
                format!(
                    "{}: downtime grows by {:.0} ms per GiB (from {:.0} ms)",
                    f.engine, f.ms_per_gib, f.intercept_ms
                )
            })
            .collect();
        let mut out = vec![
            Block::Heading("Migration".into()),
            Block::Para(
                "Every trial moved its container to a throwaway host (a network namespace joined by a veth pair, mutual TLS) \
                 and the destination checked its processes, memory, threads and files. Downtime runs on the source's clock \
                 from the checkpoint request to the destination's \"restored\"; total until the source is gone and the last \
                 page has arrived (they differ for post-copy); the gap is the longest pause between the workload's ticks (every \
                 10 ms, wall clock) across the move, what its users saw; bytes are the link's counters, both directions. In this \
                 section and in the tables above, a method's checkpoint is its dump and its restore is the destination's."
                    .into(),
            ),
            Block::Table(header, rows),
        ];
        if !growth.is_empty() {
            out.push(Block::Bullets(growth));
        }
        out
    }
}
