//! Results directories written by earlier versions of ckpt (docs/results)
//! still report and still resume: their plan.json and records keep reading.
//! Needs no engine, so it runs in a plain `cargo test`.

mod common;

use std::path::Path;

use common::{copy_dir, shipped_results};

use ckpt::analysis::Operation;
use ckpt::model::{EngineKind, MigrationMethod};
use ckpt::sweep::records::{Status, TrialRecord};
use ckpt::sweep::results::{ResultFile, ResultsDir};

#[test]
fn shipped_results_still_report() {
    for dir in shipped_results() {
        // A private copy: the report rewrites its outputs.
        let copy = copy_dir(&dir);
        let results = ResultsDir::new(copy.path());
        std::fs::remove_file(results.file(ResultFile::ReportMd)).unwrap();
        let analysis = ckpt::output::write_outputs(&results).unwrap();
        assert!(!analysis.points.is_empty(), "{}", dir.display());
        for point in &analysis.points {
            // A migration sweep labels its points engine+method.
            let (engine, method) = match point.engine.split_once('+') {
                Some((engine, method)) => (engine, Some(method)),
                None => (point.engine.as_str(), None),
            };
            let known_method =
                method.is_none_or(|m| MigrationMethod::ALL.iter().any(|k| k.name() == m));
            assert!(
                EngineKind::from_name(engine).is_some() && known_method,
                "{}: engine {}",
                dir.display(),
                point.engine
            );
        }
        let report = std::fs::read_to_string(results.file(ResultFile::ReportMd)).unwrap();
        assert!(report.contains("Checkpoint"), "{}", dir.display());
    }
}

#[test]
fn shipped_plans_resume_with_every_trial_done() {
    for dir in shipped_results() {
        let copy = copy_dir(&dir);
        let prepared = ckpt::sweep::prepare_resume(copy.path()).unwrap();
        assert!(!prepared.plan.engines.is_empty());
        assert!(prepared.repaired_lines.is_empty(), "{}", dir.display());
        let left = ckpt::sweep::remaining(&prepared.plan, &prepared.done, false);
        assert!(
            left.is_empty(),
            "{}: {} trial(s) left",
            dir.display(),
            left.len()
        );
    }
}

/// Multiplies each measured trial's checkpoint time by 1 + 0.3 x its place
/// among its engine's measured trials (in the order they started) over
/// their number: a machine that slows down by 30% over the run.
fn add_trend(results: &ResultsDir) {
    let path = results.file(ResultFile::TrialsJsonl);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut records: Vec<TrialRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let measured = |r: &TrialRecord| !r.warmup && r.status == Status::Ok;
    let mut engines: Vec<String> = records.iter().map(|r| r.engine.clone()).collect();
    engines.sort();
    engines.dedup();
    for engine in engines {
        let mut mine: Vec<&mut TrialRecord> = records
            .iter_mut()
            .filter(|r| r.engine == engine && measured(r))
            .collect();
        mine.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        let n = mine.len() as f64;
        for (place, r) in mine.into_iter().enumerate() {
            r.checkpoint_ms = r
                .checkpoint_ms
                .map(|ms| ms * (1.0 + 0.3 * place as f64 / n));
        }
    }
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// (engine, drifting, change over the run in %) of every engine's checkpoint.
fn checkpoint_drift(results: &ResultsDir) -> Vec<(String, bool, f64)> {
    let analysis = ckpt::output::write_outputs(results).unwrap();
    assert!(results.file(ResultFile::Svg("drift")).is_file());
    analysis
        .drift
        .iter()
        .filter(|d| d.operation == Operation::Checkpoint)
        .map(|d| {
            let fit = d.fit.as_ref().unwrap();
            (d.engine.clone(), fit.drifting, fit.change_pct)
        })
        .collect()
}

/// The shipped seed and threads/files sweeps show no checkpoint drift
/// (the seed's docker restore times do drift, +6% over the run; the
/// engines sweep's checkpoints drift too, over 9 trials per engine); the
/// same records with a 30% slowdown added over the run are flagged, each
/// engine's change over the run up by about 0.3 / 1.15 = 26 points (every
/// point's mean takes in half of the slowdown).
#[test]
fn a_slowdown_added_to_shipped_results_is_flagged_as_drift() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results");
    for name in ["seed", "threads-files"] {
        let (plain, doctored) = (copy_dir(&root.join(name)), copy_dir(&root.join(name)));
        let doctored = ResultsDir::new(doctored.path());
        add_trend(&doctored);
        let before = checkpoint_drift(&ResultsDir::new(plain.path()));
        let after = checkpoint_drift(&doctored);
        assert_eq!(before.len(), after.len());
        for ((engine, was, change_before), (_, is, change_after)) in before.iter().zip(&after) {
            assert!(!was, "{name} {engine}: {change_before}");
            assert!(is, "{name} {engine}: {change_after}");
            let added = change_after - change_before;
            assert!((18.0..34.0).contains(&added), "{name} {engine}: +{added}");
        }
        let report = std::fs::read_to_string(doctored.file(ResultFile::ReportMd)).unwrap();
        assert!(
            report.contains("The machine was not steady: docker checkpoint times rose by"),
            "{name}"
        );
    }
}

