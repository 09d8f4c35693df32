//! `ckpt sweep` and `ckpt report`: checks the plan, opens the engines, runs
//! the trials, and writes the outputs from whatever was measured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{clean_run, positive_duration};
use ckpt::engine::any;
use ckpt::engine::criu_stats::{self, StatsCapture};
use ckpt::host::doctor;
use ckpt::host::envinfo::{self, Environment};
use ckpt::model::{EngineKind, MigrationMethod, Network, StatsSource};
use ckpt::output;
use ckpt::run::{self as cleanup, Interrupted, RunId, Stop};
use ckpt::sweep as sweeping;
use ckpt::sweep::plan::{self, Order, SweepPlan, ValueSpec};
use ckpt::sweep::results::{ResultFile, ResultsDir};

#[derive(clap::Args, Debug)]
pub(super) struct SweepArgs {
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
    /// Your own program: an image already in Docker's or Podman's storage (docker, podman and runc engines; never pulled)
    #[arg(long, requires = "cmd")]
    image: Option<String>,
    /// Your program's command (in --image; without --image, a process tree on the host: criu engine); {children}, {memory_mib}, {threads}, {files} and {filler_mib} are replaced per point
    #[arg(long, value_name = "TEMPLATE")]
    cmd: Option<String>,
    /// Regular expression: the workload is ready when a log line matches it
    #[arg(long, requires = "cmd", value_name = "REGEX")]
    ready_pattern: Option<String>,
    /// Without --ready-pattern: how long to wait before the checkpoint
    #[arg(long, requires = "cmd", value_parser = positive_duration, default_value = "2s")]
    ready_delay: Duration,
    /// With --ready-pattern: how long to wait for it before the trial fails
    #[arg(long, requires = "ready_pattern", value_parser = positive_duration, default_value = "60s")]
    ready_timeout: Duration,
    /// Regular expression: after the restore a new log line must match it (default: only "still running" is checked)
    #[arg(long, requires = "cmd", value_name = "REGEX")]
    check_pattern: Option<String>,
    /// Run inside the container once it is ready, before any checkpoint (to load data); the same placeholders as --cmd; must exit 0
    #[arg(long, requires = "cmd", value_name = "CMD")]
    setup_cmd: Option<String>,
    /// The program's own check of its state: run inside the container before the checkpoint and after the restore; the two outputs must be identical (state_ok)
    #[arg(long, requires = "cmd", value_name = "CMD")]
    check_cmd: Option<String>,
    /// Regular expression the after-restore output of --check-cmd must match, instead of equalling the output before
    #[arg(long, requires = "check_cmd", value_name = "REGEX")]
    check_expect: Option<String>,
    /// Checkpoint and restore the program's established TCP connections too (runc and podman; Docker's API cannot)
    #[arg(long, requires = "cmd")]
    tcp_established: bool,
    /// runc: run your program with a writable root filesystem (read-only by default; lazy restores need it)
    #[arg(long, requires = "image")]
    writable_rootfs: bool,
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
    /// or none (`--network none`, as the course report's docker CLI loop)
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
    /// With --resume: run again every trial that failed, not only those whose engine was unreachable
    #[arg(long, requires = "resume")]
    retry_failed: bool,
    /// Every trial moves the container to a throwaway host by these methods instead of checkpoint, stop and restore here: copy, page-server and lazy on runc; copy and page-server on criu; copy on docker and podman
    #[arg(long, value_enum, value_delimiter = ',')]
    migrate: Vec<MigrationMethod>,
    /// With --migrate: shape the migration trials' link to RATE (tc syntax: 1gbit, 100mbit; default: unshaped)
    #[arg(long, value_name = "RATE")]
    link_rate: Option<String>,
    /// With --migrate and --image: keep the service busy across every move with 4 clients on a network of ckpt's (tcp:PORT, http:PORT[/PATH], redis:PORT) and record what they saw (the client_ columns)
    #[arg(long, value_name = "KIND:PORT")]
    probe: Option<String>,
    /// With --probe: the clients' minimum TCP retransmission timeout (default: the kernel's 200 ms)
    #[arg(long, value_name = "DURATION", value_parser = super::positive_duration, requires = "probe")]
    probe_rto_min: Option<std::time::Duration>,
    /// Run a plan estimated to take more than a day
    #[arg(long)]
    accept_long: bool,
}

/// The longest plan that starts without `--accept-long`.
const LONG_PLAN: Duration = Duration::from_secs(24 * 3600);

