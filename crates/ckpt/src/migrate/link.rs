//! A second host on this machine: a network namespace joined to this one by
//! a veth pair, with addresses on that link only. The destination's `ckpt
//! serve` runs inside it, so a migration's bytes really cross a link (whose
//! rate `tbf` can limit; this kernel has no netem, so no delay is added and
//! none is faked). Everything is named after the run and its pid, removed
//! at the end, and by `ckpt gc` when the run died.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::engine::os::netns::{self, ip};
use crate::run::RunId;

/// tc's units of rate and their bits per second (tc(8), "RATES").
const RATE_UNITS: [(&str, f64); 18] = [
    ("bit", 1.0),
    ("kbit", 1e3),
    ("mbit", 1e6),
    ("gbit", 1e9),
    ("tbit", 1e12),
    ("kibit", 1024.0),
    ("mibit", 1048576.0),
    ("gibit", 1073741824.0),
    ("tibit", 1099511627776.0),
    ("bps", 8.0),
    ("kbps", 8e3),
    ("mbps", 8e6),
    ("gbps", 8e9),
    ("tbps", 8e12),
    ("kibps", 8192.0),
    ("mibps", 8388608.0),
    ("gibps", 8589934592.0),
    ("tibps", 8796093022208.0),
];

/// A rate in tc's syntax (`1gbit`, `100mbit`, `12.5mbps`; a bare number is
/// bits per second), as bits per second; checked before anything is made
/// rather than left to `tc` halfway through a run.
pub fn parse_rate(text: &str) -> Result<f64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let factor = match unit {
        "" => Some(1.0),
        unit => RATE_UNITS.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f),
    };
    match (number.parse::<f64>(), factor) {
        (Ok(n), Some(f)) if n > 0.0 && n.is_finite() => Ok(n * f),
        _ => bail!(
            "'{text}' is not a rate in tc's syntax: a positive number and a unit such as kbit, mbit, gbit or mbps (examples: 1gbit, 100mbit)"
        ),
    }
}

/// The two ends of the link.
#[derive(Debug)]
pub struct Link {
    /// The destination's network namespace.
    pub netns: String,
    host_if: String,
    pub host_addr: Ipv4Addr,
    pub peer_addr: Ipv4Addr,
}

fn tc(args: &[&str]) -> Result<()> {
    let out = Command::new("tc")
        .args(args)
        .output()
        .context("cannot run `tc` (iproute2): install it")?;
    if !out.status.success() {
        bail!(
            "`tc {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Link {
    /// Makes the namespace and the link; `rate` (tc's syntax, e.g. `1gbit`)
    /// limits both directions.
    pub fn create(run: &RunId, rate: Option<&str>) -> Result<Link> {
        // A run may make several hosts (a sweep over two engines): each
        // gets its own names and subnet.
        static MADE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        let slot = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}{slot}", &run.as_str()[run.as_str().len() - 4..]);
        let subnet = u8::from_str_radix(&tag[2..4], 16)
            .unwrap_or(0)
            .wrapping_add(slot);
        let link = Link {
            netns: netns::name_for(&tag),
            host_if: format!("ckh{tag}"),
            host_addr: Ipv4Addr::new(10, 231, subnet, 1),
            peer_addr: Ipv4Addr::new(10, 231, subnet, 2),
        };
        if let Err(e) = link.set_up(rate) {
            link.remove();
            return Err(e.context("making the destination host (a network namespace)"));
        }
        Ok(link)
    }

    fn peer_if(&self) -> String {
        self.host_if.replacen("ckh", "ckp", 1)
    }

    fn set_up(&self, rate: Option<&str>) -> Result<()> {
        let (ns, host, peer) = (&self.netns, &self.host_if, &self.peer_if());
        ip(&["netns", "add", ns])?;
        ip(&["link", "add", host, "type", "veth", "peer", "name", peer])?;
        ip(&["link", "set", peer, "netns", ns])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", self.host_addr),
            "dev",
            host,
        ])?;
        ip(&["link", "set", host, "up"])?;
        let peer_addr = format!("{}/30", self.peer_addr);
        for args in [
            vec!["addr", "add", peer_addr.as_str(), "dev", peer],
            vec!["link", "set", peer, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["-n", ns.as_str()];
            full.extend(args);
            ip(&full)?;
        }
        if let Some(rate) = rate {
            // A token bucket per direction. Its burst must cover a timer
            // tick at the rate (1 Gbit/s at 250 Hz: 500 KB), or it limits
            // below the rate; 1 MB of burst, 50 ms of queue.
            let shape = [
                "root", "tbf", "rate", rate, "burst", "1mb", "latency", "50ms",
            ];
            tc(&[&["qdisc", "add", "dev", host][..], &shape].concat())?;
            tc(&[&["-n", ns, "qdisc", "add", "dev", peer][..], &shape].concat())?;
        }
        Ok(())
    }

    /// Bytes that crossed the link so far, both directions.
    pub fn bytes(&self) -> Result<u64> {
        let read = |what: &str| -> Result<u64> {
            let path = format!("/sys/class/net/{}/statistics/{what}", self.host_if);
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {path}"))?
                .trim()
                .parse()
                .with_context(|| format!("{path} holds no number"))
        };
        Ok(read("tx_bytes")? + read("rx_bytes")?)
    }

    /// Kills what still runs in the namespace and deletes it (the veth pair
    /// goes with it). Idempotent.
    pub fn remove(&self) {
        netns::remove(&self.netns);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_tc_syntax() {
        assert_eq!(parse_rate("1gbit").unwrap(), 1e9);
        assert_eq!(parse_rate("100Mbit").unwrap(), 1e8);
        assert_eq!(parse_rate("12.5mbps").unwrap(), 1e8);
        assert_eq!(parse_rate("8000").unwrap(), 8000.0);
        for bad in ["", "fast", "0gbit", "1 gbit", "1gbits", "-1mbit", "mbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
