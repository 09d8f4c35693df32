//! The destination's side of the protocol, step by step: what it takes
//! from its client and when. Every request is accepted in its place only
//! (nothing but the finish once the restore has begun), every file by the
//! rules of `received`, every wait bounded by `limits`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{bail, Result};
use tokio::io::{AsyncRead, AsyncWrite};

use super::limits::{self, Timed};
use super::received;
use super::wire::{self, Message};
use super::{make_bundle, Destination};
use crate::engine::any::AnyEngine;
use crate::model::{EngineKind, MigrationMethod, Point};

impl Destination {
    /// Receives files and requests until the workload runs here, checks
    /// it, then waits for the client's finish. Nothing is taken once the
    /// restore has begun but the finish.
    pub(super) async fn take<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut Timed<S>,
        method: MigrationMethod,
        point: Point,
        (own_ip, peer_ip): (IpAddr, IpAddr),
    ) -> Result<()> {
        if !self.kind.has_daemon() {
            for dir in [self.images()?, self.work()?] {
                crate::engine::os::rundir::make_private_dir(&dir)?;
            }
        }
        let mut restored = false;
        // The source dumps before the checkpoint's files come.
        stream.allow(limits::DUMP_WAIT);
        loop {
            let message = wire::recv(stream).await?;
            in_order(&message, restored)?;
            stream.allow(match &message {
                Message::File { .. } => limits::READ_IDLE,
                _ => limits::DUMP_WAIT,
            });
            match message {
                Message::Prepare { image, args } if self.kind.has_daemon() => {
                    self.prepare(image, args, &point).await?;
                    wire::send(stream, &Message::Prepared).await?;
                }
                Message::Program(program) => {
                    if let Some(netns) = &program.netns {
                        // A service with clients: its connections come too
                        // (Docker's cannot).
                        match &mut self.engine {
                            AnyEngine::Runc(runc) => runc.tcp_established = true,
                            AnyEngine::Docker(podman) if self.kind == EngineKind::Podman => {
                                podman.tcp_established = true
                            }
                            AnyEngine::Criu(criu) => {
                                let path = crate::engine::os::netns::ckpt_netns_path(netns)?;
                                criu.restore_into(&self.container, path)?;
                            }
                            AnyEngine::Docker(_) => {}
                        }
                    }
                    if self.kind == EngineKind::Runc {
                        make_bundle(&self.engine, &self.run, &self.container, &program).await?;
                    }
                    self.program = Some(program);
                    wire::send(stream, &Message::ProgramReady).await?;
                }
                Message::StartPageServer if method == MigrationMethod::PageServer => {
                    let port = self.start_page_server(own_ip)?;
                    wire::send(stream, &Message::PageServerReady { port }).await?;
                }
                Message::File { path, size, mode } => {
                    self.receive_file(stream, &path, size, mode).await?
                }
                Message::Restore { lazy_from } => {
                    restored = true;
                    self.restore_and_verify(stream, point, lazy_from, peer_ip)
                        .await?;
                }
                Message::Clock => {
                    let wall_us = crate::migrate::measured::wall_us();
                    wire::send(stream, &Message::ClockIs { wall_us }).await?;
                }
                Message::Finish => return Ok(()),
                other => bail!("unexpected {other:?} during a {} migration", method.name()),
            }
        }
    }

    /// Stores a file the client sent where serve keeps the move's files,
    /// if the move has a use for it.
    async fn receive_file<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        path: &Path,
        size: u64,
        mode: u32,
    ) -> Result<()> {
        match received::take(self.kind, self.program.is_some(), path)? {
            received::Take::Store => {
                wire::recv_file(stream, &self.bundle()?, path, size, mode).await
            }
            received::Take::Drop => wire::drain_file(stream, size).await,
        }
    }

    /// Restores, says so, checks the workload and says what it found.
    async fn restore_and_verify<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: &mut Timed<S>,
        point: Point,
        lazy_from: Option<SocketAddr>,
        peer_ip: IpAddr,
    ) -> Result<()> {
        // The source names where it serves pages (it may listen elsewhere
        // than it connects from).
        let lazy_from = lazy_from.map(|a| match a.ip().is_unspecified() {
            true => SocketAddr::new(peer_ip, a.port()),
            false => a,
        });
        let began_us = crate::migrate::measured::wall_us();
        let (processes, criu) = self.restore(lazy_from, &point).await?;
        wire::send(stream, &Message::Restored { processes, criu }).await?;
        if self.program.as_ref().is_some_and(|p| p.check_on_request) {
            // The client's probe runs meanwhile (its settle time, bounded
            // as a dump is).
            stream.allow(limits::DUMP_WAIT);
            wire::expect(stream, "the request to check", |m| {
                matches!(m, Message::Check).then_some(())
            })
            .await?;
        }
        let verified = self.verify(point, began_us).await;
        wire::send(stream, &verified).await
    }
}

/// Once the restore has begun, the client may only finish: a file then
/// (which would land in a running container's bundle), a second restore
/// or any other request is refused with the reason.
pub(super) fn in_order(message: &Message, restored: bool) -> Result<()> {
    match (restored, message) {
        (false, _) | (true, Message::Finish) => Ok(()),
        (true, Message::File { path, .. }) => bail!(
            "the client sent a file ({}) after the restore: refused",
            path.display()
        ),
        (true, other) => bail!("the client sent {other:?} after the restore: refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_the_restore_only_the_finish_is_taken() {
        let file = Message::File {
            path: "images/migrated/pages-1.img".into(),
            size: 1,
            mode: 0o600,
        };
        let restore = Message::Restore { lazy_from: None };
        for m in [&file, &restore, &Message::Finish, &Message::StartPageServer] {
            in_order(m, false).unwrap();
        }
        in_order(&Message::Finish, true).unwrap();
        let e = in_order(&file, true).unwrap_err().to_string();
        assert!(
            e.contains("after the restore") && e.contains("pages-1.img"),
            "{e}"
        );
        assert!(in_order(&restore, true).is_err());
        assert!(in_order(&Message::StartPageServer, true).is_err());
    }
}
