//! The fault matrix: each fault is provoked for real on this machine, and
//! each test checks that no measured result is lost and nothing is leaked.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ckpt::engine::any::{self, AnyEngine};
use ckpt::engine::Engine;
use ckpt::model::RunSpec;
use ckpt::run::RunId;
use common::{ckpt, ckpt_objects, records, spawn_sweep, text, trial_numbers, wait_for_records};

fn setup_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup")
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn docker_daemon_killed_during_a_sweep() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let child = spawn_sweep(
        &[
            "--children",
            "1",
            "--repeat",
            "8",
            "--warmup",
            "0",
            "--order",
            "sequential",
        ],
        &dir,
    );
    wait_for_records(&dir, 2);
    let killed = Command::new("pkill")
        .args(["-KILL", "-x", "dockerd"])
        .status()
        .unwrap();
    assert!(killed.success(), "dockerd was not running");
    std::thread::sleep(Duration::from_secs(1));
    let restarted = Command::new(setup_script()).output().unwrap();
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        trial_numbers(&dir),
        (0..8).collect::<Vec<_>>(),
        "no trial lost: {stderr}"
    );
    // The trial the outage failed runs again on resume: the grid gets its
    // full count of verified trials, the failed attempt stays on record.
    let out = ckpt()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let mut ok: Vec<u64> = records(&dir)
        .iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| r["trial"].as_u64().unwrap())
        .collect();
    ok.sort_unstable();
    assert_eq!(ok, (0..8).collect::<Vec<_>>(), "{:?}", text(&out));
    let all = records(&dir);
    assert!(
        all.iter().any(|r| r["engine_unreachable"] == true)
            || all.iter().all(|r| r["status"] == "ok"),
        "a failure during the outage is marked as the engine's"
    );
    for r in all.iter().filter(|r| r["status"] == "failed") {
        assert!(!r["error"].as_str().unwrap().is_empty(), "{r}");
    }
    // A sandbox that was still mounted when its container went is left to
    // dockerd, whose namespace collector removes its file within a minute
    // (libnetwork's 60 s period); after a SIGKILL and a restart some are.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while ckpt_objects() != before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(ckpt_objects(), before, "objects leaked: {stderr}");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn sigkill_leaves_what_gc_removes_and_resume_completes() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let mut child = ckpt()
        .args([
            "sweep",
            "--engine",
            "docker,podman,runc,criu",
            "--children",
            "2",
            "--repeat",
            "2",
            "--warmup",
            "0",
        ])
        .args(["--order", "sequential", "--output"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_records(&dir, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = records(&dir).len();
    let out = ckpt().arg("gc").output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(ckpt_objects(), before, "gc left objects: {:?}", text(&out));
    assert!(!std::fs::read_to_string("/etc/criu/runc.conf")
        .unwrap_or_default()
        .contains("ckpt"));
    let out = ckpt()
        .args(["sweep", "--resume"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        trial_numbers(&dir),
        (0..8).collect::<Vec<_>>(),
        "{kept} kept, then resumed"
    );
    assert_eq!(ckpt_objects(), before);
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn missing_criu_is_refused_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never");
    // Everything but /usr/local/sbin, where scripts/setup installs CRIU.
    let out = ckpt()
        .args(["sweep", "--output"])
        .arg(&dir)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("criu") && stderr.contains("scripts/setup"),
        "{stderr}"
    );
    assert!(!dir.exists(), "nothing may start without CRIU");
    let out = ckpt()
        .arg("doctor")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).0.contains("FAIL criu"), "{:?}", text(&out));
}

