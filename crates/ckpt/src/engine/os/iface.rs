//! An interface handed from a namespace of ckpt's to a container's (by a
//! pid inside it): how a Docker container, whose network namespace Docker
//! makes at every start and restore and which cannot be given by path,
//! joins a segment of ckpt's. Moving an interface between namespaces
//! drops its addresses and takes it down, so its IPv4 addresses and its
//! permanent neighbour entries are read first and put back in the new one.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::netns::{ip, ip_in_pid};

/// What an interface carries that a move between namespaces drops.
#[derive(Debug, Default, PartialEq)]
struct Carried {
    /// `ADDR/PREFIX`.
    addresses: Vec<String>,
    /// (address, MAC) of permanent neighbour entries.
    neighbours: Vec<(String, String)>,
}

/// Moves `ifname` out of ckpt's namespace `from` (a name under
/// /run/netns) into the network namespace of `pid`, with its addresses
/// and permanent neighbours, and sets it up there.
pub(crate) fn hand_to(from: &str, ifname: &str, pid: u32) -> Result<()> {
    let carried = Carried {
        addresses: parse_addresses(&ip_json(from, &["addr", "show", "dev", ifname])?),
        neighbours: parse_neighbours(&ip_json(
            from,
            &["neigh", "show", "dev", ifname, "nud", "permanent"],
        )?),
    };
    ip(&["-n", from, "link", "set", ifname, "netns", &pid.to_string()])?;
    let inside = |args: &[&str]| ip_in_pid(pid, args);
    for address in &carried.addresses {
        inside(&["addr", "add", address, "dev", ifname])?;
    }
    inside(&["link", "set", ifname, "up"])?;
    for (address, mac) in &carried.neighbours {
        inside(&[
            "neigh",
            "replace",
            address,
            "lladdr",
            mac,
            "nud",
            "permanent",
            "dev",
            ifname,
        ])?;
    }
    Ok(())
}

/// `ip -j ARGS` in namespace `netns`, its output.
fn ip_json(netns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["-j", "-n", netns])
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2): install it")?;
    if !out.status.success() {
        bail!(
            "`ip -n {netns} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The IPv4 addresses in `ip -j addr show` output.
fn parse_addresses(json: &str) -> Vec<String> {
    let links: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    links
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["family"] == "inet")
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect()
}

/// The entries in `ip -j neigh show` output.
fn parse_neighbours(json: &str) -> Vec<(String, String)> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    entries
        .iter()
        .filter_map(|n| {
            Some((
                n["dst"].as_str()?.to_string(),
                n["lladdr"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_neighbours_are_read_from_ip_json() {
        let addr = r#"[{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"10.77.0.10","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        assert_eq!(parse_addresses(addr), vec!["10.77.0.10/24".to_string()]);
        let neigh = r#"[{"dst":"10.77.0.1","dev":"eth0","lladdr":"02:00:0a:4d:00:01","state":["PERMANENT"]}]"#;
        assert_eq!(
            parse_neighbours(neigh),
            vec![("10.77.0.1".to_string(), "02:00:0a:4d:00:01".to_string())]
        );
        assert!(parse_addresses("").is_empty() && parse_neighbours("[]").is_empty());
    }
}
