//! Statistics over trial records: per point mean, sd, median, min, max and
//! the 95% confidence interval of the mean (Student t); per swept axis a
//! least-squares fit of time against that axis, the other axes held fixed;
//! the correlation between checkpoint and restore time; outliers within a
//! point (MAD rule) and points off the fit; derived metrics (checkpoint size
//! against resident memory, throughput); drift over the run (`drift`).
//! Plain data in, plain data out.

pub mod compare;
pub mod drift;
pub mod migration;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::model::{Axis, Point};
use crate::sweep::records::{Status, TrialRecord};

/// Descriptive statistics of one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for a single value.
    pub sd: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// 95% confidence interval of the mean; equal to the mean when n = 1.
    pub ci_low: f64,
    pub ci_high: f64,
}

/// The two-sided 95% quantile of Student's t with `df` degrees of freedom.
pub(crate) fn t95(df: usize) -> f64 {
    match StudentsT::new(0.0, 1.0, df.max(1) as f64) {
        Ok(t) => t.inverse_cdf(0.975),
        Err(_) => f64::NAN,
    }
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

pub(crate) fn describe(values: &[f64]) -> Option<Stats> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    let half = if n > 1 {
        t95(n - 1) * sd / (n as f64).sqrt()
    } else {
        0.0
    };
    Some(Stats {
        n,
        mean,
        sd,
        median: median(values),
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ci_low: mean - half,
        ci_high: mean + half,
    })
}

/// Indices of outliers by the modified z-score on the median absolute
/// deviation (Iglewicz and Hoaglin: |0.6745 (x - median) / MAD| > 3.5), the
/// rule hyperfine uses. Robust: one wild value cannot hide itself by
/// inflating the spread.
pub(crate) fn mad_outliers(values: &[f64]) -> Vec<usize> {
    if values.len() < 3 {
        return Vec::new();
    }
    let med = median(values);
    let deviations: Vec<f64> = values.iter().map(|v| (v - med).abs()).collect();
    let mad = median(&deviations);
    if mad == 0.0 {
        return Vec::new();
    }
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| (0.6745 * (*v - med) / mad).abs() > 3.5)
        .map(|(i, _)| i)
        .collect()
}

/// Least-squares line y = intercept + slope x.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub n: usize,
    pub slope: f64,
    pub intercept: f64,
    /// 95% confidence interval of the slope (t with n - 2 df).
    pub slope_ci_low: f64,
    pub slope_ci_high: f64,
    pub r_squared: f64,
}

impl Fit {
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// Needs at least three points and two distinct x values.
pub(crate) fn fit(xs: &[f64], ys: &[f64]) -> Option<Fit> {
    let n = xs.len();
    if n < 3 || n != ys.len() {
        return None;
    }
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = xs
        .iter()
        .zip(ys)
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    let se_slope = (sse / (n - 2) as f64 / sxx).sqrt();
    let half = t95(n - 2) * se_slope;
    Some(Fit {
        n,
        slope,
        intercept,
        slope_ci_low: slope - half,
        slope_ci_high: slope + half,
        r_squared: if syy == 0.0 { 1.0 } else { 1.0 - sse / syy },
    })
}

/// Pearson's correlation coefficient; None for fewer than three pairs or a
/// constant variable.
pub(crate) fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n < 3 || n != ys.len() {
        return None;
    }
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// The timed operations a summary covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Checkpoint,
    Restore,
}

impl Operation {
    pub(crate) const ALL: [Operation; 2] = [Operation::Checkpoint, Operation::Restore];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Operation::Checkpoint => "checkpoint",
            Operation::Restore => "restore",
        }
    }

    pub(crate) fn value(self, r: &TrialRecord) -> Option<f64> {
        match self {
            Operation::Checkpoint => r.checkpoint_ms,
            Operation::Restore => r.restore_ms,
        }
    }
}