/// A checkpoint whose pstree.img was cut short: the restore fails with a
/// clear error and the container is removed.
#[tokio::test(flavor = "current_thread")]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
async fn restore_from_a_corrupted_checkpoint() {
    let before = ckpt_objects();
    use ckpt::model::EngineKind;
    for kind in [EngineKind::Docker, EngineKind::Runc, EngineKind::Criu] {
        let run = RunId::new();
        let (engines, _) = any::open(&[kind], &run, None).await.unwrap();
        let engine: &AnyEngine = &engines[0];
        let image = engine.build_image(&run, &Default::default()).await.unwrap();
        let spec = RunSpec {
            name: run.name("corrupt"),
            args: ckpt::workload::forker_args(
                &ckpt::model::Point {
                    children: 2,
                    ..Default::default()
                },
                1000,
            ),
            entrypoint: None,
            network: Default::default(),
            netns: None,
        };
        let container = engine.run(&run, &image, &spec).await.unwrap();
        let is_ready = ckpt::workload::is_ready;
        engine
            .wait_for_line(&container, 0, &is_ready, Duration::from_secs(30))
            .await
            .unwrap();
        engine.checkpoint(&container, "cp").await.unwrap();
        engine.stop(&container).await.unwrap();
        let pstree = engine
            .checkpoint_path(&container, "cp")
            .unwrap()
            .join("pstree.img");
        let bytes = std::fs::read(&pstree).unwrap();
        std::fs::write(&pstree, &bytes[..bytes.len() / 2]).unwrap();
        let err = engine
            .restore(&container, "cp")
            .await
            .expect_err("a cut image must not restore");
        let message = format!("{err:#}");
        assert!(message.contains("restoring"), "{kind}: {message}");
        engine.remove_container(&container).await.unwrap();
        engine.remove_image(&image).await.unwrap();
        assert_eq!(
            engine.remove_run(&run).await.unwrap(),
            0,
            "{kind}: all was removed already"
        );
    }
    assert_eq!(ckpt_objects(), before);
}

/// The checkpoint directory on a full filesystem: the trial fails with the
/// reason, the sweep goes on, and no partial checkpoint counts as a good one.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn checkpoint_onto_a_full_filesystem() {
    let before = ckpt_objects();
    let mount_point = Path::new("/run/ckpt/criu");
    std::fs::create_dir_all(mount_point).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "ckpt-test-full"])
        .arg(mount_point)
        .status()
        .unwrap();
    assert!(mounted.success());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let out = ckpt()
        .args([
            "sweep",
            "--engine",
            "criu",
            "--children",
            "4",
            "--repeat",
            "2",
            "--warmup",
            "0",
            "--output",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let busy_before = ckpt_objects();
    let mut umounted = false;
    for _ in 0..50 {
        umounted = Command::new("umount")
            .arg(mount_point)
            .status()
            .unwrap()
            .success();
        if umounted {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !umounted {
        // Never leave a full filesystem behind for the next test.
        let _ = Command::new("umount").arg("-l").arg(mount_point).status();
    }
    assert!(
        umounted,
        "the tmpfs stayed busy; still there: {busy_before:?}"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let all = records(&dir);
    assert_eq!(all.len(), 2);
    for r in &all {
        assert_eq!(
            r["status"], "failed",
            "a checkpoint cannot fit in 256 KiB: {r}"
        );
        assert!(
            r["restore_ms"].is_null(),
            "no restore from a partial checkpoint: {r}"
        );
        // The dump runs out of space (or, while the previous trial's files
        // are still being removed, already the start does): either way the
        // reason is named.
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("checkpointing") || error.contains("No space left"),
            "{r}"
        );
    }
    assert!(
        all.iter()
            .any(|r| r["error"].as_str().unwrap().contains("checkpointing")),
        "the first trial reaches its checkpoint: {all:?}"
    );
    assert_eq!(ckpt_objects(), before);
}

/// A run killed before it could put /etc/criu/runc.conf back leaves its
/// work-dir line there; the next sweep takes it back (and says so) instead
/// of losing CRIU's phases to it.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_killed_runs_runc_conf_line_is_taken_back_by_the_next_sweep() {
    let conf = std::path::Path::new("/etc/criu/runc.conf");
    let users = std::fs::read_to_string(conf).ok();
    let dead_dir = "/run/ckpt/stats/criu-work-20000101-000000-dead";
    std::fs::create_dir_all(dead_dir).unwrap();
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    // pid 4194305 is above any kernel's pid_max: that run is surely gone.
    std::fs::write(
        conf,
        format!(
            "{}# ckpt: added by run 20000101-000000-dead pid 4194305\nwork-dir {dead_dir}\n",
            users.clone().unwrap_or_default()
        ),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let out = ckpt()
        .args([
            "sweep",
            "--engine",
            "runc",
            "--children",
            "1",
            "--repeat",
            "1",
            "--warmup",
            "0",
        ])
        .arg("--output")
        .arg(&dir)
        .output()
        .unwrap();
    let after = std::fs::read_to_string(conf).ok();
    match &users {
        Some(text) => std::fs::write(conf, text).unwrap(),
        None => {
            let _ = std::fs::remove_file(conf);
        }
    }
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("took back"), "{stderr}");
    assert_eq!(after, users, "the dead run's line is gone, the user's kept");
    assert!(!std::path::Path::new(dead_dir).exists());
    let record = &records(&dir)[0];
    assert!(record["criu_frozen_ms"].as_f64().is_some(), "{record}");
}