/// Prints the plan's estimated duration, and refuses a plan past a day
/// unless the user accepted it.
fn check_duration(plan: &SweepPlan, accept_long: bool) -> Result<()> {
    let estimate = plan.estimate();
    let rounded = Duration::from_secs(estimate.as_secs().max(1));
    if estimate > LONG_PLAN && !accept_long {
        anyhow::bail!(
            "the plan's {} trials would take about {} (estimated from each engine's cost), more than a day: narrow the grid, or pass --accept-long to run it anyway",
            plan.trial_count(),
            humantime::format_duration(rounded)
        );
    }
    eprintln!(
        "ckpt sweep: {} trials, estimated {} (a fixed model of each engine's cost per trial, process and MiB, fitted on a 2-core machine, plus a migration's memory at the link's rate; each trial's line gives the time left at this machine's pace)",
        plan.trial_count(),
        humantime::format_duration(rounded)
    );
    Ok(())
}

/// Where a sweep starts from: a new plan for a new directory, or the plan
/// and records of an interrupted sweep.
enum Start {
    New { dir: PathBuf, plan: SweepPlan },
    Resume(sweeping::Prepared),
}

impl Start {
    /// Reads and checks the command line; creates nothing.
    fn from_args(args: &SweepArgs, run: &RunId) -> Result<Start> {
        if let Some(dir) = &args.resume {
            let mut prepared = sweeping::prepare_resume(dir)?;
            prepared.retry_failed = args.retry_failed;
            return Ok(Start::Resume(prepared));
        }
        let children = ValueSpec::parse(&args.children, 0).context("--children")?;
        let threads = ValueSpec::parse(&args.threads, 0).context("--threads")?;
        if args.image.is_none() {
            // A user's program makes what it makes; ckpt's forker makes
            // exactly this many tasks, so it is bounded before anything else.
            plan::check_process_limits(
                children.max(),
                threads.max(),
                &args.engine,
                &envinfo::process_limits(),
            )?;
        }
        let plan = SweepPlan {
            engines: args.engine.clone(),
            children: children.expand().context("--children")?,
            memory_mib: plan::parse_values(&args.memory_mib, 0).context("--memory-mib")?,
            threads: threads.expand().context("--threads")?,
            files: plan::parse_values(&args.files, 0).context("--files")?,
            filler_mib: plan::parse_values(&args.image_filler_mib, 0)
                .context("--image-filler-mib")?,
            workload: args.cmd.clone().map(|cmd| ckpt::workload::UserWorkload {
                // Empty: a program on the host (the criu engine).
                image: args.image.clone().unwrap_or_default(),
                cmd,
                ready_pattern: args.ready_pattern.clone(),
                ready_delay_ms: args.ready_delay.as_millis() as u64,
                ready_timeout_ms: args.ready_timeout.as_millis() as u64,
                check_pattern: args.check_pattern.clone(),
                setup_cmd: args.setup_cmd.clone(),
                check_cmd: args.check_cmd.clone(),
                check_expect: args.check_expect.clone(),
            }),
            repeat: args.repeat,
            warmup: args.warmup,
            order: args.order,
            network: args.network,
            seed: args.seed.unwrap_or_else(rand::random),
            migrate: args.migrate.clone(),
            link_rate: args.link_rate.clone(),
            probe: args.probe.clone(),
            probe_rto_min_ms: args.probe_rto_min.map(|d| d.as_millis() as u64),
            tcp_established: args.tcp_established,
            writable_rootfs: args.writable_rootfs,
        };
        plan.validate()?;
        ckpt::workload::Workload::new(plan.workload.as_ref(), &plan.swept_axes())?;
        plan.check_capacity(&envinfo::capacity())?;
        check_duration(&plan, args.accept_long)?;
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
    fn prepare(self, env: &Environment) -> Result<sweeping::Prepared> {
        match self {
            Start::New { dir, plan } => sweeping::prepare_new(&dir, plan, env),
            Start::Resume(prepared) => Ok(prepared),
        }
    }
}

pub(super) async fn run(args: SweepArgs) -> Result<u8> {
    // From here on SIGINT and SIGTERM are ckpt's to handle, in every phase.
    let stop = Stop::watch();
    let run = RunId::new();
    // Everything about the input and the machine is checked before
    // anything is created.
    let start = Start::from_args(&args, &run)?;
    doctor::require_engines(start.engines()).await?;
    if start.plan().workload.is_some() {
        doctor::require_sockets("a sweep of your own program (--image, --tcp-established)")?;
    }
    stop.check()?;
    // `capture` puts /etc/criu/runc.conf back when it drops, on every path.
    let capture = keep_criu_statistics(&run, start.engines());
    let options = any::Options {
        tcp_established: start.plan().tcp_established,
        writable_rootfs: start.plan().writable_rootfs,
    };
    let (engines, facts) = any::open_with(start.engines(), &run, capture.clone(), options).await?;
    stop.check()?;
    sweeping::check_user_image(&engines, start.plan(), &run).await?;
    stop.check()?;
    let env = Environment::collect(facts.as_ref(), start.holds_memory());
    let prepared = start.prepare(&env)?;
    announce(&run, &prepared);
    let outcome = cleanup::run_stoppable(
        &stop,
        sweeping::run_trials(&engines, &run, &prepared, &stop),
    )
    .await;
    let cleaned = clean_run(&engines, &run).await;
    drop((engines, capture));
    let code = finish_sweep(prepared.results.path(), outcome, cleaned)?;
    // A signal during the analysis waits for it to finish (its outputs are
    // whole), then ends ckpt as the signal asked.
    match stop.check_after_blocking().await {
        Err(Interrupted(signal)) if code == 0 => Ok(signal.exit_code() as u8),
        _ => Ok(code),
    }
}

/// Says what the sweep is about to do, and what was repaired on resume.
fn announce(run: &RunId, prepared: &sweeping::Prepared) {
    if !prepared.repaired_lines.is_empty() {
        eprintln!(
            "ckpt: repaired the records: dropped cut line(s) {:?}; those trials run again",
            prepared.repaired_lines
        );
    }
    eprintln!(
        "ckpt sweep: run {run}, {} trial(s) to do of {}, results in {}",
        sweeping::remaining(&prepared.plan, &prepared.done, prepared.retry_failed).len(),
        prepared.plan.trials().len(),
        prepared.results.path().display()
    );
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
                print_summary(a)?;
            }
            ckpt::stdout::println(&format!("results: {}", dir.display()))?;
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

pub(super) async fn report(dirs: &[PathBuf], output: Option<&Path>) -> Result<u8> {
    let out = report_target(dirs, output)?;
    // A signal during the analysis waits for its outputs to be whole.
    let stop = Stop::watch();
    let analysis = match output {
        None => output::write_outputs(&ResultsDir::new(out))?,
        Some(_) => output::merge::write_merged(dirs, &ResultsDir::new(out))?,
    };
    stop.check_after_blocking().await?;
    print_summary(&analysis)?;
    let what = match (dirs.len(), output) {
        (1, None) => "rebuilt the",
        (1, Some(_)) => "wrote the",
        _ => "wrote the merged",
    };
    ckpt::stdout::println(&format!(
        "{what} summary, figures and report in {}",
        out.display()
    ))?;
    Ok(0)
}

/// Where `ckpt report` writes: into the one directory it reads, or into
/// --output, which several directories need (their report belongs to none
/// of them).
fn report_target<'a>(dirs: &'a [PathBuf], output: Option<&'a Path>) -> Result<&'a Path> {
    match (dirs, output) {
        (_, Some(out)) => Ok(out),
        ([one], None) => Ok(one),
        (many, None) => anyhow::bail!(
            "{} directories make one report, which belongs to none of them: name a new directory for it with --output DIR",
            many.len()
        ),
    }
}

/// The summary table, then a warning per engine and operation whose
/// times drifted over the run (as hyperfine warns about outliers).
fn print_summary(analysis: &ckpt::analysis::Analysis) -> Result<()> {
    ckpt::stdout::print(&output::render_table(analysis))?;
    for warning in output::drift_warnings(analysis) {
        eprintln!("ckpt: warning: {warning}");
    }
    Ok(())
}

/// Arranges for CRIU to keep its statistics during the run (see
/// `criu_stats`); says why the records will lack them when it cannot.
fn keep_criu_statistics(run: &RunId, engines: &[EngineKind]) -> Option<Arc<StatsCapture>> {
    // A killed run's line would otherwise cost this run, and every later
    // one, CRIU's phases.
    match criu_stats::remove_orphans() {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "ckpt: took back the work-dir line(s) of {n} ckpt run(s) that died without cleaning up from {}",
            criu_stats::RUNC_CONF
        ),
        Err(e) => eprintln!(
            "ckpt: cannot take back the lines of dead ckpt runs from {} ({e:#})",
            criu_stats::RUNC_CONF
        ),
    }
    // Only the daemons delete CRIU's work directory: runc and criu keep
    // their statistics in their own, and the host-wide file stays untouched.
    if !engines
        .iter()
        .any(|e| e.stats_source() == StatsSource::RuncConf)
    {
        return None;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_directories_need_an_output_directory() {
        let (a, b) = (PathBuf::from("a"), PathBuf::from("b"));
        let out = Path::new("out");
        let one = std::slice::from_ref(&a);
        assert_eq!(report_target(one, None).unwrap(), a);
        assert_eq!(report_target(one, Some(out)).unwrap(), out);
        assert_eq!(
            report_target(&[a.clone(), b.clone()], Some(out)).unwrap(),
            out
        );
        let err = report_target(&[a, b], None).unwrap_err();
        assert!(err.to_string().contains("with --output DIR"), "{err}");
    }
}
