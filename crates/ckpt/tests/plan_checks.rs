//! Plans are checked before anything changes on the host: an absurd one is
//! refused at once with the figures, and leaves no results directory and no
//! line in /etc/criu/runc.conf. Needs no engine (the checks come first), so
//! it runs in a plain `cargo test`.

mod common;

use common::{ckpt, text};

fn refused(args: &[&str]) -> (String, std::path::PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let conf_before = std::fs::read_to_string("/etc/criu/runc.conf").ok();
    let out = ckpt()
        .arg("sweep")
        .args(args)
        .arg("--output")
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!dir.exists(), "nothing is created for a refused plan");
    assert_eq!(
        std::fs::read_to_string("/etc/criu/runc.conf").ok(),
        conf_before,
        "the host's CRIU configuration is not touched"
    );
    (stderr, dir, tmp)
}

#[test]
fn a_hundred_million_children_are_refused_with_the_kernels_figures() {
    let (stderr, ..) = refused(&["--children", "1..100000000"]);
    assert!(
        stderr.contains("100000001 tasks") && stderr.contains("kernel.pid_max"),
        "{stderr}"
    );
}

#[test]
fn a_plan_of_days_needs_accept_long() {
    let (stderr, ..) = refused(&["--children", "1..5000", "--engine", "criu", "--repeat", "3"]);
    assert!(
        stderr.contains("--accept-long") && stderr.contains("20000 trials"),
        "{stderr}"
    );
}

#[test]
fn too_many_values_on_an_axis_or_trials_in_all_are_refused() {
    let (stderr, ..) = refused(&["--memory-mib", "0..200000"]);
    assert!(stderr.contains("200001 values"), "{stderr}");
    let (stderr, ..) = refused(&["--children", "1..1000", "--memory-mib", "0..999"]);
    assert!(stderr.contains("6000000 trials"), "{stderr}");
}

/// A move that cannot fit in this machine's memory is refused before any
/// engine is opened or any directory made.
#[test]
fn a_move_larger_than_the_memory_is_refused_up_front() {
    let out = ckpt()
        .args(["migrate", "--engine", "runc", "--memory-mib", "99999999"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs about") && stderr.contains("lower --memory-mib"),
        "{stderr}"
    );
}

/// `--probe` where it cannot work is refused before anything starts: on
/// an engine it is not built for, and towards another host (its clients
/// and the service share a segment of this machine only).
#[test]
fn a_probe_ckpt_cannot_run_is_refused_up_front() {
    let refusal = |args: &[&str]| {
        let out = ckpt().arg("migrate").args(args).output().unwrap();
        let (_, stderr) = text(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let program = ["--image", "img", "--cmd", "srv", "--probe", "tcp:7000"];
    let said = refusal(&[&["--engine", "criu"][..], &program].concat());
    assert!(said.contains("drop --image"), "{said}");
    let said = refusal(&["--probe", "tcp:7000"]);
    assert!(said.contains("--cmd"), "{said}");
    let said = refusal(&["--engine", "runc", "--cmd", "srv", "--probe", "tcp:7000"]);
    assert!(said.contains("give --image too"), "{said}");
    let said = refusal(&[&program[..4], &["--probe", "smtp:25"]].concat());
    assert!(said.contains("smtp"), "{said}");
}