/// One row of summary.csv: one operation at one point of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    pub engine: String,
    pub children: u32,
    #[serde(default)]
    pub memory_mib: u32,
    #[serde(default)]
    pub threads: u32,
    #[serde(default)]
    pub files: u32,
    #[serde(default)]
    pub filler_mib: u32,
    pub operation: Operation,
    pub n: usize,
    pub mean_ms: f64,
    pub sd_ms: f64,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub ci95_low_ms: f64,
    pub ci95_high_ms: f64,
    /// Trials of this point flagged by the MAD rule.
    pub outliers: usize,
    pub failed: usize,
    pub mean_checkpoint_bytes: Option<f64>,
    pub image_bytes: Option<u64>,
    /// Resident memory of the workload before the checkpoint.
    #[serde(default)]
    pub mean_rss_bytes: Option<f64>,
    /// Checkpoint bytes per second of checkpoint wall time (MiB/s).
    #[serde(default)]
    pub throughput_mib_s: Option<f64>,
    /// Checkpoint bytes per second of CRIU's memdump phase, which includes
    /// writing the pages (memwrite is timed inside it) (MiB/s).
    #[serde(default)]
    pub criu_throughput_mib_s: Option<f64>,
    /// Trials whose restored processes found their memory intact, of those
    /// that checked.
    #[serde(default)]
    pub memory_checked: usize,
    #[serde(default)]
    pub memory_intact: usize,
}

impl PointSummary {
    pub(crate) fn point(&self) -> Point {
        Point {
            children: self.children,
            memory_mib: self.memory_mib,
            threads: self.threads,
            files: self.files,
            filler_mib: self.filler_mib,
        }
    }
}

/// A fit of one engine's operation time against one swept axis, the other
/// axes held at the values of `at` (its coordinate on `axis` is 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationFit {
    pub engine: String,
    pub operation: Operation,
    pub axis: Axis,
    pub at: Point,
    pub fit: Fit,
    /// Lowest and highest value of the axis in the data.
    pub x_min: u32,
    pub x_max: u32,
    /// Measured mean time at the lowest and at the highest value.
    pub low_ms: f64,
    pub high_ms: f64,
}

impl OperationFit {
    /// How much the measured time changes across the swept range, relative
    /// to the time at its low end: the size of the axis's effect. (Measured
    /// means, not the line: a line's intercept can fall below 0.)
    pub(crate) fn relative_change(&self) -> f64 {
        if self.low_ms <= 0.0 {
            0.0
        } else {
            (self.high_ms - self.low_ms) / self.low_ms
        }
    }
}

/// A point whose mean lies off its fitted line (like the seed's 45).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffFit {
    pub engine: String,
    pub operation: Operation,
    pub axis: Axis,
    pub point: Point,
    pub mean_ms: f64,
    pub predicted_ms: f64,
}

/// Where one point's time goes: means over the trials that carry CRIU's
/// statistics. "Above CRIU" is the wall time that CRIU did not account
/// for: the engine's layers (daemon, containerd, runc) and the client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub engine: String,
    pub point: Point,
    pub n: usize,
    pub checkpoint_ms: f64,
    pub freezing_ms: f64,
    /// The application's downtime inside CRIU's dump.
    pub frozen_ms: f64,
    pub memdump_ms: f64,
    pub memwrite_ms: f64,
    pub checkpoint_above_criu_ms: f64,
    pub restore_ms: f64,
    pub criu_restore_ms: f64,
    pub forking_ms: f64,
    pub restore_above_criu_ms: f64,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Phase means per point, for the trials whose records carry them.
fn phases(groups: &BTreeMap<Key, Vec<&TrialRecord>>) -> Vec<PhaseSummary> {
    groups
        .iter()
        .filter_map(|((engine, point), trials)| {
            let with: Vec<&&TrialRecord> = trials
                .iter()
                .filter(|r| {
                    r.measured_ok() && r.criu_frozen_ms.is_some() && r.criu_restore_ms.is_some()
                })
                .collect();
            if with.is_empty() {
                return None;
            }
            let m = |f: fn(&TrialRecord) -> Option<f64>| mean(with.iter().filter_map(|r| f(r)));
            let checkpoint_ms = m(|r| r.checkpoint_ms);
            let freezing_ms = m(|r| r.criu_freezing_ms);
            let frozen_ms = m(|r| r.criu_frozen_ms);
            let restore_ms = m(|r| r.restore_ms);
            let criu_restore_ms = m(|r| r.criu_restore_ms);
            Some(PhaseSummary {
                engine: engine.clone(),
                point: *point,
                n: with.len(),
                checkpoint_ms,
                freezing_ms,
                frozen_ms,
                memdump_ms: m(|r| r.criu_memdump_ms),
                memwrite_ms: m(|r| r.criu_memwrite_ms),
                checkpoint_above_criu_ms: (checkpoint_ms - freezing_ms - frozen_ms).max(0.0),
                restore_ms,
                criu_restore_ms,
                forking_ms: m(|r| r.criu_forking_ms),
                restore_above_criu_ms: (restore_ms - criu_restore_ms).max(0.0),
            })
        })
        .collect()
}

