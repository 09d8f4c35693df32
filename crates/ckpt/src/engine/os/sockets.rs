//! TCP sockets of a network namespace, read from /proc/<pid>/net/tcp{,6}:
//! a connection that a check command opened and closed may still be half
//! closed in the program (CLOSE_WAIT until the program closes its end), and
//! CRIU refuses to dump a connected socket without --tcp-established.

use std::time::{Duration, Instant};

/// The state column's value for CLOSE_WAIT (include/net/tcp_states.h).
const CLOSE_WAIT: &str = "08";

/// Sockets in CLOSE_WAIT in the network namespace of `pid`.
pub(crate) fn close_wait_count(pid: u32) -> usize {
    count_in_namespace(pid, CLOSE_WAIT)
}

/// TCP sockets (IPv4 and IPv6) in `state` in the network namespace of `pid`.
fn count_in_namespace(pid: u32, state: &str) -> usize {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .map(|text| count_in_state(&text, state))
        .sum()
}

/// Rows of a /proc/net/tcp table whose state column is `state`.
fn count_in_state(table: &str, state: &str) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|row| row.split_whitespace().nth(3) == Some(state))
        .count()
}

/// Closes every established TCP connection in the network namespace of
/// `pid` (`ss -K`, the kernel's socket destroy): for an engine that cannot
/// checkpoint them (Docker passes no --tcp-established), so that the dump
/// goes ahead and the clients reconnect to the restored program. Returns
/// how many there were.
pub(crate) fn destroy_established(pid: u32) -> anyhow::Result<usize> {
    use anyhow::Context;
    let established = count_in_namespace(pid, ESTABLISHED);
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ss",
            "-K",
            "-tn",
            "state",
            "established",
        ])
        .output()
        .context("cannot run nsenter and ss (util-linux, iproute2)")?;
    if !out.status.success() {
        anyhow::bail!(
            "closing the connections of the container (pid {pid}) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // ss skips, silently, what the kernel cannot destroy (a kernel
    // without CONFIG_INET_DIAG_DESTROY).
    let left = count_in_namespace(pid, ESTABLISHED);
    if left > 0 {
        anyhow::bail!("{left} of the container's {established} established connection(s) are still open after `ss -K` (does this kernel have CONFIG_INET_DIAG_DESTROY?): Docker's checkpoint would fail on them");
    }
    Ok(established)
}

/// The state column's value for ESTABLISHED.
const ESTABLISHED: &str = "01";

/// Waits (at most `limit`) until no socket in the namespace of `pid` is
/// half closed; returns whether none is.
pub(crate) async fn wait_for_closed(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        if close_wait_count(pid) == 0 {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_by_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 0100007F:18EB 0100007F:9C40 08 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        assert_eq!(count_in_state(table, CLOSE_WAIT), 1);
        assert_eq!(count_in_state(table, "0A"), 1);
        assert_eq!(count_in_state(table, "01"), 0);
    }
}
