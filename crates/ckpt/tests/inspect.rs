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

/// A network namespace of the test's own, named as ckpt names its own
/// (`ckpt gc` removes it when the test was killed); deleted, with what
/// still runs in it, when dropped.
struct Netns(String);

impl Netns {
    fn create(what: &str) -> Netns {
        let netns = Netns(format!("ckpt-m{}-{what}", std::process::id()));
        sh("ip", &["netns", "add", &netns.0]);
        sh("ip", &["-n", &netns.0, "link", "set", "lo", "up"]);
        netns
    }

    /// `nsenter` joining only this network namespace (`ip netns exec`
    /// would make a mount namespace, which CRIU would then try to dump).
    fn nsenter(&self) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.0))
            .arg("--");
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Dumps `ckpt hold-sockets` (a listener on 127.0.0.1 and a connection to
/// it) with `criu dump --tcp-established` inside `netns`.
fn dump_socket_holder(netns: &Netns, dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let out = dir.join("holder.out");
    let log = std::fs::File::create(&out).unwrap();
    let mut command = netns.nsenter();
    command
        .arg(env!("CARGO_BIN_EXE_ckpt"))
        .arg("hold-sockets")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // Its own session: CRIU dumps a tree without its session leader only
    // with --shell-job. SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // nsenter execs the holder in place: the child's pid is the holder's.
    let mut holder = command.spawn().unwrap();
    for _ in 0..250 {
        if std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("n 1")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let dumped = netns
        .nsenter()
        .args(["criu", "dump", "--tcp-established", "-t"])
        .arg(holder.id().to_string())
        .arg("-D")
        .arg(&images)
        .args(["-o", "dump.log", "-v2"])
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        dumped.status.success(),
        "criu dump: {}\n{}",
        std::fs::read_to_string(images.join("dump.log")).unwrap_or_default(),
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    images
}

/// `ckpt inspect DIR`'s text: one listener on 127.0.0.1, two connection
/// ends whose streams were saved.
fn inspect_text(images: &Path) -> String {
    let out = ckpt().arg("inspect").arg(images).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// The JSON's TCP sockets: a listener, and the two ends of a connection to
/// it (one on the listener's port, the other's peer on it), streams saved.
fn assert_one_listener_and_its_connection(json: &serde_json::Value) {
    let sockets = json["checkpoint"]["sockets"]["entries"].as_array().unwrap();
    let tcp: Vec<&serde_json::Value> = sockets.iter().filter(|s| s["family"] == "tcp").collect();
    let listener = tcp.iter().find(|s| s["state"] == "LISTEN").unwrap();
    let local = listener["local"].as_str().unwrap();
    let port = local.strip_prefix("127.0.0.1:").unwrap();
    let ends = |field: &str| {
        tcp.iter()
            .filter(|s| s["state"] == "ESTABLISHED" && s["stream_saved"] == true)
            .filter(|s| s[field].as_str().unwrap().ends_with(&format!(":{port}")))
            .count()
    };
    assert_eq!(
        (tcp.len(), ends("local"), ends("peer")),
        (3, 1, 1),
        "{json}"
    );
}

#[test]
#[ignore = "needs root and CRIU: ./scripts/test"]
fn criu_checkpoint_shows_its_tcp_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let netns = Netns::create("insp");
    let images = dump_socket_holder(&netns, tmp.path());
    drop(netns);
    let stdout = inspect_text(&images);
    eprintln!("{stdout}");
    assert_eq!(
        stdout.matches("tcp LISTEN 127.0.0.1:").count(),
        1,
        "{stdout}"
    );
    let connections = stdout
        .lines()
        .filter(|l| l.contains("tcp ESTABLISHED 127.0.0.1:"))
        .filter(|l| l.contains(" peer 127.0.0.1:") && l.ends_with(", stream saved"))
        .count();
    assert_eq!(connections, 2, "{stdout}");
    let json = inspect_json(&[images.to_str().unwrap(), "--sockets"]);
    assert_one_listener_and_its_connection(&json);
    assert!(json["checkpoint"].get("processes").is_none());

    let dir = images.to_str().unwrap();
    let same = ckpt().args(["diff", dir, dir, "--json"]).output().unwrap();
    let same: serde_json::Value = serde_json::from_str(&text(&same).0).unwrap();
    let count = &json["checkpoint"]["sockets"]["entries"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(&same["sockets"]["unchanged"], count, "{same}");
    assert_eq!(same["unchanged"], true, "{same}");

    // A cut files.img: the sockets are unknown, the file and offset named.
    let files = images.join("files.img");
    let bytes = std::fs::read(&files).unwrap();
    std::fs::write(&files, &bytes[..bytes.len() - 3]).unwrap();
    let stdout = inspect_text(&images);
    assert!(stdout.contains("sockets: unknown"), "{stdout}");
    assert!(
        stdout.contains("warning: files.img: the file ends early") && stdout.contains("offset"),
        "{stdout}"
    );
}
