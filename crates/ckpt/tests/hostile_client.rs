//! `ckpt serve` against a client that holds a valid certificate and does
//! not play by the rules: every hostile request is refused with the
//! reason, nothing is created outside serve's own directory, serve keeps
//! serving, and nothing of anyone else's is removed.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ckpt::migrate::tls::Credentials;
use ckpt::migrate::wire::{self, Message};
use ckpt::model::{EngineKind, MigrationMethod, Point};
use common::ckpt;
use tokio::io::AsyncWriteExt;

type Client = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A `ckpt serve` on loopback (serving until dropped) and a client's
/// valid credentials from the same throwaway CA.
struct Serve {
    child: Child,
    addr: String,
    client: Credentials,
    dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let (server, client) = ckpt::migrate::tls::throwaway(dir.path(), &[ip]).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = ckpt()
            .args(["serve", "--listen", &addr])
            .arg("--ca")
            .arg(&server.ca)
            .arg("--cert")
            .arg(&server.cert)
            .arg("--key")
            .arg(&server.key)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let serve = Serve {
            child,
            addr,
            client,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !serve.log().contains("listening") {
            assert!(Instant::now() < deadline, "ckpt serve never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// A client with a valid certificate, past serve's `Ready`.
    async fn client(&self) -> Client {
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(self.client.client_config().unwrap());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let mut tls = connector.connect(name, tcp).await.unwrap();
        match wire::recv(&mut tls).await.unwrap() {
            Message::Ready { .. } => tls,
            other => panic!("expected ready, got {other:?}"),
        }
    }

    fn still_serving(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hello(engine: EngineKind, name: &str, log: Option<PathBuf>) -> Message {
    Message::Hello {
        engine,
        method: MigrationMethod::Copy,
        name: name.into(),
        point: Point::default(),
        log,
    }
}

/// Sends `messages` and returns serve's refusal, in its words.
async fn refusal(client: &mut Client, messages: &[Message]) -> String {
    for message in messages {
        wire::send(client, message).await.unwrap();
    }
    let answer = wire::recv(client).await;
    format!("{:#}", answer.expect_err("serve accepted a hostile client"))
}

/// A directory outside serve's, which hostile requests aim at.
fn target() -> PathBuf {
    let target = std::env::temp_dir().join(format!("ckpt-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&target);
    target
}

/// An absolute container name, one with `..`, and a foreign output path
/// are refused at the hello, with the reason; nothing appears where they
/// pointed; serve keeps serving.
#[tokio::test(flavor = "current_thread")]
async fn names_and_paths_of_the_clients_choosing_are_refused() {
    let mut serve = Serve::start();
    let target = target();
    let absolute = target.join("bundle");
    let dotdot = format!("../../../../..{}", target.display());
    let foreign_log = target.join("out.log");
    let cases = [
        (
            hello(EngineKind::Runc, absolute.to_str().unwrap(), None),
            "'/'",
        ),
        (hello(EngineKind::Runc, &dotdot, None), "starts with a dot"),
        (hello(EngineKind::Criu, "a/../b", None), "'/'"),
        (
            hello(EngineKind::Criu, "tree", Some(foreign_log.clone())),
            "serve takes only /run/ckpt/criu/<run>/<name>/out.log",
        ),
        (
            hello(
                EngineKind::Criu,
                "tree",
                Some("/run/ckpt/criu/../../../etc/out.log".into()),
            ),
            "serve takes only",
        ),
    ];
    for (message, reason) in cases {
        let mut client = serve.client().await;
        let said = refusal(&mut client, std::slice::from_ref(&message)).await;
        assert!(said.contains(reason), "{message:?}: {said}");
    }
    assert!(
        !target.exists(),
        "a hostile hello made {}",
        target.display()
    );
    assert!(serve.still_serving(), "{}", serve.log());
    assert_eq!(serve.log().matches("failed").count(), 5, "{}", serve.log());
}

/// A plain TCP connection held open and silent before any handshake holds
/// up nobody: a client with a certificate is answered at once meanwhile,
/// and serve drops the silent one when its handshake's 10 s are over.
#[tokio::test(flavor = "current_thread")]
async fn an_idle_connection_holds_up_nobody_and_is_dropped() {
    let mut serve = Serve::start();
    let mut idle = tokio::net::TcpStream::connect(&serve.addr).await.unwrap();
    let started = Instant::now();
    let mut client = serve.client().await;
    let said = refusal(&mut client, &[hello(EngineKind::Runc, "..", None)]).await;
    assert!(said.contains("starts with a dot"), "{said}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // serve ends the silent connection: the read sees its end.
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    let ended = tokio::time::timeout(Duration::from_secs(15), idle.read(&mut byte)).await;
    assert!(matches!(ended, Ok(Ok(0)) | Ok(Err(_))), "{ended:?}");
    // serve may write its line a moment after the socket closed.
    for _ in 0..50 {
        if serve.log().contains("no TLS handshake") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        serve.log().contains("no TLS handshake within 10 s"),
        "{}",
        serve.log()
    );
    assert!(serve.still_serving(), "{}", serve.log());
}

/// A message larger than the protocol's bound, and one cut short, are
/// refused with the reason; serve keeps serving.
#[tokio::test(flavor = "current_thread")]
async fn oversize_and_truncated_messages_are_refused() {
    let mut serve = Serve::start();
    let mut client = serve.client().await;
    client.write_u32(64 << 20).await.unwrap();
    client.flush().await.unwrap();
    let said = format!("{:#}", wire::recv(&mut client).await.unwrap_err());
    assert!(said.contains("does not speak ckpt's protocol"), "{said}");

    let mut client = serve.client().await;
    client.write_u32(100).await.unwrap();
    client.write_all(b"{\"Hello\":").await.unwrap();
    // The client stops writing: the message ends 91 bytes short.
    client.shutdown().await.unwrap();
    let said = format!("{:#}", wire::recv(&mut client).await.unwrap_err());
    assert!(said.contains("failed"), "{said}");
    assert!(serve.still_serving(), "{}", serve.log());
    assert_eq!(serve.log().matches("failed").count(), 2, "{}", serve.log());
}

/// Docker: a container of someone else's named as ckpt's destination once
/// named its own (`<name>-dest`) and an image of theirs whose reference a
/// client sends both survive: the image is refused (serve never loads over
/// nor removes an image it did not make), and the clean-up removes only
/// what serve made.
#[tokio::test(flavor = "current_thread")]
#[ignore = "needs root and dockerd: ./scripts/test"]
async fn a_foreign_container_and_image_named_like_ckpts_survive() {
    let victim = format!("victim{}", std::process::id());
    let image = format!("{victim}-image:mine");
    let container = format!("{victim}-dest");
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // An image of nothing and a container of it, created, never started.
    let empty = tempfile::tempdir().unwrap();
    let tar = empty.path().join("empty.tar");
    Command::new("tar")
        .arg("cf")
        .arg(&tar)
        .args(["-T", "/dev/null"])
        .status()
        .unwrap();
    assert!(docker(&["import", tar.to_str().unwrap(), &image]).0);
    assert!(docker(&["create", "--name", &container, &image, "/none"]).0);

    let mut serve = Serve::start();
    let args = ckpt::workload::forker_args(&Point::default(), 10);
    let prepare = Message::Prepare {
        image: image.clone(),
        args,
    };
    let mut client = serve.client().await;
    let said = refusal(
        &mut client,
        &[hello(EngineKind::Docker, &victim, None), prepare],
    )
    .await;
    assert!(said.contains("holds an image named"), "{said}");
    // A client that says hello and finishes at once.
    let mut client = serve.client().await;
    wire::send(&mut client, &hello(EngineKind::Docker, &victim, None))
        .await
        .unwrap();
    wire::send(&mut client, &Message::Finish).await.unwrap();
    assert_eq!(wire::recv(&mut client).await.unwrap(), Message::Done);
    assert!(serve.still_serving(), "{}", serve.log());

    let survived = (
        docker(&["container", "inspect", &container]).0,
        docker(&["image", "inspect", &image]).0,
    );
    docker(&["rm", "-f", &container]);
    docker(&["rmi", "-f", &image]);
    assert_eq!(survived, (true, true), "{}", serve.log());
}
