//! "What drives the time": a sentence per axis, a verdict per fit, the slopes.

use super::{strings, Block, Report, NEGLIGIBLE};
use crate::analysis::{Operation, OperationFit};
use crate::output::plot::capitalised;

impl Report<'_> {
    /// The verdicts in one sentence per axis, for checkpoint time: on
    /// which engines (and fixed values) the axis drives it, and on which
    /// it does not.
    pub(super) fn driver_summary(&self) -> Vec<String> {
        self.analysis
            .swept
            .iter()
            .map(|axis| {
                let fits: Vec<&OperationFit> = self
                    .analysis
                    .fits
                    .iter()
                    .filter(|f| f.axis == *axis && f.operation == Operation::Checkpoint)
                    .collect();
                let drives = |f: &&&OperationFit| {
                    (f.fit.slope_ci_low > 0.0 || f.fit.slope_ci_high < 0.0)
                        && f.relative_change().abs() >= NEGLIGIBLE
                };
                let yes = fits.iter().filter(drives).count();
                let verdict = match (yes, fits.len()) {
                    (_, 0) => "could not be judged (too few trials for a fit)".to_string(),
                    (0, n) => format!("does not drive checkpoint time (0 of {n} fits)"),
                    (y, n) if y == n => format!("drives checkpoint time ({n} of {n} fits)"),
                    (y, n) => {
                        format!("drives checkpoint time in {y} of {n} fits, not in the others")
                    }
                };
                format!("In short: {} {verdict}.", axis.title())
            })
            .collect()
    }

    /// "What drives the time": one verdict per fit.
    pub(super) fn drivers(&self) -> Vec<String> {
        self.analysis.fits.iter().map(|f| self.verdict(f)).collect()
    }

    /// Whether an axis drives an operation's time, said from one fit: the
    /// slope must be significant and the change over the swept range
    /// more than a few per cent.
    fn verdict(&self, f: &OperationFit) -> String {
        let fit = &f.fit;
        let change = f.relative_change();
        let significant = fit.slope_ci_low > 0.0 || fit.slope_ci_high < 0.0;
        let (low, high) = (f.low_ms, f.high_ms);
        let at = self.analysis.label_except(&f.at, f.axis);
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" (at {at})")
        };
        let range = format!(
            "measured {low:.0} ms at {} = {} and {high:.0} ms at {} ({:+.0}%)",
            f.axis.name(),
            f.x_min,
            f.x_max,
            100.0 * change
        );
        let name = format!("the {} {} time{at}", f.engine, f.operation.name());
        if significant && change.abs() >= NEGLIGIBLE {
            format!(
                "{} drives {name}: {:.3} ms per {} (95% CI {:.3} to {:.3}), {range}.",
                capitalised(f.axis.title()),
                fit.slope,
                f.axis.unit(),
                fit.slope_ci_low,
                fit.slope_ci_high
            )
        } else if significant {
            format!(
                "{} barely moves {name}: the slope ({:.4} ms per {}) is significant but small, {range}.",
                capitalised(f.axis.title()),
                fit.slope,
                f.axis.unit()
            )
        } else {
            format!(
                "{} does not drive {name}: the slope's 95% CI ({:.4} to {:.4} ms per {}) includes 0, {range}.",
                capitalised(f.axis.title()),
                fit.slope_ci_low,
                fit.slope_ci_high,
                f.axis.unit()
            )
        }
    }

    /// Every fit: engine, operation, axis, what was held fixed, slope.
    pub(super) fn slope_table(&self) -> Block {
        let header = strings(&[
            "engine",
            "operation",
            "axis",
            "others held at",
            "ms per unit",
            "95% CI",
            "intercept (ms)",
            "R²",
            "change over the range",
        ]);
        let rows = self
            .analysis
            .fits
            .iter()
            .map(|f| {
                let at = self.analysis.label_except(&f.at, f.axis);
                vec![
                    f.engine.clone(),
                    f.operation.name().to_string(),
                    format!("{} (per {})", f.axis.name(), f.axis.unit()),
                    if at.is_empty() { "-".into() } else { at },
                    format!("{:.3}", f.fit.slope),
                    format!("{:.3} to {:.3}", f.fit.slope_ci_low, f.fit.slope_ci_high),
                    format!("{:.1}", f.fit.intercept),
                    format!("{:.3}", f.fit.r_squared),
                    format!("{:+.0}%", 100.0 * f.relative_change()),
                ]
            })
            .collect();
        Block::Table(header, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{bare, plan};
    use super::super::render::escape;
    use super::super::Report;
    use crate::host::envinfo::Environment;
    use crate::model::{Axis, Point};
    use crate::sweep::plan::{SweepPlan, TrialSpec};
    use crate::sweep::records::{Status, TrialRecord};

    /// Checkpoint time grows 10 ms per MiB of memory and ignores the
    /// filler; a little noise so that the intervals are honest.
    fn records() -> Vec<TrialRecord> {
        let mut out = Vec::new();
        for memory in [0u32, 100, 200] {
            for filler in [0u32, 500, 1000] {
                for (rep, noise) in [-2.0, 0.0, 2.0].into_iter().enumerate() {
                    let point = Point {
                        children: 1,
                        memory_mib: memory,
                        filler_mib: filler,
                        ..Point::default()
                    };
                    let spec = TrialSpec {
                        index: out.len(),
                        engine: 0,
                        point,
                        repetition: rep as u32,
                        warmup: false,
                        method: None,
                    };
                    let ms = 100.0 + 10.0 * f64::from(memory) + noise;
                    out.push(TrialRecord {
                        checkpoint_ms: Some(ms),
                        restore_ms: Some(ms),
                        checkpoint_bytes: Some(u64::from(memory) << 20),
                        rss_bytes: Some((u64::from(memory) + 1) << 20),
                        image_bytes: Some(u64::from(filler) << 20),
                        status: Status::Ok,
                        verified: true,
                        ..TrialRecord::new("r", &spec, "docker")
                    });
                }
            }
        }
        out
    }

    #[test]
    fn says_what_drives_the_time_and_what_does_not() {
        let analysis = crate::analysis::analyse(&records());
        assert_eq!(analysis.swept, vec![Axis::MemoryMib, Axis::FillerMib]);
        let plan = plan();
        let env = Environment::default();
        let report = bare(&plan, &env, &analysis);
        let drivers = report.drivers();
        let memory: Vec<&String> = drivers.iter().filter(|d| d.starts_with("Memory")).collect();
        let filler: Vec<&String> = drivers
            .iter()
            .filter(|d| d.starts_with("Image filler"))
            .collect();
        assert_eq!((memory.len(), filler.len()), (6, 6), "{drivers:#?}");
        assert!(
            memory
                .iter()
                .all(|d| d.contains(" drives ") && d.contains("10.000 ms per MiB")),
            "{memory:#?}"
        );
        assert!(
            filler.iter().all(|d| d.contains("does not drive")),
            "{filler:#?}"
        );
        let md = report.markdown();
        assert!(md.contains("| docker | 100 | 500 |"), "{md}");
        assert!(
            md.contains("1.000 bytes of checkpoint per resident byte"),
            "{md}"
        );
        // Both renderings come from the same blocks.
        let html = report.html();
        assert!(html.contains("<h2>What drives the time</h2>"));
        assert!(html.contains(&escape(&drivers[0])));
        // The method names how Docker's containers were networked.
        assert!(md.contains("networking disabled"), "{md}");
        let none = SweepPlan {
            network: crate::model::Network::None,
            ..plan.clone()
        };
        let report = Report {
            plan: &none,
            ..report
        };
        assert!(report.method().contains("`--network none`"));
    }
}
