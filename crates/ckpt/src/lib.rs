//! ckpt: run workloads in containers, checkpoint and restore them with CRIU,
//! check that the restored program carries on, and measure every step.
//!
//! The flow goes one way: `sweep` (plan -> trial -> records) drives an
//! `engine` with a `workload`; `analysis` reads the records; `output` turns
//! the analysis into tables, figures and a report. Analysis and output read
//! only records, so `ckpt report DIR` works without any engine. `model`
//! holds the words they all share and depends on nothing.

// stdout is written through `stdout`, which survives a closed pipe.
#![warn(clippy::print_stdout)]

pub mod analysis;
pub mod demo;
pub mod diff;
pub mod engine;
pub mod export;
pub mod host;
pub mod inspect;
pub mod migrate;
pub mod model;
pub mod output;
pub mod probe;
pub mod program;
pub mod run;
pub mod stdout;
pub mod sweep;
pub mod verify;
pub mod workload;