/// A copy of a shipped directory whose env.json names `hostname` (None:
/// as an older ckpt wrote it, without a host).
fn copy_as_host(name: &str, hostname: Option<&str>) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results");
    let copy = copy_dir(&root.join(name));
    let env_path = copy.path().join("env.json");
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env_path).unwrap()).unwrap();
    if let Some(hostname) = hostname {
        env["host"] = serde_json::json!({"hostname": hostname, "machine": "0123456789abcdef"});
    }
    std::fs::write(&env_path, serde_json::to_vec(&env).unwrap()).unwrap();
    copy
}

#[test]
fn runs_of_several_hosts_make_one_report() {
    let (alpha, beta) = (
        copy_as_host("seed", Some("alpha")),
        copy_as_host("seed", Some("beta")),
    );
    let old = copy_as_host("engines", None);
    let out = tempfile::tempdir().unwrap();
    let merged = ResultsDir::new(out.path().join("merged"));
    let dirs = [alpha.path(), beta.path(), old.path()].map(Path::to_path_buf);
    let analysis = ckpt::output::merge::write_merged(&dirs, &merged).unwrap();

    // A line per host and engine: the seed's docker twice, and the engines
    // sweep (no host in its env.json) under its directory's name.
    let old_name = old
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut engines: Vec<String> = analysis.points.iter().map(|p| p.engine.clone()).collect();
    engines.dedup();
    engines.sort();
    engines.dedup();
    let mut expected: Vec<String> = ["docker@alpha", "docker@beta"].map(String::from).to_vec();
    expected.extend(["criu", "docker", "podman", "runc"].map(|e| format!("{e}@{old_name}")));
    expected.sort();
    assert_eq!(engines, expected);
    // Each host has its own drift, and both copies of the seed the same.
    let restore = |engine: &str| {
        let d = analysis
            .drift
            .iter()
            .find(|d| d.engine == engine && d.operation == Operation::Restore);
        d.unwrap().fit.clone().unwrap()
    };
    assert_eq!(restore("docker@alpha"), restore("docker@beta"));
    assert_ne!(
        restore("docker@alpha"),
        restore(&format!("docker@{old_name}"))
    );

    for file in [
        ResultFile::Summary,
        ResultFile::Analysis,
        ResultFile::ReportMd,
        ResultFile::ReportHtml,
        ResultFile::Svg("figure"),
        ResultFile::Png("figure"),
        ResultFile::Svg("drift"),
    ] {
        assert!(merged.has(file), "{file:?}");
    }
    assert!(!merged.has(ResultFile::Plan), "a merged report is no sweep");
    let summary = std::fs::read_to_string(merged.file(ResultFile::Summary)).unwrap();
    assert!(summary.contains("\ndocker@beta,10,"), "{summary}");
    let figure = std::fs::read_to_string(merged.file(ResultFile::Svg("figure"))).unwrap();
    assert!(
        figure.contains("docker@alpha checkpoint"),
        "a line per host"
    );
    let report = std::fs::read_to_string(merged.file(ResultFile::ReportMd)).unwrap();
    assert!(
        report.contains("The runs of 3 hosts are merged"),
        "{report}"
    );
    assert!(
        report.contains("| alpha | 0123456789abcdef | Intel(R) Xeon(R) Processor | 2 |"),
        "{report}"
    );
    assert!(
        report.contains(&format!("| beta | {} | docker |", beta.path().display())),
        "{report}"
    );

    // Written again over the same directory: a report is rebuilt, not refused.
    ckpt::output::merge::write_merged(&dirs, &merged).unwrap();
    // Never over a sweep's own directory.
    let err = ckpt::output::merge::write_merged(&dirs, &ResultsDir::new(alpha.path())).unwrap_err();
    assert!(err.to_string().contains("holds a sweep"), "{err:#}");
}

