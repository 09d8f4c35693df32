//! "Migration": downtime, total time and bytes per series (engine+method)
//! and point, and how downtime grows with the tree's memory.

use super::{strings, Block, Report};
use crate::analysis::migration::{ClientSummary, DowntimeFit, MigrationSummary};
use crate::model::Axis;

/// What the section's figures mean, said once above its table.
const MEANINGS: &str = "Every trial moved its container to a throwaway host (a network namespace joined by a veth pair, mutual TLS) \
and the destination checked its processes, memory, threads and files. Downtime runs on the source's clock \
from the checkpoint request to the destination's \"restored\"; total until the source is gone and the last \
page has arrived (they differ for post-copy); the gap is the longest pause between the workload's ticks (every \
10 ms, wall clock) across the move, what its users saw; bytes are the link's counters, both directions; \
\"-\" marks a figure no trial recorded. In this section and in the tables above, a method's checkpoint is its \
dump and its restore is the destination's. ckpt's own time is not measured for migration trials.";

/// What the clients' table says.
const CLIENTS: &str = "What the service's clients saw (--probe): connections that kept the same TCP connection throughout, of all, and requests answered, failed (a wrong or error reply) or unknown (sent, then the connection was lost), summed over the point's trials; the client gap is the longest any connection waited for a reply (mean over the trials, 95% CI). It is longer than ckpt's downtime: a request sent while the service was away is retransmitted by the client's TCP on a timeout that doubles, and the first retransmission after the service is back is the one answered.";

/// How the growth lines below the table were fitted.
const GROWTH: &str = "How downtime grows with memory: a least-squares line per engine+method and N (the other \
parameters held fixed too) through the individual trials' downtimes against the memory of the whole process tree \
((N+1) processes, each holding the MiB per process, in GiB), with the slope's 95% confidence interval (Student t); \
it needs at least two memory sizes and three trials.";

impl Report<'_> {
    /// "Migration": downtime, total time and bytes per series and point,
    /// and how downtime grows with the tree's memory.
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
        let rows = self.analysis.migrations.iter().map(summary_row).collect();
        let mut out = vec![
            Block::Heading("Migration".into()),
            Block::Para(MEANINGS.into()),
            Block::Table(header, rows),
        ];
        let growth: Vec<String> = self
            .analysis
            .downtime_fits
            .iter()
            .map(|f| self.growth_line(f))
            .collect();
        if !growth.is_empty() {
            out.push(Block::Para(GROWTH.into()));
            out.push(Block::Bullets(growth));
        }
        out.extend(self.client_blocks());
        out.extend(self.stall_blocks());
        out
    }

    /// Whether the figure of the stall is in the report: it goes in this
    /// section, which only moves measured make.
    pub(super) fn stall_shown(&self) -> bool {
        self.stall.is_some() && !self.analysis.migrations.is_empty()
    }

    /// The number the figure of the stall has, or would have: after the
    /// numbered figures and the phases'.
    pub(super) fn stall_number(&self) -> usize {
        self.figures.len() + 1 + usize::from(self.phases_svg.is_some())
    }

    /// Every request of one move per method and point, the stall visible.
    fn stall_blocks(&self) -> Vec<Block> {
        let Some(stall) = self.stall else {
            return Vec::new();
        };
        let number = self.stall_number();
        let which = match stall.points_shown < stall.points {
            true => format!(
                " ({} of the {} points, spread over the range)",
                stall.points_shown, stall.points
            ),
            false => String::new(),
        };
        vec![
            Block::Para(format!("Fig {number} shows one move as its clients saw it: every request's latency (log scale) against when it was sent, in seconds from the checkpoint request, for the first measured move of each engine+method at each point{which}. The shaded band is the move's window, from the checkpoint request to the destination's being ready (dashed: its end). The requests in flight when the service stopped wait until it is back: the stall is their latency, and the band has few dots in it because each connection sends its next request only once the last is answered. Where one time slice holds several of a move's requests the slowest is drawn; a cross marks a request that got no reply or a wrong one. Every request is in timeline-<trial>.csv beside the records.")),
            Block::Figure(
                crate::output::stall::STALL.into(),
                format!("Fig {number} - every request's latency across one move per engine+method and point, against the time since the checkpoint request; shaded: the move's window."),
                stall.svg.clone(),
            ),
        ]
    }

    /// What the clients of a probed service saw, beside ckpt's downtime.
    fn client_blocks(&self) -> Vec<Block> {
        let rows: Vec<Vec<String>> = self
            .analysis
            .migrations
            .iter()
            .filter_map(|m| Some(client_row(m, m.client.as_ref()?)))
            .collect();
        if rows.is_empty() {
            return Vec::new();
        }
        let header = strings(&[
            "engine+method",
            "N",
            "MiB per process",
            "downtime (ms)",
            "client gap (ms)",
            "95% CI",
            "connections kept",
            "requests",
            "failed",
            "unknown",
            "counters consistent",
        ]);
        vec![Block::Para(CLIENTS.into()), Block::Table(header, rows)]
    }

    /// "runc+copy, N=0: downtime grows by 10215 ms per GiB of the tree's
    /// memory (95% CI 9990 to 10440), from 296 ms (10 trials)".
    fn growth_line(&self, f: &DowntimeFit) -> String {
        format!(
            "{}, {}: downtime grows by {:.0} ms per GiB of the tree's memory (95% CI {:.0} to {:.0}), from {:.0} ms ({} trials)",
            f.engine,
            self.slice_label(f),
            f.fit.slope,
            f.fit.slope_ci_low,
            f.fit.slope_ci_high,
            f.fit.intercept,
            f.fit.n
        )
    }

    /// `N=0`, and the other swept axes a fit holds fixed (`N=0 threads=4`).
    fn slice_label(&self, f: &DowntimeFit) -> String {
        let mut label = format!("N={}", f.at.children);
        for axis in &self.analysis.swept {
            if !matches!(axis, Axis::Children | Axis::MemoryMib) {
                label.push_str(&format!(" {}={}", axis.name(), axis.of(&f.at)));
            }
        }
        label
    }
}

