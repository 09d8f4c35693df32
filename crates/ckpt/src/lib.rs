//! ckpt: run workloads in containers, checkpoint and restore them with CRIU,
//! check that the restored program carries on, and measure every step.
//!
//! The flow goes one way: `plan` (the grid of trials) -> `runner` (one
//! trial against an `engine`) -> `records` (one row per trial, flushed as it
//! ends) -> `analysis` -> `plot` and `report`. Analysis and output read only
//! records, so `ckpt report DIR` works without any engine.

pub mod analysis;
pub mod cleanup;
pub mod demo;
pub mod doctor;
pub mod engine;
pub mod envinfo;
pub mod inspect;
pub mod plan;
pub mod plot;
pub mod proctree;
pub mod records;
pub mod report;
pub mod runner;
pub mod sweep;
pub mod template;
pub mod workload;
