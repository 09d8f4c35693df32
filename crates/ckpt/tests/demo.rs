//! `ckpt demo` end to end on the real Docker daemon and CRIU.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{ckpt, ckpt_objects, run, text};

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn demo_restores_and_the_sequence_continues() {
    let before = ckpt_objects();
    let out = run(&["demo", "--interval", "300ms", "--run-for", "1s"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for step in 1..=9 {
        assert!(
            stdout.contains(&format!("\n{step}. ")),
            "step {step} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("continuity holds"), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert_eq!(ckpt_objects(), before, "the demo left objects behind");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn interrupted_demo_leaves_nothing_behind() {
    let before = ckpt_objects();
    let mut child = ckpt()
        .args(["demo", "--interval", "500ms", "--run-for", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt while the container runs (after step 2, before the checkpoint).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    loop {
        let line = lines.next().expect("demo printed step 2").unwrap();
        if line.starts_with("2. ") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    assert!(
        !ckpt_objects().is_empty() || !before.is_empty(),
        "the demo created nothing to clean up"
    );
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert_eq!(
        ckpt_objects(),
        before,
        "the interrupted demo left objects behind"
    );
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn bad_input_is_refused_with_a_message() {
    let out = run(&["demo", "--interval", "0s"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("must be longer than 0"), "{stderr}");

    let out = run(&["demo", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));

    let out = run(&["demo", "--engine", "lxc"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("lxc"), "{stderr}");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn unreachable_daemon_is_a_clear_error() {
    let out = ckpt()
        .args(["gc"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Docker daemon"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn doctor_reports_every_check() {
    let out = run(&["doctor", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let checks: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for wanted in ["kernel", "criu", "criu check", "docker", "runc", "podman"] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "ok"),
        "{stdout}"
    );
}
