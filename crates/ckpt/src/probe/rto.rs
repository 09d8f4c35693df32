//! `--probe-rto-min`: the client namespace's routes get a lower minimum
//! TCP retransmission timeout. Linux's default (200 ms, doubling at each
//! retry) stretches what a client sees after a pause well past the pause
//! itself; with `rto_min 10ms` the probe's gap shows the service's pause.
//! Only for a named namespace of ckpt's: never the host's own.

use anyhow::{bail, Context};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Flags `ip route show` prints that `ip route change` does not take.
const SHOWN_ONLY: &[&str] = &[
    "linkdown",
    "dead",
    "offload",
    "trap",
    "rt_offload",
    "rt_trap",
    "rt_offload_failed",
];

/// The `ip` argument lists that set `rto_min` on each route of
/// `namespace`, from that namespace's `ip route show` output.
pub fn route_changes(
    namespace: &str,
    routes: &str,
    rto_min: Duration,
) -> anyhow::Result<Vec<Vec<String>>> {
    check_name(namespace)?;
    let rto = rto_text(rto_min)?;
    let mut changes = Vec::new();
    for line in routes.lines().filter(|line| !line.trim().is_empty()) {
        // Continuation lines are a multipath route's next hops.
        if line.starts_with(char::is_whitespace) {
            bail!(
                "multipath route in namespace {namespace}: not supported ('{}')",
                line.trim()
            );
        }
        let mut args: Vec<String> = ["-n", namespace, "route", "change"]
            .map(String::from)
            .to_vec();
        args.extend(route_words(line));
        args.extend(["rto_min".to_string(), rto.clone()]);
        changes.push(args);
    }
    if changes.is_empty() {
        bail!("namespace {namespace} has no route to set rto_min on");
    }
    Ok(changes)
}

/// A shown route's words as `ip route change` takes them: without the
/// flags it only prints and without an rto_min already set.
fn route_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut shown = line.split_whitespace();
    while let Some(word) = shown.next() {
        if word == "rto_min" {
            // "rto_min [lock] TIME"
            if shown.next() == Some("lock") {
                shown.next();
            }
            continue;
        }
        if !SHOWN_ONLY.contains(&word) {
            words.push(word.to_string());
        }
    }
    words
}

/// `ip` reads whole milliseconds as "Nms".
fn rto_text(rto_min: Duration) -> anyhow::Result<String> {
    let ms = rto_min.as_millis();
    if ms == 0 || Duration::from_millis(ms as u64) != rto_min {
        bail!("--probe-rto-min takes whole milliseconds of at least 1 ms (got {rto_min:?})");
    }
    Ok(format!("{ms}ms"))
}

/// A name `ip netns` made, not a path or an option.
fn check_name(namespace: &str) -> anyhow::Result<()> {
    let bad = namespace.is_empty()
        || namespace == "."
        || namespace == ".."
        || namespace.starts_with('-')
        || namespace.contains(['/', '\0'])
        || namespace.chars().any(char::is_whitespace);
    if bad {
        bail!("'{namespace}' is not a network namespace's name");
    }
    Ok(())
}

/// Sets `rto_min` on every route of the named namespace; returns how many
/// routes changed. Refuses the namespace ckpt itself (or init) runs in.
pub fn set_rto_min(namespace: &str, rto_min: Duration) -> anyhow::Result<usize> {
    check_name(namespace)?;
    refuse_own_namespace(namespace)?;
    let shown = run_ip(&["-n", namespace, "route", "show"])?;
    let changes = route_changes(namespace, &shown, rto_min)?;
    for args in &changes {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ip(&args)?;
    }
    Ok(changes.len())
}

/// The smallest cap Linux takes on the retransmission timeout's backoff
/// (net.ipv4.tcp_rto_max_ms, per namespace, since Linux 6.15).
pub const RTO_MAX_MS: u32 = 1000;

