//! What `ckpt migrate` and `ckpt serve` say to each other over their TLS
//! link: length-prefixed JSON messages, and files sent as a header message
//! followed by their bytes (streamed, never held in memory whole).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub(crate) mod store;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::model::{EngineKind, MigrationMethod, Point};

/// The largest message other than a file's bytes: a header is small, and a
/// peer that announces more is not speaking this protocol.
const MAX_MESSAGE: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Client: what is coming: the container, the workload's point (which
    /// the check at the destination needs), and for a plain process tree
    /// the file its output goes to (CRIU reopens open files by path).
    Hello {
        engine: EngineKind,
        method: MigrationMethod,
        name: String,
        point: Point,
        log: Option<PathBuf>,
    },
    /// Server, first after the handshake: this host's CRIU and runc
    /// versions (None: missing), so the client can refuse a destination
    /// that cannot restore its checkpoint.
    Ready {
        criu: Option<String>,
        runc: Option<String>,
    },
    /// Client (Docker, Podman): the workload's image has been sent as
    /// `image.tar`; load it, and for Docker create the container from
    /// `image` running `args`, ahead of the checkpoint (no downtime yet).
    Prepare { image: String, args: Vec<String> },
    /// Server: the image is loaded (and the container created).
    Prepared,
    /// Client (runc, a program of the user's): the image to unpack from
    /// this host's own storage and the process to build a bundle around,
    /// ahead of the checkpoint. No path or config.json of the source's.
    Program(super::described::Program),
    /// Server: the image is unpacked and the bundle written.
    ProgramReady,
    /// Client: start a CRIU page server for the dump's memory pages.
    StartPageServer,
    /// Server: the page server listens on this port.
    PageServerReady { port: u16 },
    /// Either: a file of `size` bytes follows, to be stored at `path`
    /// (relative) with `mode`.
    File { path: PathBuf, size: u64, mode: u32 },
    /// Client: everything is sent; restore now, fetching the pages from
    /// `lazy_from` when the memory stayed at the source (post-copy).
    Restore { lazy_from: Option<SocketAddr> },
    /// Server: the workload runs here, as these processes; CRIU's phases
    /// of the restore when it left them.
    Restored {
        processes: usize,
        #[serde(default)]
        criu: Option<criu_image::RestoreStatsEntry>,
    },
    /// Client, after the restore of a program whose check waits for it
    /// (`Program::check_on_request`): its probe has stopped; check now.
    Check,
    /// Client, before the checkpoint: what time is it there? (The gap the
    /// workload's users saw compares the two hosts' tick times.)
    Clock,
    /// Server: its wall clock, in microseconds since the epoch.
    ClockIs { wall_us: u64 },
    /// Server: what the check of the restored workload found.
    Verified {
        processes: usize,
        memory_ok: Option<bool>,
        threads_ok: Option<bool>,
        files_ok: Option<bool>,
        problem: Option<String>,
        /// When the restored workload's first process ticked here (wall
        /// clock, microseconds), for the gap its users saw.
        ticks_us: Vec<u64>,
        /// A program of the user's: what its check command printed here
        /// after the restore (the source compares it with its own).
        #[serde(default)]
        state: Option<String>,
    },
    /// Client: the move is over; remove what you made.
    Finish,
    /// Server: removed.
    Done,
    /// Either: what failed, in words for the user.
    Error { message: String },
}

impl Message {
    /// The destination's verdict when its check could not run: `problem`
    /// says why, nothing else is known.
    pub fn failed_check(processes: usize, problem: String) -> Message {
        Message::Verified {
            processes,
            memory_ok: None,
            threads_ok: None,
            files_ok: None,
            problem: Some(problem),
            ticks_us: Vec::new(),
            state: None,
        }
    }
}

pub async fn send<S: AsyncWrite + Unpin>(stream: &mut S, message: &Message) -> Result<()> {
    let bytes = serde_json::to_vec(message)?;
    stream.write_u32(bytes.len() as u32).await?;
    stream.write_all(&bytes).await?;
    stream.flush().await.context("sending to the other host")
}

pub async fn recv<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Message> {
    let len = stream
        .read_u32()
        .await
        .context("the other host closed the link")?;
    if len > MAX_MESSAGE {
        bail!("the other host sent a {len}-byte message: it does not speak ckpt's protocol");
    }
    let mut bytes = vec![0; len as usize];
    stream.read_exact(&mut bytes).await?;
    match serde_json::from_slice(&bytes).context("the other host sent an unreadable message")? {
        Message::Error { message } => bail!("the other host failed: {message}"),
        message => Ok(message),
    }
}

