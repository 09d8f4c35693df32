//! `ckpt inspect` on checkpoints that the real CRIU, Podman and Docker make.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ckpt, text};

fn workload() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ckpt"));
    let target = exe.parent().unwrap().parent().unwrap();
    let path = target.join("x86_64-unknown-linux-gnu/release/ckpt-workload");
    assert!(
        path.is_file(),
        "run scripts/build first: {} is missing",
        path.display()
    );
    path
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds the workload image with `tool` from ckpt's own build context.
fn build_workload_image(tool: &str, tag: &str) {
    let ctx = tempfile::tempdir().unwrap();
    let tar_bytes = ckpt::workload::build_context(&workload()).unwrap();
    tar::Archive::new(tar_bytes.as_slice())
        .unpack(ctx.path())
        .unwrap();
    sh(
        tool,
        &["build", "-q", "-t", tag, ctx.path().to_str().unwrap()],
    );
}

fn inspect_json(args: &[&str]) -> serde_json::Value {
    let out = ckpt()
        .arg("inspect")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Eleven tasks: the forker and its ten children, each with memory.
fn assert_forker_tree(json: &serde_json::Value, children: usize) {
    let procs = json["checkpoint"]["processes"].as_array().unwrap();
    assert_eq!(procs.len(), children + 1, "{json}");
    let root = procs[0]["pid"].as_u64().unwrap();
    assert!(
        procs[1..].iter().all(|p| p["ppid"].as_u64() == Some(root)),
        "every child's parent is the forker"
    );
    for p in procs {
        assert_eq!(p["command"], "ckpt-workload");
        assert!(p["memory"]["pages_dumped"].as_u64().unwrap() > 0, "{p}");
        assert!(!p["memory"]["areas"].as_array().unwrap().is_empty());
    }
}

/// Dumps a forker process tree with plain CRIU (no container).
fn criu_dump(dir: &Path, children: u32) -> (PathBuf, PathBuf) {
    let (images, work) = (dir.join("images"), dir.join("work"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let log = std::fs::File::create(dir.join("out.log")).unwrap();
    let mut command = Command::new(workload());
    command
        .args(["forker", "--children", &children.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // CRIU refuses a tree whose session leader it cannot dump; whoever runs
    // the tests (a terminal, CI) owns our session, so the tree gets its own.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    for _ in 0..100 {
        if std::fs::read_to_string(dir.join("out.log"))
            .unwrap_or_default()
            .contains("ready")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new("criu")
        .args(["dump", "-t", &child.id().to_string(), "-D"])
        .arg(&images)
        .arg("-W")
        .arg(&work)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "criu dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (images, work)
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn criu_checkpoint_shows_the_tree_and_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, work) = criu_dump(tmp.path(), 10);
    let json = inspect_json(&[
        images.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    assert_forker_tree(&json, 10);
    let stats = &json["checkpoint"]["dump_stats"];
    assert!(stats["pages_written"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["frozen_time"].as_u64().unwrap() > 0, "{stats}");
    // --stats alone gives the statistics without the tree.
    let only = inspect_json(&[
        images.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        "--stats",
    ]);
    assert!(only["checkpoint"]["dump_stats"].is_object());
    assert!(only["checkpoint"].get("processes").is_none());
    // The tree view names every process.
    let out = ckpt()
        .args(["inspect", images.to_str().unwrap(), "--mem", "--files"])
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(
        stdout.matches("ckpt-workload (alive)").count(),
        11,
        "{stdout}"
    );
    assert!(stdout.contains(" mem "), "{stdout}");
    assert!(stdout.contains(" fd "), "{stdout}");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn corrupt_images_are_named_with_their_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (images, _) = criu_dump(tmp.path(), 2);
    let pstree = images.join("pstree.img");
    let bytes = std::fs::read(&pstree).unwrap();
    for (what, broken) in [
        ("truncated", bytes[..bytes.len() - 3].to_vec()),
        ("wrong magic", [&[0u8, 1, 2, 3][..], &bytes[4..]].concat()),
        (
            "absurd size",
            [&bytes[..8], &u32::MAX.to_le_bytes()[..], &bytes[12..]].concat(),
        ),
        ("garbage", [&bytes[..12], &[0xff; 16][..]].concat()),
    ] {
        std::fs::write(&pstree, &broken).unwrap();
        let out = ckpt()
            .args(["inspect", images.to_str().unwrap()])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains("pstree.img") && stderr.contains("offset"),
            "{what}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }
    let out = ckpt()
        .args(["inspect", tmp.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        text(&out).1.contains("not a CRIU checkpoint"),
        "{:?}",
        text(&out)
    );
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn podman_export_archive_shows_container_and_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("localhost/ckpt-test-inspect:{}", std::process::id());
    let name = format!("ckpt-test-inspect-{}", std::process::id());
    build_workload_image("podman", &tag);
    let archive = tmp.path().join("export.tar.zst");
    let result = std::panic::catch_unwind(|| {
        sh(
            "podman",
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--runtime",
                "runc",
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
                &tag,
                "forker",
                "--children",
                "10",
            ],
        );
        std::thread::sleep(Duration::from_millis(500));
        sh(
            "podman",
            &[
                "container",
                "checkpoint",
                "--runtime",
                "runc",
                "--export",
                archive.to_str().unwrap(),
                &name,
            ],
        );
        let json = inspect_json(&[archive.to_str().unwrap()]);
        assert_forker_tree(&json, 10);
        let c = &json["container"];
        assert_eq!(c["engine"], "podman");
        assert_eq!(c["name"].as_str(), Some(name.as_str()));
        assert!(
            c["image"].as_str().unwrap().contains("ckpt-test-inspect"),
            "{c}"
        );
        assert_eq!(c["runtime"], "runc");
        assert!(c["rootfs_diff_bytes"].is_u64());
        assert!(
            json["checkpoint"]["dump_stats"]["pages_written"]
                .as_u64()
                .unwrap()
                > 0
        );
    });
    let _ = Command::new("podman").args(["rm", "-f", &name]).output();
    let _ = Command::new("podman").args(["rmi", "-f", &tag]).output();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn docker_container_checkpoint_shows_its_processes() {
    let tag = format!("ckpt-test-inspect:{}", std::process::id());
    let name = format!("ckpt-test-inspect-{}", std::process::id());
    build_workload_image("docker", &tag);
    let result = std::panic::catch_unwind(|| {
        sh(
            "docker",
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "none",
                &tag,
                "forker",
                "--children",
                "10",
            ],
        );
        std::thread::sleep(Duration::from_millis(500));
        sh("docker", &["checkpoint", "create", &name, "cp1"]);
        let json = inspect_json(&[&name]);
        assert_forker_tree(&json, 10);
        assert_eq!(json["container"]["engine"], "docker");
        assert!(json["checkpoint"]["total_bytes"].as_u64().unwrap() > 0);
    });
    // dockerd leaves the namespace file of a `--network none` sandbox
    // behind (the README's Cleanup); the CLI started it, so the test goes.
    let sandbox = Command::new("docker")
        .args(["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", &name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    if sandbox.starts_with("/var/run/docker/netns/") {
        let _ = std::fs::remove_file(&sandbox);
    }
    let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
    // containerd's copy of the checkpoint (containerd#10166) is ours to remove.
    for entry in std::fs::read_dir("/tmp").unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("ctrd-checkpoint")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