/// Everything the report says, computed from records alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub points: Vec<PointSummary>,
    /// The axes with more than one value in the records.
    pub swept: Vec<Axis>,
    /// Where the time goes, per point (empty when the engine hid CRIU's
    /// statistics).
    pub phases: Vec<PhaseSummary>,
    pub fits: Vec<OperationFit>,
    /// Pearson r between checkpoint and restore time over measured trials,
    /// per engine.
    pub correlation: BTreeMap<String, f64>,
    pub off_fit: Vec<OffFit>,
    pub trials: usize,
    pub warmups: usize,
    pub failed: usize,
    pub unverified: usize,
    pub restore_retries: u32,
    /// ckpt's own time per trial, over the trials that measured it.
    pub overhead: Option<Stats>,
    /// Trials that ran to the end without measuring ckpt's own time
    /// (migration trials).
    #[serde(default)]
    pub overhead_unmeasured: usize,
    /// Distinct image sizes seen (one value: the size did not change).
    pub image_sizes: Vec<u64>,
    /// Per engine and operation, whether times drifted over the run.
    #[serde(default)]
    pub drift: Vec<drift::Drift>,
    /// Migration trials: downtime per method and point, and its growth
    /// with memory.
    #[serde(default)]
    pub migrations: Vec<migration::MigrationSummary>,
    #[serde(default)]
    pub downtime_fits: Vec<migration::DowntimeFit>,
}

