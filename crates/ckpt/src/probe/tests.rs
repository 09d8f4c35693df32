//! The probe against tiny services on 127.0.0.1: each kind, a dropped
//! connection, a paused service, a service that goes away, and a real
//! redis-server when one is installed. Time bounds are generous: the
//! machine running the tests is noisy.

use super::test_servers::{self, Server, Store};
use super::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::time::sleep;

fn spec(kind: ProbeKind, addr: SocketAddr, connections: usize, every_ms: u64) -> ProbeSpec {
    ProbeSpec::new(kind, addr.port())
        .with_connections(connections)
        .unwrap()
        .with_interval(Duration::from_millis(every_ms))
        .unwrap()
}

/// Quick to give up, so a failing test ends quickly.
fn limits() -> ProbeLimits {
    ProbeLimits {
        reply_timeout: Duration::from_secs(5),
        reconnect_for: Duration::from_secs(2),
        stop_grace: Duration::from_millis(500),
        settle_timeout: Duration::from_secs(5),
        ..ProbeLimits::default()
    }
}

async fn run_for(
    spec: &ProbeSpec,
    addr: SocketAddr,
    limits: ProbeLimits,
    run: Duration,
) -> ProbeLog {
    let probe = start(spec, addr, limits).await.unwrap();
    sleep(run).await;
    probe.stop().await
}

fn assert_clean(summary: &ProbeSummary, connections: usize) {
    assert!(summary.requests >= 2 * connections, "{summary:?}");
    assert_eq!(summary.requests_ok, summary.requests, "{summary:?}");
    assert_eq!(summary.connections_kept, connections, "{summary:?}");
    assert_eq!(summary.reconnects, 0, "{summary:?}");
    assert!(summary.problems.is_empty(), "{summary:?}");
}

/// Every record's times are in order and on one clock.
fn assert_times(log: &ProbeLog) {
    for request in &log.requests {
        if let Some(reply) = request.reply_us {
            assert!(request.sent_us <= reply, "{request:?}");
        }
        assert!(request.sent_us <= log.stopped_us + 1_000_000, "{request:?}");
    }
    assert!(log
        .requests
        .windows(2)
        .all(|w| w[0].sent_us <= w[1].sent_us));
}

#[tokio::test]
async fn tcp_lines_are_echoed_on_kept_connections() {
    let server = test_servers::echo().await;
    let spec = spec(ProbeKind::Tcp, server.addr, 3, 5);
    let log = run_for(&spec, server.addr, limits(), Duration::from_millis(200)).await;
    assert_times(&log);
    let summary = summarise(&log, None);
    assert_clean(&summary, 3);
    assert!(log.requests.iter().all(|r| r.generation == 0));
    // Each connection numbers its own requests.
    for index in 0..3 {
        let seqs: Vec<u64> = log
            .requests
            .iter()
            .filter(|r| r.connection == index)
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    }
    assert!(summary.gap_ms < 2_000.0, "{summary:?}");
}

#[tokio::test]
async fn http_keep_alive_with_sized_and_chunked_bodies() {
    let server = test_servers::http().await;
    for path in ["/", "/chunked"] {
        let kind = ProbeKind::Http { path: path.into() };
        let log = run_for(
            &spec(kind, server.addr, 2, 5),
            server.addr,
            limits(),
            Duration::from_millis(150),
        )
        .await;
        assert_clean(&summarise(&log, None), 2);
    }
}

#[tokio::test]
async fn http_non_2xx_fails_and_unframeable_responses_are_refused() {
    let server = test_servers::http().await;
    let fail = ProbeKind::Http {
        path: "/fail".into(),
    };
    let log = run_for(
        &spec(fail, server.addr, 1, 5),
        server.addr,
        limits(),
        Duration::from_millis(100),
    )
    .await;
    let summary = summarise(&log, None);
    assert!(summary.requests >= 2);
    assert_eq!(summary.requests_failed, summary.requests, "{summary:?}");
    assert_eq!(log.requests[0].problem.as_deref(), Some("status 503"));
    assert_eq!(summary.connections_kept, 1, "a 503 keeps the connection");

    let no_length = ProbeKind::Http {
        path: "/nolength".into(),
    };
    let log = run_for(
        &spec(no_length, server.addr, 1, 5),
        server.addr,
        limits(),
        Duration::from_millis(100),
    )
    .await;
    let summary = summarise(&log, None);
    assert!(summary.requests >= 2);
    assert_eq!(summary.requests_failed, summary.requests, "{summary:?}");
    assert!(log.requests[0]
        .problem
        .as_deref()
        .unwrap()
        .contains("Content-Length"));
    assert!(
        summary.reconnects >= 1,
        "the framing is lost: a new connection each time"
    );
}

