//! Two sweeps side by side (`ckpt compare A B`): for every engine, grid
//! point and operation measured in both, the ratio of B's time to A's with
//! its 95% confidence interval and p-value from Welch's t on log times;
//! for every fit present in both, the difference of the slopes. Holm's
//! correction runs over each family of tests (times, slopes), so that
//! comparing fifty points does not find a difference by chance alone.
//! Plain data in, plain data out: reading the directories is `output`'s.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::{coordinate, Analysis, Operation, OperationFit};
use crate::host::envinfo::Environment;
use crate::model::{Axis, Point};
use crate::sweep::records::TrialRecord;

/// The familywise error rate every verdict keeps (after Holm).
const ALPHA: f64 = 0.05;

/// One sweep, read back: what `compare` needs of a results directory.
pub struct Run {
    /// How the sweep is named in the output (its directory).
    pub label: String,
    pub env: Environment,
    pub records: Vec<TrialRecord>,
    pub analysis: Analysis,
}

/// What a test concluded, in the words the outputs print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// B takes less time than A.
    #[serde(rename = "faster")]
    Faster,
    #[serde(rename = "slower")]
    Slower,
    /// B's time grows more per unit of the axis than A's.
    #[serde(rename = "steeper")]
    Steeper,
    #[serde(rename = "flatter")]
    Flatter,
    #[serde(rename = "no difference detected")]
    NoDifference,
    /// Too few trials (or points) on one side for a test.
    #[serde(rename = "not tested")]
    NotTested,
}

impl Verdict {
    pub(crate) fn words(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::Steeper => "steeper",
            Verdict::Flatter => "flatter",
            Verdict::NoDifference => "no difference detected",
            Verdict::NotTested => "not tested",
        }
    }
}

/// A difference B - A with its 95% confidence interval and its two-sided
/// p-value from Welch's t (unequal variances).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Welch {
    estimate: f64,
    low: f64,
    high: f64,
    p: f64,
}

/// An estimate's squared standard error and its degrees of freedom.
#[derive(Debug, Clone, Copy)]
struct Spread {
    variance: f64,
    df: f64,
}

/// Welch's t for a difference of two independent estimates, with the
/// Welch-Satterthwaite degrees of freedom.
fn welch(difference: f64, a: Spread, b: Spread) -> Welch {
    let variance = a.variance + b.variance;
    if variance <= 0.0 {
        // Both sides constant: any difference is certain, none is none.
        let p = if difference == 0.0 { 1.0 } else { 0.0 };
        return Welch {
            estimate: difference,
            low: difference,
            high: difference,
            p,
        };
    }
    let df = variance.powi(2) / (a.variance.powi(2) / a.df + b.variance.powi(2) / b.df);
    let se = variance.sqrt();
    let (quantile, p) = match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => (t.inverse_cdf(0.975), 2.0 * t.sf((difference / se).abs())),
        Err(_) => (f64::NAN, f64::NAN),
    };
    Welch {
        estimate: difference,
        low: difference - quantile * se,
        high: difference + quantile * se,
        p: p.min(1.0),
    }
}

/// Holm's step-down adjustment of p-values, returned in the order given:
/// the k-th smallest is multiplied by (m - k + 1), and an adjusted value is
/// never below the one before it in that order. It keeps the chance of any
/// false "different" at the level chosen, whatever the tests' dependence.
fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Mean and Welch spread of a sample: its mean, and the squared standard
/// error of the mean with n - 1 degrees of freedom; None below two values.
fn spread(values: &[f64]) -> Option<(f64, Spread)> {
    let stats = super::describe(values)?;
    (stats.n >= 2).then(|| {
        let n = stats.n as f64;
        let variance = stats.sd.powi(2) / n;
        (
            stats.mean,
            Spread {
                variance,
                df: n - 1.0,
            },
        )
    })
}

/// One engine's operation at one grid point, in both sweeps.
#[derive(Debug, Clone, Serialize)]
pub struct PointComparison {
    pub engine: String,
    pub point: Point,
    /// The point's coordinates on the swept axes (`N=10`).
    pub label: String,
    pub operation: Operation,
    pub n_a: usize,
    pub n_b: usize,
    /// Arithmetic means (ms), as the summary shows them.
    pub mean_a_ms: f64,
    pub mean_b_ms: f64,
    /// B / A: the ratio of geometric means, which the test on log times
    /// estimates.
    pub ratio: f64,
    pub ratio_ci_low: Option<f64>,
    pub ratio_ci_high: Option<f64>,
    pub p: Option<f64>,
    /// p after Holm's correction over every time compared.
    pub p_holm: Option<f64>,
    pub verdict: Verdict,
}

