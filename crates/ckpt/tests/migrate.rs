//! `ckpt migrate` and `ckpt serve` against real runc and CRIU, across a
//! real link (a network namespace joined by a veth pair), with nothing left
//! on either side afterwards.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    ckpt, ckpt_objects, kill_the_destination_mid_transfer, leftovers, text, TestImage,
    REDIS_PROGRAM,
};

fn migrate(engine: &str, method: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let out = ckpt()
        .args([
            "migrate",
            "--engine",
            engine,
            "--method",
            method,
            "--children",
            "2",
            "--memory-mib",
            "32",
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{engine} {method}: {stderr}");
    (serde_json::from_str(&stdout).unwrap(), stderr)
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn copy_and_page_server_move_runc_containers_and_criu_trees_verified_leaving_nothing() {
    let before = ckpt_objects();
    for (engine, method) in [
        ("runc", "copy"),
        ("runc", "page-server"),
        ("criu", "copy"),
        ("criu", "page-server"),
    ] {
        let (m, stderr) = migrate(engine, method, &[]);
        assert_eq!(m["check"]["Verified"]["processes"], 3, "{m}");
        assert_eq!(m["check"]["Verified"]["memory_ok"], true, "{m}");
        let downtime = m["downtime_ms"].as_f64().unwrap();
        assert!(
            downtime > 0.0 && downtime <= m["total_ms"].as_f64().unwrap(),
            "{m}"
        );
        // The workload ticks every 10 ms: across the move its users saw one
        // pause, longer than a tick and no longer than the move.
        let gap = m["gap_ms"].as_f64().unwrap();
        assert!(
            gap > 10.0 && gap <= m["total_ms"].as_f64().unwrap() + 100.0,
            "{m}"
        );
        // 3 processes x 32 MiB crossed the link, one way or another, and
        // are in the checkpoint's size wherever they travelled.
        assert!(m["bytes_sent"].as_u64().unwrap() > 96 << 20, "{m} {stderr}");
        assert!(m["checkpoint_bytes"].as_u64().unwrap() > 96 << 20, "{m}");
        // One host's clock: nothing to correct.
        assert!(m["clock"].is_null(), "{m}");
        assert!(
            leftovers().is_empty(),
            "{engine} {method}: {:?}",
            leftovers()
        );
    }
    assert_eq!(ckpt_objects(), before);
}

/// Post-copy with the host's default pipe size (1 MiB): what CRIU's lazy
/// page transfer needs without CAP_SYS_RESOURCE comes from scripts/setup's
/// CRIU build, not from a sysctl raised behind the user's back.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn lazy_pages_move_a_runc_container_with_the_default_pipe_size() {
    let pipe_max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size").unwrap();
    assert_eq!(
        pipe_max.trim(),
        "1048576",
        "the test checks the default, it does not raise it"
    );
    let (m, _) = migrate("runc", "lazy", &[]);
    assert_eq!(m["check"]["Verified"]["memory_ok"], true, "{m}");
    assert!(
        m["phases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "pages"),
        "{m}"
    );
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// The destination dies in the middle of a stop-and-copy move: the
/// checkpoint is still whole at the source, so the workload starts again
/// there; then everything is removed on both sides.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_dead_destination_costs_nothing_with_copy() {
    let child = ckpt()
        .args([
            "migrate",
            "--engine",
            "runc",
            "--method",
            "copy",
            "--memory-mib",
            "128",
            "--link-rate",
            "100mbit",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The transfer of 128 MiB at 100 Mbit/s takes about 10 s: the
    // destination dies once it has received some of it.
    kill_the_destination_mid_transfer(child);
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// Post-copy whose destination dies while the pages stream: the memory had
/// left the source, so the workload is lost with the destination. ckpt said
/// so before it started, says so when it happens, and leaves nothing on
/// either side (no workload process either).
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_dead_destination_loses_a_lazy_move_and_says_so() {
    let child = ckpt()
        .args(["migrate", "--engine", "runc", "--method", "lazy"])
        .args(["--memory-mib", "128", "--link-rate", "100mbit"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // 128 MiB at 100 Mbit/s stream for about 10 s after the restore: the
    // destination's lazy-pages daemon is what fetches them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running("criu lazy-pages") {
        assert!(Instant::now() < deadline, "the lazy restore never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    for destination in ["ckpt serve --once", "criu lazy-pages"] {
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", destination])
            .status();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the destination fails, the workload is lost"),
        "warned before: {stderr}"
    );
    assert!(stderr.contains("lost"), "{stderr}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    // The restored processes at the destination die with their container
    // (killed while waiting for pages): give them a moment to go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running("ckpt-workload") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!running("ckpt-workload"), "a workload process was left");
}

fn running(command: &str) -> bool {
    Command::new("pgrep")
        .args(["-f", command])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn an_interrupted_migration_leaves_nothing() {
    for delay_ms in [300u64, 900, 1500] {
        let child = ckpt()
            .args([
                "migrate",
                "--engine",
                "runc",
                "--method",
                "copy",
                "--memory-mib",
                "64",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            matches!(out.status.code(), Some(0) | Some(130)),
            "{delay_ms} ms: {stderr}"
        );
        assert!(
            leftovers().is_empty(),
            "{delay_ms} ms: {:?} {stderr}",
            leftovers()
        );
    }
}

/// A program of the user's (redis-server with 100,000 keys) moves on runc
/// by each method: the destination unpacks the image from its own storage
/// and writes its own bundle; the data's digest is the same after the
/// restore there as before the dump here (state_ok); the gap is unknown,
/// not 0; nothing is left behind and the image is the test's to remove.
#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn redis_moves_by_every_method_with_its_data_leaving_nothing() {
    let before = ckpt_objects();
    let image = TestImage::build("redis");
    for method in ["copy", "page-server", "lazy"] {
        let out = ckpt()
            .args(["migrate", "--engine", "runc", "--method", method, "--json"])
            .args(["--image", &image.tag])
            .args(REDIS_PROGRAM)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{method}: {stdout}\n{stderr}");
        let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(m["state_ok"], true, "{method}: {m}");
        assert_eq!(m["program"], image.tag.as_str(), "{m}");
        assert!(m["gap_ms"].is_null(), "unknown, not 0: {m}");
        let verified = &m["check"]["Verified"];
        assert_eq!(verified["processes"], m["processes_before"], "{m}");
        assert_eq!(verified["state"].as_str().unwrap().trim().len(), 40, "{m}");
        let phases: Vec<&str> = m["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(phases.contains(&"prepare"), "{m}");
        // 100,000 keys crossed: several MiB, whichever way the pages went.
        assert!(m["bytes_sent"].as_u64().unwrap() > 8 << 20, "{m}");
        assert!(leftovers().is_empty(), "{method}: {:?}", leftovers());
    }
    assert!(image.exists_in("docker") && image.exists_in("podman"));
    drop(image);
    assert_eq!(ckpt_objects(), before);
}

/// A sweep of migration trials of redis-server on runc (`--migrate
/// --image`) with its clients connected (`--probe`): every trial moves the
/// program, loaded and checked by its own commands, and records state_ok
/// true and what the clients saw (every connection kept, nothing failed or
/// lost, counters consistent), which the report shows; nothing is left.
#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn a_sweep_moves_a_program_of_the_users_with_its_state() {
    let before = ckpt_objects();
    let image = TestImage::build_in("redis", "docker");
    let dir = tempfile::tempdir().unwrap();
    let out = ckpt()
        .args([
            "sweep",
            "--engine",
            "runc",
            "--migrate",
            "copy,lazy",
            "--children",
            "0",
        ])
        .args(["--repeat", "1", "--warmup", "0", "--image", &image.tag])
        .args(REDIS_PROGRAM)
        .args(["--probe", "redis:6379"])
        .arg("--output")
        .arg(dir.path().join("r"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let records = common::records(&dir.path().join("r"));
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r["state_ok"], true, "{r}");
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["engine"], "runc", "{r}");
        assert_eq!(r["client_kept"], 4, "{r}");
        assert_eq!(r["client_failed"], 0, "{r}");
        assert_eq!(r["client_unknown"], 0, "{r}");
        assert_eq!(r["client_counters_ok"], true, "{r}");
    }
    let report = std::fs::read_to_string(dir.path().join("r/report.md")).unwrap();
    assert!(
        report.contains("What the service's clients saw"),
        "{report}"
    );
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    drop(image);
    assert_eq!(ckpt_objects(), before);
}

/// What cannot move a program is refused before anything is made: an
/// image given to the criu engine (it runs --cmd on the host), and an
/// image neither Docker nor Podman holds, on runc and on Docker.
#[test]
#[ignore = "needs root, dockerd, Podman and CRIU: ./scripts/test"]
fn a_program_on_another_engine_or_of_a_missing_image_is_refused_up_front() {
    let before = ckpt_objects();
    let refused = |engine: &str, image: &str| {
        let out = ckpt()
            .args(["migrate", "--engine", engine, "--image", image])
            .args(REDIS_PROGRAM)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        text(&out).1
    };
    let stderr = refused("criu", "ckpt-no-such-image:1");
    assert!(
        stderr.contains("the criu engine runs --cmd as a process tree on the host")
            && stderr.contains("drop --image"),
        "{stderr}"
    );
    for engine in ["runc", "docker"] {
        let stderr = refused(engine, "ckpt-no-such-image:1");
        assert!(
            stderr.contains("neither Docker's nor Podman's storage"),
            "{engine}: {stderr}"
        );
    }
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    assert_eq!(ckpt_objects(), before);
}

#[test]
fn methods_an_engine_cannot_do_are_refused_up_front() {
    let out = ckpt()
        .args(["migrate", "--engine", "docker", "--method", "lazy"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot migrate with lazy") && stderr.contains("copy"),
        "{stderr}"
    );
    let out = ckpt()
        .args(["migrate", "--method", "teleport"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("copy, page-server, lazy"));
}

/// `ckpt serve` talks only to clients whose certificate comes from its CA:
/// no certificate, or one from another CA, and the handshake fails before
/// anything is created.
#[tokio::test(flavor = "current_thread")]
async fn serve_refuses_clients_without_valid_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    let (server, _) = ckpt::migrate::tls::throwaway(&ours, &[ip]).unwrap();
    let (_, stranger) = ckpt::migrate::tls::throwaway(&theirs, &[ip]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut serve = ckpt()
        .args(["serve", "--once", "--listen", &addr])
        .arg("--ca")
        .arg(&server.ca)
        .arg("--cert")
        .arg(&server.cert)
        .arg("--key")
        .arg(&server.key)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runs_before = leftovers();
    let name = rustls::pki_types::ServerName::IpAddress(ip.into());
    // A client from another CA.
    let connector = tokio_rustls::TlsConnector::from(stranger.client_config().unwrap());
    let tcp = connect_when_listening(&addr).await;
    let refused = async {
        let mut tls = connector.connect(name.clone(), tcp).await?;
        // TLS 1.3 reports a rejected client certificate on the first read.
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        tls.read(&mut byte).await
    };
    assert!(
        refused.await.map_or(true, |n| n == 0),
        "a stranger's certificate was accepted"
    );
    // A client with no certificate at all (it trusts the server's CA).
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_file_iter(&server.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let anonymous = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(anonymous));
    let tcp = connect_when_listening(&addr).await;
    let refused = async {
        let mut tls = connector.connect(name, tcp).await?;
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        tls.read(&mut byte).await
    };
    assert!(
        refused.await.map_or(true, |n| n == 0),
        "a client without a certificate was accepted"
    );
    assert!(
        serve.try_wait().unwrap().is_none(),
        "serve keeps serving after refusals"
    );
    assert_eq!(leftovers(), runs_before, "a refused client made nothing");
    serve.kill().unwrap();
    let out = serve.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("refused").count(), 2, "{stderr}");
    let _ = Path::new("");
}

async fn connect_when_listening(addr: &str) -> tokio::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => return tcp,
            Err(e) if Instant::now() > deadline => panic!("ckpt serve never listened: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Migration as a sweep operation: the method is a category of the grid,
/// every trial a verified move, the report a Migration section and figure.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_sweep_of_migrations_records_downtime_per_method() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("moves");
    let out = ckpt()
        .args([
            "sweep",
            "--migrate",
            "copy,page-server",
            "--engine",
            "runc,criu",
            "--link-rate",
            "1gbit",
        ])
        .args([
            "--children",
            "1",
            "--memory-mib",
            "0,16",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--output",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let records = common::records(&dir);
    assert_eq!(records.len(), 8, "2 engines x 2 methods x 2 points");
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        assert!(r["downtime_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["bytes_sent"].as_u64().unwrap() > 0, "{r}");
        assert!(
            ["copy", "page-server"].contains(&r["method"].as_str().unwrap()),
            "{r}"
        );
        // The engine column holds the engine; the series label is the analysis's.
        assert!(
            ["runc", "criu"].contains(&r["engine"].as_str().unwrap()),
            "{r}"
        );
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("## Migration") && report.contains("runc+page-server"),
        "{report}"
    );
    assert!(dir.join("migration.svg").exists());
    // The link's rate is part of the plan and named in the Method.
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["link_rate"], "1gbit", "{plan}");
    assert!(report.contains("shaped to 1gbit"), "{report}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// A destination host the test makes itself, as a user would on another
/// machine: a network namespace joined by a veth pair (ckpt's own link
/// code), credentials from `ckpt credentials`, and `ckpt serve --once`
/// started inside the namespace. Dropping it removes all of it.
struct UserHost {
    link: ckpt::migrate::link::Link,
    dir: tempfile::TempDir,
}

const USER_SERVE_PORT: u16 = 7300;

impl UserHost {
    fn new() -> UserHost {
        let run = ckpt::run::RunId::new();
        let link = ckpt::migrate::link::Link::create(&run, None).unwrap();
        UserHost {
            link,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `ckpt credentials` in `name`, naming both ends of the link.
    fn credentials(&self, name: &str) -> std::path::PathBuf {
        let dir = self.dir.path().join(name);
        let out = ckpt()
            .arg("credentials")
            .arg(&dir)
            .args(["--host", &self.link.host_addr.to_string()])
            .args(["--host", &self.link.peer_addr.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        dir
    }

    fn to(&self) -> String {
        format!("{}:{USER_SERVE_PORT}", self.link.peer_addr)
    }

    /// `ckpt serve --once` in the namespace with `ca` and `cert`/`key`;
    /// returns once it listens.
    fn serve(&self, ca: &Path, cert: &Path, key: &Path) -> std::process::Child {
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.link.netns))
            .arg(env!("CARGO_BIN_EXE_ckpt"))
            .args(["serve", "--once", "--listen", &self.to()])
            .arg("--ca")
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.serve_log().contains("listening") {
            assert!(Instant::now() < deadline, "ckpt serve never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// `ckpt migrate --to` this host with credentials from `dir`.
    fn migrate(&self, method: &str, ca: &Path, dir: &Path) -> std::process::Output {
        ckpt()
            .args(["migrate", "--engine", "runc", "--method", method])
            .args(["--children", "2", "--memory-mib", "32", "--json"])
            .args(["--to", &self.to()])
            .arg("--ca")
            .arg(ca)
            .arg("--cert")
            .arg(dir.join("migrate.pem"))
            .arg("--key")
            .arg(dir.join("migrate.key"))
            .output()
            .unwrap()
    }
}

/// Waits, bounded, for a `ckpt serve --once` to end by itself.
fn serve_ends(serve: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = serve.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "ckpt serve --once did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ckpt migrate --to` a `ckpt serve` that the user started elsewhere with
/// credentials from `ckpt credentials`: stop-and-copy and post-copy arrive
/// verified, the bytes are counted on ckpt's stream plus CRIU's pages, and
/// nothing is left once the user's host is gone.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn migrate_to_a_remote_serve_with_user_credentials() {
    let before = ckpt_objects();
    let host = UserHost::new();
    let creds = host.credentials("creds");
    for method in ["copy", "lazy"] {
        let mut serve = host.serve(
            &creds.join("ca.pem"),
            &creds.join("serve.pem"),
            &creds.join("serve.key"),
        );
        let out = host.migrate(method, &creds.join("ca.pem"), &creds);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "{method}: {stderr}\n{}",
            host.serve_log()
        );
        let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(m["check"]["Verified"]["processes"], 3, "{m}");
        assert_eq!(m["check"]["Verified"]["memory_ok"], true, "{m}");
        assert_eq!(m["bytes_counted"], "stream-and-criu-pages", "{m}");
        // 3 processes x 32 MiB: through ckpt's stream (copy) or CRIU's
        // lazy pages, counted either way.
        assert!(m["bytes_sent"].as_u64().unwrap() > 96 << 20, "{m}");
        // The checkpoint holds the pages wherever they travelled.
        assert!(m["checkpoint_bytes"].as_u64().unwrap() > 96 << 20, "{m}");
        // The destination's clock was read over the link: here it is this
        // host's own, so the offset is within its uncertainty (loopback,
        // well under a few ms) plus scheduling noise.
        let (offset, within) = (
            m["clock"]["offset_ms"].as_f64().unwrap(),
            m["clock"]["uncertainty_ms"].as_f64().unwrap(),
        );
        assert!(within < 100.0 && offset.abs() <= within + 5.0, "{m}");
        assert!(m["gap_ms"].as_f64().unwrap() > 10.0, "{m}");
        assert!(serve_ends(&mut serve).success(), "{}", host.serve_log());
    }
    drop(host);
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    assert_eq!(ckpt_objects(), before);
}

/// A plain TCP connection held open and silent before any handshake does
/// not hold up a move to the same `ckpt serve` (each connection is served
/// on its own, the handshake is bounded): the move arrives verified in the
/// time a move takes, and serve ends after it.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn an_idle_connection_does_not_hold_up_a_move() {
    let host = UserHost::new();
    let creds = host.credentials("creds");
    let mut serve = host.serve(
        &creds.join("ca.pem"),
        &creds.join("serve.pem"),
        &creds.join("serve.key"),
    );
    let idle = std::net::TcpStream::connect(host.to()).unwrap();
    let started = Instant::now();
    let out = host.migrate("copy", &creds.join("ca.pem"), &creds);
    let took = started.elapsed();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}\n{}", host.serve_log());
    let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(m["check"]["Verified"]["memory_ok"], true, "{m}");
    // The idle connection stays silent: a move waiting for it would wait
    // for ever (or, before, until a timeout of the client's own).
    assert!(took < Duration::from_secs(45), "the move took {took:?}");
    assert!(serve_ends(&mut serve).success(), "{}", host.serve_log());
    drop(idle);
    drop(host);
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// Nothing listens at the address: a clear error at once, no workload
/// started, nothing left.
#[test]
fn migrate_to_an_address_where_nothing_listens_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    let made = ckpt()
        .arg("credentials")
        .arg(&creds)
        .args(["--host", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made).1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let out = ckpt()
        .args(["migrate", "--to", &format!("127.0.0.1:{port}")])
        .arg("--ca")
        .arg(creds.join("ca.pem"))
        .arg("--cert")
        .arg(creds.join("migrate.pem"))
        .arg("--key")
        .arg(creds.join("migrate.key"))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing listens at 127.0.0.1") && stderr.contains("ckpt serve"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `ckpt credentials` never overwrites, and `--to` wants all three files.
#[test]
fn credentials_refuse_to_overwrite_and_to_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    let make = || {
        ckpt()
            .arg("credentials")
            .arg(&creds)
            .args(["--host", "10.0.0.1", "--host", "dest.example"])
            .output()
            .unwrap()
    };
    assert!(make().status.success());
    let again = make();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).1.contains("never overwrites"),
        "{}",
        text(&again).1
    );
    let out = ckpt()
        .args(["migrate", "--to", "10.0.0.2:7300"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--ca"), "{}", text(&out).1);
    let out = ckpt()
        .args(["sweep", "--engine", "runc", "--link-rate", "1gbit"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("--migrate"), "{}", text(&out).1);
    let out = ckpt()
        .args(["sweep", "--engine", "runc", "--migrate", "copy"])
        .args(["--link-rate", "fast"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("tc's syntax"), "{}", text(&out).1);
}

/// A source whose certificate comes from another CA: `ckpt serve` refuses
/// it in the handshake, ckpt migrate names the TLS failure and what to
/// check, and nothing is left on either side.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn a_source_certificate_from_another_ca_is_refused() {
    let host = UserHost::new();
    let ours = host.credentials("ours");
    let theirs = host.credentials("theirs");
    let mut serve = host.serve(
        &ours.join("ca.pem"),
        &ours.join("serve.pem"),
        &ours.join("serve.key"),
    );
    // It trusts the destination (our CA) but presents another CA's
    // certificate.
    let out = host.migrate("copy", &ours.join("ca.pem"), &theirs);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS link") && stderr.contains("refused this host's certificate"),
        "{stderr}"
    );
    assert!(host.serve_log().contains("refused"), "{}", host.serve_log());
    assert!(
        serve.try_wait().unwrap().is_none(),
        "serve stays up after a refusal"
    );
    serve.kill().unwrap();
    serve.wait().unwrap();
    drop(host);
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// Credentials from one CA where the source's certificate names only the
/// source's address: ckpt's own link accepts it (a server checks a client's
/// chain, not its names), but CRIU checks its peer against the address it
/// uses, so the destination's page server must refuse the source's dump.
fn credentials_naming_only_the_source(dir: &Path, source: &str, destination: &str) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    for (name, hosts) in [
        ("serve", vec![source, destination]),
        ("migrate", vec![source]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = hosts
            .iter()
            .map(|h| SanType::IpAddress(h.parse().unwrap()))
            .collect();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// CRIU's own TLS connection refuses a peer its credentials do not admit:
/// the page server at the destination refuses the source's dump, the move
/// fails with CRIU's words, the dump never froze the memory away (CRIU
/// resumes the workload when a dump fails), and nothing is left.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn criu_page_server_refuses_a_source_its_tls_does_not_admit() {
    let host = UserHost::new();
    let creds = host.dir.path().join("narrow");
    credentials_naming_only_the_source(
        &creds,
        &host.link.host_addr.to_string(),
        &host.link.peer_addr.to_string(),
    );
    let mut serve = host.serve(
        &creds.join("ca.pem"),
        &creds.join("serve.pem"),
        &creds.join("serve.key"),
    );
    let started = Instant::now();
    let out = host.migrate("page-server", &creds.join("ca.pem"), &creds);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "{stderr}");
    // CRIU's TLS connection broke at the dump; the workload ran on. The
    // source's CRIU names the handshake ("tls: ...") or, when the page
    // server hung up first, only the silence.
    let refused = stderr.contains("tls:") || stderr.contains("page server doesn't answer");
    assert!(
        refused && stderr.contains("CRIU resumed the workload"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let status = serve_ends(&mut serve);
    assert!(!status.success(), "{}", host.serve_log());
    let page_server_log = host.serve_log();
    drop(host);
    assert!(
        leftovers().is_empty(),
        "{:?} {page_server_log}",
        leftovers()
    );
    eprintln!("{stderr}\n{page_server_log}");
}

/// Podman's containers of ckpt's runs, on its default storage.
fn podman_objects() -> Vec<String> {
    let out = Command::new("podman")
        .args(["ps", "-aq", "--filter", "label=io.ckpt.run"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Mounts under ckpt's state directory (a second daemon's storage).
fn mounts_of_ours() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains("/run/ckpt/"))
        .map(str::to_string)
        .collect()
}

/// Docker and Podman move by stop-and-copy to a second daemon of their own
/// in the destination's namespace; every move is verified there, and
/// nothing is left on either host: no second daemon, its directories and
/// mounts, the namespace, or Podman's destination storage.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn docker_and_podman_move_to_a_second_daemon_leaving_nothing() {
    let before = (ckpt_objects(), podman_objects());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("moves");
    let out = ckpt()
        .args([
            "sweep",
            "--migrate",
            "copy",
            "--engine",
            "docker,podman,runc",
        ])
        .args(["--children", "1", "--memory-mib", "0,256"])
        .args(["--repeat", "1", "--warmup", "0", "--output"])
        .arg(&dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("failed"), "{stderr}");
    let records = common::records(&dir);
    assert_eq!(records.len(), 6, "3 engines x 2 points");
    for r in &records {
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(r["memory_ok"], true, "{r}");
        assert!(r["downtime_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
    // 256 MiB crossed the link for each engine's larger point.
    let big = records
        .iter()
        .filter(|r| r["memory_mib"] == 256)
        .map(|r| r["bytes_sent"].as_u64().unwrap());
    assert!(big.clone().count() == 3 && big.clone().all(|b| b > 256 << 20));
    assert_eq!((ckpt_objects(), podman_objects()), before);
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    assert!(mounts_of_ours().is_empty(), "{:?}", mounts_of_ours());
}

/// A `ckpt migrate --engine docker` killed outright (no cleanup of its own)
/// while its second dockerd runs: `ckpt gc` stops that daemon and removes
/// its directories, mounts and the namespace, and the source's container.
#[test]
#[ignore = "needs root, dockerd and CRIU: ./scripts/test"]
fn gc_removes_the_second_daemon_of_a_killed_move() {
    let before = ckpt_objects();
    let mut child = ckpt()
        .args(["migrate", "--engine", "docker", "--memory-mib", "256"])
        .args(["--link-rate", "100mbit"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The second daemon answers once its socket exists; the move is then
    // under way (256 MiB at 100 Mbit/s take about 20 s to cross).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !second_daemon_socket() {
        assert!(Instant::now() < deadline, "no second daemon came up");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(running("dockerd --data-root /run/ckpt/daemon2"));
    let out = ckpt().arg("gc").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !running("dockerd --data-root /run/ckpt/daemon2"),
        "{stdout}"
    );
    assert!(leftovers().is_empty(), "{:?}", leftovers());
    assert!(mounts_of_ours().is_empty(), "{:?}", mounts_of_ours());
    assert_eq!(ckpt_objects(), before);
}

fn second_daemon_socket() -> bool {
    std::fs::read_dir("/run/ckpt/daemon2")
        .into_iter()
        .flatten()
        .flatten()
        .any(|run| run.path().join("docker/docker.sock").exists())
}
