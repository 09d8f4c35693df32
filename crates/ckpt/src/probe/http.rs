//! HTTP/1.1 keep-alive framing for the probe's `GET`: the request, and a
//! response read to its end (by Content-Length or chunked encoding) so the
//! next request can follow on the same connection. Written by hand: the
//! crate has `http` (types only) and no client, and a GET with a status is
//! all the probe needs.

use super::framing::{invalid, read_line, skip};
use std::io;
use tokio::io::AsyncBufRead;

const MAX_LINE: usize = 8 * 1024;
const MAX_HEADERS: usize = 100;
/// 1xx responses skipped before the final one.
const MAX_INTERIM: usize = 8;
/// Bodies larger than this are refused rather than read.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;

/// The request line and headers of the probe's GET.
pub fn request(path: &str, host: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ckpt-probe\r\n\
         Accept: */*\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// A response read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection: the probe opens a new one.
    pub close: bool,
}

/// How the response's body ends.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    Empty,
    Length(u64),
    Chunked,
}

struct Head {
    status: u16,
    close: bool,
    body: Body,
}

/// Reads one final response to a GET, skipping interim (1xx) ones.
pub async fn read_response<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Response> {
    for _ in 0..=MAX_INTERIM {
        let head = read_head(reader).await?;
        match head.body {
            Body::Empty => {}
            Body::Length(len) => skip(reader, len).await?,
            Body::Chunked => skip_chunked(reader).await?,
        }
        if !(100..200).contains(&head.status) {
            return Ok(Response {
                status: head.status,
                close: head.close,
            });
        }
    }
    Err(invalid("too many interim (1xx) responses"))
}

async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Head> {
    let (status, http10) = parse_status(&read_line(reader, MAX_LINE).await?)?;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for _ in 0..MAX_HEADERS {
        let line = read_line(reader, MAX_LINE).await?;
        if line.is_empty() {
            let body = body_of(status, length, chunked)?;
            return Ok(Head {
                status,
                close,
                body,
            });
        }
        let line = String::from_utf8_lossy(&line);
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("a header without ':': '{line}'")))?;
        let value = value.trim().to_ascii_lowercase();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = Some(content_length(length, &value)?),
            "transfer-encoding" => chunked = transfer_is_chunked(&value)?,
            "connection" if value.contains("close") => close = true,
            "connection" if value.contains("keep-alive") => close = false,
            _ => {}
        }
    }
    Err(invalid(format!("more than {MAX_HEADERS} headers")))
}

/// The status code, and whether the server speaks HTTP/1.0 (which closes
/// unless it says keep-alive).
fn parse_status(line: &[u8]) -> io::Result<(u16, bool)> {
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    let status = match code.parse::<u16>() {
        Ok(status) if version.starts_with("HTTP/1.") && code.len() == 3 => status,
        _ => return Err(invalid(format!("not an HTTP/1.x status line: '{line}'"))),
    };
    Ok((status, version == "HTTP/1.0"))
}

fn content_length(seen: Option<u64>, value: &str) -> io::Result<u64> {
    let length: u64 = value
        .parse()
        .map_err(|_| invalid(format!("bad Content-Length '{value}'")))?;
    if seen.is_some_and(|seen| seen != length) {
        return Err(invalid("two different Content-Length headers"));
    }
    if length > MAX_BODY {
        return Err(invalid(format!(
            "a body of {length} bytes (the probe reads at most {MAX_BODY})"
        )));
    }
    Ok(length)
}

fn transfer_is_chunked(value: &str) -> io::Result<bool> {
    // Chunked must be the last coding; any other would need decoding the
    // probe does not do, and without it the body's end is unknown.
    match value.rsplit(',').next().map(str::trim) {
        Some("chunked") => Ok(true),
        Some("identity") | None => Ok(false),
        Some(other) => Err(invalid(format!(
            "Transfer-Encoding '{other}' is not supported (only chunked)"
        ))),
    }
}

fn body_of(status: u16, length: Option<u64>, chunked: bool) -> io::Result<Body> {
    // These statuses never carry a body, whatever the headers say.
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Body::Empty);
    }
    match (chunked, length) {
        (true, _) => Ok(Body::Chunked),
        (false, Some(0)) => Ok(Body::Empty),
        (false, Some(len)) => Ok(Body::Length(len)),
        (false, None) => Err(invalid(
            "a response with neither Content-Length nor chunked encoding: \
             its body ends when the server closes, which a keep-alive probe cannot use",
        )),
    }
}

async fn skip_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<()> {
    let mut total = 0u64;
    loop {
        let size = chunk_size(&read_line(reader, MAX_LINE).await?)?;
        total = total.saturating_add(size);
        if total > MAX_BODY {
            return Err(invalid(format!("a chunked body over {MAX_BODY} bytes")));
        }
        if size == 0 {
            return skip_trailers(reader).await;
        }
        skip(reader, size).await?;
        if !read_line(reader, 2).await?.is_empty() {
            return Err(invalid("a chunk not followed by CRLF"));
        }
    }
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let line = String::from_utf8_lossy(line);
    let hex = line.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(hex, 16).map_err(|_| invalid(format!("bad chunk size '{line}'")))
}

async fn skip_trailers<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<()> {
    for _ in 0..MAX_HEADERS {
        if read_line(reader, MAX_LINE).await?.is_empty() {
            return Ok(());
        }
    }
    Err(invalid(format!("more than {MAX_HEADERS} trailers")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8]) -> (io::Result<Response>, usize) {
        let mut rest = input;
        let response = read_response(&mut rest).await;
        (response, rest.len())
    }

    #[test]
    fn request_is_keep_alive_with_host() {
        let text = String::from_utf8(request("/health", "10.0.0.2:8080")).unwrap();
        assert!(text.starts_with("GET /health HTTP/1.1\r\nHost: 10.0.0.2:8080\r\n"));
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[tokio::test]
    async fn reads_a_sized_body_and_stops_at_its_end() {
        let (response, left) =
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1").await;
        assert_eq!(
            response.unwrap(),
            Response {
                status: 200,
                close: false
            }
        );
        assert_eq!(left, "HTTP/1.1".len());
    }

    #[tokio::test]
    async fn reads_a_chunked_body_with_trailers() {
        let input = b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                      3;x=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nnext";
        let (response, left) = read(input).await;
        assert_eq!(
            response.unwrap(),
            Response {
                status: 503,
                close: true
            }
        );
        assert_eq!(left, 4);
    }

    #[tokio::test]
    async fn skips_interim_and_bodiless_statuses() {
        let input =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n";
        let (response, left) = read(input).await;
        assert_eq!(response.unwrap().status, 204);
        assert_eq!(left, 0);
        let (old, _) = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert!(old.unwrap().close, "HTTP/1.0 closes unless keep-alive");
    }

    #[tokio::test]
    async fn refuses_bodies_it_cannot_delimit() {
        for input in [
            &b"HTTP/1.1 200 OK\r\n\r\nbody until close"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let (response, _) = read(input).await;
            let error = response.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        }
    }

    #[tokio::test]
    async fn a_cut_response_is_a_lost_connection() {
        let (response, _) = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
        assert_eq!(response.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
