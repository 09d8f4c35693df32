//! The network a service moves across, on this machine: one L2 segment (a
//! bridge in a namespace of its own) that joins the client's namespace and
//! the service's namespace at each host. The service's namespace is ckpt's,
//! not the container engine's, so that CRIU treats it as external: it is
//! made at both hosts in advance with the same address and MAC, and only
//! one of the two is attached to the segment at a time. Clients keep
//! talking to the same IP:port; the bridge learns the MAC's new port from
//! the first frame the restored service sends, and floods until then.
//!
//! The source's port is detached before the dump: a client's packet that
//! reached the dumped service would draw a reset (CRIU's network lock
//! stays in CRIU's own namespace when the service's is external).
//! Addresses exist only inside these namespaces, and every host knows
//! the others' MACs (permanent neighbour entries): nothing waits on ARP.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::engine::os::netns::{ip, ScratchNetns};

/// The service's address at either host.
pub(crate) const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 10);
/// The client's address.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const PREFIX_LEN: u8 = 24;
/// The service's MAC at either host (locally administered).
const SERVICE_MAC: &str = "02:00:0a:4d:00:0a";
/// The client's MAC.
const CLIENT_MAC: &str = "02:00:0a:4d:00:01";
/// The bridge, inside the segment's namespace.
const BRIDGE: &str = "br0";
/// The interface of every host on the segment, inside its namespace.
pub(crate) const HOST_IF: &str = "eth0";

/// The segment and its three hosts' namespaces; all removed when dropped
/// (the service's processes inside are killed with them).
pub(crate) struct Segment {
    /// The source's namespace while its path is lent to the
    /// destination's (see `lend_source_path`).
    held: std::sync::Mutex<Option<std::fs::File>>,
    client: ScratchNetns,
    source: ScratchNetns,
    destination: ScratchNetns,
    /// Last: the ports go with it.
    bridge: ScratchNetns,
}

/// A host on the segment: its namespace and its port's name on the bridge.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Source,
    Destination,
}

impl Side {
    fn port(self) -> &'static str {
        match self {
            Side::Client => "p-client",
            Side::Source => "p-source",
            Side::Destination => "p-dest",
        }
    }
}

impl Segment {
    /// The bridge, the client attached, the source's service namespace
    /// attached and the destination's made but detached. `tag` tells one
    /// move's namespaces from another's.
    pub(crate) fn create(tag: &str) -> Result<Segment> {
        let bridge = ScratchNetns::create(&format!("{tag}-seg"))?;
        ip(&["-n", &bridge.name, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &bridge.name, "link", "set", BRIDGE, "up"])?;
        let segment = Segment {
            held: Default::default(),
            client: ScratchNetns::create(&format!("{tag}-cli"))?,
            source: ScratchNetns::create(&format!("{tag}-src"))?,
            destination: ScratchNetns::create(&format!("{tag}-dst"))?,
            bridge,
        };
        segment.join(Side::Client, CLIENT_IP, Some(CLIENT_MAC))?;
        segment.join(Side::Source, SERVICE_IP, Some(SERVICE_MAC))?;
        segment.join(Side::Destination, SERVICE_IP, Some(SERVICE_MAC))?;
        // Every host knows the others' MACs for good: no ARP exchange
        // waits on a port that has just come up (a retransmission waiting
        // on one went out at ARP's next retry, up to a second later).
        segment.know(Side::Client, SERVICE_IP, SERVICE_MAC)?;
        segment.know(Side::Source, CLIENT_IP, CLIENT_MAC)?;
        segment.know(Side::Destination, CLIENT_IP, CLIENT_MAC)?;
        segment.attach(Side::Client)?;
        segment.attach(Side::Source)?;
        Ok(segment)
    }

    fn netns(&self, side: Side) -> &ScratchNetns {
        match side {
            Side::Client => &self.client,
            Side::Source => &self.source,
            Side::Destination => &self.destination,
        }
    }

    /// A veth from the host's namespace to a port in the segment's, the
    /// host's end addressed and up, the port down and on no bridge yet.
    fn join(&self, side: Side, addr: Ipv4Addr, mac: Option<&str>) -> Result<()> {
        let host = &self.netns(side).name;
        let mut add = vec!["-n", host, "link", "add", HOST_IF];
        add.extend(mac.map(|m| ["address", m]).into_iter().flatten());
        add.extend(["type", "veth", "peer", "name", side.port()]);
        add.extend(["netns", &self.bridge.name]);
        ip(&add)?;
        let cidr = format!("{addr}/{PREFIX_LEN}");
        ip(&["-n", host, "addr", "add", &cidr, "dev", HOST_IF])?;
        ip(&["-n", host, "link", "set", HOST_IF, "up"])
            .with_context(|| format!("joining {host} to the segment"))
    }

    /// A permanent neighbour entry in `side`'s namespace.
    fn know(&self, side: Side, addr: Ipv4Addr, mac: &str) -> Result<()> {
        let host = &self.netns(side).name;
        let addr = addr.to_string();
        let entry = ["-n", host, "neigh", "replace", &addr, "lladdr", mac];
        ip(&[&entry[..], &["nud", "permanent", "dev", HOST_IF]].concat())
    }

