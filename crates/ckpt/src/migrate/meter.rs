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
/// pages with a page server, the lazy ones in post-copy.
pub(crate) fn criu_page_bytes(
    method: crate::model::MigrationMethod,
    dump: Option<&criu_image::DumpStatsEntry>,
) -> Option<u64> {
    use crate::model::MigrationMethod;
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    match method {
        MigrationMethod::Copy => Some(0),
        MigrationMethod::PageServer => dump.map(|d| d.pages_written * page),
        MigrationMethod::Lazy => dump.map(|d| d.pages_lazy * page),
    }
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
            pages_lazy: 5,
            ..Default::default()
        };
        assert_eq!(criu_page_bytes(MigrationMethod::Copy, None), Some(0));
        assert_eq!(
            criu_page_bytes(MigrationMethod::PageServer, Some(&dump)),
            Some(3 * 4096)
        );
        assert_eq!(
            criu_page_bytes(MigrationMethod::Lazy, Some(&dump)),
            Some(5 * 4096)
        );
        assert_eq!(criu_page_bytes(MigrationMethod::Lazy, None), None);
    }
}