impl Analysis {
    /// A point's coordinates on the swept axes, as tables and legends show
    /// them: `N=10`, or `N=10 memory_mib=64`.
    pub(crate) fn label(&self, point: &Point) -> String {
        self.swept
            .iter()
            .map(|a| coordinate(*a, point))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The coordinates on the swept axes other than `axis`.
    pub(crate) fn label_except(&self, point: &Point, axis: Axis) -> String {
        self.swept
            .iter()
            .filter(|a| **a != axis)
            .map(|a| coordinate(*a, point))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn coordinate(axis: Axis, point: &Point) -> String {
    match axis {
        Axis::Children => format!("N={}", point.children),
        other => format!("{}={}", other.name(), other.of(point)),
    }
}

type Key = (String, Point);

fn group(records: &[TrialRecord]) -> BTreeMap<Key, Vec<&TrialRecord>> {
    let mut groups: BTreeMap<Key, Vec<&TrialRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.warmup) {
        groups.entry((r.series(), r.point())).or_default().push(r);
    }
    groups
}

/// Axes with more than one value among the records; children when none
/// is (the seed's axis, so a one-point sweep still has a figure).
pub(crate) fn swept_axes(records: &[TrialRecord]) -> Vec<Axis> {
    let swept: Vec<Axis> = Axis::ALL
        .into_iter()
        .filter(|a| {
            let mut values: Vec<u32> = records.iter().map(|r| a.of(&r.point())).collect();
            values.sort_unstable();
            values.dedup();
            values.len() > 1
        })
        .collect();
    if swept.is_empty() {
        vec![Axis::Children]
    } else {
        swept
    }
}

/// MiB per second from bytes and milliseconds.
fn mib_per_s(bytes: f64, ms: f64) -> Option<f64> {
    (ms > 0.0).then(|| bytes / 1048576.0 / (ms / 1000.0))
}

/// Whether a trial's checkpoint time leaves out moving its memory: a lazy
/// migration's dump ends before the pages stream (the destination fetches
/// them after the restore), so bytes over that time are no throughput.
pub(crate) fn pages_after_restore(r: &TrialRecord) -> bool {
    r.method == Some(crate::model::MigrationMethod::Lazy)
}

/// Means of the derived metrics over a point's good trials: resident
/// memory, and checkpoint throughput over wall time and over CRIU's
/// memory phases (none for trials whose checkpoint does not move the
/// pages).
fn derived(ok: &[&TrialRecord]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let rss: Vec<f64> = ok
        .iter()
        .filter_map(|r| r.rss_bytes)
        .map(|b| b as f64)
        .collect();
    let timed = || ok.iter().filter(|r| !pages_after_restore(r));
    let wall: Vec<f64> = timed()
        .filter_map(|r| mib_per_s(r.checkpoint_bytes? as f64, r.checkpoint_ms?))
        .collect();
    let criu: Vec<f64> = timed()
        .filter_map(|r| mib_per_s(r.checkpoint_bytes? as f64, r.criu_memdump_ms?))
        .collect();
    let m = |v: &[f64]| describe(v).map(|s| s.mean);
    (m(&rss), m(&wall), m(&criu))
}

/// Everything the report says, from the records alone: the summary of
/// each point, the fits along each swept axis and what lies off them, the
/// correlations, and the counts of the whole sweep.
pub(crate) fn analyse(records: &[TrialRecord]) -> Analysis {
    let groups = group(records);
    let points: Vec<PointSummary> = groups
        .iter()
        .flat_map(|((engine, point), trials)| summarise_point(engine, point, trials))
        .collect();
    let engines = engines(&groups);
    let swept = swept_axes(records);
    let (fits, off_fit) = all_fits(records, &engines, &swept, &points);
    let migrations = migration::summarise(records);
    let (overhead, overhead_unmeasured) = overhead(records);
    Analysis {
        downtime_fits: migration::fits(records),
        migrations,
        drift: drift::drifts(records, &points),
        phases: phases(&groups),
        points,
        swept,
        fits,
        correlation: correlations(records, &engines),
        off_fit,
        trials: records.len(),
        warmups: records.iter().filter(|r| r.warmup).count(),
        failed: with_status(records, Status::Failed),
        unverified: with_status(records, Status::Unverified),
        restore_retries: records.iter().map(|r| r.restore_retries).sum(),
        overhead,
        overhead_unmeasured,
        image_sizes: distinct_image_sizes(records),
    }
}

/// What a point's summary rows share whatever the operation: the failures,
/// the sizes, the derived metrics and the memory checks.
struct PointFacts {
    failed: usize,
    mean_checkpoint_bytes: Option<f64>,
    image_bytes: Option<u64>,
    mean_rss_bytes: Option<f64>,
    throughput_mib_s: Option<f64>,
    criu_throughput_mib_s: Option<f64>,
    memory_checked: usize,
    memory_intact: usize,
}

impl PointFacts {
    /// From all of a point's trials and the good ones among them: failed
    /// trials are counted, never averaged, but every trial that checked its
    /// memory counts, failed or not.
    fn of(trials: &[&TrialRecord], ok: &[&TrialRecord]) -> PointFacts {
        let sizes: Vec<f64> = ok
            .iter()
            .filter_map(|r| r.checkpoint_bytes)
            .map(|b| b as f64)
            .collect();
        let (mean_rss_bytes, throughput_mib_s, criu_throughput_mib_s) = derived(ok);
        let checked: Vec<bool> = trials.iter().filter_map(|r| r.memory_ok).collect();
        PointFacts {
            failed: trials.len() - ok.len(),
            mean_checkpoint_bytes: describe(&sizes).map(|s| s.mean),
            image_bytes: ok.first().and_then(|r| r.image_bytes),
            mean_rss_bytes,
            throughput_mib_s,
            criu_throughput_mib_s,
            memory_checked: checked.len(),
            memory_intact: checked.iter().filter(|ok| **ok).count(),
        }
    }
}

/// The summary rows of one point: one per operation that has a time in
/// at least one good trial.
fn summarise_point(engine: &str, point: &Point, trials: &[&TrialRecord]) -> Vec<PointSummary> {
    let ok: Vec<&TrialRecord> = trials.iter().copied().filter(|r| r.measured_ok()).collect();
    let facts = PointFacts::of(trials, &ok);
    Operation::ALL
        .into_iter()
        .filter_map(|op| {
            let values: Vec<f64> = ok.iter().filter_map(|r| op.value(r)).collect();
            point_summary(engine, point, op, &values, &facts)
        })
        .collect()
}

/// One row of summary.csv from an operation's times at a point; None
/// when there are none.
fn point_summary(
    engine: &str,
    point: &Point,
    op: Operation,
    values: &[f64],
    facts: &PointFacts,
) -> Option<PointSummary> {
    let stats = describe(values)?;
    // Throughput is bytes written per checkpoint time: a restore row has none.
    let checkpoint = op == Operation::Checkpoint;
    Some(PointSummary {
        engine: engine.to_string(),
        children: point.children,
        memory_mib: point.memory_mib,
        threads: point.threads,
        files: point.files,
        filler_mib: point.filler_mib,
        mean_rss_bytes: facts.mean_rss_bytes,
        throughput_mib_s: facts.throughput_mib_s.filter(|_| checkpoint),
        criu_throughput_mib_s: facts.criu_throughput_mib_s.filter(|_| checkpoint),
        memory_checked: facts.memory_checked,
        memory_intact: facts.memory_intact,
        operation: op,
        n: stats.n,
        mean_ms: stats.mean,
        sd_ms: stats.sd,
        median_ms: stats.median,
        min_ms: stats.min,
        max_ms: stats.max,
        ci95_low_ms: stats.ci_low,
        ci95_high_ms: stats.ci_high,
        outliers: mad_outliers(values).len(),
        failed: facts.failed,
        mean_checkpoint_bytes: facts.mean_checkpoint_bytes,
        image_bytes: facts.image_bytes,
    })
}

/// The engines in the records, sorted and each once.
fn engines(groups: &BTreeMap<Key, Vec<&TrialRecord>>) -> Vec<String> {
    groups
        .keys()
        .map(|(e, _)| e.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// An engine's trials that count in the statistics: what its fits and its
/// correlation run over.
fn measured<'a>(records: &'a [TrialRecord], engine: &str) -> Vec<&'a TrialRecord> {
    records
        .iter()
        .filter(|r| r.measured_ok() && r.series() == engine)
        .collect()
}

/// Every fit of an operation's time along a swept axis, per engine and
/// slice, and the points that lie off them; in the order engine, axis,
/// slice, operation.
fn all_fits(
    records: &[TrialRecord],
    engines: &[String],
    swept: &[Axis],
    points: &[PointSummary],
) -> (Vec<OperationFit>, Vec<OffFit>) {
    let mut fits = Vec::new();
    let mut off_fit = Vec::new();
    for engine in engines {
        let measured = measured(records, engine);
        for &axis in swept {
            for (at, slice) in slices(&measured, axis) {
                for op in Operation::ALL {
                    let Some(f) = operation_fit(engine, op, axis, at, &slice) else {
                        continue;
                    };
                    let mine = slice_points(points, engine, op, axis, at);
                    off_fit.extend(points_off_fit(&mine, axis));
                    fits.push(f);
                }
            }
        }
    }
    (fits, off_fit)
}

/// The fit of one operation's time along `axis` over one slice, with the
/// measured means at both ends of the range; None when no line fits.
fn operation_fit(
    engine: &str,
    op: Operation,
    axis: Axis,
    at: Point,
    slice: &[&TrialRecord],
) -> Option<OperationFit> {
    let fit = axis_fit(slice, axis, op)?;
    let x_min = slice.iter().map(|r| axis.of(&r.point())).min().unwrap_or(0);
    let x_max = slice.iter().map(|r| axis.of(&r.point())).max().unwrap_or(0);
    let mean_at = |x: u32| {
        mean(
            slice
                .iter()
                .filter(|r| axis.of(&r.point()) == x)
                .filter_map(|r| op.value(r)),
        )
    };
    Some(OperationFit {
        engine: engine.to_string(),
        operation: op,
        axis,
        at,
        x_min,
        x_max,
        low_ms: mean_at(x_min),
        high_ms: mean_at(x_max),
        fit,
    })
}

/// The summaries a fit along `axis` at `at` runs through: the engine's
/// rows for the operation whose other coordinates are those of `at`.
fn slice_points<'a>(
    points: &'a [PointSummary],
    engine: &str,
    op: Operation,
    axis: Axis,
    at: Point,
) -> Vec<&'a PointSummary> {
    points
        .iter()
        .filter(|p| p.engine == engine && p.operation == op && without(p.point(), axis) == at)
        .collect()
}

