//! Real programs, not ckpt's own: redis-server and python3's HTTP server,
//! in images that scripts/make-image builds from Debian's packages, swept
//! on Docker and Podman with their state loaded by --setup-cmd and checked
//! by --check-cmd; a check that does fail when the state differs; and the
//! doctor's socket check, passing with the CRIU setup builds and failing
//! with an unpatched one.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ckpt, ckpt_objects, records, text, TestImage, REDIS_PROGRAM};

/// redis, ready when it says so (without the data and check of
/// `REDIS_PROGRAM`).
const REDIS_ARGS: [&str; 4] = [
    REDIS_PROGRAM[0],
    REDIS_PROGRAM[1],
    REDIS_PROGRAM[2],
    REDIS_PROGRAM[3],
];

/// What a sweep printed and recorded.
struct Swept {
    ok: bool,
    output: String,
    records: Vec<serde_json::Value>,
}

/// `ckpt sweep` of one point, one trial per engine, of an image of `kind`
/// built for it (and removed after it); checks that the sweep left nothing
/// of ckpt's and that the image is still there.
fn sweep_image(kind: &str, engines: &str, extra: &[&str]) -> Swept {
    let before = ckpt_objects();
    let image = TestImage::build(kind);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results");
    let out = ckpt()
        .args(["sweep", "--engine", engines, "--children", "1"])
        .args(["--repeat", "1", "--warmup", "0", "--image", &image.tag])
        .args(extra)
        .arg("--output")
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    let swept = Swept {
        ok: out.status.success(),
        output: format!("{stdout}\n{stderr}"),
        records: records(&dir),
    };
    assert_eq!(
        swept.records.len(),
        engines.split(',').count(),
        "{}",
        swept.output
    );
    assert!(image.exists_in("docker") && image.exists_in("podman"));
    assert_eq!(ckpt_objects(), before, "nothing left behind");
    swept
}

/// Every record has `status` (and `state_ok`, when given).
fn assert_each(swept: &Swept, status: &str, state_ok: Option<bool>) {
    for r in &swept.records {
        assert_eq!(r["status"], status, "{r}");
        if let Some(state_ok) = state_ok {
            assert_eq!(r["state_ok"], state_ok, "{r}");
        }
    }
}

