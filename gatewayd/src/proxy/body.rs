//! The response body of the hyper path: a streamed upstream body (returning its connection to
//! the pool at the end) or a small in-memory body; an enum rather than a box, no allocation per
//! response. The request body is in `request_body`.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::client::PoolReturn;
use crate::metrics::Registry;

/// Body of every response the gateway sends.
#[derive(Debug)]
pub enum ResponseBody {
    /// Gateway-made body.
    Full(Option<Bytes>),
    /// Streamed from the upstream.
    Upstream {
        /// The upstream body.
        body: Incoming,
        /// Gives the connection back to the pool once the body has ended.
        ret: Option<PoolReturn>,
        /// Counts a body the client stopped taking before its end (None once the body ended
        /// or failed on the upstream's side).
        client_gone: Option<Arc<Registry>>,
        /// The route's `body_idle_timeout`.
        idle: BodyIdle,
    },
}

/// The body-idle timeout of a streamed upstream body: its timer is made the first time the
/// upstream makes the client wait (most bodies never do), and pushed back by every frame.
#[derive(Debug)]
pub struct BodyIdle {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The error a body cut for idleness ends with (HTTP/2: the stream is reset).
#[derive(Debug, thiserror::Error)]
#[error("no byte from the upstream within {0:?}: body cut")]
pub struct BodyIdleTimeout(Duration);

impl BodyIdle {
    /// No byte for `limit` cuts the body.
    pub fn new(limit: Duration) -> Self {
        Self { limit, timer: None }
    }
}

impl ResponseBody {
    /// An in-memory body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        Self::Full(Some(b.into()))
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Self::Upstream {
                body,
                ret,
                client_gone,
                idle,
            } => {
                let r = Pin::new(&mut *body).poll_frame(cx);
                match (&r, &mut idle.timer) {
                    (Poll::Pending, timer) => {
                        let limit = idle.limit;
                        let t = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                        if t.as_mut().poll(cx).is_ready() {
                            // Cut truthfully: an error, never a clean end.
                            if let Some(m) = client_gone.take() {
                                m.body_idle_timeouts.fetch_add(1, Relaxed);
                            }
                            return Poll::Ready(Some(Err(Box::new(BodyIdleTimeout(limit)))));
                        }
                    }
                    (Poll::Ready(_), Some(t)) => {
                        let next = tokio::time::Instant::now() + idle.limit;
                        t.as_mut().reset(next);
                    }
                    (Poll::Ready(_), None) => {}
                }
                if matches!(r, Poll::Ready(Some(Err(_)))) {
                    // The upstream broke it: not the client's doing.
                    *client_gone = None;
                }
                // hyper stops polling once `is_end_stream` is true after the last frame, so the
                // end is detected here, not only on a final `None`.
                if matches!(r, Poll::Ready(None)) || body.is_end_stream() {
                    if let Some(ret) = ret.take() {
                        ret.give_back();
                    }
                }
                r.map(|f| f.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Self::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body read to its end frees its connection; one dropped midway (client gone) closes it.
        if let Self::Upstream {
            body,
            ret,
            client_gone,
            ..
        } = self
        {
            if body.is_end_stream() {
                if let Some(ret) = ret.take() {
                    ret.give_back();
                }
            } else if let Some(m) = client_gone {
                m.count_aborted_response();
            }
        }
    }
}
