//! The few RESP (Redis serialization protocol) frames the probe needs:
//! commands as arrays of bulk strings, and scalar replies. Written by hand
//! because INCR, GET and DEL are all the probe sends: a full redis client
//! crate would be a large dependency for a few lines.

use super::framing::{invalid, read_line};
use std::io;
use tokio::io::{AsyncBufRead, AsyncReadExt};

/// No reply of the probe's is longer; a longer line means lost framing.
const MAX_LINE: usize = 64 * 1024;
const MAX_BULK: i64 = 1024 * 1024;

/// A reply to INCR, GET or DEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    /// None: the nil bulk string (GET of a missing key).
    Bulk(Option<Vec<u8>>),
}

/// A command as RESP sends it: an array of bulk strings.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One scalar reply; arrays (which none of the probe's commands get) are
/// refused as lost framing.
pub async fn read_value<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Value> {
    let line = read_line(reader, MAX_LINE).await?;
    let (&tag, rest) = line
        .split_first()
        .ok_or_else(|| invalid("an empty RESP line"))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    match tag {
        b'+' => Ok(Value::Simple(text)),
        b'-' => Ok(Value::Error(text)),
        b':' => parse_int(&text).map(Value::Integer),
        b'$' => read_bulk(reader, parse_int(&text)?).await.map(Value::Bulk),
        _ => Err(invalid(format!(
            "unexpected RESP reply '{}'",
            String::from_utf8_lossy(&line)
        ))),
    }
}

/// The body of a bulk string whose length line said `len`.
pub async fn read_bulk<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    len: i64,
) -> io::Result<Option<Vec<u8>>> {
    if len == -1 {
        return Ok(None);
    }
    if !(0..=MAX_BULK).contains(&len) {
        return Err(invalid(format!("a RESP bulk string of length {len}")));
    }
    let mut body = vec![0; len as usize];
    reader.read_exact(&mut body).await?;
    let mut end = [0u8; 2];
    reader.read_exact(&mut end).await?;
    if &end != b"\r\n" {
        return Err(invalid("a RESP bulk string not ended by CRLF"));
    }
    Ok(Some(body))
}

pub fn parse_int(text: &str) -> io::Result<i64> {
    text.parse()
        .map_err(|_| invalid(format!("'{text}' is not a RESP integer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&[b"INCR", b"k:0"]),
            b"*2\r\n$4\r\nINCR\r\n$3\r\nk:0\r\n"
        );
    }

    #[tokio::test]
    async fn reads_each_scalar_reply() {
        let mut input: &[u8] = b":42\r\n-ERR no\r\n+OK\r\n$3\r\n17\r\r\n$-1\r\n:x\r\n";
        assert_eq!(read_value(&mut input).await.unwrap(), Value::Integer(42));
        assert_eq!(
            read_value(&mut input).await.unwrap(),
            Value::Error("ERR no".into())
        );
        assert_eq!(
            read_value(&mut input).await.unwrap(),
            Value::Simple("OK".into())
        );
        // A bulk string's body is read by length, not up to a line's end.
        assert_eq!(
            read_value(&mut input).await.unwrap(),
            Value::Bulk(Some(b"17\r".to_vec()))
        );
        assert_eq!(read_value(&mut input).await.unwrap(), Value::Bulk(None));
        let garbage = read_value(&mut input).await.unwrap_err();
        assert_eq!(garbage.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn arrays_and_cut_replies_are_refused() {
        let mut array: &[u8] = b"*1\r\n:1\r\n";
        let refused = read_value(&mut array).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
        let mut cut: &[u8] = b"$5\r\nab";
        let lost = read_value(&mut cut).await.unwrap_err();
        assert_eq!(lost.kind(), io::ErrorKind::UnexpectedEof);
    }
}
