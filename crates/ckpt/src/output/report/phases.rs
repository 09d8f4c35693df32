//! "Where the time goes" (CRIU's phases) and "Cost of each layer".

use super::{Block, Report};
use crate::analysis::Operation;
use crate::model::EngineKind;

impl Report<'_> {
    /// One paragraph on where the time goes, from the phase means.
    pub(super) fn phase_text(&self) -> String {
        let phases = &self.analysis.phases;
        if phases.is_empty() {
            return "No trial carries CRIU's own statistics: the engine deleted CRIU's work directory \
                    (and /etc/criu/runc.conf could not redirect it), so the time cannot be split between CRIU \
                    and the layers above it."
                .into();
        }
        let total =
            |f: fn(&crate::analysis::PhaseSummary) -> f64| phases.iter().map(f).sum::<f64>();
        let ck_above = 100.0 * total(|p| p.checkpoint_above_criu_ms) / total(|p| p.checkpoint_ms);
        let rs_above = 100.0 * total(|p| p.restore_above_criu_ms) / total(|p| p.restore_ms);
        let (first, last) = (&phases[0], &phases[phases.len() - 1]);
        format!(
            "Averaged over the points, {ck_above:.0}% of the checkpoint's wall time and {rs_above:.0}% of the restore's \
             lie above CRIU (daemon, containerd, runc and client), the rest is CRIU's own work. The application was \
             frozen for {:.1} ms at {} and {:.1} ms at {}.",
            first.frozen_ms,
            self.analysis.label(&first.point),
            last.frozen_ms,
            self.analysis.label(&last.point)
        )
    }

    /// The phase table: CRIU's phases and what lies above CRIU.
    pub(super) fn phase_table(&self) -> Block {
        let mut header = vec!["engine".to_string()];
        header.extend(self.point_header());
        header.extend(
            [
                "trials",
                "checkpoint (ms)",
                "CRIU freezing",
                "CRIU frozen (downtime)",
                "memdump (incl. memwrite)",
                "memwrite",
                "above CRIU",
                "restore (ms)",
                "CRIU restore",
                "CRIU forking",
                "above CRIU",
            ]
            .map(String::from),
        );
        let share = |part: f64, whole: f64| {
            if whole > 0.0 {
                format!("{part:.1} ({:.0}%)", 100.0 * part / whole)
            } else {
                format!("{part:.1}")
            }
        };
        let rows = self
            .analysis
            .phases
            .iter()
            .map(|p| {
                let mut row = vec![p.engine.clone()];
                row.extend(self.point_cells(&p.point));
                row.extend([
                    p.n.to_string(),
                    format!("{:.1}", p.checkpoint_ms),
                    format!("{:.1}", p.freezing_ms),
                    format!("{:.1}", p.frozen_ms),
                    format!("{:.1}", p.memdump_ms),
                    format!("{:.1}", p.memwrite_ms),
                    share(p.checkpoint_above_criu_ms, p.checkpoint_ms),
                    format!("{:.1}", p.restore_ms),
                    format!("{:.1}", p.criu_restore_ms),
                    format!("{:.1}", p.forking_ms),
                    share(p.restore_above_criu_ms, p.restore_ms),
                ]);
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// Engines in the data, from the floor (plain CRIU) up.
    pub(super) fn ladder(&self) -> Vec<&'static str> {
        EngineKind::LADDER
            .map(EngineKind::name)
            .into_iter()
            .filter(|e| self.analysis.points.iter().any(|p| p.engine == *e))
            .collect()
    }

    fn mean_at(&self, engine: &str, op: Operation, point: &crate::model::Point) -> Option<f64> {
        self.analysis
            .points
            .iter()
            .find(|p| p.engine == engine && p.operation == op && p.point() == *point)
            .map(|p| p.mean_ms)
    }

    /// What each layer adds on top of the one below it, per point: the
    /// difference of the mean times of adjacent engines on the ladder.
    pub(super) fn layer_table(&self) -> Block {
        let ladder = self.ladder();
        let pairs: Vec<(&str, &str)> = ladder.windows(2).map(|w| (w[1], w[0])).collect();
        let mut header = self.point_header();
        for (upper, lower) in &pairs {
            for op in Operation::ALL {
                header.push(format!("{} {upper} − {lower} (ms)", op.name()));
            }
        }
        let mut points: Vec<crate::model::Point> =
            self.analysis.points.iter().map(|p| p.point()).collect();
        points.sort_unstable();
        points.dedup();
        let rows = points
            .iter()
            .map(|point| {
                let mut row = self.point_cells(point);
                for (upper, lower) in &pairs {
                    for op in Operation::ALL {
                        row.push(
                            match (
                                self.mean_at(upper, op, point),
                                self.mean_at(lower, op, point),
                            ) {
                                (Some(u), Some(l)) => format!("{:.1}", u - l),
                                _ => "-".into(),
                            },
                        );
                    }
                }
                row
            })
            .collect();
        Block::Table(header, rows)
    }
}
