//! `ckpt compare`: two results directories side by side.

use std::path::PathBuf;

use anyhow::Result;

use ckpt::analysis::compare;
use ckpt::output::compare as out;
use ckpt::sweep::results::ResultsDir;

#[derive(clap::Args, Debug)]
pub(super) struct CompareArgs {
    /// The results directory to compare against (written by `ckpt sweep`)
    a: PathBuf,
    /// The results directory compared with A: ratios are B / A
    b: PathBuf,
    /// Also write compare.md, compare.json and compare.svg/png into DIR
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Print JSON instead of the table
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: CompareArgs) -> Result<u8> {
    let a = out::read_run(&args.a)?;
    let b = out::read_run(&args.b)?;
    let comparison = compare::compare(&a, &b)?;
    if let Some(dir) = &args.output {
        out::write(&ResultsDir::new(dir), &comparison, &a, &b)?;
    }
    if args.json {
        ckpt::stdout::println(&out::to_json(&comparison)?)?;
    } else {
        ckpt::stdout::print(&out::render_table(&comparison))?;
        if let Some(dir) = &args.output {
            ckpt::stdout::println(&format!(
                "wrote compare.md, compare.json and compare.svg/png in {}",
                dir.display()
            ))?;
        }
    }
    Ok(0)
}
