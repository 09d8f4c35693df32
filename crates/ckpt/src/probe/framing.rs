//! Bounded line reading shared by the kinds' framings. A closed connection
//! is `UnexpectedEof` (the request's outcome is unknown); a reply the probe
//! cannot frame is `InvalidData` (a failed request, and the connection is
//! replaced because its framing is lost).

use std::io;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// One line without its `\n` (and `\r`), at most `max` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    // +1 for the '\n' itself.
    let limit = (max + 1) as u64;
    (&mut *reader)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    if line.last() != Some(&b'\n') {
        if line.len() as u64 == limit {
            return Err(invalid(format!("a line longer than {max} bytes")));
        }
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before the reply ended",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// Reads and throws away exactly `len` bytes.
pub async fn skip<R: AsyncBufRead + Unpin>(reader: &mut R, len: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut (&mut *reader).take(len), &mut tokio::io::sink()).await?;
    if copied < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed inside the reply's body",
        ));
    }
    Ok(())
}

pub fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_tells_eof_from_garbage() {
        let mut input: &[u8] = b"one\r\ntwo\nthree";
        assert_eq!(read_line(&mut input, 10).await.unwrap(), b"one");
        assert_eq!(read_line(&mut input, 10).await.unwrap(), b"two");
        let eof = read_line(&mut input, 10).await.unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
        let mut long: &[u8] = b"0123456789abc\n";
        let too_long = read_line(&mut long, 10).await.unwrap_err();
        assert_eq!(too_long.kind(), io::ErrorKind::InvalidData);
        let mut exact: &[u8] = b"0123456789\n";
        assert_eq!(read_line(&mut exact, 10).await.unwrap(), b"0123456789");
    }

    #[tokio::test]
    async fn skip_needs_every_byte() {
        let mut input: &[u8] = b"abcdef";
        skip(&mut input, 4).await.unwrap();
        assert_eq!(input, b"ef");
        let short = skip(&mut input, 4).await.unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
    }
}