/// One fit (an engine's operation along an axis, the other axes fixed) in
/// both sweeps.
#[derive(Debug, Clone, Serialize)]
pub struct SlopeComparison {
    pub engine: String,
    pub operation: Operation,
    pub axis: Axis,
    /// Where the other axes are held (empty when only `axis` varies).
    pub at: String,
    /// ms per unit of the axis.
    pub slope_a: f64,
    pub slope_b: f64,
    /// B - A with its 95% confidence interval.
    pub difference: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub p: f64,
    /// p after Holm's correction over every slope compared.
    pub p_holm: f64,
    pub verdict: Verdict,
}

/// One fact of env.json in both sweeps.
#[derive(Debug, Clone, Serialize)]
pub struct EnvField {
    pub name: &'static str,
    pub a: Option<String>,
    pub b: Option<String>,
    pub same: bool,
}

/// Everything `ckpt compare` says.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    /// Machine and versions, those that differ first.
    pub environment: Vec<EnvField>,
    /// The axis the figure runs along: the first one A sweeps.
    pub axis: Axis,
    pub points: Vec<PointComparison>,
    pub slopes: Vec<SlopeComparison>,
    /// Engine and point pairs measured in one sweep only.
    pub only_in_a: usize,
    pub only_in_b: usize,
}

impl Comparison {
    /// How many comparisons of times ended in `verdict`.
    pub(crate) fn count(&self, verdict: Verdict) -> usize {
        self.points.iter().filter(|p| p.verdict == verdict).count()
    }
}

/// Compares two sweeps; an error when they share no engine at any grid
/// point (there is nothing to compare).
pub fn compare(a: &Run, b: &Run) -> Result<Comparison> {
    let axes = union_of_swept(&a.analysis, &b.analysis);
    let mut points = point_comparisons(a, b, &axes);
    if points.is_empty() {
        bail!(
            "nothing to compare: {} measured {} and {} measured {}; `ckpt compare` needs the same engine at the same grid point in both",
            a.label,
            measured_summary(&a.analysis, &axes),
            b.label,
            measured_summary(&b.analysis, &axes)
        );
    }
    adjust_points(&mut points);
    let mut slopes = slope_comparisons(&a.analysis, &b.analysis, &axes);
    adjust_slopes(&mut slopes);
    let (pairs_a, pairs_b) = (engine_points(&a.analysis), engine_points(&b.analysis));
    let common = pairs_a.intersection(&pairs_b).count();
    Ok(Comparison {
        a: a.label.clone(),
        b: b.label.clone(),
        environment: environment(&a.env, &b.env),
        axis: a.analysis.swept.first().copied().unwrap_or(Axis::Children),
        only_in_a: pairs_a.len() - common,
        only_in_b: pairs_b.len() - common,
        points,
        slopes,
    })
}

/// The axes either sweep varies, in the usual order: a point's label
/// names its coordinate on each.
fn union_of_swept(a: &Analysis, b: &Analysis) -> Vec<Axis> {
    Axis::ALL
        .into_iter()
        .filter(|axis| a.swept.contains(axis) || b.swept.contains(axis))
        .collect()
}

fn label(axes: &[Axis], point: &Point) -> String {
    axes.iter()
        .map(|a| coordinate(*a, point))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The (engine, point) pairs a sweep has a summary for.
fn engine_points(analysis: &Analysis) -> std::collections::BTreeSet<(String, Point)> {
    analysis
        .points
        .iter()
        .map(|p| (p.engine.clone(), p.point()))
        .collect()
}

/// "docker, runc at N=1, N=10": what a sweep measured, for the error
/// that says two sweeps have nothing in common.
fn measured_summary(analysis: &Analysis, axes: &[Axis]) -> String {
    let pairs = engine_points(analysis);
    if pairs.is_empty() {
        return "no successful trial".into();
    }
    let mut engines: Vec<&str> = pairs.iter().map(|(e, _)| e.as_str()).collect();
    let mut at: Vec<String> = pairs.iter().map(|(_, p)| label(axes, p)).collect();
    engines.dedup();
    at.sort();
    at.dedup();
    format!("{} at {}", engines.join(", "), at.join(", "))
}

/// Log times of each engine, point and operation over the trials that
/// count in the statistics.
fn log_times(records: &[TrialRecord]) -> BTreeMap<(String, Point, Operation), Vec<f64>> {
    let mut out: BTreeMap<_, Vec<f64>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.measured_ok()) {
        for op in Operation::ALL {
            if let Some(ms) = op.value(r).filter(|ms| *ms > 0.0) {
                let key = (r.series(), r.point(), op);
                out.entry(key).or_default().push(ms.ln());
            }
        }
    }
    out
}

