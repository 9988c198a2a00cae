//! Idle tracking for the connections hyper serves (HTTP/2, and HTTP/1 handed over): hyper has
//! no idle timeout for HTTP/2, so a connection counts the requests it has open (from the
//! service call to the end of the response body) and is closed gracefully once none has been
//! open for the listener's keep-alive timeout. The own HTTP/1.1 engine keeps its own deadlines
//! (`h1/read.rs`) and pays nothing for this.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// A connection's open requests and when the last one ended.
#[derive(Debug)]
pub(super) struct Activity {
    open: AtomicUsize,
    last: Mutex<Instant>,
}

/// One open request; the connection is busy while it lives.
#[derive(Debug)]
pub(super) struct Busy(Arc<Activity>);

/// A response body that keeps its request counted as open until it is dropped.
#[derive(Debug)]
pub(super) struct Tracked<B> {
    inner: B,
    _busy: Busy,
}

// === impl Activity ===

impl Activity {
    /// A connection idle since now.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        })
    }

    /// Counts a request as open until the returned guard is dropped.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.open.fetch_add(1, SeqCst);
        Busy(self.clone())
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once no request has been open for `idle` (a busy connection is checked again
    /// every `idle`: the timer is not touched per request).
    pub(super) async fn idle_for(&self, idle: Duration) {
        loop {
            let wake = match self.open.load(SeqCst) {
                0 => self.last() + idle,
                _ => Instant::now() + idle,
            };
            if wake <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(wake).await;
        }
    }
}

// === impl Busy ===

impl Drop for Busy {
    fn drop(&mut self) {
        // The end time first: a check that sees no request open also sees when it ended.
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.open.fetch_sub(1, SeqCst);
    }
}

// === impl Tracked ===

impl<B> Tracked<B> {
    /// `inner`, counted as open by `busy` until dropped.
    pub(super) fn new(inner: B, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under paused time: idle is measured from the end of the last request, and an open
    /// request keeps the connection from being idle however long it takes.
    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_end() {
        let a = Activity::new();
        let idle = Duration::from_secs(30);
        let started = Instant::now();
        a.idle_for(idle).await;
        assert_eq!(started.elapsed(), idle);
        let busy = a.busy();
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.idle_for(idle).await })
        };
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert!(!waiter.is_finished(), "a request is open");
        let ended = Instant::now();
        drop(busy);
        waiter.await.ok();
        assert!(Instant::now() >= ended + idle);
        assert!(Instant::now() <= ended + idle * 2);
    }
}