/// Pearson r between checkpoint and restore time over each engine's
/// measured trials; an engine with too few trials has none.
fn correlations(records: &[TrialRecord], engines: &[String]) -> BTreeMap<String, f64> {
    let mut correlation = BTreeMap::new();
    for engine in engines {
        let pairs: (Vec<f64>, Vec<f64>) = measured(records, engine)
            .iter()
            .filter_map(|r| Some((r.checkpoint_ms?, r.restore_ms?)))
            .unzip();
        if let Some(r) = pearson(&pairs.0, &pairs.1) {
            correlation.insert(engine.clone(), r);
        }
    }
    correlation
}

fn with_status(records: &[TrialRecord], status: Status) -> usize {
    records.iter().filter(|r| r.status == status).count()
}

/// ckpt's own time per trial, over every trial that ran to the end and
/// measured it (an unknown is left out, never counted as 0), and how many
/// such trials did not measure it.
fn overhead(records: &[TrialRecord]) -> (Option<Stats>, usize) {
    let ran: Vec<&TrialRecord> = records
        .iter()
        .filter(|r| r.status != Status::Failed)
        .collect();
    let overheads: Vec<f64> = ran.iter().filter_map(|r| r.overhead_ms).collect();
    (describe(&overheads), ran.len() - overheads.len())
}

