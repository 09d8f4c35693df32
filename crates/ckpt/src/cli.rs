//! Command-line arguments and the glue from each sub-command to the library.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use ckpt::demo::{self, DemoOptions};
use ckpt::engine::any::{self, AnyEngine};
use ckpt::engine::criu::CriuEngine;
use ckpt::engine::criu_stats::{self, StatsCapture};
use ckpt::engine::moby::DockerEngine;
use ckpt::engine::runc::RuncEngine;
use ckpt::engine::Engine;
use ckpt::host::doctor;
use ckpt::host::envinfo::{self, Environment};
use ckpt::inspect;
use ckpt::model::{EngineKind, Network};
use ckpt::output;
use ckpt::run::{self as cleanup, Interrupted, RunId};
use ckpt::sweep;
use ckpt::sweep::plan::{self, Order, SweepPlan};
use ckpt::sweep::results::{ResultFile, ResultsDir};

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
    /// The seed's experiment (checkpoint and restore time against the number of child processes), or any grid over processes, memory, threads, open files and image size, on your own image too
    Sweep(Box<SweepArgs>),
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
    /// Numbers of child processes (0: the parent alone): values and ranges, A..B or A..B:STEP (both ends included)
    #[arg(long, default_value = plan::DEFAULT_CHILDREN)]
    children: String,
    /// MiB of memory each process writes and keeps resident (values and ranges, 0 allowed)
    #[arg(long, default_value = "0")]
    memory_mib: String,
    /// Extra threads per process (values and ranges)
    #[arg(long, default_value = "0")]
    threads: String,
    /// Open files per process (values and ranges)
    #[arg(long, default_value = "0")]
    files: String,
    /// MiB of incompressible data in an extra image layer (values and ranges)
    #[arg(long, default_value = "0")]
    image_filler_mib: String,
    /// Your own workload: an image already on this machine (docker and podman engines)
    #[arg(long, requires = "cmd")]
    image: Option<String>,
    /// Command for --image; {children}, {memory_mib}, {threads}, {files} and {filler_mib} are replaced per point
    #[arg(long, requires = "image", value_name = "TEMPLATE")]
    cmd: Option<String>,
    /// Regular expression: the workload is ready when a log line matches it
    #[arg(long, requires = "image", value_name = "REGEX")]
    ready_pattern: Option<String>,
    /// Without --ready-pattern: how long to wait before the checkpoint
    #[arg(long, requires = "image", value_parser = positive_duration, default_value = "2s")]
    ready_delay: Duration,
    /// With --ready-pattern: how long to wait for it before the trial fails
    #[arg(long, requires = "ready_pattern", value_parser = positive_duration, default_value = "60s")]
    ready_timeout: Duration,
    /// Regular expression: after the restore a new log line must match it (default: only "still running" is checked)
    #[arg(long, requires = "image", value_name = "REGEX")]
    check_pattern: Option<String>,
    /// Measured trials per point
    #[arg(long, default_value_t = 5)]
    repeat: u32,
    /// Warm-up trials per point (recorded, excluded from the statistics)
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Engines to compare, comma-separated; their trials are interleaved
    #[arg(long, value_enum, value_delimiter = ',', default_value = "docker")]
    engine: Vec<EngineKind>,
    /// Run order: shuffled interleaves the points so that drift cannot pose as a trend
    #[arg(long, value_enum, default_value_t = Order::Shuffled)]
    order: Order,
    /// Docker networking: disabled (no network hook; what runc and criu do)
    /// or none (`--network none`, as the seed's CLI method)
    #[arg(long, value_enum, default_value_t = Network::Disabled)]
    network: Network,
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
    #[arg(long, value_enum, default_value_t = EngineKind::Docker)]
    engine: EngineKind,
    /// Time between two Fibonacci numbers (e.g. 4s, 500ms)
    #[arg(long, default_value = "4s", value_parser = positive_duration)]
    interval: Duration,
    /// How long the program runs before the checkpoint (default: three intervals)
    #[arg(long, value_parser = positive_duration)]
    run_for: Option<Duration>,
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
        Command::Sweep(args) => sweep_command(*args).await,
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
    // Daemon-less engines need nothing running; Docker's part needs dockerd.
    let mut removed = RuncEngine::new(None).remove_orphans().await?;
    removed += ckpt::engine::moby::podman::remove_orphans()?;
    removed += remove_podman_orphans().await;
    removed += CriuEngine::new().remove_orphans().await?;
    let docker = match DockerEngine::connect_any().await {
        Ok((engine, _)) => Some(engine.remove_orphans().await?),
        Err(e) => {
            eprintln!("ckpt gc: skipping Docker: {e:#}");
            removed += criu_stats::remove_orphans()?;
            None
        }
    };
    removed += docker.unwrap_or(0);
    println!("ckpt gc: removed {removed} object(s) left by ckpt runs that are no longer alive");
    Ok(u8::from(docker.is_none()))
}

