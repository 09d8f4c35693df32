//! The `ckpt` command line: arguments, and a file per sub-command that
//! wires the library's parts together for it.

mod compare;
mod container;
mod demo;
mod diff;
mod doctor;
mod export;
mod gc;
mod inspect;
mod migrate;
mod program;
mod sweep;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use ckpt::engine::any::AnyEngine;
use ckpt::engine::Engine;
use ckpt::model::EngineKind;
use ckpt::run::{CutShort, Interrupted, RunId};
use ckpt::stdout::StdoutClosed;

#[derive(Parser, Debug)]
#[command(
    name = "ckpt",
    version,
    about = "Container checkpoint/restore: run, checkpoint, restore, verify, measure, report"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The lifecycle demo: a Fibonacci printer checkpointed and restored in nine timed steps
    Demo(demo::DemoArgs),
    /// Check the kernel, CRIU, the engines and the workload binary, with a fix for each failure
    Doctor {
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint and restore time against the number of child processes (the course report's experiment), or any grid over processes, memory, threads, open files and image size, on your own image too
    Sweep(Box<sweep::SweepArgs>),
    /// Rebuild summary, figures and report of a results directory, or make one report from several hosts' directories (no engine needed)
    Report {
        /// Directories written by `ckpt sweep`; several (runs on several hosts) make one report in --output
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the report instead of into the directory itself; needed with several directories
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Write a checkpoint archive that Podman, CRI-O and checkpointctl read (or a checkpoint OCI image) of a fresh workload, removing everything else afterwards
    Export(Box<export::ExportArgs>),
    /// Show what a checkpoint holds: process tree, memory, open files, sockets, CRIU statistics
    Inspect(inspect::InspectArgs),
    /// Compare two results directories: time ratios and slopes with confidence intervals, Holm-corrected verdicts, environment differences
    Compare(compare::CompareArgs),
    /// What changed between two checkpoints of the same workload: processes, memory areas and pages, open files, sockets, sizes, CRIU statistics
    Diff(diff::DiffArgs),
    /// Remove what killed ckpt runs left behind: containers, images, run directories, migration namespaces and second daemons, checkpoints a killed `ckpt serve` received, ckpt's lines in /etc/criu/runc.conf (only ckpt's own, only of runs whose process is gone)
    Gc,
    /// Move a running container to another host (a `ckpt serve` elsewhere, or a throwaway one on this machine) and measure the downtime
    Migrate(Box<migrate::MigrateArgs>),
    /// The destination of migrations: receive, restore and check them (mutual TLS)
    Serve(migrate::ServeArgs),
    /// Make a CA and certificates for `ckpt serve` and `ckpt migrate --to` on two hosts of yours
    Credentials(migrate::CredentialsArgs),
    /// The program `ckpt doctor`'s sockets check checkpoints: a TCP connection to itself, busy
    #[command(hide = true)]
    HoldSockets,
}

/// Parses a duration such as `4s` or `250ms` and refuses zero.
pub(crate) fn positive_duration(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text)
        .or_else(|_| {
            text.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|_| ())
        })
        .map_err(|_| format!("'{text}' is not a duration (examples: 4s, 500ms, 1m)"))?;
    if parsed.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(parsed)
}

/// Runs a sub-command; returns the process exit status.
pub async fn dispatch(cli: Cli) -> Result<u8> {
    let result = match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Doctor { json } => doctor::run(json).await,
        Command::Sweep(args) => sweep::run(*args).await,
        Command::Report { dirs, output } => sweep::report(&dirs, output.as_deref()).await,
        Command::Export(args) => export::run(*args).await,
        Command::Inspect(args) => inspect::run(args).await,
        Command::Compare(args) => compare::run(args).await,
        Command::Diff(args) => diff::run(args).await,
        Command::Gc => gc::run().await,
        Command::Migrate(args) => migrate::migrate(*args).await,
        Command::Serve(args) => migrate::serve(args).await,
        Command::Credentials(args) => migrate::credentials(args),
        Command::HoldSockets => ckpt::host::sockets::hold_sockets().map(|()| 0),
    };
    // A reader that closed ckpt's stdout (`| head`) has what it wanted:
    // the command stopped there and cleaned up, nothing more to say.
    if let Err(e) = &result {
        if e.downcast_ref::<StdoutClosed>().is_some() {
            return Ok(0);
        }
    }
    // A signal between two steps ends the command like an error does
    // (everything it made is gone by then), with the signal's exit status.
    match result {
        Err(e) => match e.downcast_ref::<Interrupted>() {
            Some(Interrupted(signal)) if e.downcast_ref::<CutShort>().is_some() => {
                eprintln!("ckpt: stopped at once by {signal} in the middle of a step; it removed what it found of its own: run `ckpt gc` to remove anything else that step left");
                Ok(signal.exit_code() as u8)
            }
            Some(Interrupted(signal)) => {
                eprintln!("ckpt: stopped by {signal} after finishing its current step; nothing it created is left");
                Ok(signal.exit_code() as u8)
            }
            None => Err(e),
        },
        ok => ok,
    }
}

/// After a second signal dropped a move or an export in the middle of a
/// step: removes by search, as `ckpt gc` does, what that step may have left
/// on `kind`'s engine and in ckpt's run directories (this process counts as
/// gone already: its own objects are found with the dead runs').
pub(crate) async fn clean_cut_short<T>(kind: Option<EngineKind>, outcome: Result<T>) -> Result<T> {
    let Err(e) = outcome else {
        return outcome;
    };
    if e.downcast_ref::<CutShort>().is_none() {
        return Err(e);
    }
    if let Some(kind) = kind {
        if let Err(failed) = ckpt::engine::any::remove_orphans(kind).await {
            eprintln!("ckpt: cleaning up {kind} failed: {failed:#}");
        }
    }
    for cleaned in [
        ckpt::engine::os::netns::remove_orphans(),
        ckpt::migrate::remove_orphans(),
    ] {
        if let Err(failed) = cleaned {
            eprintln!("ckpt: cleaning up failed: {failed:#}");
        }
    }
    Err(e)
}

/// Removes every object of `run` from every engine; true when all went.
pub(crate) async fn clean_run(engines: &[AnyEngine], run: &RunId) -> bool {
    let mut clean = true;
    for engine in engines {
        clean &= report_cleanup(run, engine.remove_run(run).await);
    }
    clean
}

/// Says what cleanup had to remove (objects a failed or interrupted run
/// left). A cleanup failure is printed, not returned, so that it never hides
/// the error that ended the run; returns whether cleanup succeeded.
pub(crate) fn report_cleanup(run: &RunId, result: Result<usize>) -> bool {
    match result {
        Ok(0) => true,
        Ok(n) => {
            eprintln!("ckpt: removed {n} object(s) left by run {run}");
            true
        }
        Err(e) => {
            eprintln!("ckpt: error: cleaning up run {run} failed: {e:#}; run `ckpt gc` to finish");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_zero_is_refused() {
        assert_eq!(positive_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(positive_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(positive_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("soon").is_err());
    }
}
