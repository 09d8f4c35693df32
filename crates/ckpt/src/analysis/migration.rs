//! Migration trials: downtime, total time and bytes on the link per series
//! (engine+method) and point, and how downtime grows with the memory the
//! process tree holds (a least-squares line per series and slice, in ms per
//! GiB, with the slope's 95% confidence interval).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{describe, fit, without, Fit, Stats};
use crate::model::{Axis, Point};
use crate::sweep::records::TrialRecord;

/// One series (`runc+lazy`) at one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationSummary {
    /// The series label: engine+method.
    pub engine: String,
    pub children: u32,
    pub memory_mib: u32,
    pub downtime: Stats,
    /// None when no trial recorded it (never 0 for unknown).
    #[serde(default)]
    pub total: Option<Stats>,
    /// The longest pause in the workload's ticks across the move.
    #[serde(default)]
    pub gap: Option<Stats>,
    /// None when no trial recorded the link's counters.
    #[serde(default)]
    pub bytes_mean: Option<f64>,
    /// What a probe's clients saw (`--probe`); None without one.
    #[serde(default)]
    pub client: Option<ClientSummary>,
}

/// The clients' view over one point's moves: connections and requests
/// summed over the trials, the longest wait per trial described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSummary {
    pub connections: u64,
    pub kept: u64,
    pub requests: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Trials whose redis counters were all consistent, of those checked.
    pub counters_ok: Option<(u32, u32)>,
    pub gap: Stats,
}

/// The clients' view of `trials`; None when no trial had a probe.
fn clients(trials: &[&TrialRecord]) -> Option<ClientSummary> {
    let probed: Vec<&&TrialRecord> = trials
        .iter()
        .filter(|r| r.client_connections.is_some())
        .collect();
    let sum = |f: fn(&TrialRecord) -> Option<u64>| probed.iter().filter_map(|r| f(r)).sum();
    let gaps: Vec<f64> = probed.iter().filter_map(|r| r.client_gap_ms).collect();
    let counted: Vec<bool> = probed.iter().filter_map(|r| r.client_counters_ok).collect();
    let counters_ok = (!counted.is_empty()).then(|| {
        let ok = counted.iter().filter(|ok| **ok).count() as u32;
        (ok, counted.len() as u32)
    });
    Some(ClientSummary {
        connections: sum(|r| r.client_connections.map(u64::from)),
        kept: sum(|r| r.client_kept.map(u64::from)),
        requests: sum(|r| r.client_requests),
        failed: sum(|r| r.client_failed),
        unknown: sum(|r| r.client_unknown),
        counters_ok,
        gap: describe(&gaps)?,
    })
}

/// How one series' downtime grows with the memory of the whole process
/// tree, the other axes (children among them) held at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DowntimeFit {
    /// The series label: engine+method.
    pub engine: String,
    /// The point the fit holds fixed; its memory_mib is 0.
    pub at: Point,
    /// Downtime (ms) against the tree's memory (GiB) over the individual
    /// trials: slope in ms per GiB, intercept in ms.
    pub fit: Fit,
}

/// The memory the whole tree holds, in GiB: the parent and each child
/// write memory_mib each.
pub(crate) fn tree_gib(r: &TrialRecord) -> f64 {
    f64::from(r.children + 1) * f64::from(r.memory_mib) / 1024.0
}

/// The trials that moved and count in the statistics.
fn moved(records: &[TrialRecord]) -> impl Iterator<Item = &TrialRecord> {
    records
        .iter()
        .filter(|r| r.measured_ok() && r.downtime_ms.is_some())
}

/// The summaries of every series and point that has measured migrations.
pub(crate) fn summarise(records: &[TrialRecord]) -> Vec<MigrationSummary> {
    let mut at: BTreeMap<(String, u32, u32), Vec<&TrialRecord>> = BTreeMap::new();
    for r in moved(records) {
        let key = (r.series(), r.children, r.memory_mib);
        at.entry(key).or_default().push(r);
    }
    at.into_iter()
        .filter_map(|((engine, children, memory_mib), trials)| {
            let values = |f: fn(&TrialRecord) -> Option<f64>| -> Vec<f64> {
                trials.iter().filter_map(|r| f(r)).collect()
            };
            let bytes = describe(&values(|r| r.bytes_sent.map(|b| b as f64)));
            Some(MigrationSummary {
                downtime: describe(&values(|r| r.downtime_ms))?,
                total: describe(&values(|r| r.total_ms)),
                gap: describe(&values(|r| r.gap_ms)),
                bytes_mean: bytes.map(|b| b.mean),
                client: clients(&trials),
                engine,
                children,
                memory_mib,
            })
        })
        .collect()
}

