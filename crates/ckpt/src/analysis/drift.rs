//! Whether the machine stayed the same over a run. Engines can slow down as
//! a run goes on (cgroups and mounts pile up, a daemon's memory grows), and
//! a shuffled order only spreads such drift over every point as noise. So
//! per engine and operation: each measured trial's time over its point's
//! mean (1.0 = as fast as its point's average), in the order the trials
//! started, and a least-squares line through them. hyperfine warns about
//! outliers; ckpt warns about drift.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::{pearson, t95, Operation, PointSummary};
use crate::model::Point;
use crate::sweep::records::{TrialRecord, HOST_COLUMNS};

/// Below this many trials a line through them says nothing worth a
/// verdict: "too few trials to tell".
pub const MIN_TRIALS: usize = 8;
/// A drift smaller than this over the whole run is not worth a warning,
/// however significant (the 5% the report's other verdicts use).
pub const NOTABLE_CHANGE_PCT: f64 = 5.0;
/// A host column "moved with" the time when |r| reaches this.
pub const MOVED_WITH_R: f64 = 0.5;

/// One engine's operation over its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub engine: String,
    pub operation: Operation,
    /// Each measured trial's time over its point's mean, in the order the
    /// trials started (resumed runs included): the figure's points.
    pub relative: Vec<f64>,
    /// The line through them; None with fewer than `MIN_TRIALS` trials.
    pub fit: Option<DriftFit>,
    /// Pearson r of the relative time with each host column the trials
    /// carry, the largest |r| first.
    pub host: Vec<HostCorrelation>,
}

/// Relative time against the trial's place in the run (0, 1, ..., n-1),
/// in per cent of its point's mean (see `drift_fit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftFit {
    /// The slope, per 100 trials.
    pub per_100_pct: f64,
    /// Its 95% confidence interval (Student t with n - 1 - points degrees
    /// of freedom: a mean per point and the slope are fitted).
    pub per_100_ci_low_pct: f64,
    pub per_100_ci_high_pct: f64,
    /// What the line rises (or falls) from the first trial to the last.
    pub change_pct: f64,
    /// The line's relative time at the first trial (for drawing it).
    pub intercept: f64,
    /// The interval excludes 0 and the change is at least
    /// `NOTABLE_CHANGE_PCT`.
    pub drifting: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCorrelation {
    /// A record column, e.g. `host_mounts`.
    pub column: String,
    pub r: f64,
}

impl Drift {
    pub(crate) fn drifting(&self) -> bool {
        self.fit.as_ref().is_some_and(|f| f.drifting)
    }

    /// The host column that moved most with the time, if any moved enough.
    pub(crate) fn moved_with(&self) -> Option<&HostCorrelation> {
        self.host.first().filter(|h| h.r.abs() >= MOVED_WITH_R)
    }
}

/// The drift of every engine's checkpoint and restore, from the measured
/// trials (warm-ups and failures out) and the points' means.
pub(crate) fn drifts(records: &[TrialRecord], points: &[PointSummary]) -> Vec<Drift> {
    let means: BTreeMap<(&str, Point, Operation), f64> = points
        .iter()
        .map(|p| ((p.engine.as_str(), p.point(), p.operation), p.mean_ms))
        .collect();
    let mut engines: Vec<String> = records
        .iter()
        .filter(|r| r.measured_ok())
        .map(|r| r.series())
        .collect();
    engines.sort_unstable();
    engines.dedup();
    let mut out = Vec::new();
    for engine in &engines {
        let trials = in_run_order(records, engine);
        for op in Operation::ALL {
            out.extend(drift(engine, op, &trials, &means));
        }
    }
    out
}

/// An engine's measured trials in the order they started. The start
/// times, not the plan's order or the file's, so a resumed run (whose
/// retried trials come last in the file) is read as it happened.
fn in_run_order<'a>(records: &'a [TrialRecord], engine: &str) -> Vec<&'a TrialRecord> {
    let mut trials: Vec<&TrialRecord> = records
        .iter()
        .filter(|r| r.measured_ok() && r.series() == engine)
        .collect();
    // Stable: trials without a readable start keep the file's order.
    trials.sort_by_key(|r| started(r));
    trials
}

fn started(r: &TrialRecord) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(&r.started_at).ok()
}

