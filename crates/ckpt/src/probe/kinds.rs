//! What one request and its reply are for each kind of probe, and what
//! counts as a success.

use super::framing::read_line;
use super::spec::ProbeKind;
use super::{http, resp};
use std::io;
use tokio::io::AsyncBufRead;

/// The echo's longest line: the probe's own lines are far shorter.
const MAX_ECHO: usize = 1024;

/// A reply that arrived and was framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    /// INCR's counter value.
    pub value: Option<i64>,
    /// Why the request failed.
    pub problem: Option<String>,
    /// The server closes this connection after the reply.
    pub close: bool,
}

impl Reply {
    fn ok(value: Option<i64>) -> Self {
        Reply {
            ok: true,
            value,
            problem: None,
            close: false,
        }
    }

    fn failed(problem: String) -> Self {
        Reply {
            ok: false,
            value: None,
            problem: Some(problem),
            close: false,
        }
    }
}

/// One connection's requests: each kind's request bytes and reply check.
#[derive(Debug, Clone)]
pub enum Exchange {
    Line { connection: usize },
    Http { request: Vec<u8> },
    Redis { incr: Vec<u8> },
}

impl Exchange {
    /// `host` is the HTTP Host header's value (the service's IP:port);
    /// `key` the connection's redis key.
    pub fn new(kind: &ProbeKind, connection: usize, host: &str, key: &str) -> Self {
        match kind {
            ProbeKind::Tcp => Exchange::Line { connection },
            ProbeKind::Http { path } => Exchange::Http {
                request: http::request(path, host),
            },
            ProbeKind::Redis => Exchange::Redis {
                incr: resp::command(&[b"INCR", key.as_bytes()]),
            },
        }
    }

    /// The bytes of request `seq`.
    pub fn request(&self, seq: u64) -> Vec<u8> {
        match self {
            Exchange::Line { connection } => format!("{}\n", line(*connection, seq)).into_bytes(),
            Exchange::Http { request } => request.clone(),
            Exchange::Redis { incr } => incr.clone(),
        }
    }

    /// Reads request `seq`'s reply. `UnexpectedEof` and other I/O errors:
    /// the connection was lost; `InvalidData`: a reply the probe could not
    /// frame.
    pub async fn read_reply<R: AsyncBufRead + Unpin>(
        &self,
        reader: &mut R,
        seq: u64,
    ) -> io::Result<Reply> {
        match self {
            Exchange::Line { connection } => {
                let expected = line(*connection, seq);
                let echoed = read_line(reader, MAX_ECHO).await?;
                Ok(check_echo(&expected, &echoed))
            }
            Exchange::Http { .. } => {
                let response = http::read_response(reader).await?;
                Ok(check_status(response))
            }
            Exchange::Redis { .. } => Ok(check_incr(resp::read_value(reader).await?)),
        }
    }
}

/// The line of request `seq` on `connection`: unique, so an echo of an
/// older or another connection's line is told apart.
fn line(connection: usize, seq: u64) -> String {
    format!("ckpt-probe {connection} {seq}")
}

fn check_echo(expected: &str, echoed: &[u8]) -> Reply {
    if echoed == expected.as_bytes() {
        return Reply::ok(None);
    }
    let echoed = String::from_utf8_lossy(echoed);
    Reply::failed(format!("echoed '{echoed}', expected '{expected}'"))
}

fn check_status(response: http::Response) -> Reply {
    let mut reply = if (200..300).contains(&response.status) {
        Reply::ok(None)
    } else {
        Reply::failed(format!("status {}", response.status))
    };
    reply.close = response.close;
    reply
}

fn check_incr(value: resp::Value) -> Reply {
    match value {
        resp::Value::Integer(counter) => Reply::ok(Some(counter)),
        resp::Value::Error(error) => Reply::failed(format!("error reply '{error}'")),
        other => Reply::failed(format!("INCR replied {other:?}, not an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reply(exchange: &Exchange, input: &[u8], seq: u64) -> io::Result<Reply> {
        let mut input = input;
        exchange.read_reply(&mut input, seq).await
    }

    #[tokio::test]
    async fn an_echo_must_be_this_requests_line() {
        let exchange = Exchange::new(&ProbeKind::Tcp, 2, "h", "k");
        assert_eq!(exchange.request(7), b"ckpt-probe 2 7\n");
        assert!(reply(&exchange, b"ckpt-probe 2 7\n", 7).await.unwrap().ok);
        let stale = reply(&exchange, b"ckpt-probe 2 6\n", 7).await.unwrap();
        assert!(!stale.ok);
        assert!(stale.problem.unwrap().contains("expected 'ckpt-probe 2 7'"));
    }

    #[tokio::test]
    async fn http_needs_a_2xx() {
        let kind = ProbeKind::Http { path: "/h".into() };
        let exchange = Exchange::new(&kind, 0, "127.0.0.1:80", "k");
        assert!(exchange.request(0).starts_with(b"GET /h HTTP/1.1\r\n"));
        let ok = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert!(reply(&exchange, ok, 0).await.unwrap().ok);
        let busy = b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let busy = reply(&exchange, busy, 0).await.unwrap();
        assert!(!busy.ok && busy.close);
        assert_eq!(busy.problem.as_deref(), Some("status 503"));
    }

    #[tokio::test]
    async fn incr_needs_an_integer() {
        let exchange = Exchange::new(&ProbeKind::Redis, 0, "h", "ckpt-probe:x:0");
        assert_eq!(
            exchange.request(0),
            b"*2\r\n$4\r\nINCR\r\n$14\r\nckpt-probe:x:0\r\n"
        );
        assert_eq!(reply(&exchange, b":5\r\n", 0).await.unwrap().value, Some(5));
        let error = reply(&exchange, b"-LOADING busy\r\n", 0).await.unwrap();
        assert!(!error.ok);
        let lost = reply(&exchange, b"", 0).await.unwrap_err();
        assert_eq!(lost.kind(), io::ErrorKind::UnexpectedEof);
    }
}
