//! Accepting clients: every connection is served on its own, so that an
//! idle or slow peer never holds up another. The TLS handshake is bounded
//! (HANDSHAKE), and at most MAX_CONNECTIONS are served at once (more are
//! refused at once, not queued behind the others).

use std::net::SocketAddr;

use anyhow::Result;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::limits::{Timed, HANDSHAKE};
use super::wire::{self, Message};
use super::Daemons;

/// Connections served at the same time, handshakes included.
const MAX_CONNECTIONS: usize = 16;

/// What every connection is served with.
pub(super) struct Serving<'a> {
    pub acceptor: TlsAcceptor,
    pub criu_tls: Vec<String>,
    pub daemons: &'a Daemons,
}

/// Serves connections until `once` is done: then returns the first
/// migration's outcome (a connection that never said hello is none).
pub(super) async fn serve_all(
    listener: TcpListener,
    serving: Serving<'_>,
    once: bool,
) -> Result<()> {
    let mut running = FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, say: serve on, a little later.
                        eprintln!("ckpt serve: accepting failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if running.len() >= MAX_CONNECTIONS {
                    eprintln!("ckpt serve: refused {peer}: {MAX_CONNECTIONS} connections are being served");
                    continue;
                }
                running.push(connection(&serving, tcp, peer));
            }
            Some(outcome) = running.next(), if !running.is_empty() => {
                if let (true, Some(result)) = (once, outcome) {
                    return result;
                }
            }
        }
    }
}

/// One connection: the handshake (bounded), the hello, the migration.
/// None when no migration began (a refused or silent peer).
async fn connection(serving: &Serving<'_>, tcp: TcpStream, peer: SocketAddr) -> Option<Result<()>> {
    let stream = match tokio::time::timeout(HANDSHAKE, serving.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        // Nothing was created for it: the handshake comes first.
        Ok(Err(e)) => return refused(peer, &e.to_string()),
        Err(_) => {
            return refused(
                peer,
                &format!("no TLS handshake within {} s", HANDSHAKE.as_secs()),
            )
        }
    };
    // The address the client reached: CRIU's helpers listen there, and
    // CRIU checks it against the peer's certificate.
    let own_ip = stream.get_ref().0.local_addr().ok()?.ip();
    let mut stream = Timed::new(stream);
    // The server speaks first: a client whose certificate was refused
    // learns it at its first read (TLS 1.3 checks it after the client
    // has finished its handshake), before it starts anything.
    let (criu, runc) = crate::host::envinfo::engine_versions();
    if let Err(e) = wire::send(&mut stream, &Message::Ready { criu, runc }).await {
        eprintln!("ckpt serve: {peer} left before the hello: {e:#}");
        return None;
    }
    let peers = (own_ip, peer.ip());
    let result = super::receive(
        &mut stream,
        peers,
        serving.criu_tls.clone(),
        serving.daemons,
    )
    .await;
    if let Err(e) = &result {
        let message = format!("{e:#}");
        eprintln!("ckpt serve: the migration from {peer} failed: {message}");
        let _ = wire::send(&mut stream, &Message::Error { message }).await;
    }
    Some(result)
}

fn refused(peer: SocketAddr, why: &str) -> Option<Result<()>> {
    eprintln!("ckpt serve: refused {peer}: {why}");
    None
}