#[tokio::test]
async fn redis_counters_match_and_keys_are_deleted() {
    let store = Store::default();
    let server = test_servers::redis(store.clone()).await;
    // A stale counter under the probe's key is reset at the start.
    store.lock().unwrap().insert("ckpt-probe:t:0".into(), 100);
    store.lock().unwrap().insert("program".into(), 7);
    let limits = ProbeLimits {
        key_prefix: Some("ckpt-probe:t".into()),
        ..limits()
    };
    let log = run_for(
        &spec(ProbeKind::Redis, server.addr, 2, 5),
        server.addr,
        limits,
        Duration::from_millis(200),
    )
    .await;
    let summary = summarise(&log, None);
    assert_clean(&summary, 2);
    assert_eq!(summary.counters_ok, Some(true), "{summary:?}");
    for check in summary.counters.unwrap() {
        assert_eq!(check.final_counter, Some(check.incr_ok as i64));
    }
    // INCR's replies count 1, 2, 3... on each connection.
    let values: Vec<i64> = log
        .requests
        .iter()
        .filter(|r| r.connection == 0)
        .filter_map(|r| r.value)
        .collect();
    assert_eq!(values, (1..=values.len() as i64).collect::<Vec<_>>());
    let left: Vec<String> = store.lock().unwrap().keys().cloned().collect();
    assert_eq!(left, ["program"], "only the program's own state is left");
}

#[tokio::test]
async fn a_dropped_connection_is_unknown_then_reconnected() {
    let server = test_servers::echo().await;
    server.control.drop_once_at(5);
    let log = run_for(
        &spec(ProbeKind::Tcp, server.addr, 2, 5),
        server.addr,
        limits(),
        Duration::from_millis(300),
    )
    .await;
    assert_times(&log);
    let summary = summarise(&log, None);
    assert_eq!(summary.requests_unknown, 1, "{summary:?}");
    assert_eq!(summary.requests_failed, 0, "{summary:?}");
    assert_eq!(summary.reconnects, 1, "{summary:?}");
    assert_eq!(summary.connections_kept, 1, "{summary:?}");
    let lost = log
        .requests
        .iter()
        .find(|r| r.outcome == Outcome::Unknown)
        .unwrap();
    assert_eq!((lost.seq, lost.generation, lost.reply_us), (4, 0, None));
    assert!(lost.problem.as_deref().unwrap().contains("connection lost"));
    let after: Vec<_> = log
        .requests
        .iter()
        .filter(|r| r.connection == lost.connection && r.seq > lost.seq)
        .collect();
    assert!(
        !after.is_empty()
            && after
                .iter()
                .all(|r| r.generation == 1 && r.outcome == Outcome::Ok)
    );
}

#[tokio::test]
async fn a_dropped_incr_keeps_the_counter_in_bounds() {
    let store = Store::default();
    let server = test_servers::redis(store.clone()).await;
    // Command 1 is the start's DEL; the 6th is an INCR applied whose reply
    // never comes.
    server.control.drop_once_at(6);
    let log = run_for(
        &spec(ProbeKind::Redis, server.addr, 1, 5),
        server.addr,
        limits(),
        Duration::from_millis(200),
    )
    .await;
    let summary = summarise(&log, None);
    let check = &summary.counters.as_ref().unwrap()[0];
    assert_eq!(
        (check.incr_unknown, summary.reconnects),
        (1, 1),
        "{summary:?}"
    );
    assert_eq!(
        check.final_counter,
        Some(check.incr_ok as i64 + 1),
        "the lost INCR applied"
    );
    assert_eq!(summary.counters_ok, Some(true), "{summary:?}");
    assert!(store.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_paused_service_shows_as_the_gap_inside_the_window() {
    let server = test_servers::echo().await;
    let probe = start(
        &spec(ProbeKind::Tcp, server.addr, 3, 10),
        server.addr,
        limits(),
    )
    .await
    .unwrap();
    sleep(Duration::from_millis(150)).await;
    let pause_from = Instant::now();
    server.control.pause_for(Duration::from_millis(300));
    sleep(Duration::from_millis(300)).await;
    let pause_to = Instant::now();
    sleep(Duration::from_millis(200)).await;
    let log = probe.stop().await;
    let window = log.window(pause_from, pause_to);
    let summary = summarise(&log, Some(window));
    assert_eq!(summary.requests_ok, summary.requests, "{summary:?}");
    assert_eq!(summary.connections_kept, 3);
    assert!((250.0..3_000.0).contains(&summary.gap_ms), "{summary:?}");
    let inside_max = summary.inside.max_ms.unwrap();
    assert!(inside_max >= 250.0, "{summary:?}");
    assert!(summary.outside.p50_ms.unwrap() < 100.0, "{summary:?}");
    assert!(summary.outside.count > summary.inside.count);
}

#[tokio::test]
async fn a_service_that_goes_away_is_given_up_within_the_bound() {
    let server: Server = test_servers::echo().await;
    let limits = ProbeLimits {
        reconnect_for: Duration::from_millis(200),
        ..limits()
    };
    let probe = start(
        &spec(ProbeKind::Tcp, server.addr, 2, 5),
        server.addr,
        limits,
    )
    .await
    .unwrap();
    sleep(Duration::from_millis(50)).await;
    server.shut_down();
    sleep(Duration::from_millis(600)).await;
    let stopping = Instant::now();
    let log = probe.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(2));
    let summary = summarise(&log, None);
    assert!(log.connections.iter().all(|c| c.gave_up), "{log:?}");
    assert_eq!(summary.connections_kept, 0);
    assert_eq!(
        summary.requests_unknown, 2,
        "one lost request per connection: {summary:?}"
    );
    // Nobody answered after the loss: the wait runs to the stop.
    assert!(summary.gap_ms >= 500.0, "{summary:?}");
}

#[tokio::test]
async fn a_stop_during_a_long_stall_ends_within_the_grace() {
    let server = test_servers::echo().await;
    let limits = ProbeLimits {
        stop_grace: Duration::from_millis(100),
        ..limits()
    };
    let probe = start(
        &spec(ProbeKind::Tcp, server.addr, 2, 5),
        server.addr,
        limits,
    )
    .await
    .unwrap();
    sleep(Duration::from_millis(50)).await;
    server.control.pause_for(Duration::from_secs(60));
    sleep(Duration::from_millis(50)).await;
    let stopping = Instant::now();
    let log = probe.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopping.elapsed()
    );
    let stuck: Vec<_> = log
        .requests
        .iter()
        .filter(|r| r.outcome == Outcome::Unknown)
        .collect();
    assert_eq!(stuck.len(), 2, "{log:?}");
    assert!(stuck
        .iter()
        .all(|r| r.problem.as_deref() == Some("no reply before the probe stopped")));
}

