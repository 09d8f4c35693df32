//! `ckpt demo`: the seed's lifecycle demo on one engine.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{clean_run, positive_duration};
use ckpt::demo::{self, DemoOptions};
use ckpt::engine::any;
use ckpt::host::doctor;
use ckpt::model::EngineKind;
use ckpt::run::{self as cleanup, Interrupted, RunId, Stop};

#[derive(clap::Args, Debug)]
pub(super) struct DemoArgs {
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

pub(super) async fn run(args: DemoArgs) -> Result<u8> {
    let stop = Stop::watch();
    doctor::require_engines(&[args.engine]).await?;
    let run = RunId::new();
    let (mut engines, _) = any::open(&[args.engine], &run, None).await?;
    let engine = engines.pop().context("no engine opened")?;
    if let Err(Interrupted(signal)) = stop.check() {
        clean_run(std::slice::from_ref(&engine), &run).await;
        eprintln!("ckpt demo: interrupted by {signal} before it began");
        return Ok(signal.exit_code() as u8);
    }
    let options = DemoOptions {
        interval: args.interval,
        run_for: args.run_for.unwrap_or(args.interval * 3),
    };
    let outcome = cleanup::run_stoppable(&stop, demo::run(&engine, &run, &options, &stop)).await;
    let cleaned = clean_run(std::slice::from_ref(&engine), &run).await;
    match outcome {
        Ok(outcome) => {
            ckpt::stdout::println(&demo::describe(&outcome.continuity))?;
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
