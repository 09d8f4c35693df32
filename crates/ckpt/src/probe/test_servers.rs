//! Tiny services on 127.0.0.1 for the probe's tests: a line echo, an
//! HTTP/1.1 keep-alive server and a RESP server (INCR, GET, DEL in a
//! HashMap), each able to drop a connection or pause on command.

use super::framing::read_line;
use super::resp;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

/// What the test asks of a running server.
#[derive(Clone, Default)]
pub struct Control {
    /// The first connection to reach this many requests closes without
    /// replying to the last one (once).
    drop_at: Arc<Mutex<Option<usize>>>,
    paused_until: Arc<Mutex<Option<Instant>>>,
    /// Every connection closes at its next request.
    down: Arc<AtomicBool>,
}

impl Control {
    pub fn drop_once_at(&self, request: usize) {
        *self.drop_at.lock().unwrap() = Some(request);
    }

    /// Replies wait until `pause` from now, as if the service froze.
    pub fn pause_for(&self, pause: Duration) {
        *self.paused_until.lock().unwrap() = Some(Instant::now() + pause);
    }

    pub fn shut_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// Before replying to a connection's `count`-th request: false means
    /// close the connection instead.
    async fn before_reply(&self, count: usize) -> bool {
        if self.down.load(Ordering::SeqCst) {
            return false;
        }
        {
            let mut drop_at = self.drop_at.lock().unwrap();
            if *drop_at == Some(count) {
                *drop_at = None;
                return false;
            }
        }
        let until = *self.paused_until.lock().unwrap();
        if let Some(until) = until {
            sleep_until(until).await;
        }
        true
    }
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub control: Control,
    acceptor: JoinHandle<()>,
}

impl Server {
    /// Stops accepting and closes every connection at its next request.
    pub fn shut_down(&self) {
        self.control.shut_down();
        self.acceptor.abort();
    }
}

async fn serve<F, Fut>(handle: F) -> Server
where
    F: Fn(BufReader<TcpStream>, Control) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let control = Control::default();
    let shared = control.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(BufReader::new(stream), shared.clone()));
        }
    });
    Server {
        addr,
        control,
        acceptor,
    }
}

/// Echoes each line back.
pub async fn echo() -> Server {
    serve(|mut conn, control| async move {
        for count in 1.. {
            let line = read_line(&mut conn, 4096).await?;
            if !control.before_reply(count).await {
                return Ok(());
            }
            conn.get_mut()
                .write_all(&[&line[..], b"\n"].concat())
                .await?;
        }
        Ok(())
    })
    .await
}

/// Answers GETs: `/fail` with 503, `/chunked` chunked, `/nolength` with
/// a body delimited by closing, anything else 200 "ok".
pub async fn http() -> Server {
    serve(|mut conn, control| async move {
        for count in 1.. {
            let path = read_request(&mut conn).await?;
            if !control.before_reply(count).await {
                return Ok(());
            }
            let response: &[u8] = match path.as_str() {
                "/fail" => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
                "/chunked" => {
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
                }
                "/nolength" => b"HTTP/1.1 200 OK\r\n\r\nok",
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            };
            conn.get_mut().write_all(response).await?;
            if path == "/nolength" {
                return Ok(());
            }
        }
        Ok(())
    })
    .await
}

/// The request's path, its head read to the empty line.
async fn read_request(conn: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let first = String::from_utf8_lossy(&read_line(conn, 8192).await?).into_owned();
    while !read_line(conn, 8192).await?.is_empty() {}
    Ok(first.split(' ').nth(1).unwrap_or("/").to_string())
}

pub type Store = Arc<Mutex<HashMap<String, i64>>>;

/// INCR, GET and DEL on a HashMap. A dropped INCR is applied first, as
/// when a reply is lost after the write.
pub async fn redis(store: Store) -> Server {
    serve(move |mut conn, control| {
        let store = store.clone();
        async move {
            for count in 1.. {
                let args = read_command(&mut conn).await?;
                let reply = apply(&store, &args);
                if !control.before_reply(count).await {
                    return Ok(());
                }
                conn.get_mut().write_all(&reply).await?;
            }
            Ok(())
        }
    })
    .await
}

async fn read_command(conn: &mut BufReader<TcpStream>) -> std::io::Result<Vec<String>> {
    let header = String::from_utf8_lossy(&read_line(conn, 64).await?).into_owned();
    let count: usize = header.trim_start_matches('*').parse().unwrap();
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let len = String::from_utf8_lossy(&read_line(conn, 64).await?).into_owned();
        let len = resp::parse_int(len.trim_start_matches('$'))?;
        let bulk = resp::read_bulk(conn, len).await?.unwrap_or_default();
        args.push(String::from_utf8(bulk).unwrap());
    }
    Ok(args)
}

fn apply(store: &Store, args: &[String]) -> Vec<u8> {
    let mut map = store.lock().unwrap();
    match args[0].to_ascii_uppercase().as_str() {
        "INCR" => {
            let value = map.entry(args[1].clone()).or_insert(0);
            *value += 1;
            format!(":{value}\r\n").into_bytes()
        }
        "GET" => match map.get(&args[1]) {
            Some(value) => {
                let text = value.to_string();
                format!("${}\r\n{text}\r\n", text.len()).into_bytes()
            }
            None => b"$-1\r\n".to_vec(),
        },
        "DEL" => {
            let gone = args[1..]
                .iter()
                .filter(|key| map.remove(*key).is_some())
                .count();
            format!(":{gone}\r\n").into_bytes()
        }
        other => format!("-ERR unknown command '{other}'\r\n").into_bytes(),
    }
}