#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn redis_with_loaded_data_keeps_its_digest_on_docker_podman_and_runc() {
    let swept = sweep_image("redis", "docker,podman,runc", &REDIS_PROGRAM);
    assert!(swept.ok, "{}", swept.output);
    assert_each(&swept, "ok", Some(true));
    for r in &swept.records {
        assert!(r["setup_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["check_ms"].as_f64().unwrap() > 0.0, "{r}");
        // 100000 keys are in the checkpoint: several MiB, not an empty server.
        assert!(r["checkpoint_bytes"].as_u64().unwrap() > 8 << 20, "{r}");
    }
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_check_whose_output_changes_fails_the_trial_with_both_outputs() {
    // INCR answers 1 before the checkpoint and 2 after: the state differs.
    let swept = sweep_image(
        "redis",
        "docker",
        &[
            &REDIS_ARGS[..],
            &["--check-cmd", "redis-cli -p 6379 incr ckpt-check"],
        ]
        .concat(),
    );
    assert_each(&swept, "unverified", Some(false));
    let error = swept.records[0]["error"].as_str().unwrap();
    assert!(
        error.contains("printed '2'") && error.contains("'1'"),
        "{error}"
    );
    assert!(
        swept.output.contains("NOT verified: the program's check"),
        "{}",
        swept.output
    );
}

#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn python_http_server_serves_the_same_page_after_the_restore() {
    let fetch = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/').read().decode())\"";
    let swept = sweep_image(
        "python",
        "docker,podman,runc",
        &[
            "--cmd",
            "python3 -m http.server 8080 --bind 127.0.0.1 --directory /srv/www",
            "--ready-pattern",
            "Serving HTTP",
            "--check-cmd",
            fetch,
            "--check-expect",
            "(?i)<html",
        ],
    );
    assert!(swept.ok, "{}", swept.output);
    assert_each(&swept, "ok", Some(true));
}

#[test]
#[ignore = "needs root and CRIU: ./scripts/test"]
fn doctor_checkpoints_a_tcp_connection_and_leaves_nothing() {
    let out = ckpt().args(["doctor", "--json"]).output().unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sockets = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sockets")
        .expect("a sockets check");
    assert_eq!(sockets["status"], "ok", "{sockets}");
    assert!(
        sockets["detail"]
            .as_str()
            .unwrap()
            .contains("--tcp-established"),
        "{sockets}"
    );
    assert_no_ckpt_namespace();
}

/// No network namespace of ckpt's is left (`ckpt-m<pid>-...`).
fn assert_no_ckpt_namespace() {
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ckpt-m"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// CRIU 4.1.1 without the socket patch, built from the source tarball
/// scripts/setup keeps, in a directory to put first on PATH.
fn unpatched_criu() -> tempfile::TempDir {
    let tarball = "/var/cache/ckpt-setup/src/criu_4.1.1.orig.tar.xz";
    assert!(
        Path::new(tarball).is_file(),
        "scripts/setup keeps {tarball}"
    );
    let build = tempfile::tempdir().unwrap();
    let ok = Command::new("tar")
        .arg("-C")
        .arg(build.path())
        .args(["-xf", tarball])
        .status()
        .unwrap()
        .success();
    assert!(ok, "unpacking {tarball}");
    let tree = build.path().join("criu-4.1.1");
    let out = Command::new("make")
        .arg("-C")
        .arg(&tree)
        .args(["-j2", "criu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "building CRIU: {out:?}");
    let bin = tempfile::tempdir().unwrap();
    std::fs::copy(tree.join("criu/criu"), bin.path().join("criu")).unwrap();
    bin
}

#[test]
#[ignore = "needs root, CRIU's build dependencies (scripts/setup) and dockerd: ./scripts/test"]
fn an_unpatched_criu_fails_the_socket_check_and_user_sweeps_are_refused() {
    let before = ckpt_objects();
    let bin = unpatched_criu();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = ckpt()
        .args(["doctor", "--json"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sockets = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sockets")
        .unwrap();
    assert_eq!(sockets["status"], "warn", "{sockets}");
    let detail = sockets["detail"].as_str().unwrap();
    assert!(detail.contains("1:16 opt"), "CRIU's own words: {detail}");
    assert!(
        sockets["fix"]
            .as_str()
            .unwrap()
            .contains("criu-4.1.1-socket-opts.patch"),
        "{sockets}"
    );
    // A sweep of a user's program is refused before anything starts.
    let tmp = tempfile::tempdir().unwrap();
    let out = ckpt()
        .args(["sweep", "--children", "1", "--repeat", "1", "--warmup", "0"])
        .args(["--image", "any-image:1", "--cmd", "x"])
        .arg("--output")
        .arg(tmp.path().join("refused"))
        .env("PATH", &path)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("needs CRIU to checkpoint sockets") && stderr.contains("scripts/setup"),
        "{stderr}"
    );
    assert!(!tmp.path().join("refused").exists());
    assert_no_ckpt_namespace();
    assert_eq!(ckpt_objects(), before, "nothing left behind");
}

#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn a_program_that_dies_before_it_is_ready_is_reported_at_once_with_its_last_words() {
    let started = std::time::Instant::now();
    // redis-server refuses an unknown option and exits with status 1.
    let swept = sweep_image(
        "redis",
        "docker,podman,runc",
        &[
            "--cmd",
            "redis-server --port 6379 --no-such-option 1",
            "--ready-pattern",
            "Ready to accept connections",
            "--ready-timeout",
            "300s",
        ],
    );
    // Far below the ready timeout: nobody waited for it.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(150),
        "{}",
        swept.output
    );
    assert_each(&swept, "failed", None);
    for r in &swept.records {
        let error = r["error"].as_str().unwrap();
        assert!(error.contains("ended before printing"), "{error}");
        assert!(error.contains("Bad directive"), "its last lines: {error}");
    }
}

#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn a_failed_checkpoint_quotes_criu_on_docker_and_podman() {
    // A TCP connection to itself: CRIU refuses it without --tcp-established.
    let holder = "python3 -c \"import socket,time; l=socket.socket(); l.bind(('127.0.0.1',7000)); l.listen(); c=socket.create_connection(('127.0.0.1',7000)); s=l.accept(); print('ready',flush=True); time.sleep(600)\"";
    let swept = sweep_image(
        "python",
        "docker,podman",
        &["--cmd", holder, "--ready-pattern", "^ready$"],
    );
    assert_each(&swept, "failed", None);
    for r in &swept.records {
        let error = r["error"].as_str().unwrap();
        assert!(
            error.contains("CRIU said:") && error.contains("--tcp-established"),
            "CRIU's own words, not only the engine's: {error}"
        );
    }
}

/// A program holding a TCP connection to itself that sends a byte over it
/// every 200 ms and prints the count; it dies (no new line) when the
/// connection breaks.
const CONNECTED: &str = "python3 -c \"import socket,time; l=socket.socket(); l.bind(('127.0.0.1',7000)); l.listen(); c=socket.create_connection(('127.0.0.1',7000)); s,_=l.accept(); print('ready',flush=True); n=0\nwhile True:\n  c.sendall(b'x'); assert s.recv(1)==b'x'; n+=1; print('n',n,flush=True); time.sleep(0.2)\"";

#[test]
#[ignore = "needs root, Podman and CRIU: ./scripts/test"]
fn an_established_connection_carries_on_after_the_restore_on_runc_and_podman() {
    let swept = sweep_image(
        "python",
        "runc,podman",
        &[
            "--tcp-established",
            "--cmd",
            CONNECTED,
            "--ready-pattern",
            "^ready$",
            // A new count after the restore: bytes crossed the restored connection.
            "--check-pattern",
            "^n [0-9]+$",
        ],
    );
    assert!(swept.ok, "{}", swept.output);
    assert_each(&swept, "ok", None);
    assert_no_ckpt_namespace();
}

#[test]
#[ignore = "needs root and dockerd: ./scripts/test"]
fn tcp_established_on_docker_is_refused_up_front_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    common::assert_fails(
        &[
            "sweep",
            "--engine",
            "docker",
            "--tcp-established",
            "--image",
            "any:1",
            "--cmd",
            "x",
            "--output",
            tmp.path().join("refused").to_str().unwrap(),
        ],
        "Docker's API has no such option",
    );
    assert!(!tmp.path().join("refused").exists());
}

#[test]
#[ignore = "needs root and CRIU: ./scripts/test"]
fn an_established_connection_carries_on_after_the_restore_on_the_criu_engine() {
    let before = ckpt_objects();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kept-criu");
    // No image: the host's python3, in a network namespace of ckpt's.
    let out = ckpt()
        .args(["sweep", "--engine", "criu", "--children", "1"])
        .args(["--repeat", "2", "--warmup", "0", "--tcp-established"])
        .args(["--cmd", CONNECTED, "--ready-pattern", "^ready$"])
        .args(["--check-pattern", "^n [0-9]+$"])
        // ESTABLISHED (01) rows in the program's own namespace after the restore.
        .args(["--check-cmd", "cat /proc/net/tcp", "--check-expect", " 01 "])
        .arg("--output")
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let records = records(&dir);
    assert_eq!(records.len(), 2, "{stderr}");
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["state_ok"], true, "{r}");
    }
    assert_no_ckpt_namespace();
    assert_eq!(ckpt_objects(), before, "nothing left behind");
}

