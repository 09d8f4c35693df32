//! The sockets of two checkpoints side by side. A socket is matched by
//! what a reader knows it by: its family and type, its local end and its
//! peer (ids and inodes are new after every restore). Among sockets that
//! match, one with the same state and the same stream image is unchanged;
//! one in another state (or whose stream was saved in one only) changed;
//! the others were added or removed.

use std::collections::BTreeMap;

use criu_image::{Socket, Sockets};
use serde::Serialize;

use super::{count_change, Change};
use crate::inspect::{socket_name, socket_text};

/// One socket in both, in another state (or with its stream saved in one
/// only).
#[derive(Debug, Clone, Serialize)]
pub struct SocketChange {
    pub a: Socket,
    pub b: Socket,
}

/// What changed among the sockets.
#[derive(Debug, Clone, Serialize)]
pub struct SocketsDiff {
    /// Inet and unix sockets.
    pub count: Change,
    pub added: Vec<Socket>,
    pub removed: Vec<Socket>,
    pub changed: Vec<SocketChange>,
    pub unchanged: usize,
    /// Packet and netlink sockets, counted only.
    pub packet: Change,
    pub netlink: Change,
}

impl SocketsDiff {
    pub(super) fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.packet.changed()
            && !self.netlink.changed()
    }
}

type Key<'a> = (&'a str, &'static str, Option<&'a str>, Option<&'a str>);

fn key(s: &Socket) -> Key<'_> {
    (&s.family, s.kind, s.local.as_deref(), s.peer.as_deref())
}

/// The sockets' difference from A to B; None when either checkpoint's
/// sockets are unknown (no readable files.img).
pub(super) fn diff(a: Option<&Sockets>, b: Option<&Sockets>) -> Option<SocketsDiff> {
    let (a, b) = (a?, b?);
    let mut groups: BTreeMap<Key<'_>, (Vec<&Socket>, Vec<&Socket>)> = BTreeMap::new();
    for s in &a.entries {
        groups.entry(key(s)).or_default().0.push(s);
    }
    for s in &b.entries {
        groups.entry(key(s)).or_default().1.push(s);
    }
    let mut d = SocketsDiff {
        count: Change::of(a.entries.len() as u64, b.entries.len() as u64),
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        unchanged: 0,
        packet: Change::of(a.packet as u64, b.packet as u64),
        netlink: Change::of(a.netlink as u64, b.netlink as u64),
    };
    for (mut left, mut right) in groups.into_values() {
        let same = |x: &Socket, y: &Socket| x.state == y.state && x.stream_saved == y.stream_saved;
        d.unchanged += take_pairs(&mut left, &mut right, same).len();
        let changed = take_pairs(&mut left, &mut right, |_, _| true);
        d.changed
            .extend(changed.into_iter().map(|(x, y)| SocketChange {
                a: x.clone(),
                b: y.clone(),
            }));
        d.removed.extend(left.into_iter().cloned());
        d.added.extend(right.into_iter().cloned());
    }
    Some(d)
}

/// Takes out of both lists the pairs that `matches`, each socket of
/// `left` with the first of `right` it matches.
fn take_pairs<'a>(
    left: &mut Vec<&'a Socket>,
    right: &mut Vec<&'a Socket>,
    matches: impl Fn(&Socket, &Socket) -> bool,
) -> Vec<(&'a Socket, &'a Socket)> {
    let mut pairs = Vec::new();
    let mut rest = Vec::new();
    for x in left.drain(..) {
        match right.iter().position(|y| matches(x, y)) {
            Some(i) => pairs.push((x, right.remove(i))),
            None => rest.push(x),
        }
    }
    *left = rest;
    pairs
}

fn stream(s: &Socket) -> &'static str {
    if s.stream_saved {
        "stream saved"
    } else {
        "stream not saved"
    }
}

fn change_text(c: &SocketChange) -> String {
    let mut parts = Vec::new();
    if c.a.state != c.b.state {
        parts.push(format!("{} → {}", c.a.state, c.b.state));
    }
    if c.a.stream_saved != c.b.stream_saved {
        parts.push(format!("{} → {}", stream(&c.a), stream(&c.b)));
    }
    format!("{}: {}", socket_name(&c.a), parts.join(", "))
}

