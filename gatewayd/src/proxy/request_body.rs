//! The request body of the hyper path: the client's body, watched so that its failures and
//! stalls are told apart from the upstream's.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A client's request body on its way to the upstream (hyper path). The upstream connection's
/// task polls it; the [`BodyWatch`] tells the request's own task what the client did.
#[derive(Debug)]
pub struct RequestBody<B = Incoming> {
    /// None: an empty body (a request rebuilt to be sent again).
    inner: Option<B>,
    /// None for a body that was empty from the start (nothing to watch, no allocation).
    watch: Option<Arc<BodyWatch>>,
    /// The route's `max_body`, and the data bytes seen so far.
    limit: Option<u64>,
    seen: u64,
}

/// A failed request body's error (what the upstream connection's task sees).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// What a watched request body last did.
#[derive(Debug, Default)]
pub struct BodyWatch(AtomicU8);

const IDLE: u8 = 0;
const WAITING: u8 = 1;
const FAILED: u8 = 2;
const TOO_LARGE: u8 = 3;

impl BodyWatch {
    /// The client broke its body: reset the stream or the connection, or sent more or less than
    /// it declared. A failed exchange is then the client's doing, not the endpoint's.
    pub fn failed(&self) -> bool {
        self.0.load(Relaxed) == FAILED
    }

    /// The body passed the route's `max_body` and was cut off there.
    pub fn too_large(&self) -> bool {
        self.0.load(Relaxed) == TOO_LARGE
    }

    /// The upstream side is waiting for body bytes the client has not sent: a timeout now is
    /// the client's.
    pub fn waiting(&self) -> bool {
        self.0.load(Relaxed) == WAITING
    }
}

impl<B: Body> RequestBody<B> {
    /// Wraps `inner`; the watch is None when the body is empty from the start.
    pub fn watched(inner: B) -> (Self, Option<Arc<BodyWatch>>) {
        let watch = (!inner.is_end_stream()).then(Arc::default);
        (
            Self {
                inner: Some(inner),
                watch: watch.clone(),
                limit: None,
                seen: 0,
            },
            watch,
        )
    }

    /// Cuts the body off with an error past `limit` bytes of data (the watch says
    /// [`BodyWatch::too_large`]).
    pub fn limit(mut self, limit: Option<u64>) -> Self {
        self.limit = limit;
        self
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            inner: None,
            watch: None,
            limit: None,
            seen: 0,
        }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = B::Data;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BodyError>>> {
        use bytes::Buf as _;
        let this = self.get_mut();
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let r = Pin::new(inner).poll_frame(cx).map_err(Into::into);
        if let (Some(limit), Poll::Ready(Some(Ok(frame)))) = (this.limit, &r) {
            this.seen += frame.data_ref().map_or(0, |d| d.remaining() as u64);
            if this.seen > limit {
                if let Some(w) = &this.watch {
                    w.0.store(TOO_LARGE, Relaxed);
                }
                this.inner = None;
                return Poll::Ready(Some(Err("request body over the route's max_body".into())));
            }
        }
        if let Some(w) = &this.watch {
            let state = match &r {
                Poll::Pending => WAITING,
                Poll::Ready(Some(Err(_))) => FAILED,
                Poll::Ready(_) => IDLE,
            };
            w.0.store(state, Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;
    use futures_util::stream;
    use http_body_util::{BodyExt as _, StreamBody};

    use super::*;

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    #[tokio::test]
    async fn a_body_the_client_breaks_is_seen_as_failed() {
        let frames: Vec<Chunk> = vec![
            Ok(Frame::data(Bytes::from_static(b"part"))),
            Err(std::io::Error::other("stream reset by the client")),
        ];
        let (mut body, watch) = RequestBody::watched(StreamBody::new(stream::iter(frames)));
        let watch = watch.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(!watch.failed() && !watch.waiting());
        assert!(body.frame().await.unwrap().is_err());
        assert!(watch.failed());
    }

    #[tokio::test]
    async fn a_body_waiting_for_the_client_is_seen_as_waiting() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
        let rx = tokio_stream_of(rx);
        let (mut body, watch) = RequestBody::watched(StreamBody::new(rx));
        let watch = watch.unwrap();
        let next = futures_util::FutureExt::now_or_never(body.frame());
        assert!(next.is_none(), "nothing sent yet");
        assert!(watch.waiting());
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        assert!(!watch.waiting());
        drop(tx);
        assert!(body.frame().await.is_none());
        assert!(!watch.waiting() && !watch.failed());
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Chunk>,
    ) -> impl futures_util::Stream<Item = Chunk> + Unpin {
        Box::pin(stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