/// Receives the next message and insists on its kind.
pub async fn expect<S: AsyncRead + Unpin, T>(
    stream: &mut S,
    what: &str,
    pick: impl FnOnce(Message) -> Option<T>,
) -> Result<T> {
    let message = recv(stream).await?;
    let shown = format!("{message:?}");
    pick(message).with_context(|| format!("expected {what} from the other host, got {shown}"))
}

/// Sends every regular file under `dir` (recursively), named relative to
/// `dir` under `prefix`, skipping those `skip` names; returns the bytes.
pub async fn send_tree<S: AsyncWrite + Unpin>(
    stream: &mut S,
    dir: &Path,
    prefix: &Path,
    skip: &(dyn Fn(&Path) -> bool + Sync),
) -> Result<u64> {
    let mut sent = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .with_context(|| format!("cannot read {}", current.display()))?;
        for entry in entries {
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() && !skip(&path) {
                let rel = prefix.join(path.strip_prefix(dir)?);
                sent += send_file(stream, &path, &rel, &meta).await?;
            }
        }
    }
    Ok(sent)
}

/// Sends the regular file `path` as `rel`; returns its bytes.
pub async fn send_path<S: AsyncWrite + Unpin>(
    stream: &mut S,
    path: &Path,
    rel: &Path,
) -> Result<u64> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    send_file(stream, path, rel, &meta).await
}

async fn send_file<S: AsyncWrite + Unpin>(
    stream: &mut S,
    path: &Path,
    rel: &Path,
    meta: &std::fs::Metadata,
) -> Result<u64> {
    use std::os::unix::fs::PermissionsExt;
    let size = meta.len();
    let header = Message::File {
        path: rel.to_path_buf(),
        size,
        mode: meta.permissions().mode() & 0o777,
    };
    send(stream, &header)
        .await
        .with_context(|| format!("sending {}", rel.display()))?;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let copied = tokio::io::copy(&mut (&mut file).take(size), stream)
        .await
        .with_context(|| format!("sending {}", path.display()))?;
    if copied != size {
        bail!("{} shrank while it was sent", path.display());
    }
    Ok(size)
}

/// Stores a file announced by `File` under `root`. Paths that would leave
/// `root`, links and files already there are refused: the peer is
/// authenticated, but not trusted to write anywhere on this host.
pub async fn recv_file<S: AsyncRead + Unpin>(
    stream: &mut S,
    root: &Path,
    rel: &Path,
    size: u64,
    mode: u32,
) -> Result<()> {
    let (file, _) = store::create_confined(root, rel, mode)?;
    let mut file = tokio::fs::File::from_std(file);
    let copied = tokio::io::copy(&mut stream.take(size), &mut file).await?;
    if copied != size {
        bail!("the link closed in the middle of {}", rel.display());
    }
    file.flush().await?;
    // The mode exactly (creating applied the umask), on the open file.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::Permissions::from_mode(mode & 0o777);
    file.set_permissions(mode).await?;
    Ok(())
}

/// Reads and drops a file's bytes (one the receiver does not take).
pub async fn drain_file<S: AsyncRead + Unpin>(stream: &mut S, size: u64) -> Result<()> {
    let copied = tokio::io::copy(&mut stream.take(size), &mut tokio::io::sink()).await?;
    if copied != size {
        bail!("the link closed in the middle of a file");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_and_files_cross_a_stream_and_paths_stay_inside() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("images")).unwrap();
        std::fs::write(src.path().join("images/pages-1.img"), vec![7u8; 70_000]).unwrap();
        std::fs::write(src.path().join("config.json"), b"{}").unwrap();
        let (mut a, mut b) = tokio::io::duplex(4096);
        let sender = tokio::spawn(async move {
            send(&mut a, &Message::Finish).await.unwrap();
            let sent = send_tree(&mut a, src.path(), Path::new("bundle"), &|_| false)
                .await
                .unwrap();
            send(&mut a, &Message::Done).await.unwrap();
            sent
        });
        assert_eq!(recv(&mut b).await.unwrap(), Message::Finish);
        let dst = tempfile::tempdir().unwrap();
        let mut got = 0;
        loop {
            match recv(&mut b).await.unwrap() {
                Message::File { path, size, mode } => {
                    recv_file(&mut b, dst.path(), &path, size, mode)
                        .await
                        .unwrap();
                    got += size;
                }
                Message::Done => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sender.await.unwrap(), got);
        let pages = std::fs::read(dst.path().join("bundle/images/pages-1.img")).unwrap();
        assert_eq!(pages, vec![7u8; 70_000]);
        let (_, mut c) = tokio::io::duplex(64);
        let err = recv_file(&mut c, dst.path(), Path::new("../escape"), 1, 0o600)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }
}