/// Podman's containers and images of dead runs, through a service of our
/// own (the dead run's service is gone with it). Podman not being installed
/// is not an error for gc.
async fn remove_podman_orphans() -> usize {
    let run = RunId::new();
    let service = match ckpt::engine::moby::podman::Service::start(&run) {
        Ok(service) => service,
        Err(e) => {
            eprintln!("ckpt gc: skipping Podman: {e:#}");
            return 0;
        }
    };
    match DockerEngine::podman(service).await {
        Ok(podman) => podman.remove_orphans().await.unwrap_or_else(|e| {
            eprintln!("ckpt gc: Podman: {e:#}");
            0
        }),
        Err(e) => {
            eprintln!("ckpt gc: skipping Podman: {e:#}");
            0
        }
    }
}

/// Removes every object of `run` from every engine; true when all went.
async fn clean_run(engines: &[AnyEngine], run: &RunId) -> bool {
    let mut clean = true;
    for engine in engines {
        clean &= report_cleanup(run, engine.remove_run(run).await);
    }
    clean
}

async fn demo_command(args: DemoArgs) -> Result<u8> {
    doctor::require_engines(&[args.engine]).await?;
    let run = RunId::new();
    let (mut engines, _) = any::open(&[args.engine], &run, None).await?;
    let engine = engines.pop().context("no engine opened")?;
    let options = DemoOptions {
        interval: args.interval,
        run_for: args.run_for.unwrap_or(args.interval * 3),
    };
    let (engine_ref, run_ref) = (&engine, &run);
    let outcome = cleanup::run_stoppable(move |stop| async move {
        demo::run(engine_ref, run_ref, &options, &stop).await
    })
    .await;
    let cleaned = clean_run(std::slice::from_ref(&engine), &run).await;
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

/// Where a sweep starts from: a new plan for a new directory, or the plan
/// and records of an interrupted sweep.
enum Start {
    New { dir: PathBuf, plan: SweepPlan },
    Resume(sweep::Prepared),
}

impl Start {
    /// Reads and checks the command line; creates nothing.
    fn from_args(args: &SweepArgs, run: &RunId) -> Result<Start> {
        if let Some(dir) = &args.resume {
            return Ok(Start::Resume(sweep::prepare_resume(dir)?));
        }
        let plan = SweepPlan {
            engines: args.engine.clone(),
            children: plan::parse_values(&args.children, 0).context("--children")?,
            memory_mib: plan::parse_values(&args.memory_mib, 0).context("--memory-mib")?,
            threads: plan::parse_values(&args.threads, 0).context("--threads")?,
            files: plan::parse_values(&args.files, 0).context("--files")?,
            filler_mib: plan::parse_values(&args.image_filler_mib, 0)
                .context("--image-filler-mib")?,
            workload: args
                .image
                .clone()
                .map(|image| ckpt::workload::UserWorkload {
                    image,
                    cmd: args.cmd.clone().unwrap_or_default(),
                    ready_pattern: args.ready_pattern.clone(),
                    ready_delay_ms: args.ready_delay.as_millis() as u64,
                    ready_timeout_ms: args.ready_timeout.as_millis() as u64,
                    check_pattern: args.check_pattern.clone(),
                }),
            repeat: args.repeat,
            warmup: args.warmup,
            order: args.order,
            network: args.network,
            seed: args.seed.unwrap_or_else(rand::random),
        };
        plan.validate()?;
        ckpt::workload::Workload::new(plan.workload.as_ref(), &plan.swept_axes())?;
        plan.check_capacity(&envinfo::capacity())?;
        let dir = args
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from("results").join(format!("sweep-{run}")));
        Ok(Start::New { dir, plan })
    }

    /// Whether the workload holds memory, so that the report sets its
    /// throughput against this machine's memory copy bandwidth.
    fn holds_memory(&self) -> bool {
        match self {
            Start::New { plan, .. } => plan.memory_mib.iter().any(|m| *m > 0),
            Start::Resume(_) => false,
        }
    }

    fn plan(&self) -> &SweepPlan {
        match self {
            Start::New { plan, .. } => plan,
            Start::Resume(prepared) => &prepared.plan,
        }
    }

    fn engines(&self) -> &[EngineKind] {
        match self {
            Start::New { plan, .. } => &plan.engines,
            Start::Resume(prepared) => &prepared.plan.engines,
        }
    }

    /// The results directory, created for a new sweep.
    fn prepare(self, env: &Environment) -> Result<sweep::Prepared> {
        match self {
            Start::New { dir, plan } => sweep::prepare_new(&dir, plan, env),
            Start::Resume(prepared) => Ok(prepared),
        }
    }
}