/// The diff's lines about sockets: the count, each socket added, removed
/// or changed, and the packet and netlink counts when they changed.
pub(super) fn lines(d: Option<&SocketsDiff>) -> Vec<String> {
    let Some(d) = d else {
        return vec!["sockets: not compared (files.img is missing or does not decode)".into()];
    };
    let mut lines = vec![format!("sockets: {}", count_change(&d.count))];
    let tagged = |tag: &str, s: &Socket| format!("{tag}: {}", socket_text(s));
    lines.extend(d.removed.iter().map(|s| tagged("socket removed", s)));
    lines.extend(d.added.iter().map(|s| tagged("socket added", s)));
    lines.extend(
        d.changed
            .iter()
            .map(|c| format!("socket changed: {}", change_text(c))),
    );
    for (what, c) in [("packet", &d.packet), ("netlink", &d.netlink)] {
        if c.changed() {
            lines.push(format!("{what} sockets: {}", count_change(c)));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(state: &str, local: &str, peer: Option<&str>, stream_saved: bool) -> Socket {
        Socket {
            id: 1,
            ino: 2,
            family: "tcp".into(),
            kind: "stream",
            state: state.into(),
            local: Some(local.into()),
            peer: peer.map(str::to_string),
            stream_saved,
        }
    }

    fn sockets(entries: Vec<Socket>) -> Sockets {
        Sockets {
            entries,
            packet: 0,
            netlink: 0,
        }
    }

    #[test]
    fn sockets_match_by_family_ends_and_peer_not_by_inode() {
        let (l, p) = ("127.0.0.1:80", Some("127.0.0.1:5000"));
        let a = sockets(vec![
            tcp("LISTEN", l, None, false),
            tcp("ESTABLISHED", l, p, true),
            tcp("LISTEN", "127.0.0.1:81", None, false),
        ]);
        let mut moved = tcp("LISTEN", l, None, false);
        (moved.id, moved.ino) = (40, 41);
        let mut b = sockets(vec![
            moved,
            tcp("CLOSE_WAIT", l, p, false),
            tcp("LISTEN", "[::]:443", None, false),
        ]);
        b.packet = 1;
        let d = diff(Some(&a), Some(&b)).unwrap();
        assert_eq!(d.unchanged, 1);
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.added[0].local.as_deref(), Some("[::]:443"));
        assert_eq!(d.changed.len(), 1);
        assert!(!d.is_empty());
        let text = lines(Some(&d));
        assert_eq!(
            text,
            [
                "sockets: 3 (no change)",
                "socket removed: tcp LISTEN 127.0.0.1:81",
                "socket added: tcp LISTEN [::]:443",
                "socket changed: tcp 127.0.0.1:80 peer 127.0.0.1:5000: ESTABLISHED → CLOSE_WAIT, stream saved → stream not saved",
                "packet sockets: 0 → 1 (+1)",
            ]
        );
    }

    #[test]
    fn alike_sockets_pair_up_by_state_first() {
        let unnamed = |state: &str| Socket {
            family: "unix".into(),
            local: None,
            peer: Some("unnamed".into()),
            ..tcp(state, "", None, false)
        };
        let a = sockets(vec![unnamed("ESTABLISHED"), unnamed("CLOSE")]);
        let b = sockets(vec![
            unnamed("CLOSE"),
            unnamed("ESTABLISHED"),
            unnamed("CLOSE"),
        ]);
        let d = diff(Some(&a), Some(&b)).unwrap();
        assert_eq!((d.unchanged, d.changed.len(), d.added.len()), (2, 0, 1));
        assert!(diff(Some(&a), Some(&a)).unwrap().is_empty());
        assert!(diff(None, Some(&a)).is_none());
        assert_eq!(
            lines(None),
            ["sockets: not compared (files.img is missing or does not decode)"]
        );
    }
}