/// One engine's operation; None when no trial has its time.
fn drift(
    engine: &str,
    op: Operation,
    trials: &[&TrialRecord],
    means: &BTreeMap<(&str, Point, Operation), f64>,
) -> Option<Drift> {
    let timed: Vec<(&TrialRecord, f64)> = trials
        .iter()
        .filter_map(|r| {
            let mean = *means.get(&(engine, r.point(), op))?;
            (mean > 0.0).then_some((*r, op.value(r)? / mean))
        })
        .collect();
    if timed.is_empty() {
        return None;
    }
    let relative: Vec<f64> = timed.iter().map(|(_, v)| *v).collect();
    let points: Vec<Point> = timed.iter().map(|(r, _)| r.point()).collect();
    Some(Drift {
        engine: engine.to_string(),
        operation: op,
        fit: drift_fit(&points, &relative),
        host: host_correlations(&timed),
        relative,
    })
}

/// The slope of relative time against the place in the run, within
/// points: each place less its point's mean place, as each time is over
/// its point's mean time. Against the bare place, a point whose trials ran
/// late would take the slowdown into its mean and hide it (a third of it
/// with 3 repetitions, all of it with 1). In per cent; None for too few
/// trials, or when no point has two.
fn drift_fit(points: &[Point], relative: &[f64]) -> Option<DriftFit> {
    let n = relative.len();
    if n < MIN_TRIALS {
        return None;
    }
    let mut places: BTreeMap<Point, (f64, f64)> = BTreeMap::new();
    for (place, point) in points.iter().enumerate() {
        let (sum, count) = places.entry(*point).or_default();
        (*sum, *count) = (*sum + place as f64, *count + 1.0);
    }
    let xs: Vec<f64> = points
        .iter()
        .enumerate()
        .map(|(place, point)| place as f64 - places[point].0 / places[point].1)
        .collect();
    // One parameter per point's mean, one for the slope.
    let df = n.checked_sub(places.len() + 1).filter(|df| *df > 0)?;
    let sxx: f64 = xs.iter().map(|x| x * x).sum();
    if sxx == 0.0 {
        return None;
    }
    // Each point's relative times average exactly 1.
    let slope = xs
        .iter()
        .zip(relative)
        .map(|(x, y)| x * (y - 1.0))
        .sum::<f64>()
        / sxx;
    let sse: f64 = xs
        .iter()
        .zip(relative)
        .map(|(x, y)| (y - 1.0 - slope * x).powi(2))
        .sum();
    let half = t95(df) * (sse / df as f64 / sxx).sqrt();
    let per_100 = |slope: f64| 100.0 * 100.0 * slope;
    let change_pct = 100.0 * slope * (n - 1) as f64;
    Some(DriftFit {
        per_100_pct: per_100(slope),
        per_100_ci_low_pct: per_100(slope - half),
        per_100_ci_high_pct: per_100(slope + half),
        change_pct,
        // Through 1.0 at the run's middle place.
        intercept: 1.0 - slope * (n - 1) as f64 / 2.0,
        drifting: half < slope.abs() && change_pct.abs() >= NOTABLE_CHANGE_PCT,
    })
}

