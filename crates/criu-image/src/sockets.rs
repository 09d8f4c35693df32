//! The sockets of a checkpoint: inet and unix sockets one by one, packet
//! and netlink sockets counted.
//!
//! CRIU 3.4 and later write every socket into `files.img`, as a file entry
//! of type INETSK (its `isk`), UNIXSK (`usk`), PACKETSK or NETLINKSK; older
//! versions wrote `inetsk.img` and `unixsk.img`, which are read too. A TCP
//! connection dumped with `--tcp-established` has its queues and sequence
//! numbers in `tcp-stream-<inode in hex>.img`: only its presence is noted
//! (the file holds raw queue bytes after its message).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::framing::{self, magic};
use crate::messages::{FileEntry, InetSkEntry, UnixSkEntry};
use crate::{decode_optional, Files};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;
const IPPROTO_UDPLITE: u32 = 136;
/// File types (fdinfo's `type`) of the sockets that are only counted.
const FD_PACKETSK: i32 = 10;
const FD_NETLINKSK: i32 = 13;

/// One inet or unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Socket {
    /// The file id that processes' descriptors (fdinfo) refer to.
    pub id: u32,
    /// The socket's inode: unix peers name each other by it.
    pub ino: u32,
    /// `tcp`, `udp`, `udplite` or `raw`, with a `6` for IPv6; `unix`.
    pub family: String,
    /// `stream`, `dgram`, `seqpacket` or `raw`.
    pub kind: &'static str,
    /// The TCP state's name (`LISTEN`, `ESTABLISHED`, `CLOSE`, ...); unix
    /// and UDP sockets use the same numbers.
    pub state: String,
    /// `address:port`, or a unix socket's path or `@abstract` name; None
    /// for an unbound unix socket.
    pub local: Option<String>,
    /// The other end when connected: `address:port`, or the unix peer's
    /// name (`unnamed` when it has none).
    pub peer: Option<String>,
    /// The checkpoint holds the connection's TCP stream image.
    pub stream_saved: bool,
}

impl Socket {
    /// A TCP connection: its stream image is what lets it carry on.
    pub fn is_established_tcp(&self) -> bool {
        self.family.starts_with("tcp") && self.state == "ESTABLISHED"
    }
}

/// The sockets of a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sockets {
    /// Inet sockets, then unix sockets, each in the order of the image.
    pub entries: Vec<Socket>,
    /// Packet sockets (AF_PACKET), counted only.
    pub packet: usize,
    /// Netlink sockets, counted only.
    pub netlink: usize,
}

/// The sockets of a checkpoint: from `files.img` (its decoded entries, None
/// when it is missing or broken) and the old per-type images. None when
/// there is none of them, so "no sockets" is never guessed.
pub(crate) fn decode(
    files: &dyn Files,
    shared: Option<&[FileEntry]>,
    warnings: &mut Vec<String>,
) -> Option<Sockets> {
    let old_inet = decode_optional(files, "inetsk.img", warnings, |b, n| {
        framing::decode_all::<InetSkEntry>(b, magic::INETSK, n)
    });
    let old_unix = decode_optional(files, "unixsk.img", warnings, |b, n| {
        framing::decode_all::<UnixSkEntry>(b, magic::UNIXSK, n)
    });
    if shared.is_none() && old_inet.is_none() && old_unix.is_none() {
        return None;
    }
    let shared = shared.unwrap_or_default();
    let inet = merged(
        shared.iter().filter_map(|f| f.isk.as_ref()),
        old_inet.iter().flatten(),
        |s| s.id,
    );
    let unix = merged(
        shared.iter().filter_map(|f| f.usk.as_ref()),
        old_unix.iter().flatten(),
        |s| s.id,
    );
    let streams = stream_images(files);
    let names: BTreeMap<u32, Option<String>> = unix.iter().map(|s| (s.ino, unix_name(s))).collect();
    let mut entries: Vec<Socket> = inet.iter().map(|s| inet_socket(s, &streams)).collect();
    entries.extend(unix.iter().map(|s| unix_socket(s, &names)));
    let count = |kind: i32| shared.iter().filter(|f| f.kind == kind).count();
    Some(Sockets {
        entries,
        packet: count(FD_PACKETSK),
        netlink: count(FD_NETLINKSK),
    })
}

