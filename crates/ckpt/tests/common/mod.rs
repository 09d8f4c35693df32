//! Helpers shared by the integration tests. They run the real `ckpt`
//! binary against the real Docker daemon and CRIU that scripts/setup
//! installs; nothing is mocked.
#![allow(dead_code)]

use std::process::{Command, Output};

pub fn ckpt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ckpt"))
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

/// Ids of Docker containers and images that carry ckpt's run label,
/// containerd's checkpoint copies in /tmp (which ckpt must remove too), the
/// work directories under /run/ckpt and the lines ckpt adds to
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
    ids
}