#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn an_image_only_docker_has_is_copied_for_podman_and_the_copy_removed() {
    let before = ckpt_objects();
    let image = TestImage::build_in("redis", "docker");
    assert!(!image.exists_in("podman"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("copied");
    let out = ckpt()
        .args(["sweep", "--engine", "podman", "--children", "1"])
        .args(["--repeat", "1", "--warmup", "0", "--image", &image.tag])
        .args(REDIS_ARGS)
        .arg("--output")
        .arg(&dir)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(records(&dir)[0]["status"], "ok");
    assert!(!image.exists_in("podman"), "ckpt's copy is removed");
    assert!(image.exists_in("docker"), "the user's image stays");
    assert_eq!(ckpt_objects(), before, "nothing left behind");
}

#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn a_program_that_writes_its_root_needs_writable_rootfs_on_runc() {
    let writer = "python3 -c \"open('/state', 'w').write('1'); print('ready', flush=True); import time; time.sleep(600)\"";
    let args = ["--cmd", writer, "--ready-pattern", "^ready$"];
    let read_only = sweep_image("python", "runc", &args);
    assert_each(&read_only, "failed", None);
    let error = read_only.records[0]["error"].as_str().unwrap();
    assert!(error.contains("Read-only file system"), "{error}");
    let writable = sweep_image(
        "python",
        "runc",
        &[&args[..], &["--writable-rootfs"]].concat(),
    );
    assert!(writable.ok, "{}", writable.output);
    assert_each(&writable, "ok", None);
}
