//! "Observations": sentences written from the numbers, in the seed's order.

use super::steadiness::steadiness_sentences;
use super::{mib, Report};
use crate::analysis::{Operation, OperationFit};
use crate::model::EngineKind;
use crate::output::plot::capitalised;

/// An engine's retry waits as prose: "100, 400 and 1500".
fn retry_delays_text(engine: EngineKind) -> String {
    match engine.restore_retry_delays_ms() {
        [] => "no".into(),
        [only] => only.to_string(),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(u64::to_string).collect();
            format!("{} and {last}", rest.join(", "))
        }
    }
}

impl Report<'_> {
    /// Observations written from the numbers, in the seed's order.
    pub(super) fn observations(&self) -> Vec<String> {
        let a = self.analysis;
        let mut out: Vec<String> = self.image_size_sentence().into_iter().collect();
        out.extend(a.fits.iter().map(|f| self.fit_sentence(f)));
        out.extend(
            a.correlation
                .iter()
                .map(|(e, r)| correlation_sentence(e, *r)),
        );
        out.extend(self.off_fit_sentences());
        out.extend(self.outlier_sentence());
        out.extend(
            steadiness_sentences(&a.drift)
                .iter()
                .map(|s| format!("{}.", capitalised(s))),
        );
        out.push(self.trials_sentence());
        out.extend(self.memory_check_sentence());
        out.extend(self.overhead_sentence());
        out.extend(self.checkpoint_size_sentence());
        out
    }

    /// Whether the image size changed; nothing when no trial measured it.
    fn image_size_sentence(&self) -> Option<String> {
        match self.analysis.image_sizes.as_slice() {
            [] => None,
            [one] => Some(format!(
                "The image size stays constant ({}): the processes, their memory and files belong to the container, not the image.",
                mib(*one as f64)
            )),
            many => Some(format!(
                "The image size varied between {} and {}.",
                mib(many[0] as f64),
                mib(many[many.len() - 1] as f64)
            )),
        }
    }

    /// One sentence per point off its line, or one saying there is none.
    fn off_fit_sentences(&self) -> Vec<String> {
        let a = self.analysis;
        if a.off_fit.is_empty() {
            return vec![
                "No point lies off its fitted line beyond its own confidence interval.".into(),
            ];
        }
        a.off_fit
            .iter()
            .map(|o| format!(
                "Anomaly: {} {} at {} averaged {:.1} ms where a robust (Theil-Sen) line along {} through the other points predicts {:.1} ms.",
                o.engine,
                o.operation.name(),
                a.label(&o.point),
                o.mean_ms,
                o.axis.name(),
                o.predicted_ms
            ))
            .collect()
    }

    fn outlier_sentence(&self) -> Option<String> {
        let outliers: usize = self.analysis.points.iter().map(|p| p.outliers).sum();
        (outliers > 0).then(|| format!("{outliers} single trial time(s) were outliers within their point (MAD rule); they are kept in the statistics and shown here."))
    }

    /// How many trials ran, failed and were retried.
    fn trials_sentence(&self) -> String {
        let a = self.analysis;
        format!(
            "{} trial(s) in all ({} warm-up): {} failed, {} ran but failed verification; {} restore retr(ies) after containerd's transient \
             'content already exists' error (Docker retries after {} ms).",
            a.trials,
            a.warmups,
            a.failed,
            a.unverified,
            a.restore_retries,
            retry_delays_text(EngineKind::Docker)
        )
    }

    /// Nothing when no trial checked the memory (the processes held none).
    fn memory_check_sentence(&self) -> Option<String> {
        let (checked, intact) = self.memory_checks();
        (checked > 0).then(|| format!(
            "Memory check after the restore: {intact} of {checked} trial(s) found every process's memory intact (checksum recomputed)."
        ))
    }

    /// Over the trials that measured it; migration trials do not, and an
    /// unknown is never a 0 in the mean.
    fn overhead_sentence(&self) -> Option<String> {
        let unmeasured = self.analysis.overhead_unmeasured;
        let Some(o) = self.analysis.overhead.as_ref() else {
            return (unmeasured > 0)
                .then(|| "ckpt's own time per trial is not measured for migration trials.".into());
        };
        let over = match unmeasured {
            0 => String::new(),
            _ => format!(" over the {} trial(s) that measured it", o.n),
        };
        let rest = match unmeasured {
            0 => String::new(),
            k => format!("; not measured for the {k} migration trial(s)"),
        };
        Some(format!(
            "ckpt's own time per trial (outside engine calls and waits){over}: mean {:.2} ms, max {:.2} ms{rest}.",
            o.mean, o.max
        ))
    }

    /// The checkpoint size at the first and the last point.
    fn checkpoint_size_sentence(&self) -> Option<String> {
        let sizes = self.checkpoint_sizes();
        let (first, last) = (sizes.first()?, sizes.last()?);
        Some(format!(
            "The checkpoint on disk ranges from {} at {} to {} at {}.",
            mib(first.1),
            first.0,
            mib(last.1),
            last.0
        ))
    }

    fn memory_checks(&self) -> (usize, usize) {
        self.rows(Operation::Checkpoint)
            .iter()
            .fold((0, 0), |(c, i), p| {
                (c + p.memory_checked, i + p.memory_intact)
            })
    }

    /// One fit in words: direction, size per unit of the axis, fit quality.
    fn fit_sentence(&self, f: &OperationFit) -> String {
        let fit = &f.fit;
        let growth = if fit.slope_ci_low > 0.0 {
            "grows"
        } else if fit.slope_ci_high < 0.0 {
            "falls"
        } else {
            "shows no significant trend"
        };
        let shape = if fit.r_squared >= 0.9 {
            "a line fits it well"
        } else if fit.r_squared >= 0.5 {
            "a line explains part of the variation"
        } else {
            "a line explains little of the variation"
        };
        let at = self.analysis.label_except(&f.at, f.axis);
        let at = if at.is_empty() {
            String::new()
        } else {
            format!(" (at {at})")
        };
        format!(
            "{} {} time{at} {growth} with the {}: {:.3} ms per {} (95% CI {:.3} to {:.3}), intercept {:.1} ms, R² = {:.3}; {shape}.",
            f.engine,
            f.operation.name(),
            f.axis.title(),
            fit.slope,
            f.axis.unit(),
            fit.slope_ci_low,
            fit.slope_ci_high,
            fit.intercept,
            fit.r_squared
        )
    }

    fn checkpoint_sizes(&self) -> Vec<(String, f64)> {
        self.rows(Operation::Checkpoint)
            .iter()
            .filter_map(|p| Some((self.analysis.label(&p.point()), p.mean_checkpoint_bytes?)))
            .collect()
    }
}

/// How strongly an engine's checkpoint and restore times go together.
fn correlation_sentence(engine: &str, r: f64) -> String {
    let strength = match r.abs() {
        x if x >= 0.7 => "strongly",
        x if x >= 0.4 => "moderately",
        _ => "weakly",
    };
    // A sweep makes both times grow with the same parameters, so a
    // correlation says little about single trials; the sentence says so.
    let why = if r >= 0.4 {
        "; much of this is their shared dependence on the swept parameters, not restore following checkpoint trial by trial"
    } else {
        ""
    };
    format!(
        "{engine}: checkpoint and restore times are {strength} correlated across trials (Pearson r = {r:.3}){why}."
    )
}