/// The entries of files.img, then those of an old image whose id
/// files.img does not have.
fn merged<'a, T>(
    current: impl Iterator<Item = &'a T>,
    old: impl Iterator<Item = &'a T>,
    id: fn(&T) -> u32,
) -> Vec<&'a T> {
    let mut out: Vec<&T> = current.collect();
    let seen: BTreeSet<u32> = out.iter().map(|t| id(t)).collect();
    out.extend(old.filter(|t| !seen.contains(&id(t))));
    out
}

/// The inodes whose `tcp-stream-<inode in hex>.img` is in the checkpoint.
fn stream_images(files: &dyn Files) -> BTreeSet<u32> {
    files
        .sizes()
        .iter()
        .filter_map(|(name, _)| {
            let hex = name.strip_prefix("tcp-stream-")?.strip_suffix(".img")?;
            u32::from_str_radix(hex, 16).ok()
        })
        .collect()
}

fn inet_socket(s: &InetSkEntry, streams: &BTreeSet<u32>) -> Socket {
    let peer = address(s.family, &s.dst_addr);
    let connected = s.dst_port != 0 || !peer.is_unspecified();
    Socket {
        id: s.id,
        ino: s.ino,
        family: inet_family(s),
        kind: kind_name(s.sock_type),
        state: state_name(s.state),
        local: Some(endpoint(address(s.family, &s.src_addr), s.src_port)),
        peer: connected.then(|| endpoint(peer, s.dst_port)),
        stream_saved: s.sock_type == SOCK_STREAM && streams.contains(&s.ino),
    }
}

fn unix_socket(s: &UnixSkEntry, names: &BTreeMap<u32, Option<String>>) -> Socket {
    let peer = (s.peer != 0).then(|| match names.get(&s.peer) {
        Some(Some(name)) => name.clone(),
        Some(None) => "unnamed".to_string(),
        None => format!("inode {} (not in the checkpoint)", s.peer),
    });
    Socket {
        id: s.id,
        ino: s.ino,
        family: "unix".into(),
        kind: kind_name(s.sock_type),
        state: state_name(s.state),
        local: unix_name(s),
        peer,
        stream_saved: false,
    }
}

/// An address from the words CRIU stored: the kernel's bytes (network
/// order) copied into u32s on a little-endian machine. Missing words read
/// as zeros.
fn address(family: u32, words: &[u32]) -> IpAddr {
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

/// `127.0.0.1:80`, `[::1]:80`. The port is printed as stored (a corrupt
/// one may exceed 65535).
fn endpoint(addr: IpAddr, port: u32) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

fn inet_family(s: &InetSkEntry) -> String {
    let base = match (s.sock_type, s.proto) {
        (SOCK_STREAM, _) => "tcp",
        (SOCK_DGRAM, IPPROTO_UDPLITE) => "udplite",
        (SOCK_DGRAM, _) => "udp",
        (SOCK_RAW, _) => "raw",
        _ => "inet",
    };
    match s.family {
        AF_INET => base.to_string(),
        AF_INET6 => format!("{base}6"),
        other => format!("{base} (family {other})"),
    }
}

/// A unix socket's name: its path (joined to the directory a relative
/// name was bound in), or `@` and an abstract name (NUL bytes as `@`).
fn unix_name(s: &UnixSkEntry) -> Option<String> {
    let (first, rest) = s.name.split_first()?;
    if *first == 0 {
        return Some(format!(
            "@{}",
            String::from_utf8_lossy(rest).replace('\0', "@")
        ));
    }
    let path = String::from_utf8_lossy(&s.name);
    let path = match s.name_dir.as_deref() {
        Some(dir) if !dir.is_empty() && !path.starts_with('/') => {
            format!("{}/{path}", dir.trim_end_matches('/'))
        }
        _ => path.into_owned(),
    };
    Some(if s.deleted == Some(true) {
        format!("{path} (deleted)")
    } else {
        path
    })
}

/// SOCK_* names.
fn kind_name(sock_type: u32) -> &'static str {
    match sock_type {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        5 => "seqpacket",
        _ => "unknown",
    }
}

