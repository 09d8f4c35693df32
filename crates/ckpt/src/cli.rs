//! Command-line arguments and the glue from each sub-command to the library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use ckpt::cleanup::{self, Interrupted, RunId};
use ckpt::demo::{self, DemoOptions};
use ckpt::doctor;
use ckpt::engine::docker::DockerEngine;
use ckpt::engine::Engine;
use ckpt::envinfo::Environment;
use ckpt::inspect;
use ckpt::plan::{self, Order, SweepPlan};
use ckpt::sweep;

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
    /// The seed's experiment: checkpoint and restore time against the number of child processes
    Sweep(SweepArgs),
    /// Rebuild summary, figures and report of a results directory (no engine needed)
    Report {
        /// A directory written by `ckpt sweep`
        dir: PathBuf,
    },
    /// Show what a checkpoint holds: process tree, memory, open files, CRIU statistics
    Inspect(InspectArgs),
    /// Remove containers and images that killed ckpt runs left behind (only ckpt's own)
    Gc,
}

#[derive(clap::Args, Debug)]
struct InspectArgs {
    /// A checkpoint directory, a Podman export archive, or a Docker container
    target: String,
    /// With a Docker container: the checkpoint's name (default: the newest)
    #[arg(long)]
    checkpoint: Option<String>,
    /// CRIU's work directory holding stats-dump / stats-restore, when it is not the image directory
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Print JSON
    #[arg(long)]
    json: bool,
    /// Show the process tree
    #[arg(long)]
    ps_tree: bool,
    /// Show each process's memory areas
    #[arg(long)]
    mem: bool,
    /// Show each process's open files
    #[arg(long)]
    files: bool,
    /// Show CRIU's dump and restore statistics
    #[arg(long)]
    stats: bool,
}

