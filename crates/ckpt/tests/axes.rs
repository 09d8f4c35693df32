//! Sweeps over more than the number of processes (memory, image filler,
//! threads, files) and over a user's own image, end to end on the real
//! Docker daemon and CRIU.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ckpt_objects, records, run, text};

fn sweep(dir: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["sweep", "--output", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = run(&args);
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}\n{stderr}"))
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn memory_and_filler_grid_checks_memory_and_draws_a_heat_map() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("grid");
    let (ok, output) = sweep(
        &dir,
        &[
            "--children",
            "1",
            "--memory-mib",
            "0,16",
            "--image-filler-mib",
            "0,8",
            "--repeat",
            "2",
            "--warmup",
            "0",
        ],
    );
    assert!(ok, "{output}");
    let records = records(&dir);
    assert_eq!(records.len(), 8, "2 x 2 points, twice");
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        let memory = r["memory_mib"].as_u64().unwrap();
        let rss = r["rss_bytes"].as_u64().unwrap();
        if memory > 0 {
            // Both processes wrote their 16 MiB, and found it intact after
            // the restore.
            assert_eq!(r["memory_ok"], true, "{r}");
            assert_eq!(r["threads_ok"], true, "{r}");
            assert_eq!(r["files_ok"], true, "{r}");
            assert!(rss > 32 << 20, "{r}");
            assert!(r["checkpoint_bytes"].as_u64().unwrap() > 32 << 20, "{r}");
        } else {
            for column in ["memory_ok", "threads_ok", "files_ok"] {
                assert!(r[column].is_null(), "nothing to check: {r}");
            }
            assert!(rss < 16 << 20, "{r}");
        }
    }
    let image = |filler: u64| {
        records
            .iter()
            .find(|r| r["filler_mib"].as_u64() == Some(filler))
            .and_then(|r| r["image_bytes"].as_u64())
            .unwrap()
    };
    assert!(
        image(8) >= image(0) + (8 << 20),
        "the filler layer adds its 8 MiB: {} vs {}",
        image(8),
        image(0)
    );
    for file in [
        "figure.svg",
        "figure-filler-mib.svg",
        "heatmap.svg",
        "heatmap.png",
        "size-vs-rss.svg",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let heat = std::fs::read_to_string(dir.join("heatmap.svg")).unwrap();
    for panel in ["docker: checkpoint", "docker: restore"] {
        assert!(heat.contains(panel), "the heat map has no '{panel}' panel");
    }
    let analysis: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("analysis.json")).unwrap()).unwrap();
    assert_eq!(
        analysis["swept"],
        serde_json::json!(["memory_mib", "filler_mib"])
    );
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "## What drives the time",
        "## Checkpoint size and throughput",
        "heatmap.svg",
        "4 of 4 trial(s) found every process's memory intact",
    ] {
        assert!(report.contains(needle), "{needle} missing:\n{report}");
    }
    assert_eq!(ckpt_objects(), before, "nothing left behind");
}

