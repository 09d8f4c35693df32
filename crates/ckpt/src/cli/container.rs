//! `ckpt migrate --container`: a container of the user's moved to a
//! throwaway host and back, and what each move took.

use anyhow::Result;

use ckpt::migrate::existing::{self, ContainerMove, ContainerOptions};
use ckpt::run::{RunId, Stop};

/// Moves the container there and back; exit status 1 when a move's check
/// failed (the container runs where it started either way).
pub(super) async fn migrate(options: &ContainerOptions, json: bool, stop: &Stop) -> Result<u8> {
    let run = RunId::new();
    // Not cut short by a second signal: the user's container comes home.
    let moved = existing::there_and_back(options, &run, stop).await?;
    if json {
        ckpt::stdout::println(&serde_json::to_string_pretty(&moved)?)?;
    } else {
        ckpt::stdout::print(&describe(&moved))?;
    }
    Ok(u8::from(!moved.verified()))
}

fn describe(m: &ContainerMove) -> String {
    let mut out = format!(
        "container {} ({}, image {}) on {}: to a throwaway host and back\n  prepare      {:>9.1} ms (its image loaded there, its twin made; before the first checkpoint)\n",
        m.container,
        m.id.get(..12).unwrap_or(&m.id),
        m.image,
        m.engine,
        m.prepare_ms
    );
    for leg in &m.moves {
        out.push_str(&format!(
            "  {} -> {}: checkpoint {:.1} ms, copy {:.1} ms ({} bytes), restore {:.1} ms; downtime {:.1} ms; {} process(es){}\n",
            leg.from,
            leg.to,
            leg.checkpoint_ms,
            leg.copy_ms,
            leg.checkpoint_bytes,
            leg.restore_ms,
            leg.downtime_ms,
            leg.processes,
            match (leg.state_ok, &leg.state_problem) {
                (Some(true), _) => "; --check-cmd printed the same as before".to_string(),
                (Some(false), problem) => format!("; STATE CHANGED: {}", problem.as_deref().unwrap_or("")),
                (None, _) => String::new(),
            }
        ));
    }
    for note in &m.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    let state = match m.state_ok {
        Some(true) => "its state intact by --check-cmd",
        Some(false) => "but its state CHANGED (see above)",
        None => "its state unchecked (no --check-cmd)",
    };
    let verdict = match m.verified() {
        true => format!(
            "verified: {} runs here again, same id, {} process(es) as before, {state}",
            m.container, m.processes_before
        ),
        false => format!(
            "NOT verified: {} runs here again, same id, {state}; {} process(es) before",
            m.container, m.processes_before
        ),
    };
    out.push_str(&format!("  {verdict}\n"));
    out
}
