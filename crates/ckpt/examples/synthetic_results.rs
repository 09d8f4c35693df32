//! A synthetic results directory for measuring `ckpt report` and `--resume`
//! at scale (scripts/bench-report), written with ckpt's own plan and record
//! types so that its format is exactly a sweep's.
//!
//!     synthetic_results DIR [REPEAT]    write DIR: 4 engines x N = 1..250 x REPEAT (default 100)
//!     synthetic_results --resume DIR    what `ckpt sweep --resume DIR` reads before its first trial
//!     synthetic_results --resume DIR --report    and the report it writes after its last, the
//!                                       records read at resume still held as the sweep holds them
//!
//! The times grow with N, with noise and a few outliers; the trials start
//! one after another in the plan's shuffled order; every host_ column is
//! filled. Nothing here calls an engine.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use ckpt::host::envinfo::Environment;
use ckpt::model::{EngineKind, Network};
use ckpt::sweep::plan::{Order, SweepPlan, TrialSpec};
use ckpt::sweep::records::{Status, TrialRecord};
use ckpt::sweep::results::ResultFile;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir] if flag == "--resume" => resume(Path::new(dir), false),
        [flag, dir, report] if flag == "--resume" && report == "--report" => {
            resume(Path::new(dir), true)
        }
        [dir] => write(Path::new(dir), 100),
        [dir, repeat] => write(Path::new(dir), repeat.parse().context("REPEAT")?),
        _ => {
            anyhow::bail!("usage: synthetic_results DIR [REPEAT] | synthetic_results --resume DIR")
        }
    }
}

fn plan(repeat: u32) -> SweepPlan {
    SweepPlan {
        engines: vec![
            EngineKind::Docker,
            EngineKind::Podman,
            EngineKind::Runc,
            EngineKind::Criu,
        ],
        children: (1..=250).collect(),
        memory_mib: vec![0],
        threads: vec![0],
        files: vec![0],
        filler_mib: vec![0],
        workload: None,
        repeat,
        warmup: 0,
        order: Order::Shuffled,
        network: Network::Disabled,
        seed: 14,
        migrate: Vec::new(),
        link_rate: None,
        probe: None,
        probe_rto_min_ms: None,
        tcp_established: false,
        writable_rootfs: false,
    }
}

/// Creates DIR as `ckpt sweep` does (plan.json, env.json), then writes a
/// record per trial of the plan to trials.csv and trials.jsonl.
fn write(dir: &Path, repeat: u32) -> Result<()> {
    let plan = plan(repeat);
    let env = Environment {
        cores: Some(2),
        ckpt: env!("CARGO_PKG_VERSION").into(),
        ..Environment::default()
    };
    let prepared = ckpt::sweep::prepare_new(dir, plan, &env)?;
    let results = &prepared.results;
    // Buffered, unlike a sweep's writer, which flushes after every trial.
    let mut csv = csv::Writer::from_writer(private(&results.file(ResultFile::TrialsCsv))?);
    let mut jsonl = BufWriter::new(private(&results.file(ResultFile::TrialsJsonl))?);
    let mut rng = StdRng::seed_from_u64(14);
    let mut clock = DateTime::from_timestamp(1_790_000_000, 0).context("start time")?;
    let trials = prepared.plan.trials();
    for spec in &trials {
        let engine = prepared.plan.engines[spec.engine].name();
        let record = record(spec, engine, clock, &mut rng);
        csv.serialize(&record)?;
        serde_json::to_writer(&mut jsonl, &record)?;
        jsonl.write_all(b"\n")?;
        // The next trial starts when this one's steps are over.
        let took = record.run_ms.unwrap_or(0.0)
            + record.checkpoint_ms.unwrap_or(0.0)
            + record.restore_ms.unwrap_or(0.0)
            + 150.0;
        clock += chrono::Duration::microseconds((took * 1000.0) as i64);
    }
    csv.flush()?;
    jsonl.flush()?;
    println!("{} records in {}", trials.len(), dir.display());
    Ok(())
}

/// A new file, 0600 as a sweep's.
fn private(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path);
    file.with_context(|| format!("creating {}", path.display()))
}

/// Per engine: fixed cost and cost per child (ms) of checkpoint and of
/// restore, roughly as docs/results/engines measured them.
fn costs(engine: &str) -> [f64; 4] {
    match engine {
        "docker" => [180.0, 8.0, 200.0, 10.0],
        "podman" => [120.0, 7.0, 200.0, 9.0],
        "runc" => [105.0, 6.0, 175.0, 8.0],
        _ => [80.0, 5.0, 110.0, 7.0],
    }
}

