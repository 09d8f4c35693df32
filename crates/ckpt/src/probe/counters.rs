//! The redis probe's keys outside its requests: deleted before the first
//! INCR (each counter starts at 0) and after the stop (the program's own
//! check then sees its own state alone), and read in between (the final
//! counters the summary checks).

use super::resp::{self, Value};
use super::runner::Conn;
use anyhow::Context;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// Each key's value (a missing key is 0: no INCR reached it).
pub async fn read(conn: &mut Conn, keys: &[&str], bound: Duration) -> anyhow::Result<Vec<i64>> {
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        let value = match call(conn, &[b"GET", key.as_bytes()], bound).await? {
            Value::Bulk(None) => 0,
            Value::Bulk(Some(text)) => resp::parse_int(&String::from_utf8_lossy(&text))?,
            other => anyhow::bail!("GET {key} replied {other:?}"),
        };
        values.push(value);
    }
    Ok(values)
}

/// Deletes the keys.
pub async fn delete(conn: &mut Conn, keys: &[&str], bound: Duration) -> anyhow::Result<()> {
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(keys.iter().map(|key| key.as_bytes()));
    match call(conn, &args, bound).await? {
        Value::Integer(_) => Ok(()),
        other => anyhow::bail!("DEL replied {other:?}"),
    }
}

/// One command and its reply, within `bound`.
async fn call(conn: &mut Conn, args: &[&[u8]], bound: Duration) -> anyhow::Result<Value> {
    let name = String::from_utf8_lossy(args[0]).into_owned();
    let exchange = async {
        conn.get_mut().write_all(&resp::command(args)).await?;
        resp::read_value(conn).await
    };
    let value = timeout(bound, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no reply to {name} within {bound:?}"))?
        .with_context(|| name.clone())?;
    if let Value::Error(error) = &value {
        anyhow::bail!("{name} replied error '{error}'");
    }
    Ok(value)
}