#[derive(clap::Args, Debug)]
struct SweepArgs {
    /// Numbers of child processes: values and ranges, A..B or A..B:STEP (both ends included)
    #[arg(long, default_value = plan::DEFAULT_CHILDREN)]
    children: String,
    /// Measured trials per point
    #[arg(long, default_value_t = 5)]
    repeat: u32,
    /// Warm-up trials per point (recorded, excluded from the statistics)
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Engine to measure
    #[arg(long, value_enum, default_value_t = EngineName::Docker)]
    engine: EngineName,
    /// Run order: shuffled interleaves the points so that drift cannot pose as a trend
    #[arg(long, value_enum, default_value_t = Order::Shuffled)]
    order: Order,
    /// Seed of the shuffled order (default: random, recorded in plan.json)
    #[arg(long)]
    seed: Option<u64>,
    /// Results directory (default: results/sweep-<run id>)
    #[arg(long, conflicts_with = "resume")]
    output: Option<PathBuf>,
    /// Continue an interrupted sweep in DIR with its own plan
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
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
        Command::Sweep(args) => sweep_command(args).await,
        Command::Report { dir } => report_command(&dir),
        Command::Inspect(args) => inspect_command(args).await,
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

async fn inspect_command(args: InspectArgs) -> Result<u8> {
    let found = inspect::inspect(
        &args.target,
        args.checkpoint.as_deref(),
        args.work_dir.as_deref(),
    )
    .await?;
    let parts = inspect::Parts {
        ps_tree: args.ps_tree,
        mem: args.mem,
        files: args.files,
        stats: args.stats,
    };
    if args.json {
        println!("{}", inspect::to_json(&found, parts)?);
    } else {
        print!("{}", inspect::render(&found, parts));
    }
    Ok(0)
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
    let (engine, _) = DockerEngine::connect_checked().await?;
    let options = DemoOptions {
        interval: args.interval,
        run_for: args.run_for.unwrap_or(args.interval * 3),
    };
    let run = RunId::new();
    let (engine_ref, run_ref) = (&engine, &run);
    let outcome = cleanup::run_stoppable(move |stop| async move {
        demo::run(engine_ref, run_ref, &options, &stop).await
    })
    .await;
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

async fn sweep_command(args: SweepArgs) -> Result<u8> {
    let run = RunId::new();
    // Everything about the input is checked before anything is created.
    let fresh_plan = match &args.resume {
        Some(_) => None,
        None => Some(SweepPlan {
            engine: "docker".into(),
            children: plan::parse_values(&args.children).context("--children")?,
            repeat: args.repeat,
            warmup: args.warmup,
            order: args.order,
            seed: args.seed.unwrap_or_else(rand::random),
        }),
    };
    if let Some(p) = &fresh_plan {
        p.validate()?;
    }
    doctor::require_docker_stack().await?;
    let EngineName::Docker = args.engine;
    let (mut engine, facts) = DockerEngine::connect_checked().await?;
    let prepared = match (fresh_plan, &args.resume) {
        (Some(p), _) => {
            let dir = args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from("results").join(format!("sweep-{run}")));
            sweep::prepare_new(&dir, p, &Environment::collect(Some(&facts)))?
        }
        (None, Some(dir)) => sweep::prepare_resume(dir)?,
        (None, None) => unreachable!("a sweep either has a plan or resumes one"),
    };
    if !prepared.repaired_lines.is_empty() {
        eprintln!(
            "ckpt: repaired the records: dropped cut line(s) {:?}; those trials run again",
            prepared.repaired_lines
        );
    }
    let dir = prepared.dir.clone();
    let total = prepared.plan.trials().len();
    match engine.capture_criu_stats(&run) {
        Ok(true) => {}
        Ok(false) => eprintln!(
            "ckpt: {} already sets CRIU's work-dir: the records will lack CRIU's phases",
            ckpt::engine::criu_stats::RUNC_CONF
        ),
        Err(e) => eprintln!(
            "ckpt: cannot keep CRIU's statistics ({e:#}): the records will lack CRIU's phases"
        ),
    }
    eprintln!(
        "ckpt sweep: run {run}, {} trial(s) to do of {total}, results in {}",
        sweep::remaining(&prepared.plan, &prepared.done).len(),
        dir.display()
    );
    let (engine_ref, run_ref, prepared_ref) = (&engine, &run, &prepared);
    let outcome = cleanup::run_stoppable(move |stop| async move {
        sweep::run_trials(engine_ref, run_ref, prepared_ref, &stop).await
    })
    .await;
    let cleaned = report_cleanup(&run, engine.remove_run(&run).await);
    if let Err(e) = engine.release_criu_stats() {
        eprintln!(
            "ckpt: error: putting back {} failed: {e:#}; run `ckpt gc`",
            ckpt::engine::criu_stats::RUNC_CONF
        );
    }
    let has_records = dir.join(ckpt::records::TRIALS_JSONL).exists();
    let analysis = if has_records {
        Some(sweep::write_outputs(&dir)?)
    } else {
        None
    };
    match outcome {
        Ok(_) => {
            if let Some(a) = &analysis {
                print!("{}", sweep::render_table(a));
            }
            println!("results: {}", dir.display());
            Ok(u8::from(!cleaned))
        }
        Err(e) => {
            let resume = format!("ckpt sweep --resume {}", dir.display());
            match e.downcast_ref::<Interrupted>() {
                Some(Interrupted(signal)) => {
                    eprintln!(
                        "ckpt sweep: interrupted by {signal}; completed trials are kept in {}; continue with: {resume}",
                        dir.display()
                    );
                    Ok(signal.exit_code() as u8)
                }
                None => Err(e.context(format!(
                    "the sweep stopped; completed trials are kept; continue with: {resume}"
                ))),
            }
        }
    }
}

fn report_command(dir: &Path) -> Result<u8> {
    let analysis = sweep::write_outputs(dir)?;
    print!("{}", sweep::render_table(&analysis));
    println!(
        "rebuilt the summary, figures and report in {}",
        dir.display()
    );
    Ok(0)
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
