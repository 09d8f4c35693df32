//! A second host on this machine: a network namespace joined to this one by
//! a veth pair, with addresses on that link only. The destination's `ckpt
//! serve` runs inside it, so a migration's bytes really cross a link (whose
//! rate `tbf` can limit; this kernel has no netem, so no delay is added and
//! none is faked). Everything is named after the run and its pid, removed
//! at the end, and by `ckpt gc` when the run died.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::engine::os::lock::FileLock;
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

/// Where the links' subnets are taken from: 10.231.0.0/16, a /30 each.
const SUBNETS: (Ipv4Addr, u32) = (Ipv4Addr::new(10, 231, 0, 0), 16);

/// The host's IPv4 addresses, as `ip -o -4 addr show` prints them.
fn host_addresses() -> Result<String> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("cannot run `ip` (iproute2): install it")?;
    if !out.status.success() {
        bail!(
            "`ip -o -4 addr show` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The address ranges (first, last) the interfaces in `ip -o -4 addr
/// show`'s output cover: each address's network, and a point-to-point
/// peer's (`inet A peer B/P`).
fn used_ranges(ip_output: &str) -> Vec<(u32, u32)> {
    let range = |text: &str| -> Option<(u32, u32)> {
        let (addr, prefix) = text.split_once('/').unwrap_or((text, "32"));
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
        let size = 1u64 << (32 - prefix);
        let first = u64::from(u32::from(addr)) / size * size;
        Some((first as u32, (first + size - 1) as u32))
    };
    let mut used = Vec::new();
    for line in ip_output.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = fields.iter().position(|f| *f == "inet") else {
            continue;
        };
        used.extend(fields.get(at + 1).and_then(|a| range(a)));
        if fields.get(at + 2) == Some(&"peer") {
            used.extend(fields.get(at + 3).and_then(|a| range(a)));
        }
    }
    used
}

/// The first /30 of 10.231.0.0/16 that no interface of the host uses,
/// from `ip -o -4 addr show`'s output (the same output, the same subnet).
fn free_subnet(ip_output: &str) -> Result<Ipv4Addr> {
    let used = used_ranges(ip_output);
    let first = u32::from(SUBNETS.0);
    let last = first + ((1u32 << (32 - SUBNETS.1)) - 1);
    (first..=last)
        .step_by(4)
        .find(|block| !used.iter().any(|(a, b)| *a <= block + 3 && *block <= *b))
        .map(Ipv4Addr::from)
        .with_context(|| {
            format!(
                "no /30 of {}/{} is free on this host: every one overlaps an interface's address (`ip -4 addr`)",
                SUBNETS.0, SUBNETS.1
            )
        })
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
        // One run at a time picks a subnet and puts its address on the host,
        // so that the next one sees it taken.
        let state = Path::new(crate::model::STATE_ROOT);
        crate::engine::os::rundir::make_private_dir(state)?;
        let _lock = FileLock::exclusive(&state.join("link.lock"))?;
        let subnet = free_subnet(&host_addresses()?)?;
        let link = Link {
            netns: netns::name_for(&tag),
            host_if: format!("ckh{tag}"),
            host_addr: Ipv4Addr::from(u32::from(subnet) + 1),
            peer_addr: Ipv4Addr::from(u32::from(subnet) + 2),
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

    /// `ip -o -4 addr show` on a host with two throwaway links already.
    const TWO_LINKS: &str = "\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.1.20/24 brd 192.168.1.255 scope global dynamic eth0\\       valid_lft 85000sec preferred_lft 85000sec
7: ckh1a2b0    inet 10.231.0.1/30 scope global ckh1a2b0\\       valid_lft forever preferred_lft forever
9: ckh77c00    inet 10.231.0.5/30 scope global ckh77c00\\       valid_lft forever preferred_lft forever
";

    #[test]
    fn the_first_free_subnet_is_chosen() {
        let subnet = |output: &str| free_subnet(output).unwrap().to_string();
        assert_eq!(subnet(""), "10.231.0.0");
        assert_eq!(
            subnet(&TWO_LINKS.lines().take(2).collect::<Vec<_>>().join("\n")),
            "10.231.0.0"
        );
        assert_eq!(subnet(TWO_LINKS), "10.231.0.8");
        assert_eq!(
            subnet(TWO_LINKS),
            "10.231.0.8",
            "the same output, the same subnet"
        );
        // A gap is used again; a wider network covers every /30 in it.
        let gap: Vec<&str> = TWO_LINKS
            .lines()
            .filter(|l| !l.contains("ckh1a2b0"))
            .collect();
        let gap = gap.join("\n");
        assert_eq!(subnet(&gap), "10.231.0.0");
        let half = TWO_LINKS.replace("10.231.0.1/30", "10.231.0.2/31");
        assert_eq!(subnet(&half), "10.231.0.8", "half a /30 is not free");
        let wide = format!("{TWO_LINKS}4: br0    inet 10.231.0.200/23 scope global br0\n");
        assert_eq!(subnet(&wide), "10.231.2.0");
        // A point-to-point address and its peer.
        let ptp = "5: tun0    inet 10.231.0.1 peer 10.231.0.6/32 scope global tun0\n";
        assert_eq!(subnet(ptp), "10.231.0.8");
        assert!(free_subnet("3: vpn0    inet 10.0.0.1/8 scope global vpn0\n").is_err());
    }

    #[test]
    fn unreadable_lines_cover_nothing() {
        let odd = "1: x    inet nonsense scope global x\n2: y    inet 10.231.0.1/33\n3: z\n";
        assert!(used_ranges(odd).is_empty());
        assert_eq!(
            used_ranges("1: a    inet 10.231.1.7/32")[0],
            (0x0ae70107, 0x0ae70107)
        );
        assert_eq!(used_ranges("1: a    inet 1.2.3.4/0")[0], (0, u32::MAX));
    }

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