/// Caps the backoff of the retransmission timeout in `namespace` at
/// RTO_MAX_MS: with a 10 ms minimum, retransmissions still double (10, 20,
/// 40 ms, ...), so after a long pause the first one after the service is
/// back may come up to the cap later. Returns false on a kernel without
/// the setting (the backoff then doubles up to two minutes).
///
/// The kernel gives a connection up after the time `tcp_retries2`
/// retransmissions would take from 200 ms, doubling up to the cap: with
/// the default 15 and a 1 s cap, 14.4 s of silence, which a long move's
/// pause exceeds (the clients then lose every connection). So the
/// namespace's `tcp_retries2` goes to its largest, 255: about four
/// minutes.
pub fn cap_rto_max(namespace: &str) -> anyhow::Result<bool> {
    check_name(namespace)?;
    refuse_own_namespace(namespace)?;
    if !sysctl_in(namespace, &format!("net.ipv4.tcp_rto_max_ms={RTO_MAX_MS}"))? {
        return Ok(false);
    }
    if !sysctl_in(namespace, &format!("net.ipv4.tcp_retries2={RETRIES}"))? {
        bail!("cannot set net.ipv4.tcp_retries2 in {namespace}: the clients would give their connections up after 14 s of a move's pause");
    }
    Ok(true)
}

/// The clients' retransmissions before they give a connection up.
pub const RETRIES: u8 = 255;

/// `sysctl -w KEY=VALUE` inside `namespace`; whether it took.
fn sysctl_in(namespace: &str, key_value: &str) -> anyhow::Result<bool> {
    let out = Command::new("ip")
        .args(["netns", "exec", namespace, "sysctl", "-q", "-w", key_value])
        .output()
        .context("cannot run `ip netns exec ... sysctl`")?;
    Ok(out.status.success())
}

/// The named namespace must not be the one this process or init is in:
/// changing the host's routes is not the probe's to do.
fn refuse_own_namespace(namespace: &str) -> anyhow::Result<()> {
    let named = Path::new("/run/netns").join(namespace);
    let named = std::fs::metadata(&named)
        .with_context(|| format!("no network namespace {}", named.display()))?;
    for own in ["/proc/self/ns/net", "/proc/1/ns/net"] {
        let Ok(own_meta) = std::fs::metadata(own) else {
            continue;
        };
        if (own_meta.dev(), own_meta.ino()) == (named.dev(), named.ino()) {
            bail!("network namespace {namespace} is the host's own ({own}): refusing to change its routes");
        }
    }
    Ok(())
}

fn run_ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS10: Duration = Duration::from_millis(10);

    #[test]
    fn one_change_per_route_with_its_own_words() {
        let shown = "default via 10.77.0.1 dev eth0 \n\
                     10.77.0.0/24 dev eth0 proto kernel scope link src 10.77.0.3 linkdown\n";
        let changes = route_changes("ckpt-client", shown, MS10).unwrap();
        let joined: Vec<String> = changes.iter().map(|args| args.join(" ")).collect();
        assert_eq!(
            joined,
            [
                "-n ckpt-client route change default via 10.77.0.1 dev eth0 rto_min 10ms",
                "-n ckpt-client route change 10.77.0.0/24 dev eth0 proto kernel scope link src 10.77.0.3 rto_min 10ms",
            ]
        );
    }

    #[test]
    fn an_rto_min_already_set_is_replaced() {
        let shown = "10.0.0.0/24 dev v0 scope link rto_min lock 200ms metric 5\n\
                     10.1.0.0/24 dev v1 rto_min 50ms\n";
        let changes = route_changes("ns", shown, Duration::from_millis(20)).unwrap();
        assert_eq!(
            changes[0].join(" "),
            "-n ns route change 10.0.0.0/24 dev v0 scope link metric 5 rto_min 20ms"
        );
        assert_eq!(
            changes[1].join(" "),
            "-n ns route change 10.1.0.0/24 dev v1 rto_min 20ms"
        );
    }

    #[test]
    fn refuses_what_it_cannot_do_right() {
        let one = "default via 10.0.0.1 dev eth0\n";
        for name in ["", "-all", "a/b", "..", "a b"] {
            assert!(route_changes(name, one, MS10).is_err(), "{name:?}");
        }
        assert!(route_changes("ns", "", MS10).is_err(), "no route");
        assert!(route_changes("ns", one, Duration::from_micros(500)).is_err());
        assert!(route_changes("ns", one, Duration::from_micros(10_500)).is_err());
        let multipath = "default proto static\n\tnexthop via 10.0.0.1 dev a weight 1\n";
        assert!(route_changes("ns", multipath, MS10).is_err());
    }

    #[test]
    fn the_runner_refuses_a_missing_or_bad_namespace_before_running_ip() {
        // No namespace of this name exists: refused before any `ip route
        // change` could run.
        let missing = set_rto_min("ckpt-probe-test-no-such-namespace", MS10).unwrap_err();
        assert!(
            format!("{missing:#}").contains("no network namespace"),
            "{missing:#}"
        );
        assert!(set_rto_min("../proc/self/ns/net", MS10).is_err());
    }
}