/// The image sizes seen, sorted and each once.
fn distinct_image_sizes(records: &[TrialRecord]) -> Vec<u64> {
    let mut image_sizes: Vec<u64> = records.iter().filter_map(|r| r.image_bytes).collect();
    image_sizes.sort_unstable();
    image_sizes.dedup();
    image_sizes
}

/// The point with its coordinate on `axis` set to 0: what the other axes
/// hold fixed.
pub(crate) fn without(mut point: Point, axis: Axis) -> Point {
    axis.set(&mut point, 0);
    point
}

/// The records split by the values of every axis but `axis`: each slice
/// varies along `axis` only.
fn slices<'a>(records: &[&'a TrialRecord], axis: Axis) -> BTreeMap<Point, Vec<&'a TrialRecord>> {
    let mut out: BTreeMap<Point, Vec<&TrialRecord>> = BTreeMap::new();
    for r in records {
        out.entry(without(r.point(), axis)).or_default().push(r);
    }
    out
}

/// Least squares of one operation's time against `axis` over every trial
/// of a slice.
fn axis_fit(slice: &[&TrialRecord], axis: Axis, op: Operation) -> Option<Fit> {
    let (xs, ys): (Vec<f64>, Vec<f64>) = slice
        .iter()
        .filter_map(|r| Some((f64::from(axis.of(&r.point())), op.value(r)?)))
        .unzip();
    fit(&xs, &ys)
}