/// TCP state names, include/net/tcp_states.h.
pub fn state_name(state: u32) -> String {
    let name = match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        13 => "BOUND_INACTIVE",
        other => return format!("state {other}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{frame, IMG_COMMON_MAGIC};
    use crate::messages::PstreeEntry;
    use crate::{Checkpoint, ErrorKind, MemFiles};
    use prost::Message;

    const LOOPBACK: u32 = u32::from_le_bytes([127, 0, 0, 1]);

    fn tcp(id: u32, state: u32, src_port: u32, dst_port: u32) -> InetSkEntry {
        InetSkEntry {
            id,
            ino: 0x1e100 + id,
            family: AF_INET,
            sock_type: SOCK_STREAM,
            proto: 6,
            state,
            src_port,
            dst_port,
            src_addr: vec![LOOPBACK],
            dst_addr: vec![if dst_port == 0 { 0 } else { LOOPBACK }],
            ..Default::default()
        }
    }

    fn unix(id: u32, ino: u32, peer: u32, name: &[u8]) -> UnixSkEntry {
        UnixSkEntry {
            id,
            ino,
            sock_type: SOCK_STREAM,
            state: 1,
            peer,
            name: name.to_vec(),
            ..Default::default()
        }
    }

    fn file(kind: i32, id: u32) -> FileEntry {
        FileEntry {
            kind,
            id,
            ..Default::default()
        }
    }

    fn image(image_magic: u32, messages: &[Vec<u8>]) -> Vec<u8> {
        frame(&[IMG_COMMON_MAGIC, image_magic], messages)
    }

    /// A one-process checkpoint holding `extra` files.
    fn checkpoint(extra: &[(&str, Vec<u8>)]) -> Checkpoint {
        let mut files = MemFiles::default();
        let tree = PstreeEntry {
            pid: 1,
            threads: vec![1],
            ..Default::default()
        };
        let tree = image(magic::PSTREE, &[tree.encode_to_vec()]);
        files.insert("pstree.img", Some(tree), 10);
        for (name, bytes) in extra {
            files.insert(name, Some(bytes.clone()), bytes.len() as u64);
        }
        Checkpoint::decode(&files).unwrap()
    }

    /// files.img as CRIU 4.1 writes it: a listener and a connection to it,
    /// an unconnected UDP socket on IPv6, a unix socket pair (one end
    /// named) and an abstract unix socket, a packet and a netlink socket;
    /// the connection's two streams saved.
    fn files_img() -> Vec<u8> {
        let mut udp6 = tcp(4, 7, 5353, 0);
        (udp6.family, udp6.sock_type, udp6.proto) = (AF_INET6, SOCK_DGRAM, 17);
        udp6.src_addr = vec![0, 0, 0, 0];
        udp6.dst_addr = vec![0, 0, 0, 0];
        let inet = [
            tcp(1, 10, 33713, 0),
            tcp(2, 1, 53630, 33713),
            tcp(3, 1, 33713, 53630),
            udp6,
        ];
        let unix = [
            unix(5, 900, 901, b"/run/app.sock"),
            unix(6, 901, 900, b""),
            unix(7, 902, 0, b"\0hidden"),
        ];
        let mut entries: Vec<Vec<u8>> = inet
            .into_iter()
            .map(|s| {
                FileEntry {
                    isk: Some(s),
                    ..file(4, 0)
                }
                .encode_to_vec()
            })
            .collect();
        entries.extend(unix.into_iter().map(|s| {
            FileEntry {
                usk: Some(s),
                ..file(5, 0)
            }
            .encode_to_vec()
        }));
        entries.push(file(10, 8).encode_to_vec());
        entries.push(file(13, 9).encode_to_vec());
        image(magic::FILES, &entries)
    }

    fn line(s: &Socket) -> String {
        let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        format!(
            "{} {} {} {} {} {}",
            s.family,
            s.kind,
            s.state,
            or(&s.local),
            or(&s.peer),
            s.stream_saved
        )
    }

    #[test]
    fn lists_inet_and_unix_sockets_and_counts_the_others() {
        let cp = checkpoint(&[
            ("files.img", files_img()),
            ("tcp-stream-1e102.img", vec![1, 2, 3]),
            ("tcp-stream-1e103.img", vec![1, 2, 3]),
        ]);
        assert!(cp.warnings.is_empty(), "{:?}", cp.warnings);
        let sockets = cp.sockets.unwrap();
        let lines: Vec<String> = sockets.entries.iter().map(line).collect();
        assert_eq!(
            lines,
            [
                "tcp stream LISTEN 127.0.0.1:33713 - false",
                "tcp stream ESTABLISHED 127.0.0.1:53630 127.0.0.1:33713 true",
                "tcp stream ESTABLISHED 127.0.0.1:33713 127.0.0.1:53630 true",
                "udp6 dgram CLOSE [::]:5353 - false",
                "unix stream ESTABLISHED /run/app.sock unnamed false",
                "unix stream ESTABLISHED - /run/app.sock false",
                "unix stream ESTABLISHED @hidden - false",
            ]
        );
        assert_eq!((sockets.packet, sockets.netlink), (1, 1));
        assert!(sockets.entries[1].is_established_tcp());
        assert!(!sockets.entries[0].is_established_tcp());
    }

    #[test]
    fn a_connection_without_its_stream_image_is_not_saved() {
        let cp = checkpoint(&[("files.img", files_img())]);
        let sockets = cp.sockets.unwrap();
        assert!(sockets.entries.iter().all(|s| !s.stream_saved));
    }

    #[test]
    fn old_images_are_read_and_not_counted_twice() {
        let old_inet = image(
            magic::INETSK,
            &[
                tcp(1, 10, 33713, 0).encode_to_vec(),
                tcp(20, 10, 80, 0).encode_to_vec(),
            ],
        );
        let old_unix = image(
            magic::UNIXSK,
            &[unix(21, 950, 0, b"/tmp/s").encode_to_vec()],
        );
        let cp = checkpoint(&[
            ("files.img", files_img()),
            ("inetsk.img", old_inet.clone()),
            ("unixsk.img", old_unix.clone()),
        ]);
        let entries = cp.sockets.unwrap().entries;
        assert_eq!(entries.len(), 9, "{entries:?}");
        assert_eq!(entries.iter().filter(|s| s.id == 1).count(), 1);
        // Without files.img, the old images alone.
        let cp = checkpoint(&[("inetsk.img", old_inet), ("unixsk.img", old_unix)]);
        assert_eq!(cp.sockets.unwrap().entries.len(), 3);
    }

    #[test]
    fn no_files_image_means_sockets_unknown() {
        assert_eq!(checkpoint(&[]).sockets, None);
    }

    #[test]
    fn corrupt_socket_images_are_warnings_naming_file_and_offset() {
        let good = files_img();
        // The third entry's isk claims more bytes than it has: the size
        // field stays, the message is cut after its first byte.
        let entries = crate::framing::entries(&good, magic::FILES, "files.img").unwrap();
        let third = entries[2].offset;
        let mut cut = good[..third + 4].to_vec();
        cut[third..third + 4].copy_from_slice(&2u32.to_le_bytes());
        cut.extend_from_slice(&[0x22, 0x40]);
        for (name, bytes, offset) in [
            ("files.img", good[..good.len() - 2].to_vec(), None),
            ("files.img", cut, Some(third)),
            ("inetsk.img", image(magic::UNIXSK, &[]), Some(4)),
            (
                "unixsk.img",
                image(magic::UNIXSK, &[vec![0x5a, 0xff]]),
                Some(8),
            ),
        ] {
            let cp = checkpoint(&[(name, bytes)]);
            assert_eq!(cp.warnings.len(), 1, "{name}: {:?}", cp.warnings);
            let warning = &cp.warnings[0];
            assert!(warning.starts_with(name), "{warning}");
            if let Some(offset) = offset {
                assert!(warning.contains(&format!("offset {offset})")), "{warning}");
            }
            if name == "files.img" {
                assert_eq!(cp.sockets, None, "{name}");
            }
        }
    }

    #[test]
    fn a_garbage_socket_message_is_a_protobuf_error() {
        let bad = image(magic::INETSK, &[vec![0x58, 0xff, 0xff, 0xff]]);
        let err =
            framing::decode_all::<InetSkEntry>(&bad, magic::INETSK, "inetsk.img").unwrap_err();
        assert_eq!((err.file.as_str(), err.offset), ("inetsk.img", 8));
        assert!(matches!(err.kind, ErrorKind::Protobuf(_)));
    }

    #[test]
    fn addresses_read_whatever_the_words() {
        let v6_loopback = [0, 0, 0, u32::from_le_bytes([0, 0, 0, 1])];
        assert_eq!(endpoint(address(AF_INET6, &v6_loopback), 443), "[::1]:443");
        assert_eq!(endpoint(address(AF_INET6, &[]), 0), "[::]:0");
        assert_eq!(endpoint(address(AF_INET, &[]), 70000), "0.0.0.0:70000");
        assert_eq!(
            endpoint(address(AF_INET, &[LOOPBACK, 1, 2, 3, 4, 5]), 1),
            "127.0.0.1:1"
        );
        assert_eq!(state_name(10), "LISTEN");
        assert_eq!(state_name(99), "state 99");
        let mut odd = tcp(1, 1, 1, 1);
        (odd.family, odd.sock_type) = (17, 9);
        assert_eq!(inet_family(&odd), "inet (family 17)");
        assert_eq!(kind_name(odd.sock_type), "unknown");
    }
}