async fn sweep_command(args: SweepArgs) -> Result<u8> {
    let run = RunId::new();
    // Everything about the input and the machine is checked before
    // anything is created.
    let start = Start::from_args(&args, &run)?;
    doctor::require_engines(start.engines()).await?;
    let capture = keep_criu_statistics(&run);
    let opened = match any::open(start.engines(), &run, capture.clone()).await {
        Ok((engines, facts)) => match sweep::check_user_image(&engines, start.plan(), &run).await {
            Ok(()) => {
                let bandwidth = start.holds_memory();
                start
                    .prepare(&Environment::collect(facts.as_ref(), bandwidth))
                    .map(|prepared| (engines, prepared))
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    // `capture` puts /etc/criu/runc.conf back when it drops, on every path.
    let (engines, prepared) = opened?;
    if !prepared.repaired_lines.is_empty() {
        eprintln!(
            "ckpt: repaired the records: dropped cut line(s) {:?}; those trials run again",
            prepared.repaired_lines
        );
    }
    eprintln!(
        "ckpt sweep: run {run}, {} trial(s) to do of {}, results in {}",
        sweep::remaining(&prepared.plan, &prepared.done).len(),
        prepared.plan.trials().len(),
        prepared.results.path().display()
    );
    let (engines_ref, run_ref, prepared_ref) = (&engines[..], &run, &prepared);
    let outcome = cleanup::run_stoppable(move |stop| async move {
        sweep::run_trials(engines_ref, run_ref, prepared_ref, &stop).await
    })
    .await;
    let cleaned = clean_run(&engines, &run).await;
    drop((engines, capture));
    finish_sweep(prepared.results.path(), outcome, cleaned)
}

/// Writes the outputs from whatever was measured, and turns the outcome
/// into an exit status and the message that says how to go on.
fn finish_sweep(dir: &Path, outcome: Result<usize>, cleaned: bool) -> Result<u8> {
    let results = ResultsDir::new(dir);
    let analysis = if results.has(ResultFile::TrialsJsonl) {
        Some(output::write_outputs(&results)?)
    } else {
        None
    };
    let resume = format!("ckpt sweep --resume {}", dir.display());
    match outcome {
        Ok(_) => {
            if let Some(a) = &analysis {
                print!("{}", output::render_table(a));
            }
            println!("results: {}", dir.display());
            Ok(u8::from(!cleaned))
        }
        Err(e) => match e.downcast_ref::<Interrupted>() {
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
        },
    }
}

fn report_command(dir: &Path) -> Result<u8> {
    let analysis = output::write_outputs(&ResultsDir::new(dir))?;
    print!("{}", output::render_table(&analysis));
    println!(
        "rebuilt the summary, figures and report in {}",
        dir.display()
    );
    Ok(0)
}

/// Arranges for CRIU to keep its statistics during the run (see
/// `criu_stats`); says why the records will lack them when it cannot.
fn keep_criu_statistics(run: &RunId) -> Option<Arc<StatsCapture>> {
    match StatsCapture::install(run) {
        Ok(Some(capture)) => Some(Arc::new(capture)),
        Ok(None) => {
            eprintln!(
                "ckpt: {} already sets CRIU's work-dir: the records will lack CRIU's phases",
                criu_stats::RUNC_CONF
            );
            None
        }
        Err(e) => {
            eprintln!(
                "ckpt: cannot keep CRIU's statistics ({e:#}): the records will lack CRIU's phases"
            );
            None
        }
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