#[tokio::test]
async fn a_reply_timeout_replaces_the_connection() {
    let server = test_servers::echo().await;
    let limits = ProbeLimits {
        reply_timeout: Duration::from_millis(100),
        ..limits()
    };
    let probe = start(
        &spec(ProbeKind::Tcp, server.addr, 1, 5),
        server.addr,
        limits,
    )
    .await
    .unwrap();
    sleep(Duration::from_millis(30)).await;
    server.control.pause_for(Duration::from_millis(250));
    sleep(Duration::from_millis(500)).await;
    let log = probe.stop().await;
    let summary = summarise(&log, None);
    assert!(summary.requests_unknown >= 1, "{summary:?}");
    assert!(summary.reconnects >= 1, "{summary:?}");
    let timed_out = log
        .requests
        .iter()
        .find(|r| r.outcome == Outcome::Unknown)
        .unwrap();
    assert!(timed_out
        .problem
        .as_deref()
        .unwrap()
        .contains("no reply within"));
}

#[tokio::test]
async fn start_fails_when_nothing_listens() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let limits = ProbeLimits {
        reconnect_for: Duration::from_millis(100),
        ..limits()
    };
    let began = Instant::now();
    let error = start(&spec(ProbeKind::Tcp, addr, 1, 10), addr, limits)
        .await
        .err()
        .unwrap();
    assert!(format!("{error:#}").contains("cannot connect"), "{error:#}");
    assert!(began.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_summary_serialises_for_the_records() {
    let log = ProbeLog {
        kind: ProbeKind::Redis,
        interval_us: 10_000,
        stopped_us: 0,
        requests: vec![],
        connections: vec![],
        problems: vec![],
        started: Instant::now(),
    };
    let json = serde_json::to_value(summarise(&log, None)).unwrap();
    assert_eq!(json["counters_ok"], true);
    assert_eq!(json["requests"], 0);
    let log = serde_json::to_value(&log).unwrap();
    assert_eq!(log["kind"], "redis", "flattened: {log}");
    assert_eq!(log["interval_us"], 10_000);
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Against a real redis-server on 127.0.0.1, when one is installed.
#[tokio::test]
async fn a_real_redis_server_when_installed() {
    let Some(binary) = find_redis_server() else {
        eprintln!("note: redis-server is not installed: the real redis probe test is skipped");
        return;
    };
    let port = free_port();
    let mut child = tokio::process::Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = run_for(
        &spec(ProbeKind::Redis, addr, 4, 5),
        addr,
        limits(),
        Duration::from_millis(300),
    )
    .await;
    let _ = child.kill().await;
    let summary = summarise(&log, None);
    assert_clean(&summary, 4);
    assert_eq!(summary.counters_ok, Some(true), "{summary:?}");
}

fn find_redis_server() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}
