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
        r.engine,
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