/// One row of the clients' table.
fn client_row(m: &MigrationSummary, c: &ClientSummary) -> Vec<String> {
    vec![
        m.engine.clone(),
        m.children.to_string(),
        m.memory_mib.to_string(),
        format!("{:.1}", m.downtime.mean),
        format!("{:.1}", c.gap.mean),
        format!("{:.1}..{:.1}", c.gap.ci_low, c.gap.ci_high),
        format!("{} of {}", c.kept, c.connections),
        c.requests.to_string(),
        c.failed.to_string(),
        c.unknown.to_string(),
        c.counters_ok
            .map_or("-".into(), |(ok, of)| format!("{ok} of {of}")),
    ]
}

/// One row of the table: unknown figures are "-", never 0.
fn summary_row(m: &MigrationSummary) -> Vec<String> {
    let mean = |s: &Option<crate::analysis::Stats>| {
        s.as_ref().map_or("-".into(), |s| format!("{:.1}", s.mean))
    };
    vec![
        m.engine.clone(),
        m.children.to_string(),
        m.memory_mib.to_string(),
        m.downtime.n.to_string(),
        format!("{:.1}", m.downtime.mean),
        format!("{:.1}..{:.1}", m.downtime.ci_low, m.downtime.ci_high),
        mean(&m.total),
        mean(&m.gap),
        m.bytes_mean
            .map_or("-".into(), |b| format!("{:.1}", b / 1e6)),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{bare, plan};
    use super::Block;
    use crate::host::envinfo::Environment;
    use crate::model::{MigrationMethod, Point};
    use crate::sweep::plan::TrialSpec;
    use crate::sweep::records::{Status, TrialRecord};

    /// Copy moves at 0 and 1024 MiB per process, 301 and 10545 ms on
    /// average: 5122 ms per GiB of the tree's memory (N=1: two processes
    /// of 1 GiB), twice as much per GiB of one process's. Their total and
    /// link counters unread, as a failed read leaves them.
    fn moves() -> Vec<TrialRecord> {
        let mut out = Vec::new();
        for memory_mib in [0u32, 0, 1024, 1024] {
            let spec = TrialSpec {
                index: out.len(),
                engine: 0,
                point: Point {
                    children: 1,
                    memory_mib,
                    ..Point::default()
                },
                repetition: 0,
                warmup: false,
                method: Some(MigrationMethod::Copy),
            };
            let ms = 300.0 + 10.0 * f64::from(memory_mib) + 2.0 * out.len() as f64;
            out.push(TrialRecord {
                checkpoint_ms: Some(ms),
                restore_ms: Some(ms),
                downtime_ms: Some(ms),
                status: Status::Ok,
                ..TrialRecord::new("r", &spec, "runc")
            });
        }
        out
    }

    #[test]
    fn unknowns_print_as_unknown_and_growth_is_per_gib_of_the_tree() {
        let analysis = crate::analysis::analyse(&moves());
        let (plan, env) = (plan(), Environment::default());
        let report = bare(&plan, &env, &analysis);
        let blocks = report.migration_blocks();
        let Some(Block::Table(_, rows)) = blocks.iter().find(|b| matches!(b, Block::Table(..)))
        else {
            panic!("no table");
        };
        assert_eq!(rows[0][0], "runc+copy");
        assert_eq!(
            (
                rows[0][6].as_str(),
                rows[0][7].as_str(),
                rows[0][8].as_str()
            ),
            ("-", "-", "-")
        );
        let Some(Block::Bullets(growth)) = blocks.last() else {
            panic!("no growth line");
        };
        assert!(
            growth[0].starts_with(
                "runc+copy, N=1: downtime grows by 5122 ms per GiB of the tree's memory (95% CI "
            ),
            "{growth:?}"
        );
        assert!(growth[0].ends_with("from 301 ms (4 trials)"), "{growth:?}");
        let said = report.observations().join("\n");
        assert!(
            said.contains("ckpt's own time per trial is not measured for migration trials."),
            "{said}"
        );
        assert!(!said.contains("0.00 ms"), "{said}");
    }
}
