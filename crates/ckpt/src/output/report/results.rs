//! "Results" and "Checkpoint size and throughput": their tables and the size fit.

use super::{mib, Block, Report};
use crate::analysis::{self, Operation, PointSummary};
use crate::model::MigrationMethod;

impl Report<'_> {
    /// Table rows: engine, point, then checkpoint and restore mean [CI] and sd.
    pub(super) fn table(&self) -> Block {
        let mut header = vec!["engine".to_string()];
        header.extend(self.point_header());
        header.extend(
            [
                "trials",
                "checkpoint mean (ms)",
                "95% CI",
                "sd",
                "restore mean (ms)",
                "95% CI",
                "sd",
                "checkpoint size",
                "failed",
            ]
            .map(String::from),
        );
        let restore = self.rows(Operation::Restore);
        let rows = self
            .rows(Operation::Checkpoint)
            .iter()
            .map(|c| {
                let r = restore
                    .iter()
                    .find(|r| r.engine == c.engine && r.point() == c.point());
                let cell = |p: Option<&&PointSummary>, f: fn(&PointSummary) -> String| {
                    p.map_or("-".to_string(), |p| f(p))
                };
                let mut row = vec![c.engine.clone()];
                row.extend(self.point_cells(&c.point()));
                row.extend([
                    c.n.to_string(),
                    format!("{:.1}", c.mean_ms),
                    format!("{:.1} to {:.1}", c.ci95_low_ms, c.ci95_high_ms),
                    format!("{:.1}", c.sd_ms),
                    cell(r, |p| format!("{:.1}", p.mean_ms)),
                    cell(r, |p| {
                        format!("{:.1} to {:.1}", p.ci95_low_ms, p.ci95_high_ms)
                    }),
                    cell(r, |p| format!("{:.1}", p.sd_ms)),
                    c.mean_checkpoint_bytes.map_or("-".into(), mib),
                    c.failed.to_string(),
                ]);
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// How checkpoint size follows resident memory, over all points.
    pub(super) fn size_text(&self) -> Option<String> {
        let pairs: Vec<(f64, f64)> = self
            .rows(Operation::Checkpoint)
            .iter()
            .filter_map(|p| Some((p.mean_rss_bytes?, p.mean_checkpoint_bytes?)))
            .collect();
        let (xs, ys): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        let f = analysis::fit(&xs, &ys)?;
        Some(format!(
            "Checkpoint size against resident memory over the points: {:.3} bytes of checkpoint per resident byte (95% CI {:.3} to {:.3}), \
             plus {} fixed, R² = {:.3}. A slope near 1 means CRIU writes out what the processes hold resident, no more and no less.",
            f.slope,
            f.slope_ci_low,
            f.slope_ci_high,
            mib(f.intercept),
            f.r_squared
        ))
    }

    /// Checkpoint size against resident memory, and throughput.
    pub(super) fn derived_table(&self) -> Block {
        let mut header = vec!["engine".to_string()];
        header.extend(self.point_header());
        header.extend(
            [
                "resident memory",
                "checkpoint size",
                "size / resident",
                "throughput (MiB/s of wall time)",
                "throughput (MiB/s of CRIU memdump)",
                "share of memcpy bandwidth",
            ]
            .map(String::from),
        );
        let bandwidth = self.env.memcpy_mib_per_s;
        let rows = self
            .rows(Operation::Checkpoint)
            .iter()
            .map(|p| {
                let mut row = vec![p.engine.clone()];
                row.extend(self.point_cells(&p.point()));
                let ratio = match (p.mean_checkpoint_bytes, p.mean_rss_bytes) {
                    (Some(c), Some(r)) if r > 0.0 => format!("{:.2}", c / r),
                    _ => "-".into(),
                };
                let rate = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
                let best = p.criu_throughput_mib_s.or(p.throughput_mib_s);
                row.extend([
                    p.mean_rss_bytes.map_or("-".into(), mib),
                    p.mean_checkpoint_bytes.map_or("-".into(), mib),
                    ratio,
                    rate(p.throughput_mib_s),
                    rate(p.criu_throughput_mib_s),
                    match (best, bandwidth) {
                        (Some(t), Some(b)) if b > 0.0 => format!("{:.1}%", 100.0 * t / b),
                        _ => "-".into(),
                    },
                ]);
                row
            })
            .collect();
        Block::Table(header, rows)
    }

    /// Why lazy migrations' rows have no throughput; None without them.
    pub(super) fn lazy_throughput_note(&self) -> Option<String> {
        self.rows(Operation::Checkpoint)
            .iter()
            .any(|p| p.engine.ends_with(&format!("+{}", MigrationMethod::Lazy.name())))
            .then(|| {
                "Lazy migrations (+lazy) have no throughput (\"-\"): their checkpoint ends before the memory pages move \
                 (the destination fetches them after the restore), so its size over its time is no rate of anything."
                    .into()
            })
    }
}