/// Theil-Sen line through (x, y): the median of all pairwise slopes, and
/// the median intercept. One wild point cannot pull it towards itself, as it
/// pulls a least-squares line, so it is the yardstick for points off the fit.
pub(crate) fn theil_sen(xs: &[f64], ys: &[f64]) -> Option<(f64, f64)> {
    let mut slopes = Vec::new();
    for i in 0..xs.len() {
        for j in i + 1..xs.len() {
            if xs[j] != xs[i] {
                slopes.push((ys[j] - ys[i]) / (xs[j] - xs[i]));
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let slope = median(&slopes);
    let intercepts: Vec<f64> = xs.iter().zip(ys).map(|(x, y)| y - slope * x).collect();
    Some((median(&intercepts), slope))
}

/// Points whose mean is far from the robust line through all the means:
/// further than three robust standard deviations of the residuals, and
/// outside the point's own confidence interval (so that noise within a
/// point never counts).
fn points_off_fit(points: &[&PointSummary], axis: Axis) -> Vec<OffFit> {
    if points.len() < 4 {
        return Vec::new();
    }
    let x = |p: &PointSummary| f64::from(axis.of(&p.point()));
    let xs: Vec<f64> = points.iter().map(|p| x(p)).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.mean_ms).collect();
    let Some((intercept, slope)) = theil_sen(&xs, &ys) else {
        return Vec::new();
    };
    let predict = |p: &PointSummary| intercept + slope * x(p);
    let residuals: Vec<f64> = points.iter().map(|p| p.mean_ms - predict(p)).collect();
    let deviations: Vec<f64> = residuals.iter().map(|r| r.abs()).collect();
    let scale = 1.4826 * median(&deviations);
    points
        .iter()
        .zip(&residuals)
        .filter(|(p, r)| {
            let predicted = predict(p);
            r.abs() > 3.0 * scale && (predicted < p.ci95_low_ms || predicted > p.ci95_high_ms)
        })
        .map(|(p, _)| OffFit {
            engine: p.engine.clone(),
            operation: p.operation,
            axis,
            point: p.point(),
            mean_ms: p.mean_ms,
            predicted_ms: predict(p),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn describes_a_sample_as_by_hand() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample sd sqrt(32/7) = 2.13809,
        // t(7, 0.975) = 2.3646243, half-width = 2.3646243 * 2.1380899 / sqrt(8) = 1.787488.
        let s = describe(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).unwrap();
        assert_eq!(s.n, 8);
        assert!(close(s.mean, 5.0, 1e-12));
        assert!(close(s.sd, 2.138090, 1e-6), "{}", s.sd);
        assert!(close(s.median, 4.5, 1e-12));
        assert_eq!((s.min, s.max), (2.0, 9.0));
        assert!(close(s.ci_low, 5.0 - 1.787488, 1e-5), "{}", s.ci_low);
        assert!(close(s.ci_high, 5.0 + 1.787488, 1e-5));
        let one = describe(&[3.0]).unwrap();
        assert_eq!((one.sd, one.ci_low, one.ci_high), (0.0, 3.0, 3.0));
        assert!(describe(&[]).is_none());
    }

    #[test]
    fn t_quantiles_match_tables() {
        assert!(close(t95(1), 12.7062, 1e-3));
        assert!(close(t95(4), 2.7764, 1e-3));
        assert!(close(t95(30), 2.0423, 1e-3));
    }

    #[test]
    fn fit_recovers_a_line_and_its_uncertainty() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        let exact: Vec<f64> = xs.iter().map(|x| 10.0 + 2.0 * x).collect();
        let f = fit(&xs, &exact).unwrap();
        assert!(close(f.slope, 2.0, 1e-12) && close(f.intercept, 10.0, 1e-12));
        assert!(close(f.r_squared, 1.0, 1e-12));
        assert!(close(f.slope_ci_low, 2.0, 1e-9));
        // y = 1, 3, 2, 5, 4 on x = 1..5: slope 0.8, intercept 0.6, SSE 3.6,
        // R^2 = 1 - 3.6/10 = 0.64, se(slope) = sqrt(3.6/3/10), t(3) = 3.182446.
        let f = fit(&xs, &[1.0, 3.0, 2.0, 5.0, 4.0]).unwrap();
        assert!(close(f.slope, 0.8, 1e-12) && close(f.intercept, 0.6, 1e-12));
        assert!(close(f.r_squared, 0.64, 1e-12));
        let half = 3.182446 * (3.6f64 / 3.0 / 10.0).sqrt();
        assert!(
            close(f.slope_ci_high, 0.8 + half, 1e-5),
            "{}",
            f.slope_ci_high
        );
        assert!(fit(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
        assert!(fit(&[1.0, 2.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn pearson_by_hand() {
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap(),
            1.0,
            1e-12
        ));
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[6.0, 4.0, 2.0]).unwrap(),
            -1.0,
            1e-12
        ));
        // x = 1..5, y = 1,3,2,5,4: sxy = 8, sxx = syy = 10 -> r = 0.8.
        assert!(close(
            pearson(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 3.0, 2.0, 5.0, 4.0]).unwrap(),
            0.8,
            1e-12
        ));
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_none());
    }

    #[test]
    fn theil_sen_ignores_one_wild_point() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        let (intercept, slope) = theil_sen(&xs, &[12.0, 14.0, 116.0, 18.0, 20.0]).unwrap();
        assert!(
            close(slope, 2.0, 1e-12) && close(intercept, 10.0, 1e-12),
            "{intercept} {slope}"
        );
        assert!(theil_sen(&[1.0, 1.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn mad_rule_flags_only_the_wild_value() {
        let values = [200.0, 205.0, 198.0, 202.0, 900.0];
        assert_eq!(mad_outliers(&values), vec![4]);
        assert!(mad_outliers(&[200.0, 205.0, 198.0, 202.0, 210.0]).is_empty());
        assert!(
            mad_outliers(&[1.0, 1.0, 1.0, 1.0]).is_empty(),
            "zero MAD flags nothing"
        );
    }

    fn record(children: u32, ck: f64, rs: f64) -> TrialRecord {
        let spec = crate::sweep::plan::TrialSpec {
            index: 0,
            engine: 0,
            point: Point {
                children,
                ..Point::default()
            },
            repetition: 0,
            warmup: false,
            method: None,
        };
        TrialRecord {
            image_bytes: Some(1000),
            checkpoint_ms: Some(ck),
            restore_ms: Some(rs),
            checkpoint_bytes: Some(100),
            verified: true,
            overhead_ms: Some(1.0),
            status: Status::Ok,
            ..TrialRecord::new("r", &spec, "docker")
        }
    }

    #[test]
    fn overhead_leaves_unknowns_out_and_lazy_moves_have_no_throughput() {
        let mut records: Vec<TrialRecord> = (0..3).map(|_| record(1, 100.0, 150.0)).collect();
        let mut lazy = record(1, 100.0, 150.0);
        (lazy.method, lazy.overhead_ms) = (Some(crate::model::MigrationMethod::Lazy), None);
        records.extend([lazy.clone(), lazy]);
        let a = analyse(&records);
        let o = a.overhead.as_ref().unwrap();
        assert_eq!((o.n, o.mean, a.overhead_unmeasured), (3, 1.0, 2));
        let throughput = |engine: &str| {
            let p = a
                .points
                .iter()
                .find(|p| p.engine == engine && p.operation == Operation::Checkpoint);
            p.unwrap().throughput_mib_s
        };
        assert!(throughput("docker").is_some());
        assert_eq!(
            throughput("docker+lazy"),
            None,
            "lazy is its own series, without a rate"
        );
        let moves_only = analyse(&records[3..]);
        assert_eq!(
            (moves_only.overhead, moves_only.overhead_unmeasured),
            (None, 2)
        );
    }

    #[test]
    fn analysis_flags_the_point_off_the_line() {
        let mut records = Vec::new();
        for n in [1u32, 5, 10, 15, 20, 25] {
            for jitter in [-1.0, 0.0, 1.0] {
                let base = 100.0 + 10.0 * n as f64 + jitter;
                let ck = if n == 20 { base + 150.0 } else { base };
                records.push(record(n, ck, ck * 1.5));
            }
        }
        let mut warm = record(1, 5000.0, 5000.0);
        warm.warmup = true;
        records.push(warm);
        let mut bad = record(5, 0.0, 0.0);
        bad.status = Status::Failed;
        records.push(bad);
        let a = analyse(&records);
        assert_eq!(a.points.len(), 12);
        let p5 = a
            .points
            .iter()
            .find(|p| p.children == 5 && p.operation == Operation::Checkpoint)
            .unwrap();
        assert_eq!(
            (p5.n, p5.failed),
            (3, 1),
            "failed trials are counted, not averaged"
        );
        let p1 = a
            .points
            .iter()
            .find(|p| p.children == 1 && p.operation == Operation::Checkpoint)
            .unwrap();
        assert!(
            close(p1.mean_ms, 110.0, 1e-9),
            "warm-ups are excluded: {}",
            p1.mean_ms
        );
        let off: Vec<u32> = a
            .off_fit
            .iter()
            .filter(|o| o.operation == Operation::Checkpoint)
            .map(|o| o.point.children)
            .collect();
        assert_eq!(off, vec![20]);
        assert_eq!(a.swept, vec![Axis::Children]);
        assert_eq!(a.fits.len(), 2);
        assert!(close(a.correlation["docker"], 1.0, 1e-9));
        assert_eq!((a.warmups, a.failed), (1, 1));
        assert_eq!(a.image_sizes, vec![1000]);
    }
}