/// Pearson r of the relative time with each host column, over the trials
/// that carry it (records of an older ckpt carry none); a column carried
/// by too few trials, or that never changed, has none.
fn host_correlations(timed: &[(&TrialRecord, f64)]) -> Vec<HostCorrelation> {
    let mut out: Vec<HostCorrelation> = HOST_COLUMNS
        .iter()
        .filter_map(|(column, value)| {
            let (xs, ys): (Vec<f64>, Vec<f64>) = timed
                .iter()
                .filter_map(|(r, relative)| Some((value(r)?, *relative)))
                .unzip();
            if xs.len() < MIN_TRIALS {
                return None;
            }
            Some(HostCorrelation {
                column: column.to_string(),
                r: pearson(&xs, &ys)?,
            })
        })
        .collect();
    out.sort_by(|a, b| b.r.abs().total_cmp(&a.r.abs()));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sweep::plan::TrialSpec;
    use crate::sweep::records::Status;
    use rand::{Rng, SeedableRng};

    /// `n` measured docker trials over five points, interleaved as a
    /// shuffled sweep interleaves them, each at its point's base time
    /// times (1 ± 1% noise) times `trend(place in the run)`, one second
    /// apart; host_mounts counts up with the run.
    pub(crate) fn records(n: usize, trend: impl Fn(f64) -> f64) -> Vec<TrialRecord> {
        let mut noise = rand::rngs::StdRng::seed_from_u64(7);
        (0..n)
            .map(|i| {
                let children = [1u32, 5, 10, 15, 20][i % 5];
                let spec = TrialSpec {
                    index: i,
                    engine: 0,
                    point: Point {
                        children,
                        ..Point::default()
                    },
                    repetition: (i / 5) as u32,
                    warmup: false,
                    method: None,
                };
                let at = DateTime::from_timestamp(1_790_000_000 + i as i64, 0).unwrap();
                let factor = (1.0 + noise.gen_range(-0.01..0.01)) * trend(i as f64 / n as f64);
                let ms = (200.0 + 10.0 * f64::from(children)) * factor;
                TrialRecord {
                    started_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    checkpoint_ms: Some(ms),
                    restore_ms: Some(1.5 * ms),
                    status: Status::Ok,
                    verified: true,
                    host_mounts: Some(20 + i as u64),
                    host_load1: Some(1.0),
                    ..TrialRecord::new("r", &spec, "docker")
                }
            })
            .collect()
    }

    fn checkpoint(records: &[TrialRecord]) -> Drift {
        let analysis = crate::analysis::analyse(records);
        analysis
            .drift
            .into_iter()
            .find(|d| d.operation == Operation::Checkpoint)
            .unwrap()
    }

    #[test]
    fn steady_times_are_not_flagged() {
        let d = checkpoint(&records(60, |_| 1.0));
        let fit = d.fit.as_ref().unwrap();
        assert!(!d.drifting(), "{fit:?}");
        assert!(fit.change_pct.abs() < 2.0, "{fit:?}");
        assert_eq!(d.relative.len(), 60);
        assert!(d.moved_with().is_none(), "{:?}", d.host);
    }

    #[test]
    fn a_trend_over_the_run_is_flagged_with_its_sign_and_size() {
        // +30% from the first trial to the last; relative to the points'
        // means, which take in half of it on average, 0.3 / 1.15 = 26%.
        let d = checkpoint(&records(60, |x| 1.0 + 0.3 * x));
        let fit = d.fit.as_ref().unwrap();
        assert!(d.drifting(), "{fit:?}");
        assert!((22.0..30.0).contains(&fit.change_pct), "{fit:?}");
        let per_100 = fit.change_pct / 59.0 * 100.0;
        assert!((fit.per_100_pct - per_100).abs() < 1e-9, "{fit:?}");
        assert!(fit.per_100_ci_low_pct > 0.0, "{fit:?}");
        let moved = d.moved_with().unwrap();
        assert_eq!(moved.column, "host_mounts");
        assert!(moved.r > 0.9, "{moved:?}");
        assert!(
            d.host.iter().all(|h| h.column != "host_load1"),
            "a constant column says nothing: {:?}",
            d.host
        );

        let falling = checkpoint(&records(60, |x| 1.0 - 0.3 * x));
        let fit = falling.fit.as_ref().unwrap();
        assert!(falling.drifting() && fit.change_pct < -20.0, "{fit:?}");
        assert!(falling.moved_with().unwrap().r < -0.9);
    }

    #[test]
    fn too_few_trials_are_not_flagged() {
        let d = checkpoint(&records(MIN_TRIALS - 1, |x| 1.0 + 0.3 * x));
        assert_eq!(d.fit, None);
        assert!(!d.drifting());
    }

    #[test]
    fn trials_are_ordered_by_their_start_and_warm_ups_and_failures_left_out() {
        let in_order = records(40, |x| 1.0 + 0.3 * x);
        let mut shuffled = in_order.clone();
        shuffled.reverse();
        let mut warm = in_order[0].clone();
        (warm.warmup, warm.checkpoint_ms) = (true, Some(5000.0));
        let mut failed = in_order[1].clone();
        (failed.status, failed.checkpoint_ms) = (Status::Failed, Some(5000.0));
        shuffled.extend([warm, failed]);
        // The same up to rounding (the means sum in another order).
        let (a, b) = (checkpoint(&shuffled), checkpoint(&in_order));
        assert_eq!(a.relative.len(), b.relative.len());
        let mut pairs = a.relative.iter().zip(&b.relative);
        assert!(pairs.all(|(x, y)| (x - y).abs() < 1e-12), "{a:?}");
        assert!(a.drifting() && b.drifting());
    }
}
