//! How long a destination waits for its peer. The TLS handshake has
//! HANDSHAKE; after it, every read has a bound: the wait for a message's
//! first bytes is what the step before it legitimately takes (the
//! source's workload starting, its dump), and a read in the middle of a
//! message or file may stall READ_IDLE at most (per read, so a long
//! transfer that keeps moving is never cut).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, Sleep};

/// The TLS handshake, from the TCP connection on.
pub(crate) const HANDSHAKE: Duration = Duration::from_secs(10);

/// A read that has started and makes no progress.
pub(crate) const READ_IDLE: Duration = Duration::from_secs(60);

/// Until the hello: the source starts its workload and waits until it is
/// ready first (a program's setup may take minutes).
pub(crate) const HELLO_WAIT: Duration = Duration::from_secs(15 * 60);

/// Until the checkpoint's files come: the source dumps meanwhile.
pub(crate) const DUMP_WAIT: Duration = Duration::from_secs(10 * 60);

/// The most tick times the destination sends back (about 200 s of ticks
/// every 10 ms, some 340 KB of JSON): a message stays far below the
/// protocol's 1 MiB however long the move took.
const MAX_TICKS: usize = 20_000;

/// Ticks are sent from this long before the restore began: the gap lies
/// between the source's last tick and the first ones here, and a plain
/// process tree's log holds the source's whole history too.
const TICKS_BEFORE_RESTORE_US: u64 = 2_000_000;

/// The tick times worth sending: from shortly before the restore began,
/// the earliest MAX_TICKS of them.
pub(crate) fn ticks_to_send(mut ticks: Vec<u64>, restore_began_us: u64) -> Vec<u64> {
    let from = restore_began_us.saturating_sub(TICKS_BEFORE_RESTORE_US);
    ticks.retain(|&t| t >= from);
    ticks.sort_unstable();
    ticks.truncate(MAX_TICKS);
    ticks
}

/// A stream whose reads time out: the first read after `allow` may wait
/// that long, every other READ_IDLE.
pub(crate) struct Timed<S> {
    inner: S,
    next: Option<Duration>,
    /// The running read's bound and its timer.
    armed: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl<S> Timed<S> {
    pub(crate) fn new(inner: S) -> Timed<S> {
        Timed {
            inner,
            next: None,
            armed: None,
        }
    }

    /// The next read (a message's start) may wait `wait`.
    pub(crate) fn allow(&mut self, wait: Duration) {
        self.next = Some(wait);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Poll::Ready(result) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            // Progress (or the end): the next read is timed afresh.
            this.armed = None;
            this.next = None;
            return Poll::Ready(result);
        }
        let next = &mut this.next;
        let (wait, timer) = this.armed.get_or_insert_with(|| {
            let wait = next.take().unwrap_or(READ_IDLE);
            (wait, Box::pin(sleep(wait)))
        });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let secs = wait.as_secs();
                this.armed = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the other host sent nothing for {secs} s"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_sent_start_shortly_before_the_restore_and_are_bounded() {
        let began = 100_000_000;
        let ticks: Vec<u64> = (0..100_000u64).map(|i| 90_000_000 + i * 10_000).collect();
        let sent = ticks_to_send(ticks, began);
        assert_eq!(sent.len(), MAX_TICKS);
        assert_eq!(sent[0], began - TICKS_BEFORE_RESTORE_US);
        assert!(sent.windows(2).all(|w| w[0] < w[1]));
        assert!(ticks_to_send(vec![1, 2, 3], began).is_empty());
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_moving_one_does_not() {
        let (mut peer, ours) = tokio::io::duplex(64);
        let mut ours = Timed::new(ours);
        ours.allow(Duration::from_secs(600));
        let writer = tokio::spawn(async move {
            // Within the first read's allowance, then every 59 s.
            tokio::time::sleep(Duration::from_secs(500)).await;
            for _ in 0..3 {
                peer.write_all(b"x").await.unwrap();
                tokio::time::sleep(Duration::from_secs(59)).await;
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(peer);
        });
        let mut byte = [0u8; 1];
        for _ in 0..3 {
            ours.read_exact(&mut byte).await.unwrap();
        }
        let e = ours.read_exact(&mut byte).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("60 s"), "{e}");
        writer.abort();
    }
}