/// Multiplicative noise of about 5%, and one trial in a hundred twice as
/// slow (what MAD flags).
fn noise(rng: &mut StdRng) -> f64 {
    let jitter = 1.0 + rng.gen_range(-0.05..0.05) + rng.gen_range(-0.05..0.05);
    if rng.gen_bool(0.01) {
        2.0 * jitter
    } else {
        jitter
    }
}

fn record(spec: &TrialSpec, engine: &str, at: DateTime<Utc>, rng: &mut StdRng) -> TrialRecord {
    let n = f64::from(spec.point.children);
    let [ck0, ck1, rs0, rs1] = costs(engine);
    let checkpoint_ms = (ck0 + ck1 * n) * noise(rng);
    let restore_ms = (rs0 + rs1 * n) * noise(rng);
    let frozen = 0.45 * checkpoint_ms;
    let pages = 60 + 25 * u64::from(spec.point.children);
    let processes = spec.point.children + 1;
    let place = spec.index as u64;
    TrialRecord {
        run_id: "20261201-000000-5ca1".into(),
        trial: spec.index,
        engine: engine.into(),
        children: spec.point.children,
        repetition: spec.repetition,
        warmup: spec.warmup,
        started_at: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        image_bytes: Some(1_645_640),
        run_ms: Some(40.0 * noise(rng)),
        ready_ms: Some((2.0 + 0.05 * n) * noise(rng)),
        checkpoint_ms: Some(checkpoint_ms),
        stop_ms: Some((1.0 + 0.1 * n) * noise(rng)),
        restore_ms: Some(restore_ms),
        checkpoint_bytes: Some(200_000 + 80_000 * u64::from(spec.point.children)),
        processes_before: Some(processes),
        processes_after: Some(processes),
        rss_bytes: Some(1_800_000 + 520_000 * u64::from(spec.point.children)),
        verified: true,
        criu_freezing_ms: Some(0.02 * checkpoint_ms),
        criu_frozen_ms: Some(frozen),
        criu_memdump_ms: Some(0.05 * frozen),
        criu_memwrite_ms: Some(0.01 * frozen),
        criu_pages_scanned: Some(pages),
        criu_pages_written: Some(pages * 3 / 4),
        criu_forking_ms: Some(0.01 * restore_ms),
        criu_restore_ms: Some(0.6 * restore_ms),
        criu_pages_restored: Some(pages / 2),
        overhead_ms: Some(0.8 * noise(rng)),
        status: Status::Ok,
        host_memcg_dying: Some(place / 50),
        host_mounts: Some(30 + rng.gen_range(0..3)),
        host_netns: Some(0),
        host_content_items: Some(40 + place / 1000),
        host_dockerd_rss_kib: Some(80_000 + place / 10),
        host_dockerd_cpu_ms: Some(5_000 + 30 * place),
        host_containerd_rss_kib: Some(40_000 + place / 20),
        host_containerd_cpu_ms: Some(3_000 + 20 * place),
        host_mem_available_mib: Some(22_000 - place / 100),
        host_load1: Some(1.0 + rng.gen_range(0.0..1.0)),
        ..blank()
    }
}

/// A record with nothing in it, for the fields a synthetic trial leaves
/// empty (TrialRecord::new belongs to the crate): every Option field
/// missing from JSON reads as None.
fn blank() -> TrialRecord {
    serde_json::from_str(
        r#"{"run_id":"","trial":0,"engine":"","children":0,"repetition":0,"warmup":false,
            "started_at":"","restore_retries":0,"verified":false,"overhead_ms":0,"status":"failed"}"#,
    )
    .expect("a blank record parses")
}

/// What `ckpt sweep --resume DIR` does before its first trial: reads the
/// plan and the records (repairing cut lines), then works out what is left;
/// with `report`, also what it does after its last trial (no trial runs).
fn resume(dir: &Path, report: bool) -> Result<()> {
    let start = Instant::now();
    let prepared = ckpt::sweep::prepare_resume(dir)?;
    let left = ckpt::sweep::remaining(&prepared.plan, &prepared.done, false);
    println!(
        "resume: {} record(s) read, {} cut line(s) dropped, {} trial(s) left, {:.2} s",
        prepared.done.len(),
        prepared.repaired_lines.len(),
        left.len(),
        start.elapsed().as_secs_f64()
    );
    if report {
        ckpt::output::write_outputs(&prepared.results)?;
        println!("report: {:.2} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}
