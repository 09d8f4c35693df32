//! "Steadiness": the drift table and figure, and the sentences on drift.

use super::{strings, Block, Report};
use crate::analysis::drift::{self, Drift};

/// The steadiness table.
const DRIFT_COLUMNS: [&str; 8] = [
    "engine",
    "operation",
    "trials",
    "drift (% per 100 trials)",
    "95% CI",
    "change over the run",
    "moved with it",
    "verdict",
];

impl Report<'_> {
    /// "Steadiness": how each engine's times moved over the run, a row per
    /// engine and operation, and the figure.
    pub(super) fn steadiness_blocks(&self) -> Vec<Block> {
        let mut out = vec![
            Block::Heading("Steadiness".into()),
            Block::Para(format!(
                "Whether the machine stayed the same over the run: each measured trial's time divided by its point's mean \
                 (1.0: as fast as its point on average), against the trial's place among its engine's measured trials in the \
                 order they started, and a least-squares line through them. The drift is the line's slope per 100 trials; \
                 the change over the run is what it rises from the first trial to the last. Times drift when the slope's 95% \
                 confidence interval excludes 0 and the change is at least {:.0}%; with fewer than {} trials there is no \
                 verdict. Drift that a shuffled order spreads over every point widens their intervals; a sequential order \
                 hides it in the points' means. Beside each trial ckpt records the host's state (the `host_` columns of the \
                 records); the column whose correlation with the relative time is largest is named when |r| >= {:.1} \
                 (the daemons' CPU times only ever grow, so they follow the run's order whatever the cause).",
                drift::NOTABLE_CHANGE_PCT,
                drift::MIN_TRIALS,
                drift::MOVED_WITH_R
            )),
            self.drift_table(),
        ];
        if let Some(svg) = self.drift_svg {
            let number = self.stall_number() + usize::from(self.stall_shown());
            out.push(Block::Figure(
                crate::output::plot::DRIFT.into(),
                format!("Fig {number} - each measured trial's time over its point's mean, in the order the trials ran{} (dashed: the fitted lines; solid black: 1.0, the point's mean).", self.drift_dots_text()),
                svg.to_string(),
            ));
        }
        out
    }

    /// What a dot of the drift figure is when it is not one trial.
    fn drift_dots_text(&self) -> String {
        match crate::output::plot::drift_run_length(&self.analysis.drift) {
            1 => String::new(),
            run => format!("; each dot is the mean of {run} consecutive trials"),
        }
    }

    /// A row per engine and operation: drift, its interval, the change
    /// over the run, the host column that moved with it, the verdict.
    fn drift_table(&self) -> Block {
        let header = strings(&DRIFT_COLUMNS);
        let rows = self
            .analysis
            .drift
            .iter()
            .map(|d| {
                let mut row = vec![
                    d.engine.clone(),
                    d.operation.name().to_string(),
                    d.relative.len().to_string(),
                ];
                row.extend(match &d.fit {
                    Some(f) => [
                        format!("{:+.1}", f.per_100_pct),
                        format!(
                            "{:+.1} to {:+.1}",
                            f.per_100_ci_low_pct, f.per_100_ci_high_pct
                        ),
                        format!("{:+.1}%", f.change_pct),
                    ],
                    None => ["-", "-", "-"].map(String::from),
                });
                row.push(
                    d.moved_with()
                        .map_or("-".into(), |h| format!("{} (r = {:.2})", h.column, h.r)),
                );
                row.push(drift_verdict(d).into());
                row
            })
            .collect();
        Block::Table(header, rows)
    }
}

/// One engine's operation in a word or three.
fn drift_verdict(d: &Drift) -> &'static str {
    match &d.fit {
        None => "too few trials to tell",
        Some(f) if f.drifting => "drifting",
        Some(_) => "no drift detected",
    }
}