fn workload_binary() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ckpt"));
    let target = exe.parent().unwrap().parent().unwrap();
    target.join("x86_64-unknown-linux-gnu/release/ckpt-workload")
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn forker_holds_threads_and_files_and_checks_memory_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("out.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(workload_binary())
        .args([
            "forker",
            "--children",
            "2",
            "--memory-mib",
            "4",
            "--threads",
            "3",
            "--files",
            "5",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_for = |needle: &str, count: usize| {
        for _ in 0..200 {
            if log_text().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {needle} in:\n{}", log_text());
    };
    wait_for("ckpt ready", 1);
    let ready = log_text();
    let pids: Vec<u32> = ready
        .lines()
        .find(|l| l.starts_with("ckpt ready"))
        .and_then(|l| l.split("pids=").nth(1))
        .unwrap()
        .split(',')
        .map(|p| p.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    for pid in &pids {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count();
        assert_eq!(tasks, 4, "main thread and 3 more in {pid}");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).ok().as_ref() == Some(&exe))
            .count();
        assert_eq!(open, 5, "five open files in {pid}");
    }
    // SAFETY: signalling the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    wait_for("ckpt memory", 3);
    assert!(
        log_text().contains("memory=true threads=3 files=5"),
        "{}",
        log_text()
    );
    let verdicts: Vec<String> = log_text()
        .lines()
        .filter(|l| l.starts_with("ckpt memory"))
        .map(String::from)
        .collect();
    for pid in &pids[1..] {
        // SAFETY: ending the children we started (they outlive the parent
        // outside a container).
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    assert!(
        verdicts.iter().all(|v| v.contains(" ok=true ")),
        "{verdicts:?}"
    );
}

/// A user-style workload: Debian's static busybox in a scratch image,
/// built here (no registry), with a shell loop as the program.
fn build_busybox_image(tag: &str) {
    let context = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", context.path().join("busybox"))
        .expect("busybox-static is installed by scripts/setup");
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(context.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "docker build: {out:?}");
}

fn remove_image(tag: &str) {
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
}

/// A shell that ticks every second, its `sleep` running in the background
/// while the shell waits. It says ready once the first sleep runs, so that
/// the processes ckpt sees before the checkpoint (shell and sleep) are the
/// ones it checkpoints: saying it before the first fork let ckpt list the
/// shell alone and then find a sleep after the restore.
const LOOP: &str = "/bin/busybox sh -c 'i=0; while true; do i=$((i+1)); echo tick $i; /bin/busybox sleep 1 & [ $i = 1 ] && echo ready with {children}; wait; done'";

/// Sweeps the busybox loop as a user's workload, one trial per point, on
/// an image built for it and removed afterwards. Returns whether the sweep
/// succeeded, what it printed, and whether the image outlived it.
fn busybox_sweep(dir: &Path, children: &str, patterns: &[&str]) -> (bool, String, bool) {
    let tag = format!(
        "ckpt-test-busybox-{}:{}",
        children.replace(',', "-"),
        std::process::id()
    );
    build_busybox_image(&tag);
    let mut args = vec![
        "--children",
        children,
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--image",
        &tag,
        "--cmd",
        LOOP,
    ];
    args.extend_from_slice(patterns);
    let (ok, output) = sweep(dir, &args);
    let kept = Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .unwrap()
        .status
        .success();
    remove_image(&tag);
    (ok, output, kept)
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn user_workload_from_a_busybox_image_is_swept_and_verified() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("user");
    let (ok, output, kept) = busybox_sweep(
        &dir,
        "1,2",
        &[
            "--ready-pattern",
            "^ready with [0-9]+$",
            "--check-pattern",
            "^tick [0-9]+$",
        ],
    );
    assert!(ok, "{output}");
    assert!(kept, "the user's image is never removed");
    let records = records(&dir);
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        // The shell and its sleep: whatever runs, the same after restore.
        assert_eq!(r["processes_before"], r["processes_after"], "{r}");
    }
    assert!(dir.join("report.md").is_file());
    assert_eq!(ckpt_objects(), before, "nothing left behind");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn user_workload_whose_ready_pattern_never_matches_fails_with_its_last_lines() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never");
    let (_, output, _) = busybox_sweep(
        &dir,
        "1",
        &[
            "--ready-pattern",
            "^this never appears$",
            "--ready-timeout",
            "2s",
        ],
    );
    let records = records(&dir);
    assert_eq!(records.len(), 1, "{output}");
    let error = records[0]["error"].as_str().unwrap_or_default();
    assert_eq!(records[0]["status"], "failed");
    assert!(
        error.contains("timed out") && error.contains("tick"),
        "the error shows the last lines: {error}"
    );
    assert_eq!(ckpt_objects(), before, "nothing left behind");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn bad_axis_input_is_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--image", "x", "--cmd", "app {childs}"],
            "unknown placeholder {childs}",
        ),
        (
            &["--children", "1,2", "--image", "x", "--cmd", "app"],
            "does not use {children}",
        ),
        (
            &["--children", "50", "--memory-mib", "1000000"],
            "MiB available",
        ),
        (&["--image-filler-mib", "0,10", "--engine", "criu"], "criu"),
        (&["--memory-mib", "64..0"], "descending"),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("bad{i}"));
        let (ok, output) = sweep(&dir, args);
        assert!(!ok, "{args:?} was accepted");
        assert!(output.contains(expected), "{args:?}: {output}");
        assert!(!dir.exists(), "{args:?} created {}", dir.display());
    }
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn an_image_that_does_not_exist_is_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("missing");
    let (ok, output) = sweep(
        &dir,
        &[
            "--children",
            "1",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--image",
            "ckpt-no-such-image:never",
            "--cmd",
            "/app {children}",
        ],
    );
    assert!(!ok);
    assert!(
        output.contains("ckpt-no-such-image:never") && output.contains("does not pull"),
        "{output}"
    );
    assert!(
        !dir.exists(),
        "refused before the results directory is made"
    );
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn threads_and_open_files_come_back_on_the_daemonless_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let (ok, output) = sweep(
        &dir,
        &[
            "--engine",
            "runc,criu",
            "--children",
            "2",
            "--threads",
            "2",
            "--files",
            "3",
            "--repeat",
            "1",
            "--warmup",
            "0",
        ],
    );
    assert!(ok, "{output}");
    let records = records(&dir);
    assert_eq!(records.len(), 2);
    for r in &records {
        // Every process answered that its threads and files are all there.
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["threads_ok"], true, "{r}");
        assert_eq!(r["files_ok"], true, "{r}");
        assert_eq!(r["memory_ok"], true, "{r}");
    }
}
