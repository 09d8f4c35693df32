//! Every engine against the real tools: the demo's continuity and a small
//! sweep with verification, leaving nothing behind.

mod common;

use common::{ckpt_objects, run, text};

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn demo_continues_on_every_engine() {
    for engine in ["podman", "runc", "criu"] {
        let before = ckpt_objects();
        let out = run(&[
            "demo",
            "--engine",
            engine,
            "--interval",
            "300ms",
            "--run-for",
            "1s",
        ]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{engine}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("continuity holds"), "{engine}: {stdout}");
        assert_eq!(ckpt_objects(), before, "{engine} left objects behind");
    }
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn one_sweep_compares_all_engines() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let out = run(&[
        "sweep",
        "--engine",
        "docker,podman,runc,criu",
        "--children",
        "1,4",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--output",
        dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("trials.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 8, "4 engines x 2 points: {stderr}");
    for engine in ["docker", "podman", "runc", "criu"] {
        let mine: Vec<_> = records.iter().filter(|r| r["engine"] == engine).collect();
        assert_eq!(mine.len(), 2, "{engine}");
        for r in mine {
            assert_eq!(r["status"], "ok", "{r}");
            let n = r["children"].as_u64().unwrap();
            assert_eq!(r["processes_after"].as_u64(), Some(n + 1), "{r}");
            // Every engine here gives CRIU's phases.
            assert!(r["criu_frozen_ms"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
        }
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("## Cost of each layer"), "{report}");
    assert_eq!(ckpt_objects(), before, "the sweep left objects behind");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn unknown_engine_is_refused() {
    let out = run(&["sweep", "--engine", "docker,lxc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("lxc"));
}
