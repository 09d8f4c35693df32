//! How the bytes of a move are counted. On the throwaway link every byte
//! crosses a veth of ours, whose counters hold them all. A remote
//! destination has no link of ours: ckpt counts what it sends and receives
//! over its own TLS stream, and adds the memory pages CRIU moved over its
//! own connection, from the dump's statistics.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a migration's `bytes_sent` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BytesCounted {
    /// The throwaway link's veth counters, both directions: everything
    /// that crossed, TCP/IP and TLS overhead included.
    Link,
    /// ckpt's TLS stream (TLS records both ways, without TCP/IP headers)
    /// plus CRIU's memory pages (pages x page size from its dump
    /// statistics, without the overhead of CRIU's own connection).
    StreamAndCriuPages,
    /// ckpt's TLS stream only: CRIU's statistics were unreadable, so the
    /// pages CRIU sent itself are missing.
    StreamOnly,
}

impl BytesCounted {
    /// The words the output prints after the number.
    pub fn label(self) -> &'static str {
        match self {
            BytesCounted::Link => "on the link (veth counters)",
            BytesCounted::StreamAndCriuPages => "ckpt's TLS stream + CRIU's pages",
            BytesCounted::StreamOnly => "ckpt's TLS stream only (CRIU's pages unknown)",
        }
    }
}

/// A byte stream that counts what passes through it, both directions.
pub struct Counted<S> {
    inner: S,
    bytes: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Counted<S> {
        Counted {
            inner,
            bytes: Arc::default(),
        }
    }

    /// Bytes read and written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.bytes.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The bytes of the pages CRIU sent over its own connection: none with
/// stop-and-copy (the pages are in the images ckpt sends), the written
/// pages of the dump's statistics with a page server, and in post-copy the
/// pages the source's pagemaps in `images` mark lazy (CRIU's statistics of
/// a lazy dump hold zeros: it writes them after serving the pages).
pub(crate) fn criu_page_bytes(
    method: crate::model::MigrationMethod,
    dump: Option<&criu_image::DumpStatsEntry>,
    images: &std::path::Path,
) -> Option<u64> {
    use crate::model::MigrationMethod;
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    match method {
        MigrationMethod::Copy => Some(0),
        MigrationMethod::PageServer => dump.map(|d| d.pages_written * page),
        MigrationMethod::Lazy => lazy_pages(images).map(|n| n * page),
    }
}

/// CRIU's pagemap flag of a page left at the source (criu/images/pagemap.proto).
const PE_LAZY: u32 = 1 << 1;

/// The pages that `images`' pagemaps leave at the source; None when there
/// is no readable pagemap.
fn lazy_pages(images: &std::path::Path) -> Option<u64> {
    use criu_image::framing::{self, magic};
    let mut total = None;
    for entry in std::fs::read_dir(images).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("pagemap-") && name.ends_with(".img")) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).ok()?;
        // The first entry is the head naming the pages file; runs follow.
        let entries = framing::entries(&bytes, magic::PAGEMAP, &name).ok()?;
        let mut lazy = 0u64;
        for e in entries.into_iter().skip(1) {
            let run: criu_image::messages::PagemapEntry = framing::decode(e, &name).ok()?;
            if run.flags.unwrap_or(0) & PE_LAZY != 0 {
                lazy = lazy.saturating_add(u64::from(run.nr_pages));
            }
        }
        total = Some(total.unwrap_or(0u64).saturating_add(lazy));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn both_directions_are_counted() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut counted = Counted::new(a);
        counted.write_all(b"hello").await.unwrap();
        b.write_all(b"abc").await.unwrap();
        let mut got = [0u8; 3];
        counted.read_exact(&mut got).await.unwrap();
        assert_eq!(counted.bytes(), 8);
    }

    #[test]
    fn criu_pages_count_per_method() {
        use crate::model::MigrationMethod;
        let dump = criu_image::DumpStatsEntry {
            pages_written: 3,
            ..Default::default()
        };
        let none = std::path::Path::new("/nonexistent");
        assert_eq!(criu_page_bytes(MigrationMethod::Copy, None, none), Some(0));
        assert_eq!(
            criu_page_bytes(MigrationMethod::PageServer, Some(&dump), none),
            Some(3 * 4096)
        );
        assert_eq!(
            criu_page_bytes(MigrationMethod::PageServer, None, none),
            None
        );
        assert_eq!(
            criu_page_bytes(MigrationMethod::Lazy, Some(&dump), none),
            None
        );
        // A lazy dump's pagemap: 7 pages left at the source, 2 in pages-1.img.
        use prost::Message;
        let run = |nr_pages, flags| {
            criu_image::messages::PagemapEntry {
                vaddr: 0x1000,
                nr_pages,
                in_parent: None,
                flags: Some(flags),
            }
            .encode_to_vec()
        };
        let head = criu_image::messages::PagemapHead { pages_id: 1 }.encode_to_vec();
        let mut file = Vec::new();
        for magic in [
            criu_image::framing::IMG_COMMON_MAGIC,
            criu_image::framing::magic::PAGEMAP,
        ] {
            file.extend(magic.to_le_bytes());
        }
        for m in [head, run(7, PE_LAZY), run(2, 1 << 2)] {
            file.extend((m.len() as u32).to_le_bytes());
            file.extend(m);
        }
        let images = tempfile::tempdir().unwrap();
        std::fs::write(images.path().join("pagemap-1.img"), file).unwrap();
        assert_eq!(
            criu_page_bytes(MigrationMethod::Lazy, None, images.path()),
            Some(7 * 4096)
        );
    }
}