/// What the run's steadiness says, in sentences that start in lower case
/// (they also end `ckpt: warning: ` on the terminal): one per drifting
/// engine and operation; or that times were steady; or that there were
/// too few trials to tell; nothing without measured trials.
pub(crate) fn steadiness_sentences(drifts: &[Drift]) -> Vec<String> {
    let drifting: Vec<String> = drifts
        .iter()
        .filter(|d| d.drifting())
        .filter_map(drift_sentence)
        .collect();
    if !drifting.is_empty() {
        return drifting;
    }
    if drifts.iter().any(|d| d.fit.is_some()) {
        vec![format!(
            "times were steady over the run (no drift beyond {:.0}% detected)",
            drift::NOTABLE_CHANGE_PCT
        )]
    } else if drifts.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "too few measured trials per engine (fewer than {}) to tell whether times drifted over the run",
            drift::MIN_TRIALS
        )]
    }
}

/// "the machine was not steady: docker checkpoint times rose by 26% ...".
fn drift_sentence(d: &Drift) -> Option<String> {
    let f = d.fit.as_ref()?;
    let direction = if f.change_pct > 0.0 { "rose" } else { "fell" };
    let moved = match d.moved_with() {
        Some(h) => format!("; {} moved with it (r = {:.2})", h.column, h.r),
        None if !d.host.is_empty() => format!(
            "; none of the recorded host state moved with it (|r| < {:.1})",
            drift::MOVED_WITH_R
        ),
        None => String::new(),
    };
    Some(format!(
        "the machine was not steady: {} {} times {direction} by {:.0}% over the run ({:+.1}% per 100 trials, 95% CI {:+.1}..{:+.1}){moved}",
        d.engine,
        d.operation.name(),
        f.change_pct.abs(),
        f.per_100_pct,
        f.per_100_ci_low_pct,
        f.per_100_ci_high_pct
    ))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{bare, plan};
    use super::super::Report;
    use crate::host::envinfo::Environment;
    use crate::sweep::plan::SweepPlan;
    use crate::sweep::records::TrialRecord;

    /// The report of `records` with the seed's plan, in Markdown.
    fn markdown_of(records: &[TrialRecord]) -> String {
        let analysis = crate::analysis::analyse(records);
        let plan = SweepPlan {
            children: vec![1, 5, 10, 15, 20],
            memory_mib: vec![0],
            filler_mib: vec![0],
            repeat: 12,
            ..plan()
        };
        let env = Environment::default();
        let report = Report {
            drift_svg: Some("<svg/>"),
            ..bare(&plan, &env, &analysis)
        };
        report.markdown()
    }

    #[test]
    fn warns_about_drift_and_names_the_host_column_that_moved_with_it() {
        use crate::analysis::drift::tests::records as run;
        let steady = markdown_of(&run(60, |_| 1.0));
        assert!(steady.contains("## Steadiness"), "{steady}");
        assert!(
            steady.contains("Times were steady over the run (no drift beyond 5% detected)."),
            "{steady}"
        );
        assert!(!steady.contains("not steady"), "{steady}");
        assert!(steady.contains("](drift.svg)"), "{steady}");
        assert!(
            !steady.contains("consecutive"),
            "a dot is a trial: {steady}"
        );
        let long = markdown_of(&run(1000, |_| 1.0));
        assert!(
            long.contains("each dot is the mean of 3 consecutive trials"),
            "{long}"
        );

        let rising = markdown_of(&run(60, |x| 1.0 + 0.3 * x));
        let sentence = rising
            .lines()
            .find(|l| l.contains("The machine was not steady: docker checkpoint times rose by 2"))
            .unwrap_or_else(|| panic!("{rising}"));
        assert!(
            sentence.contains("per 100 trials, 95% CI +")
                && sentence.ends_with("); host_mounts moved with it (r = 0.99)."),
            "{sentence}"
        );
        assert!(
            rising.contains("| docker | checkpoint | 60 | +4"),
            "{rising}"
        );
        assert!(rising.contains("| drifting |"), "{rising}");

        let few = markdown_of(&run(7, |x| 1.0 + 0.3 * x));
        assert!(few.contains("too few trials to tell"), "{few}");
        assert!(few.contains("Too few measured trials per engine"), "{few}");
        assert!(!few.contains("not steady"), "{few}");
    }
}