/// Every engine, point and operation with a summary in both sweeps,
/// tested but not yet corrected.
fn point_comparisons(a: &Run, b: &Run, axes: &[Axis]) -> Vec<PointComparison> {
    let (logs_a, logs_b) = (log_times(&a.records), log_times(&b.records));
    let mut out = Vec::new();
    for pa in &a.analysis.points {
        let Some(pb) = b.analysis.points.iter().find(|pb| {
            pb.engine == pa.engine && pb.point() == pa.point() && pb.operation == pa.operation
        }) else {
            continue;
        };
        let key = (pa.engine.clone(), pa.point(), pa.operation);
        let empty = Vec::new();
        let la = logs_a.get(&key).unwrap_or(&empty);
        let lb = logs_b.get(&key).unwrap_or(&empty);
        let test = test_logs(la, lb);
        out.push(PointComparison {
            engine: pa.engine.clone(),
            point: pa.point(),
            label: label(axes, &pa.point()),
            operation: pa.operation,
            n_a: pa.n,
            n_b: pb.n,
            mean_a_ms: pa.mean_ms,
            mean_b_ms: pb.mean_ms,
            ratio: geometric_ratio(la, lb).unwrap_or(pb.mean_ms / pa.mean_ms),
            ratio_ci_low: test.map(|t| t.low.exp()),
            ratio_ci_high: test.map(|t| t.high.exp()),
            p: test.map(|t| t.p),
            p_holm: None,
            verdict: Verdict::NotTested,
        });
    }
    out
}

/// exp(mean log B - mean log A).
fn geometric_ratio(la: &[f64], lb: &[f64]) -> Option<f64> {
    let mean = |v: &[f64]| super::describe(v).map(|s| s.mean);
    Some((mean(lb)? - mean(la)?).exp())
}

/// Welch's t on the log times of both sides; None when a side has fewer
/// than two.
fn test_logs(la: &[f64], lb: &[f64]) -> Option<Welch> {
    let (mean_a, spread_a) = spread(la)?;
    let (mean_b, spread_b) = spread(lb)?;
    Some(welch(mean_b - mean_a, spread_a, spread_b))
}

/// Holm over every tested time, and the verdicts it decides.
fn adjust_points(points: &mut [PointComparison]) {
    let tested: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].p.is_some())
        .collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| points[i].p).collect();
    for (&i, adjusted) in tested.iter().zip(holm(&p)) {
        let point = &mut points[i];
        point.p_holm = Some(adjusted);
        point.verdict = decide(
            adjusted,
            point.ratio - 1.0,
            Verdict::Slower,
            Verdict::Faster,
        );
    }
}

/// The verdict of a corrected p-value: the direction of the difference
/// when it is below `ALPHA`.
fn decide(p_holm: f64, difference: f64, up: Verdict, down: Verdict) -> Verdict {
    if p_holm.is_nan() || p_holm >= ALPHA {
        Verdict::NoDifference
    } else if difference > 0.0 {
        up
    } else {
        down
    }
}

/// A slope's standard error from its 95% interval (t with n - 2 df), and
/// those degrees of freedom.
fn slope_spread(f: &OperationFit) -> Spread {
    let df = f.fit.n.saturating_sub(2);
    let se = (f.fit.slope_ci_high - f.fit.slope) / super::t95(df);
    Spread {
        variance: se.powi(2),
        df: df.max(1) as f64,
    }
}

/// Every fit present in both sweeps, tested but not yet corrected.
fn slope_comparisons(a: &Analysis, b: &Analysis, axes: &[Axis]) -> Vec<SlopeComparison> {
    let mut out = Vec::new();
    for fa in &a.fits {
        let Some(fb) = b.fits.iter().find(|fb| {
            fb.engine == fa.engine
                && fb.operation == fa.operation
                && fb.axis == fa.axis
                && fb.at == fa.at
        }) else {
            continue;
        };
        let test = welch(
            fb.fit.slope - fa.fit.slope,
            slope_spread(fa),
            slope_spread(fb),
        );
        let others: Vec<Axis> = axes.iter().copied().filter(|x| *x != fa.axis).collect();
        out.push(SlopeComparison {
            engine: fa.engine.clone(),
            operation: fa.operation,
            axis: fa.axis,
            at: label(&others, &fa.at),
            slope_a: fa.fit.slope,
            slope_b: fb.fit.slope,
            difference: test.estimate,
            ci_low: test.low,
            ci_high: test.high,
            p: test.p,
            p_holm: test.p,
            verdict: Verdict::NotTested,
        });
    }
    out
}

