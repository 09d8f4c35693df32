//! Helpers shared by the integration tests. They run the real `ckpt`
//! binary against the real Docker daemon and CRIU that scripts/setup
//! installs; nothing is mocked.
#![allow(dead_code)]

use std::process::{Command, Output};

pub fn ckpt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
}

/// Starts `ckpt sweep ARGS --output DIR` in the background, with its
/// stderr kept for the test to read (the interruption tests).
pub fn spawn_sweep(args: &[&str], dir: &std::path::Path) -> std::process::Child {
    ckpt()
        .arg("sweep")
        .args(args)
        .arg("--output")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ckpt runs")
}

/// The results directories shipped in docs/results, sorted.
pub fn shipped_results() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results");
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("plan.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 4, "docs/results holds the shipped sweeps");
    dirs
}

/// A copy of a directory's files in a new temporary directory.
pub fn copy_dir(dir: &std::path::Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    copy
}

/// Runs ckpt and checks that it fails, without a panic, with `expected`
/// in its error.
pub fn assert_fails(args: &[&str], expected: &str) {
    let out = run(args);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

pub fn run(args: &[&str]) -> Output {
    ckpt().args(args).output().expect("ckpt runs")
}

pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What ckpt creates and must remove, by name: Docker containers and
/// images that carry ckpt's run label, containerd's checkpoint copies in
/// /tmp and dockerd's network sandbox files (which ckpt must remove too),
/// the run directories under /run/ckpt and the lines ckpt adds to
/// /etc/criu/runc.conf.
pub fn ckpt_objects() -> Vec<String> {
    let mut ids = Vec::new();
    for args in [
        &["ps", "-aq", "--filter", "label=io.ckpt.run"][..],
        &["images", "-q", "--filter", "label=io.ckpt.run"][..],
    ] {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("docker CLI runs");
        assert!(out.status.success(), "docker {args:?} failed: {:?}", out);
        ids.extend(
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from),
        );
    }
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    };
    ids.extend(
        names("/tmp")
            .into_iter()
            .filter(|n| n.starts_with("/tmp/ctrd-checkpoint")),
    );
    ids.extend(names("/var/run/docker/netns"));
    for engine_dir in names("/run/ckpt") {
        ids.extend(names(&engine_dir));
    }
    ids.extend(
        std::fs::read_to_string("/etc/criu/runc.conf")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("# ckpt"))
            .map(String::from),
    );
    ids.sort();
    ids
}

/// The records of a results directory (a missing or cut file gives fewer).
pub fn records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("trials.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until a running sweep has recorded `n` trials.
pub fn wait_for_records(dir: &std::path::Path, n: usize) {
    let started = std::time::Instant::now();
    while records(dir).len() < n {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "no trial finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The trial numbers recorded, sorted: a complete grid is 0..total.
pub fn trial_numbers(dir: &std::path::Path) -> Vec<u64> {
    let mut t: Vec<u64> = records(dir)
        .iter()
        .map(|r| r["trial"].as_u64().unwrap())
        .collect();
    t.sort_unstable();
    t
}

/// An image of `kind` (redis, python) that scripts/make-image builds into
/// Docker's and Podman's storage, removed from both when dropped (the
/// test's own image: ckpt must never remove it).
pub struct TestImage {
    pub tag: String,
}

impl TestImage {
    pub fn build(kind: &str) -> TestImage {
        TestImage::build_in(kind, "both")
    }

    /// Only in `engine`'s storage (docker or podman).
    pub fn build_in(kind: &str, engine: &str) -> TestImage {
        let tag = format!("ckpt-test-{kind}-{engine}:{}", std::process::id());
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-image");
        let out = Command::new(script)
            .args(["--engine", engine, kind, &tag])
            .output()
            .unwrap();
        assert!(out.status.success(), "make-image: {out:?}");
        TestImage { tag }
    }

    pub fn exists_in(&self, cli: &str) -> bool {
        Command::new(cli)
            .args(["image", "inspect", &self.tag])
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        for cli in ["docker", "podman"] {
            let _ = Command::new(cli).args(["rmi", "-f", &self.tag]).output();
        }
    }
}

/// redis-server as the real-program tests run it, its readiness, the data
/// its setup loads and the check of that data (`DEBUG DIGEST`).
pub const REDIS_PROGRAM: [&str; 8] = [
    "--cmd",
    // Not protected: clients on other hosts (a probe's) are served too.
    "redis-server --port 6379 --protected-mode no --save '' --enable-debug-command local",
    "--ready-pattern",
    "Ready to accept connections",
    "--setup-cmd",
    "redis-cli -p 6379 debug populate 100000",
    "--check-cmd",
    "redis-cli -p 6379 debug digest",
];

/// What a migration leaves when it leaves nothing: no namespace of ours,
/// no migration or runc run directory.
pub fn leftovers() -> Vec<String> {
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .lines()
    .filter(|l| l.starts_with("ckpt-m"))
    .map(str::to_string)
    .collect::<Vec<_>>();
    let dirs = [
        "/run/ckpt/migrate",
        "/run/ckpt/runc",
        "/run/ckpt/criu",
        "/run/ckpt/daemon2",
        "/run/ckpt/serve",
        "/run/ckpt/podman",
    ]
    .iter()
    .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
    .map(|e| e.path().display().to_string());
    netns.into_iter().chain(dirs).collect()
}

/// A destination's bundle that already holds part of the pages file.
pub fn receiving() -> bool {
    let Ok(runs) = std::fs::read_dir("/run/ckpt/runc") else {
        return false;
    };
    runs.flatten().any(|run| {
        std::fs::read_dir(run.path())
            .into_iter()
            .flatten()
            .flatten()
            .any(|b| {
                let images = b.path().join("images/migrated");
                b.file_name().to_string_lossy().ends_with("-dest")
                    && std::fs::read_dir(images)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .any(|f| {
                            f.file_name().to_string_lossy().starts_with("pages-")
                                && f.metadata().is_ok_and(|m| m.len() > 1 << 20)
                        })
            })
    })
}

/// Kills the destination's `ckpt serve` of a move `child` runs once the
/// destination has received part of the pages; returns the move's stderr
/// after checking that it failed and restored the workload at the source.
pub fn kill_the_destination_mid_transfer(child: std::process::Child) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !receiving() {
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", "ckpt serve --once"])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("restored at the source"), "{stderr}");
    stderr
}
