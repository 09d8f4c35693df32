//! A container of the user's moved (`ckpt migrate --container`): a real
//! redis-server that the test starts with the docker CLI, loaded with
//! data, moved to the throwaway host and back. It must end running where
//! it started, with the same id and the same data by its own check
//! (`DEBUG DIGEST`); a check that changes must be reported; what cannot
//! move must be refused with the container left as it was.

mod common;

use std::process::Command;

use common::{assert_fails, ckpt, ckpt_objects, leftovers, text, TestImage};

/// A container the test runs as a user would, removed when dropped.
struct UsersContainer {
    name: String,
}

impl UsersContainer {
    /// `docker run -d --name NAME EXTRA... IMAGE redis-server ...`, ready
    /// and holding 100,000 keys.
    fn start_redis(image: &str, extra: &[&str]) -> UsersContainer {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("users-redis-{}-{n}", std::process::id());
        let out = Command::new("docker")
            .args(["run", "-d", "--name", &name])
            .args(extra)
            .args([image, "redis-server", "--port", "6379", "--save", ""])
            .args(["--enable-debug-command", "local"])
            .output()
            .unwrap();
        assert!(out.status.success(), "docker run: {out:?}");
        let container = UsersContainer { name };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while container.redis(&["ping"]).trim() != "PONG" {
            assert!(std::time::Instant::now() < deadline, "redis never answered");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        container.redis(&["debug", "populate", "100000"]);
        container
    }

    fn redis(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(["exec", &self.name, "redis-cli", "-p", "6379"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn inspect(&self, format: &str) -> String {
        let out = Command::new("docker")
            .args(["inspect", "-f", format, &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn checkpoints(&self) -> String {
        let out = Command::new("docker")
            .args(["checkpoint", "ls", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .collect()
    }
}

impl Drop for UsersContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

fn move_it(container: &UsersContainer, check: &str) -> (std::process::Output, String) {
    let out = ckpt()
        .args(["migrate", "--engine", "docker", "--json"])
        .args(["--container", &container.name, "--check-cmd", check])
        .output()
        .unwrap();
    let stdout = text(&out).0;
    (out, stdout)
}

/// Nothing of ckpt's is left: no throwaway host, daemon, run directory,
/// labelled container or image, and no checkpoint in the user's container.
fn assert_nothing_left(container: &UsersContainer) {
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    assert!(ckpt_objects().is_empty(), "{:?}", ckpt_objects());
    assert_eq!(container.checkpoints(), "", "checkpoints left");
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_users_container_goes_away_and_comes_back_with_its_data() {
    let image = TestImage::build_in("redis", "docker");
    let container = UsersContainer::start_redis(&image.tag, &[]);
    let (id, digest) = (
        container.inspect("{{.Id}}"),
        container.redis(&["debug", "digest"]),
    );
    let (out, stdout) = move_it(&container, "redis-cli -p 6379 debug digest");
    assert!(out.status.success(), "{stdout}\n{}", text(&out).1);
    let moved: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(moved["id"], id.as_str(), "{moved}");
    assert_eq!(moved["state_ok"], true, "{moved}");
    let moves = moved["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 2, "{moved}");
    for (leg, (from, to)) in moves.iter().zip([
        ("this host", "the throwaway host"),
        ("the throwaway host", "this host"),
    ]) {
        assert_eq!(
            (leg["from"].as_str(), leg["to"].as_str()),
            (Some(from), Some(to))
        );
        assert_eq!(leg["state_ok"], true, "{leg}");
        assert!(leg["downtime_ms"].as_f64().unwrap() > 0.0, "{leg}");
        // 100,000 keys: the checkpoint holds megabytes of redis' memory.
        assert!(leg["checkpoint_bytes"].as_u64().unwrap() > 5 << 20, "{leg}");
    }
    // Where it started, the same container, running, its data intact.
    assert_eq!(
        container.inspect("{{.Id}} {{.State.Status}}"),
        format!("{id} running")
    );
    assert_eq!(container.redis(&["debug", "digest"]), digest);
    assert_eq!(container.redis(&["dbsize"]).trim(), "100000");
    assert_nothing_left(&container);
}

/// A check whose output changes (a counter the check itself increments)
/// fails both moves, and the container still comes home.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_changed_state_is_reported_and_the_container_comes_home_anyway() {
    let image = TestImage::build_in("redis", "docker");
    let container = UsersContainer::start_redis(&image.tag, &[]);
    let id = container.inspect("{{.Id}}");
    let (out, stdout) = move_it(&container, "redis-cli -p 6379 incr checks");
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out).1);
    let moved: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(moved["state_ok"], false, "{moved}");
    let problem = moved["moves"][0]["state_problem"].as_str().unwrap();
    assert!(
        problem.contains("'2'") && problem.contains("'1'"),
        "{problem}"
    );
    assert_eq!(
        container.inspect("{{.Id}} {{.State.Status}}"),
        format!("{id} running")
    );
    // Before, after the first move, after the second: three checks.
    assert_eq!(container.redis(&["get", "checks"]).trim(), "3");
    assert_nothing_left(&container);
}

/// A container with a volume is refused before anything changes; so are
/// one with a restart policy, a missing container and a move by anything
/// but copy.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn what_cannot_move_is_refused_and_left_as_it_was() {
    let image = TestImage::build_in("redis", "docker");
    let data = tempfile::tempdir().unwrap();
    let volume = format!("{}:/data", data.path().display());
    let container = UsersContainer::start_redis(&image.tag, &["-v", &volume]);
    let started = container.inspect("{{.State.StartedAt}}");
    assert_fails(
        &[
            "migrate",
            "--engine",
            "docker",
            "--container",
            &container.name,
        ],
        "/data",
    );
    assert_eq!(
        container.inspect("{{.State.StartedAt}} {{.State.Status}}"),
        format!("{started} running")
    );
    assert_fails(
        &[
            "migrate",
            "--engine",
            "docker",
            "--container",
            "no-such-container-of-anyones",
        ],
        "no container 'no-such-container-of-anyones'",
    );
    assert_fails(
        &[
            "migrate",
            "--engine",
            "docker",
            "--method",
            "lazy",
            "--container",
            &container.name,
        ],
        "by copy only",
    );
    // A restart policy would start it afresh while its state is away.
    let restarting = UsersContainer::start_redis(&image.tag, &["--restart", "always"]);
    assert_fails(
        &[
            "migrate",
            "--engine",
            "docker",
            "--container",
            &restarting.name,
        ],
        "restart policy 'always'",
    );
    assert_nothing_left(&container);
}