/// Downtime against the tree's memory per series and per slice (children
/// and every axis but memory held fixed), over the individual trials: at
/// least three, at two memory sizes or more (`fit`'s own condition).
pub(crate) fn fits(records: &[TrialRecord]) -> Vec<DowntimeFit> {
    let mut slices: BTreeMap<(String, Point), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for r in moved(records) {
        let key = (r.series(), without(r.point(), Axis::MemoryMib));
        let (xs, ys) = slices.entry(key).or_default();
        xs.push(tree_gib(r));
        ys.extend(r.downtime_ms);
    }
    slices
        .into_iter()
        .filter_map(|((engine, at), (xs, ys))| {
            Some(DowntimeFit {
                fit: fit(&xs, &ys)?,
                engine,
                at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MigrationMethod;

    fn moved(series: &str, children: u32, memory_mib: u32, downtime: f64) -> TrialRecord {
        let (engine, method) = series.split_once('+').unwrap_or((series, ""));
        let spec = crate::sweep::plan::TrialSpec {
            index: 0,
            engine: 0,
            point: crate::model::Point {
                children,
                memory_mib,
                ..Default::default()
            },
            repetition: 0,
            warmup: false,
            method: MigrationMethod::ALL
                .into_iter()
                .find(|m| m.name() == method),
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
    fn the_series_is_the_engine_and_the_method_once() {
        let copy = moved("runc+copy", 0, 0, 1.0);
        assert_eq!(
            (copy.engine.as_str(), copy.series().as_str()),
            ("runc", "runc+copy")
        );
        let plain = TrialRecord {
            method: None,
            ..copy.clone()
        };
        assert_eq!(plain.series(), "runc");
        // An older record held the label in its engine column.
        let old = TrialRecord {
            engine: "runc+copy".into(),
            ..copy.clone()
        };
        assert_eq!(old.series(), "runc+copy");
        let lazy = TrialRecord {
            method: Some(MigrationMethod::Lazy),
            ..old
        };
        assert_eq!(
            lazy.series(),
            "runc+copy+lazy",
            "only its own method is not added"
        );
    }

    #[test]
    fn downtime_is_summarised_per_series_and_point() {
        let mut unmetered = moved("runc+lazy", 0, 0, 350.0);
        (unmetered.bytes_sent, unmetered.total_ms) = (None, None);
        let records = vec![
            moved("runc+copy", 0, 0, 300.0),
            moved("runc+copy", 0, 1024, 10_300.0),
            moved("runc+copy", 0, 1024, 10_300.0),
            unmetered,
            moved("runc+lazy", 0, 1024, 750.0),
        ];
        let s = summarise(&records);
        let keys: Vec<(&str, u32)> = s
            .iter()
            .map(|m| (m.engine.as_str(), m.memory_mib))
            .collect();
        assert_eq!(
            keys,
            [
                ("runc+copy", 0),
                ("runc+copy", 1024),
                ("runc+lazy", 0),
                ("runc+lazy", 1024)
            ]
        );
        assert_eq!(s[1].downtime.n, 2);
        assert_eq!(
            (s[2].bytes_mean, s[2].total.as_ref()),
            (None, None),
            "unknown, not 0"
        );
        assert_eq!(s[3].bytes_mean, Some(1024.0 * 1048576.0));
    }

    #[test]
    fn downtime_is_fitted_per_series_and_children_against_the_trees_memory() {
        // N=1: two processes, so 512 MiB each is 1 GiB of tree. Per process
        // the slope would read 20000 ms per GiB; mixed with N=0 another.
        let mut records: Vec<TrialRecord> = [(0, 290.0), (0, 310.0), (512, 10_280.0)]
            .into_iter()
            .chain([(512, 10_320.0), (1024, 20_300.0), (1024, 20_300.0)])
            .map(|(mib, ms)| moved("runc+copy", 1, mib, ms))
            .collect();
        records.extend(
            [(0, 300.0), (1024, 5_300.0), (1024, 5_300.0)]
                .map(|(mib, ms)| moved("runc+copy", 0, mib, ms)),
        );
        records.extend(
            [(0, 400.0), (1024, 500.0), (1024, 500.0)]
                .map(|(mib, ms)| moved("runc+lazy", 0, mib, ms)),
        );
        let f = fits(&records);
        let found: Vec<(&str, u32)> = f
            .iter()
            .map(|d| (d.engine.as_str(), d.at.children))
            .collect();
        assert_eq!(
            found,
            [("runc+copy", 0), ("runc+copy", 1), ("runc+lazy", 0)]
        );
        let n1 = &f[1].fit;
        assert_eq!(n1.n, 6);
        assert!(
            (n1.slope - 10_000.0).abs() < 1e-6 && (n1.intercept - 300.0).abs() < 1e-6,
            "{n1:?}"
        );
        // Residuals -10, 10, -20, 20, 0, 0: SSE 1000, Sxx 4, t(4) = 2.776445.
        let half = 2.776445 * (1000.0f64 / 4.0 / 4.0).sqrt();
        assert!((n1.slope_ci_low - (10_000.0 - half)).abs() < 1e-3, "{n1:?}");
        assert!(
            (n1.slope_ci_high - (10_000.0 + half)).abs() < 1e-3,
            "{n1:?}"
        );
        assert!((f[0].fit.slope - 5_000.0).abs() < 1e-6 && (f[2].fit.slope - 100.0).abs() < 1e-6);
    }

    #[test]
    fn no_fit_without_two_memory_sizes_and_three_trials() {
        let one_size = [300.0, 310.0, 320.0].map(|ms| moved("runc+copy", 0, 1024, ms));
        assert!(fits(&one_size).is_empty());
        let two_trials =
            [(0, 300.0), (1024, 10_300.0)].map(|(mib, ms)| moved("runc+copy", 0, mib, ms));
        assert!(fits(&two_trials).is_empty());
    }
}