    /// The host's port on the bridge, and up: its link comes up.
    fn attach(&self, side: Side) -> Result<()> {
        let port = side.port();
        ip(&[
            "-n",
            &self.bridge.name,
            "link",
            "set",
            port,
            "master",
            BRIDGE,
        ])?;
        ip(&["-n", &self.bridge.name, "link", "set", port, "up"])
    }

    /// The host's port down and off the bridge: nothing reaches it.
    fn detach(&self, side: Side) -> Result<()> {
        let port = side.port();
        ip(&["-n", &self.bridge.name, "link", "set", port, "down"])?;
        ip(&["-n", &self.bridge.name, "link", "set", port, "nomaster"])
    }

    /// Before the dump: nothing reaches the source's service any more.
    pub(crate) fn detach_source(&self) -> Result<()> {
        self.detach(Side::Source)
    }

    /// Once the destination has restored the service.
    pub(crate) fn attach_destination(&self) -> Result<()> {
        self.attach(Side::Destination)
    }

    /// A move that failed with the service resumed at the source.
    pub(crate) fn back_to_source(&self) -> Result<()> {
        let _ = self.detach(Side::Destination);
        self.attach(Side::Source)
    }

    /// Podman restores a container into the namespace path its archive
    /// names: the source's. Two hosts each have their own path; here the
    /// source's path is lent to the destination's namespace for the
    /// restore (the source's namespace held open meanwhile), after the
    /// dump, when nothing of the source's runs in it.
    pub(crate) fn lend_source_path(&self) -> Result<()> {
        let path = self.source.path();
        let held = std::fs::File::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let held_path = fd_path(&held);
        let mut slot = self
            .held
            .lock()
            .map_err(|_| anyhow::anyhow!("internal lock poisoned"))?;
        *slot = Some(held);
        unmount(&path)?;
        if let Err(e) = bind(&self.destination.path(), &path) {
            // The source's namespace named again: a failed move resumes there.
            let back = bind(&held_path, &path);
            *slot = None;
            return Err(match back {
                Ok(()) => e,
                Err(again) => e.context(format!("and giving the path back failed: {again:#}")),
            });
        }
        Ok(())
    }

    /// The source's path names the source's namespace again (a move that
    /// failed resumes there).
    pub(crate) fn take_back_source_path(&self) -> Result<()> {
        let mut slot = self
            .held
            .lock()
            .map_err(|_| anyhow::anyhow!("internal lock poisoned"))?;
        let Some(held) = slot.as_ref() else {
            return Ok(());
        };
        let path = self.source.path();
        unmount(&path)?;
        bind(&fd_path(held), &path)?;
        *slot = None;
        Ok(())
    }

    /// Docker: the source's interface handed to the container's own
    /// namespace (Docker cannot be given one by path).
    pub(crate) fn hand_source_to(&self, pid: u32) -> Result<()> {
        crate::engine::os::iface::hand_to(&self.source.name, HOST_IF, pid)
    }

    /// Docker: the source's interface went with the namespace Docker
    /// removed when the dump stopped the container; a move that failed
    /// restores it in a new one, which gets a new interface on the
    /// segment (detached until `back_to_source`).
    pub(crate) fn rejoin_source(&self, pid: u32) -> Result<()> {
        let _ = ip(&["-n", &self.bridge.name, "link", "del", Side::Source.port()]);
        self.join(Side::Source, SERVICE_IP, Some(SERVICE_MAC))?;
        self.know(Side::Source, CLIENT_IP, CLIENT_MAC)?;
        self.hand_source_to(pid)
    }

    /// Where the clients reach the service.
    pub(crate) fn service(&self, port: u16) -> SocketAddr {
        SocketAddr::new(SERVICE_IP.into(), port)
    }

    pub(crate) fn client_path(&self) -> PathBuf {
        self.client.path()
    }

    pub(crate) fn client_name(&self) -> &str {
        &self.client.name
    }

    pub(crate) fn source_path(&self) -> PathBuf {
        self.source.path()
    }

    /// The destination's namespace, by name (`ckpt serve` takes a name of
    /// ckpt's namespaces, never a path).
    pub(crate) fn destination_name(&self) -> &str {
        &self.destination.name
    }
}

/// The path that opens `file` again, while it is held open.
fn fd_path(file: &std::fs::File) -> PathBuf {
    PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(file)
    ))
}

/// Bind-mounts `from` on `to` (a namespace's file on another's).
fn bind(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let c = |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes());
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths; no file system type or data.
    let done = unsafe {
        libc::mount(
            from_c.as_ptr(),
            to_c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot bind {} on {}", from.display(), to.display()));
    }
    Ok(())
}

/// Unmounts `path` (a namespace's file), lazily.
fn unmount(path: &std::path::Path) -> Result<()> {
    let path_c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::umount2(path_c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot unmount {}", path.display()));
    }
    Ok(())
}
