//! The clients' timelines of probed moves: every request against the
//! move's window, tens of thousands of lines for a long move. The sweep
//! keeps one per engine, method and point, of its first measured move that
//! ended well, as `timeline-<trial>.csv` beside the records: what the
//! report's figure of the stall needs, at a size that does not grow with
//! the repetitions (the records hold every move's summary).

use std::collections::HashSet;

use anyhow::{Context, Result};

use super::plan::{SweepPlan, TrialSpec};
use super::records::{Status, TrialRecord};
use super::results::{ResultFile, ResultsDir};
use crate::model::{MigrationMethod, Point};
use crate::probe::Timeline;

/// The engine (index into the plan's), the method and the point.
type Kind = (usize, Option<MigrationMethod>, Point);

fn kind(spec: &TrialSpec) -> Kind {
    (spec.engine, spec.method, spec.point)
}

/// The kinds of move whose timeline is kept.
#[derive(Debug, Default)]
pub(crate) struct Timelines {
    kept: HashSet<Kind>,
}

impl Timelines {
    /// Those the sweep kept before it was resumed.
    pub(crate) fn found(results: &ResultsDir, plan: &SweepPlan) -> Timelines {
        if plan.probe.is_none() {
            return Timelines::default();
        }
        let kept = plan
            .trials()
            .iter()
            .filter(|t| results.has(ResultFile::Timeline(t.index)))
            .map(kind)
            .collect();
        Timelines { kept }
    }

    /// Writes the timeline of `spec`'s move when it is the first measured
    /// one of its kind that ended well; returns whether it did.
    pub(crate) fn offer(
        &mut self,
        results: &ResultsDir,
        (spec, record): (&TrialSpec, &TrialRecord),
        timeline: Option<&Timeline>,
    ) -> Result<bool> {
        let Some(timeline) = timeline else {
            return Ok(false);
        };
        let wanted = !spec.warmup
            && record.status == Status::Ok
            && !timeline.requests.is_empty()
            && !self.kept.contains(&kind(spec));
        if !wanted {
            return Ok(false);
        }
        let file = ResultFile::Timeline(spec.index);
        results
            .write(file, &timeline.to_csv()?)
            .context("the clients' timeline of this move was not kept (the record was)")?;
        self.kept.insert(kind(spec));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Outcome, TimedRequest};

    fn timeline() -> Timeline {
        Timeline {
            window_end_ms: 500.0,
            requests: vec![TimedRequest {
                connection: 0,
                generation: 0,
                sent_ms: -5.0,
                latency_ms: Some(0.4),
                outcome: Outcome::Ok,
            }],
        }
    }

    fn plan() -> SweepPlan {
        SweepPlan {
            migrate: vec![MigrationMethod::Copy, MigrationMethod::Lazy],
            memory_mib: vec![0, 256],
            repeat: 2,
            warmup: 1,
            probe: Some("tcp:7000".into()),
            ..super::super::tests::plan()
        }
    }

    #[test]
    fn the_first_measured_good_move_of_each_kind_is_kept_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let results = ResultsDir::new(dir.path());
        let plan = plan();
        let mut timelines = Timelines::default();
        let mut written = Vec::new();
        for spec in plan.trials() {
            let mut record = TrialRecord::new("r", &spec, "runc");
            // The first measured move at 256 MiB fails: the second is kept.
            let fails = !spec.warmup && spec.repetition == 0 && spec.point.memory_mib == 256;
            record.status = match fails {
                true => Status::Failed,
                false => Status::Ok,
            };
            let offered = (&spec, &record);
            if timelines
                .offer(&results, offered, Some(&timeline()))
                .unwrap()
            {
                assert!(!spec.warmup && record.status == Status::Ok);
                assert_eq!(spec.repetition, u32::from(spec.point.memory_mib == 256));
                written.push(spec.index);
            }
            assert!(!timelines.offer(&results, offered, None).unwrap());
        }
        let kinds = plan.migrate.len() * plan.memory_mib.len() * plan.children.len();
        assert_eq!(written.len(), kinds, "{written:?}");
        for trial in &written {
            let path = results.file(ResultFile::Timeline(*trial));
            let csv = std::fs::read(&path).unwrap();
            assert_eq!(Timeline::from_csv(&csv[..], "t").unwrap(), timeline());
        }
        // Resumed, the sweep finds them and writes no second one.
        let mut again = Timelines::found(&results, &plan);
        assert_eq!(again.kept, timelines.kept);
        for spec in plan.trials().iter().filter(|t| !t.warmup) {
            let mut record = TrialRecord::new("r", spec, "runc");
            record.status = Status::Ok;
            let offered = (spec, &record);
            assert!(!again.offer(&results, offered, Some(&timeline())).unwrap());
        }
    }
}