#[test]
fn runs_that_measured_different_things_are_not_merged() {
    let (seed, memory) = (
        copy_as_host("seed", Some("a")),
        copy_as_host("memory", Some("b")),
    );
    let out = tempfile::tempdir().unwrap();
    let dirs = [seed.path(), memory.path()].map(Path::to_path_buf);
    let err = ckpt::output::merge::write_merged(&dirs, &ResultsDir::new(out.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not measure the same thing"), "{err}");
    assert!(
        err.contains(&format!(
            "swept axes: {} sweeps children, {} sweeps memory_mib",
            seed.path().display(),
            memory.path().display()
        )),
        "{err}"
    );
    assert!(err.contains("network:"), "{err}");
    assert!(!out.path().join("report.md").exists());
}

/// The shipped migration sweep reports each series (engine+method) once,
/// no unknown as 0 (ckpt's own time is not measured in a move), its growth
/// per GiB of the tree's memory with an interval, and no rate for lazy
/// moves. (Records whose engine column held `runc+copy`, as an older ckpt
/// wrote them, are read as the same series: sweep::results's tests.)
#[test]
fn the_shipped_migration_sweep_prints_no_unknown_as_zero() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results");
    let copy = copy_dir(&root.join("migration"));
    let results = ResultsDir::new(copy.path());
    let analysis = ckpt::output::write_outputs(&results).unwrap();
    let mut series: Vec<&str> = analysis.points.iter().map(|p| p.engine.as_str()).collect();
    series.dedup();
    assert_eq!(series, ["runc+copy", "runc+lazy", "runc+page-server"]);
    let report = std::fs::read_to_string(results.file(ResultFile::ReportMd)).unwrap();
    assert!(!report.contains("0.00 ms"), "{report}");
    match &analysis.overhead {
        Some(o) => assert!(o.min > 0.0, "{o:?}"),
        None => assert!(
            report.contains("ckpt's own time per trial is not measured for migration trials.")
        ),
    }
    let copy_fit = &analysis.downtime_fits[0];
    assert_eq!(copy_fit.engine, "runc+copy");
    assert!(copy_fit.fit.slope_ci_low < copy_fit.fit.slope);
    assert!(report.contains("- runc+copy, N=0: downtime grows by "));
    assert!(report.contains(" ms per GiB of the tree's memory (95% CI "));
    let lazy_rows: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("| runc+lazy | ") && l.ends_with("| - | - | - |"))
        .collect();
    // Every lazy point of the throughput table has no rate.
    let lazy_points = analysis
        .migrations
        .iter()
        .filter(|m| m.engine == "runc+lazy")
        .count();
    assert!(lazy_points >= 2, "{report}");
    assert_eq!(lazy_rows.len(), lazy_points, "{report}");
}
