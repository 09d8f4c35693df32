//! Migration trials: downtime, total time and bytes on the link per method
//! and point, and how downtime grows with memory (a least-squares line per
//! method, in ms per GiB).

use serde::{Deserialize, Serialize};

use super::{describe, Stats};
use crate::sweep::records::TrialRecord;

/// One method (engine label `runc+lazy`) at one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationSummary {
    pub engine: String,
    pub children: u32,
    pub memory_mib: u32,
    pub downtime: Stats,
    pub total: Stats,
    /// The longest pause in the workload's ticks across the move.
    #[serde(default)]
    pub gap: Option<Stats>,
    pub bytes_mean: f64,
}

/// How one method's downtime grows with memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DowntimeFit {
    pub engine: String,
    pub ms_per_gib: f64,
    pub intercept_ms: f64,
}

/// The summaries of every method and point that has measured migrations.
pub(crate) fn summarise(records: &[TrialRecord]) -> Vec<MigrationSummary> {
    let moved: Vec<&TrialRecord> = records
        .iter()
        .filter(|r| r.measured_ok() && r.downtime_ms.is_some())
        .collect();
    let mut keys: Vec<(String, u32, u32)> = moved
        .iter()
        .map(|r| (r.engine.clone(), r.children, r.memory_mib))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|(engine, children, memory_mib)| {
            let at: Vec<&&TrialRecord> = moved
                .iter()
                .filter(|r| {
                    r.engine == engine && r.children == children && r.memory_mib == memory_mib
                })
                .collect();
            let values = |f: fn(&TrialRecord) -> Option<f64>| -> Vec<f64> {
                at.iter().filter_map(|r| f(r)).collect()
            };
            let bytes = values(|r| r.bytes_sent.map(|b| b as f64));
            Some(MigrationSummary {
                downtime: describe(&values(|r| r.downtime_ms))?,
                total: describe(&values(|r| r.total_ms))?,
                gap: describe(&values(|r| r.gap_ms)),
                bytes_mean: bytes.iter().sum::<f64>() / bytes.len().max(1) as f64,
                engine,
                children,
                memory_mib,
            })
        })
        .collect()
}

/// Downtime against memory per method, fitted over the point means (at
/// least two memory sizes).
pub(crate) fn fits(summaries: &[MigrationSummary]) -> Vec<DowntimeFit> {
    let mut engines: Vec<&str> = summaries.iter().map(|s| s.engine.as_str()).collect();
    engines.dedup();
    engines
        .into_iter()
        .filter_map(|engine| {
            let xy: Vec<(f64, f64)> = summaries
                .iter()
                .filter(|s| s.engine == engine)
                .map(|s| (f64::from(s.memory_mib) / 1024.0, s.downtime.mean))
                .collect();
            let n = xy.len() as f64;
            let (mx, my) = (
                xy.iter().map(|p| p.0).sum::<f64>() / n,
                xy.iter().map(|p| p.1).sum::<f64>() / n,
            );
            let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
            if xy.len() < 2 || sxx == 0.0 {
                return None;
            }
            let slope = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
            Some(DowntimeFit {
                engine: engine.to_string(),
                ms_per_gib: slope,
                intercept_ms: my - slope * mx,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(engine: &str, memory_mib: u32, downtime: f64) -> TrialRecord {
        let spec = crate::sweep::plan::TrialSpec {
            index: 0,
            engine: 0,
            point: crate::model::Point {
                children: 0,
                memory_mib,
                ..Default::default()
            },
            repetition: 0,
            warmup: false,
            method: Some(crate::model::MigrationMethod::Copy),
        };
        TrialRecord {
            status: crate::sweep::records::Status::Ok,
            downtime_ms: Some(downtime),
            total_ms: Some(downtime + 1.0),
            bytes_sent: Some(u64::from(memory_mib) << 20),
            ..TrialRecord::new("r", &spec, engine)
        }
    }

    #[test]
    fn downtime_is_summarised_per_method_and_fitted_against_memory() {
        let records = vec![
            moved("runc+copy", 0, 300.0),
            moved("runc+copy", 1024, 10_300.0),
            moved("runc+copy", 1024, 10_300.0),
            moved("runc+lazy", 0, 350.0),
            moved("runc+lazy", 1024, 750.0),
        ];
        let s = summarise(&records);
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].downtime.n, 2);
        let f = fits(&s);
        assert_eq!(f.len(), 2);
        assert!((f[0].ms_per_gib - 10_000.0).abs() < 1e-6, "{f:?}");
        assert!((f[1].ms_per_gib - 400.0).abs() < 1e-6 && (f[1].intercept_ms - 350.0).abs() < 1e-6);
    }
}
