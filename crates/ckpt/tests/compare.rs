//! `ckpt compare` on the shipped results directories (docs/results) and
//! on copies of them with changed times. Needs no engine, so it runs in a
//! plain `cargo test`.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_fails, run, shipped_results, text};
use serde_json::Value;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/results")
        .join(name)
}

/// A copy of a results directory's plan and environment, with its records
/// passed through `change` (None drops a record).
fn copy_with(dir: &Path, change: impl Fn(Value) -> Option<Value>) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for name in ["plan.json", "env.json"] {
        std::fs::copy(dir.join(name), copy.path().join(name)).unwrap();
    }
    let records: String = std::fs::read_to_string(dir.join("trials.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|line| change(serde_json::from_str(line).unwrap()))
        .map(|r| format!("{r}\n"))
        .collect();
    std::fs::write(copy.path().join("trials.jsonl"), records).unwrap();
    copy
}

/// Multiplies the checkpoint and restore times of a record.
fn scaled(factor: f64) -> impl Fn(Value) -> Option<Value> {
    move |mut r| {
        for key in ["checkpoint_ms", "restore_ms"] {
            if let Some(ms) = r[key].as_f64() {
                r[key] = Value::from(ms * factor);
            }
        }
        Some(r)
    }
}

fn compare_json(a: &Path, b: &Path) -> Value {
    let out = run(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn points(json: &Value) -> &Vec<Value> {
    json["points"].as_array().unwrap()
}

#[test]
fn a_sweep_compared_with_itself_differs_nowhere() {
    for dir in shipped_results() {
        let copy = copy_with(&dir, Some);
        let json = compare_json(&dir, copy.path());
        assert!(!points(&json).is_empty(), "{}", dir.display());
        for p in points(&json) {
            assert_eq!(p["verdict"], "no difference detected", "{p}");
            assert!((p["ratio"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{p}");
        }
        for s in json["slopes"].as_array().unwrap() {
            assert_eq!(s["verdict"], "no difference detected", "{s}");
        }
        let env = json["environment"].as_array().unwrap();
        assert!(env.iter().all(|f| f["same"] == true), "{json}");
        assert_eq!(
            (json["only_in_a"].as_u64(), json["only_in_b"].as_u64()),
            (Some(0), Some(0))
        );
    }
}

/// Every time 20% longer: each ratio is 1.2 and its interval holds it.
/// With three to five trials a point, the shipped sweeps' spread is too
/// wide for every point to reach significance after Holm's correction, so
/// here only the direction is checked; the next test checks the verdict.
#[test]
fn times_twenty_percent_longer_give_ratios_of_one_point_two() {
    for dir in shipped_results() {
        let slower = copy_with(&dir, scaled(1.2));
        let json = compare_json(&dir, slower.path());
        for p in points(&json) {
            assert!((p["ratio"].as_f64().unwrap() - 1.2).abs() < 1e-9, "{p}");
            let (low, high) = (p["ratio_ci_low"].as_f64(), p["ratio_ci_high"].as_f64());
            assert!(low.unwrap() < 1.2 && 1.2 < high.unwrap(), "{p}");
            assert_ne!(p["verdict"], "faster", "{p}");
        }
        for s in json["slopes"].as_array().unwrap() {
            let (a, d) = (
                s["slope_a"].as_f64().unwrap(),
                s["difference"].as_f64().unwrap(),
            );
            assert!((d - 0.2 * a).abs() < 1e-9 * a.abs().max(1.0), "{s}");
        }
    }
}

/// The seed's sweep with steady times (1% spread, 100 ms + 10 ms a
/// process) against the same times 20% longer: every point is slower,
/// every slope steeper.
#[test]
fn a_steady_sweep_twenty_percent_slower_is_found_slower_everywhere() {
    let steady = |mut r: Value| {
        let n = r["children"].as_f64().unwrap();
        let wobble = 1.0 + 0.01 * (r["trial"].as_f64().unwrap() % 5.0 - 2.0);
        r["checkpoint_ms"] = Value::from((100.0 + 10.0 * n) * wobble);
        r["restore_ms"] = Value::from((150.0 + 5.0 * n) * wobble);
        Some(r)
    };
    let a = copy_with(&shipped("seed"), steady);
    let b = copy_with(a.path(), scaled(1.2));
    let json = compare_json(a.path(), b.path());
    assert_eq!(points(&json).len(), 22, "11 points, 2 operations");
    for p in points(&json) {
        assert_eq!(p["verdict"], "slower", "{p}");
        let (low, high) = (p["ratio_ci_low"].as_f64(), p["ratio_ci_high"].as_f64());
        assert!(low.unwrap() < 1.2 && 1.2 < high.unwrap(), "{p}");
    }
    let slopes = json["slopes"].as_array().unwrap();
    assert_eq!(slopes.len(), 2);
    assert!(
        slopes.iter().all(|s| s["verdict"] == "steeper"),
        "{slopes:?}"
    );

    // The same as a table, and the files of --output.
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("cmp");
    let out = run(&[
        "compare",
        a.path().to_str().unwrap(),
        b.path().to_str().unwrap(),
        "--output",
        target.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("22 slower, 0 faster"), "{stdout}");
    for file in ["compare.md", "compare.json", "compare.svg", "compare.png"] {
        assert!(target.join(file).is_file(), "{file} missing");
    }
    let md = std::fs::read_to_string(target.join("compare.md")).unwrap();
    assert!(md.contains("| docker | N=50 | checkpoint |"), "{md}");
}

#[test]
fn sweeps_without_a_common_point_are_refused() {
    let engine = |name: &'static str| move |r: Value| (r["engine"] == name).then_some(r);
    let docker = copy_with(&shipped("engines"), engine("docker"));
    let runc = copy_with(&shipped("engines"), engine("runc"));
    assert_fails(
        &[
            "compare",
            docker.path().to_str().unwrap(),
            runc.path().to_str().unwrap(),
        ],
        "nothing to compare",
    );
}

#[test]
fn what_is_not_a_results_directory_is_refused() {
    let seed = shipped("seed");
    let seed = seed.to_str().unwrap();
    let empty = tempfile::tempdir().unwrap();
    assert_fails(
        &["compare", seed, empty.path().to_str().unwrap()],
        "a ckpt sweep directory?",
    );
    let file = empty.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    assert_fails(
        &["compare", file.to_str().unwrap(), seed],
        "is not a directory",
    );
    assert_fails(
        &["compare", "/nonexistent/ckpt-results", seed],
        "is not a directory",
    );
}
