//! Command-line arguments and the glue from each sub-command to the library.

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use ckpt::cleanup::{self, Interrupted, RunId};
use ckpt::demo::{self, DemoOptions};
use ckpt::doctor;
use ckpt::engine::docker::DockerEngine;
use ckpt::engine::Engine;

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
    Demo(DemoArgs),
    /// Check the kernel, CRIU, the engines and the workload binary, with a fix for each failure
    Doctor {
        /// Print the checks as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove containers and images that killed ckpt runs left behind (only ckpt's own)
    Gc,
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    /// Engine to run the demo on
    #[arg(long, value_enum, default_value_t = EngineName::Docker)]
    engine: EngineName,
    /// Time between two Fibonacci numbers (e.g. 4s, 500ms)
    #[arg(long, default_value = "4s", value_parser = positive_duration)]
    interval: Duration,
    /// How long the program runs before the checkpoint (default: three intervals)
    #[arg(long, value_parser = positive_duration)]
    run_for: Option<Duration>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineName {
    Docker,
}

/// Parses a duration such as `4s` or `250ms` and refuses zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
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
    match cli.command {
        Command::Demo(args) => demo_command(args).await,
        Command::Doctor { json } => doctor_command(json).await,
        Command::Gc => gc_command().await,
    }
}

async fn doctor_command(json: bool) -> Result<u8> {
    let checks = doctor::run_all().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", doctor::render(&checks));
    }
    let failed = checks.iter().any(|c| c.status == doctor::Status::Fail);
    Ok(u8::from(failed))
}

async fn gc_command() -> Result<u8> {
    let (engine, _) = DockerEngine::connect_any().await?;
    let removed = engine.remove_orphans().await?;
    println!("ckpt gc: removed {removed} object(s) left by ckpt runs that are no longer alive");
    Ok(0)
}

async fn demo_command(args: DemoArgs) -> Result<u8> {
    doctor::require_docker_stack().await?;
    let EngineName::Docker = args.engine;
    let engine = DockerEngine::connect().await?;
    let options = DemoOptions {
        interval: args.interval,
        run_for: args.run_for.unwrap_or(args.interval * 3),
    };
    let run = RunId::new();
    let outcome = tokio::select! {
        result = demo::run(&engine, &run, &options) => result,
        signal = cleanup::interrupted() => Err(Interrupted(signal).into()),
    };
    let cleaned = report_cleanup(&run, engine.remove_run(&run).await);
    match outcome {
        Ok(outcome) => {
            println!("{}", demo::describe(&outcome.continuity));
            Ok(u8::from(!(outcome.continuity.holds() && cleaned)))
        }
        Err(e) => match e.downcast_ref::<Interrupted>() {
            Some(Interrupted(signal)) => {
                eprintln!("ckpt demo: interrupted by {signal}; everything it created was removed");
                Ok(signal.exit_code() as u8)
            }
            None => Err(e),
        },
    }
}

/// Says what cleanup had to remove (objects a failed or interrupted run
/// left). A cleanup failure is printed, not returned, so that it never hides
/// the error that ended the run; returns whether cleanup succeeded.
fn report_cleanup(run: &RunId, result: Result<usize>) -> bool {
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
