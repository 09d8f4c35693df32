//! What the user sees while a sweep runs: a progress bar, and a line per
//! trial.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::records::{Status, TrialRecord};

/// A progress bar on a terminal; hidden otherwise (the caller then prints
/// a line per trial).
pub(crate) fn bar(total: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} trials  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The remaining time measured from the trials done so far (the estimate
/// printed before the sweep comes from a fixed model of each engine's cost,
/// fitted on one machine; this one is this machine's).
pub(crate) struct Pace {
    started: std::time::Instant,
    todo: usize,
    done: usize,
}

impl Pace {
    pub(crate) fn new(todo: usize) -> Pace {
        Pace {
            started: std::time::Instant::now(),
            todo,
            done: 0,
        }
    }

    /// Counts one more trial done; returns the time the rest would take at
    /// the pace so far.
    pub(crate) fn one_done(&mut self) -> std::time::Duration {
        self.done += 1;
        let left = self.todo.saturating_sub(self.done) as u32;
        self.started.elapsed() / self.done as u32 * left
    }
}

/// "about 1m 20s left", rounded to the second.
pub(crate) fn left(remaining: std::time::Duration) -> String {
    let secs = std::time::Duration::from_secs(remaining.as_secs());
    format!("about {} left", humantime::format_duration(secs))
}

/// One trial in one line: what ran, how long it took, how it ended.
pub(crate) fn one_line(r: &TrialRecord) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    let status = match r.status {
        Status::Ok => "verified".to_string(),
        Status::Unverified => match &r.error {
            Some(why) => format!("NOT verified: {why}"),
            None => "NOT verified".to_string(),
        },
        Status::Failed => format!("FAILED: {}", r.error.as_deref().unwrap_or("")),
    };
    format!(
        "trial {} {} N={}{}{}: checkpoint {}, restore {}, {status}",
        r.trial,
        r.series(),
        r.children,
        point_extras(r),
        if r.warmup { " (warm-up)" } else { "" },
        ms(r.checkpoint_ms),
        ms(r.restore_ms)
    )
}

/// The point's coordinates beyond N, where they are not zero.
fn point_extras(r: &TrialRecord) -> String {
    let p = r.point();
    crate::model::Axis::ALL[1..]
        .iter()
        .filter(|a| a.of(&p) != 0)
        .map(|a| format!(" {}={}", a.name(), a.of(&p)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_so_far_gives_the_time_left() {
        let mut pace = Pace::new(4);
        pace.started -= std::time::Duration::from_secs(10);
        // One trial in 10 s: three more take about 30 s.
        let left_after_one = pace.one_done();
        assert!(
            (29..=31).contains(&left_after_one.as_secs()),
            "{left_after_one:?}"
        );
        pace.done = 3;
        assert_eq!(pace.one_done(), std::time::Duration::ZERO);
        assert_eq!(
            left(std::time::Duration::from_millis(90_400)),
            "about 1m 30s left"
        );
    }
}