/// Holm over every slope compared, and the verdicts it decides.
fn adjust_slopes(slopes: &mut [SlopeComparison]) {
    let p: Vec<f64> = slopes.iter().map(|s| s.p).collect();
    for (s, adjusted) in slopes.iter_mut().zip(holm(&p)) {
        s.p_holm = adjusted;
        s.verdict = decide(adjusted, s.difference, Verdict::Steeper, Verdict::Flatter);
    }
}

/// How one fact is read from env.json.
type Fact = fn(&Environment) -> Option<String>;

/// The facts of both env.json files, those that differ first.
fn environment(a: &Environment, b: &Environment) -> Vec<EnvField> {
    let facts: [(&'static str, Fact); 12] = [
        ("ckpt", |e| Some(e.ckpt.clone()).filter(|v| !v.is_empty())),
        ("kernel", |e| e.kernel.clone()),
        ("distribution", |e| e.distro.clone()),
        ("CRIU", |e| e.criu.clone()),
        ("Docker", |e| e.docker.clone()),
        ("Docker API", |e| e.docker_api.clone()),
        ("containerd", |e| e.containerd.clone()),
        ("runc", |e| e.runc.clone()),
        ("Podman", |e| e.podman.clone()),
        ("CPU", |e| e.cpu_model.clone()),
        ("cores", |e| e.cores.map(|c| c.to_string())),
        ("memory", |e| {
            e.memory_bytes
                .map(|m| format!("{:.1} GiB", m as f64 / f64::from(1u32 << 30)))
        }),
    ];
    let mut fields: Vec<EnvField> = facts
        .iter()
        .map(|(name, get)| EnvField {
            name,
            same: get(a) == get(b),
            a: get(a),
            b: get(b),
        })
        .collect();
    // A stable sort keeps the order above within each group.
    fields.sort_by_key(|f| f.same);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_matches_the_hand_computed_adjustment() {
        // Sorted: 0.005, 0.01, 0.03, 0.04; times 4, 3, 2, 1: 0.02, 0.03,
        // 0.06, 0.04; running maximum: 0.02, 0.03, 0.06, 0.06.
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        let expected = [0.03, 0.06, 0.06, 0.02];
        for (got, want) in adjusted.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{adjusted:?}");
        }
        // Capped at 1: 2 * 0.5 = 1, and 0.6 may not fall below it.
        assert_eq!(holm(&[0.5, 0.6]), vec![1.0, 1.0]);
        assert_eq!(holm(&[0.2]), vec![0.2]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn welch_matches_tables() {
        // Difference 1, both squared standard errors 0.5 with 9 df: se 1,
        // Welch-Satterthwaite df = 1 / (0.25/9 + 0.25/9) = 18;
        // t(18, 0.975) = 2.100922, P(|t18| > 1) = 0.330565.
        let w = welch(
            1.0,
            Spread {
                variance: 0.5,
                df: 9.0,
            },
            Spread {
                variance: 0.5,
                df: 9.0,
            },
        );
        let expected = [(w.low, 1.0 - 2.100922), (w.high, 3.100922), (w.p, 0.330565)];
        for (got, want) in expected {
            assert!((got - want).abs() < 1e-5, "{w:?}");
        }
        let none = Spread {
            variance: 0.0,
            df: 4.0,
        };
        assert_eq!(welch(0.0, none, none).p, 1.0);
        assert_eq!(welch(0.5, none, none).p, 0.0);
    }

    #[test]
    fn verdicts_follow_the_corrected_p_and_the_sign() {
        let (up, down) = (Verdict::Slower, Verdict::Faster);
        assert_eq!(decide(0.01, 0.2, up, down), Verdict::Slower);
        assert_eq!(decide(0.01, -0.2, up, down), Verdict::Faster);
        assert_eq!(decide(0.05, 0.2, up, down), Verdict::NoDifference);
        assert_eq!(decide(f64::NAN, 0.2, up, down), Verdict::NoDifference);
    }

    #[test]
    fn environments_list_what_differs_first() {
        let a = Environment {
            kernel: Some("6.1".into()),
            criu: Some("4.1".into()),
            ckpt: "0.1.0".into(),
            ..Default::default()
        };
        let b = Environment {
            kernel: Some("6.12".into()),
            ..a.clone()
        };
        let fields = environment(&a, &b);
        assert_eq!(fields[0].name, "kernel");
        assert!(!fields[0].same);
        assert!(fields[1..].iter().all(|f| f.same), "{fields:?}");
    }
}
