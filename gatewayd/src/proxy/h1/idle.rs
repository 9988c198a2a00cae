//! The body-idle timeout (a route's `body_idle_timeout`): a body relay in which no byte moves
//! either way for that long is cut. The sockets are wrapped in [`Watched`], which counts the
//! reads and writes that moved bytes; [`watch`] looks at that count a few times per period and
//! resolves after a whole period without a change. Nothing of it runs while the relay finishes
//! on its first poll (the common small response): the watch is polled only after that.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::timers::LazyDeadline;

/// Looks taken per period: a relay is cut between one and 1.25 periods after its last byte.
const LOOKS: u32 = 4;

/// A socket (or one half of it) whose progress is counted in a shared counter.
pub(super) struct Watched<'p, T> {
    io: T,
    progress: &'p AtomicU64,
}

impl<'p, T> Watched<'p, T> {
    pub(super) fn new(io: T, progress: &'p AtomicU64) -> Self {
        Self { io, progress }
    }

    fn moved(&self) {
        // One task owns the relay: a load and a store, no read-modify-write.
        self.progress
            .store(self.progress.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

/// Resolves once `progress` has not changed for `limit` (measured from `from` at first):
/// between `limit` and `limit × 1.25` after the last byte moved. Uses the connection's lazy
/// timer, so a relay that ends before a look costs no timer operation.
pub(super) async fn watch(
    timer: &mut LazyDeadline,
    from: Instant,
    limit: Duration,
    progress: &AtomicU64,
) {
    let step = (limit / LOOKS).max(Duration::from_millis(1));
    let mut seen = progress.load(Relaxed);
    let mut quiet = 0;
    let mut next = from + step;
    loop {
        timer.until(next).await;
        let now = progress.load(Relaxed);
        if now == seen {
            quiet += 1;
            if quiet >= LOOKS {
                return;
            }
        } else {
            (seen, quiet) = (now, 0);
        }
        next += step;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_quiet_relay_is_cut_after_its_period_and_traffic_keeps_it_alive() {
        let progress = AtomicU64::new(0);
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = Watched::new(a, &progress);
        let start = Instant::now();
        let mut timer = LazyDeadline::new(start + Duration::from_secs(3600));
        let limit = Duration::from_secs(8);
        let traffic = async {
            // A byte every 7 s for 28 s: never 8 s without one.
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(7)).await;
                b.write_all(b"x").await.unwrap();
                let mut one = [0u8; 1];
                a.read_exact(&mut one).await.unwrap();
            }
        };
        tokio::select! {
            () = traffic => {}
            () = watch(&mut timer, start, limit, &progress) => panic!("cut while bytes moved"),
        }
        assert_eq!(
            progress.load(Relaxed),
            4,
            "each read that moved bytes is counted"
        );
        let quiet_from = Instant::now();
        watch(&mut timer, quiet_from, limit, &progress).await;
        let waited = quiet_from.elapsed();
        assert!(waited >= limit && waited <= limit * 5 / 4, "{waited:?}");
    }
}
