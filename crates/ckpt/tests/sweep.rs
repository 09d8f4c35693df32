//! `ckpt sweep` and `ckpt report` end to end on the real Docker daemon.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    ckpt, ckpt_objects, records, run, spawn_sweep, text, trial_numbers, wait_for_records,
};

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn small_sweep_writes_everything_and_report_rebuilds_it() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let out = run(&[
        "sweep",
        "--children",
        "1,3",
        "--repeat",
        "2",
        "--warmup",
        "1",
        "--output",
        dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for file in [
        "trials.csv",
        "trials.jsonl",
        "env.json",
        "plan.json",
        "summary.csv",
        "analysis.json",
        "figure.svg",
        "figure.png",
        "report.md",
        "report.html",
    ] {
        let meta = std::fs::metadata(dir.join(file)).unwrap_or_else(|_| panic!("{file} missing"));
        assert!(meta.len() > 0, "{file} is empty");
    }
    let records = records(&dir);
    assert_eq!(records.len(), 6, "2 points x (2 + 1 warm-up)");
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["verified"], true, "{r}");
        let n = r["children"].as_u64().unwrap();
        assert_eq!(r["processes_after"].as_u64(), Some(n + 1), "{r}");
        assert!(r["checkpoint_ms"].as_f64().unwrap() > 0.0);
        assert!(r["checkpoint_bytes"].as_u64().unwrap() > 0);
        // CRIU's phases, kept through /etc/criu/runc.conf despite Docker.
        let frozen = r["criu_frozen_ms"].as_f64().unwrap_or(0.0);
        assert!(
            frozen > 0.0 && frozen < r["checkpoint_ms"].as_f64().unwrap(),
            "{r}"
        );
        assert!(r["criu_pages_written"].as_u64().unwrap_or(0) > 0, "{r}");
        assert!(r["criu_restore_ms"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
        // The host's state beside the trial, dockerd's included.
        assert!(r["host_mounts"].as_u64().unwrap_or(0) > 0, "{r}");
        assert!(r["host_dockerd_rss_kib"].as_u64().unwrap_or(0) > 0, "{r}");
        assert!(r["host_load1"].is_f64(), "{r}");
    }
    let csv = std::fs::read_to_string(dir.join("trials.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7, "header and six rows");
    let verified_col = csv
        .lines()
        .next()
        .unwrap()
        .split(',')
        .position(|c| c == "verified")
        .unwrap();
    assert!(csv
        .lines()
        .skip(1)
        .all(|l| l.split(',').nth(verified_col) == Some("true")));

    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(
        summary.lines().count(),
        5,
        "header and 2 points x 2 operations:\n{summary}"
    );
    let report_md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for section in [
        "## System details",
        "## Method",
        "## Results",
        "## Observations",
        "figure.svg",
    ] {
        assert!(
            report_md.contains(section),
            "{section} missing from report.md"
        );
    }

    // The report is rebuilt from the records alone, to the same summary.
    std::fs::remove_file(dir.join("summary.csv")).unwrap();
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let out = ckpt()
        .args(["report", dir.to_str().unwrap()])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.join("summary.csv")).unwrap(),
        summary
    );
    assert!(dir.join("report.html").exists());

    check_html_renders_figure(&dir.join("report.html"));
    assert_eq!(ckpt_objects(), before, "the sweep left objects behind");
}

/// Opens the report in headless Chromium and measures the inline figure.
fn check_html_renders_figure(report: &Path) {
    let page = report.with_file_name("report-probe.html");
    let mut html = std::fs::read_to_string(report).unwrap();
    assert!(
        !html.contains("src=\"figure"),
        "the page must not depend on other files"
    );
    html = html.replace(
        "</body>",
        "<script>const r = document.querySelector('#figure svg').getBoundingClientRect();\
         const t = document.querySelectorAll('#figure svg text').length;\
         document.body.setAttribute('data-probe', `${Math.round(r.width)}x${Math.round(r.height)}x${t}`);</script></body>",
    );
    std::fs::write(&page, html).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed by scripts/test");
    let dom = String::from_utf8_lossy(&out.stdout);
    let probe = dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "the probe did not run: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let parts: Vec<u32> = probe.split('x').map(|p| p.parse().unwrap()).collect();
    assert!(
        parts[0] >= 800 && parts[1] >= 500,
        "figure rendered at {probe}"
    );
    assert!(parts[2] >= 5, "figure has titles and labels: {probe}");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn bad_sweep_input_is_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never");
    for (args, expected) in [
        (&["--children", "5..1"][..], "descending"),
        (&["--memory-mib=lots"][..], "not a whole number"),
        (&["--children", ""][..], "empty"),
        (&["--repeat", "0"][..], "--repeat must be at least 1"),
    ] {
        let out = ckpt()
            .arg("sweep")
            .args(args)
            .args(["--output", dir.to_str().unwrap()])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
        assert!(!dir.exists(), "{args:?} created the output directory");
    }
    let out = run(&["sweep", "--output", "/proc/not-writable"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot create the output directory"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn interrupted_sweep_keeps_its_trials_and_resumes_to_a_complete_grid() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let child = spawn_sweep(
        &["--children", "1,2", "--repeat", "2", "--warmup", "0"],
        &dir,
    );
    wait_for_records(&dir, 1);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert_eq!(
        ckpt_objects(),
        before,
        "the interrupted sweep left objects behind"
    );
    let kept = records(&dir).len();
    assert!((1..4).contains(&kept), "{kept} trials kept");

    // Refused without --resume, completed with it.
    let out = ckpt()
        .args(["sweep", "--output"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(text(&out).1.contains("already holds a sweep"));
    let out = ckpt()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let trials = trial_numbers(&dir);
    assert_eq!(trials, vec![0, 1, 2, 3], "no trial missing or duplicated");
    assert_eq!(ckpt_objects(), before);
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn resume_repairs_a_cut_last_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let out = run(&[
        "sweep",
        "--children",
        "1",
        "--repeat",
        "2",
        "--warmup",
        "0",
        "--output",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    // Power loss in the middle of writing the last record.
    let path = dir.join("trials.jsonl");
    let full = std::fs::read_to_string(&path).unwrap();
    let cut = &full[..full.len() - 40];
    std::fs::write(&path, cut).unwrap();
    let out = ckpt()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("repaired"), "{stderr}");
    let trials = trial_numbers(&dir);
    assert_eq!(trials, vec![0, 1]);
    let csv = std::fs::read_to_string(dir.join("trials.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

/// SIGINT and SIGTERM at different moments of a trial (starting, waiting
/// for ready, checkpointing, stopped, restoring, removing): each time the
/// records stay whole, nothing is left behind, and a resume completes the grid.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn signals_at_every_stage_keep_results_and_leave_nothing() {
    let before = ckpt_objects();
    for (round, delay_ms) in [0u64, 120, 240, 360, 480, 600].into_iter().enumerate() {
        let signal = if round % 2 == 0 {
            libc::SIGINT
        } else {
            libc::SIGTERM
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sweep");
        let child = spawn_sweep(
            &[
                "--children",
                "2,4",
                "--repeat",
                "1",
                "--warmup",
                "0",
                "--order",
                "sequential",
            ],
            &dir,
        );
        wait_for_records(&dir, 1);
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let code = out.status.code();
        // The sweep may have finished before the signal landed.
        assert!(
            matches!(code, Some(0) | Some(130) | Some(143)),
            "round {round}: {code:?} {stderr}"
        );
        assert_eq!(
            ckpt_objects(),
            before,
            "round {round} ({delay_ms} ms) left objects behind: {stderr}"
        );
        let out = ckpt()
            .args(["sweep", "--resume"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        let trials = trial_numbers(&dir);
        assert_eq!(
            trials,
            vec![0, 1],
            "round {round}: no trial missing or duplicated"
        );
        assert!(
            records(&dir).iter().all(|r| r["status"] == "ok"),
            "round {round}"
        );
    }
    assert_eq!(ckpt_objects(), before);
}

/// A signal before the first trial ends (while the plan is checked, the
/// engines open, Podman's service starts, images build) is honoured like
/// one during the trials: the run stops at its next step with the signal's
/// exit status and leaves no object, no runc.conf line and no process.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn signals_before_the_first_trial_leave_nothing() {
    let before = ckpt_objects();
    for (round, delay_ms) in [0u64, 40, 150, 400, 900].into_iter().enumerate() {
        let signal = if round % 2 == 0 {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sweep");
        let child = spawn_sweep(
            &[
                "--engine",
                "podman,docker",
                "--children",
                "1",
                "--repeat",
                "1",
                "--warmup",
                "0",
            ],
            &dir,
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        // At 0 ms the signal may land before ckpt's main has run (and so
        // before it made anything): the default action ends it then.
        use std::os::unix::process::ExitStatusExt;
        assert!(
            matches!(out.status.code(), Some(0) | Some(130) | Some(143))
                || out.status.signal() == Some(signal),
            "round {round}: {:?} {stderr}",
            out.status
        );
        assert_eq!(
            ckpt_objects(),
            before,
            "round {round} ({delay_ms} ms): {stderr}"
        );
        assert!(
            !std::fs::read_to_string("/etc/criu/runc.conf")
                .unwrap_or_default()
                .contains("ckpt"),
            "round {round}: runc.conf keeps a line: {stderr}"
        );
    }
}
