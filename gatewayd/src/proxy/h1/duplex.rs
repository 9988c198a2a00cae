//! The response relayed while the request body still streams upstream: one task drives both
//! directions of both sockets. The client's stream is shared by the reading upload and the
//! writing relay through a [`Mutex`] held only for the length of one poll (two futures of one
//! task are never polled at the same time, so it is never contended: a `RefCell` would do, but
//! the task must be `Send`), so any stream type works, TLS included, without a split.

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::head::Framing;
use super::idle::Watched;
use super::respond::{forward_body, write_switch, Cut, Forwarded, Next};
use super::upload::Upload;
use super::upstream::{write_after_switch, Conn};
use crate::proxy::error::ProxyError;

/// How the request body ended while the response was relayed.
#[derive(Debug)]
pub(super) enum Uploaded {
    /// All of it went upstream.
    Sent,
    /// It had not ended when the response did (or the upstream stopped taking it): the rest is
    /// unread, so the client connection closes after the response.
    Unfinished,
    /// The client broke it (closed, malformed chunks, over `max_body`): both connections
    /// close at once.
    Failed(ProxyError),
}

/// A stream two futures of one task use at once.
struct Shared<'a, 'b, C>(&'a Mutex<&'b mut C>);

/// Relays the response body (its head already in `down_head`) from `conn` to the client while
/// `upload` carries on sending the request (`up_head`, of which an early answer may have left
/// a part unwritten, then the body from the client: `buf` holds what was read of it) to the
/// same upstream connection. Every byte moved either way counts in `progress` (the body-idle
/// timeout's watch).
pub(super) async fn relay<C: AsyncRead + AsyncWrite + Unpin>(
    (io, buf): (&mut C, &mut BytesMut),
    (conn, upload, up_head): (&mut Conn, &mut Upload, &[u8]),
    (down_head, framing, decode): (&[u8], Framing, bool),
    progress: &AtomicU64,
) -> (Result<Forwarded, Cut>, Uploaded) {
    upload.answered = true;
    let client = Mutex::new(io);
    let watched = |io| Watched::new(io, progress);
    let (mut down_w, mut down_r) = (watched(Shared(&client)), watched(Shared(&client)));
    let Conn {
        io: up,
        buf: up_buf,
        ..
    } = conn;
    let (up_r, up_w) = up.split();
    let (mut up_r, mut up_w) = (Watched::new(up_r, progress), Watched::new(up_w, progress));
    let forwarded = forward_body(&mut down_w, (&mut up_r, up_buf), down_head, framing, decode);
    let mut forwarded = std::pin::pin!(forwarded);
    // A client still waiting for its `100 Continue` holds its body back: it is not awaited.
    let mut uploaded = if upload.continue_due() {
        Some(Uploaded::Unfinished)
    } else {
        None
    };
    {
        let pump = upload.pump(up_head, &mut down_r, buf, &mut up_w, None);
        let mut pump = std::pin::pin!(pump);
        while uploaded.is_none() {
            tokio::select! {
                biased;
                r = &mut forwarded => return (r, Uploaded::Unfinished),
                u = &mut pump => {
                    uploaded = Some(match u {
                        Ok(()) => Uploaded::Sent,
                        // The upstream stopped reading; its answer goes on.
                        Err(ProxyError::UpstreamBroken { .. }) => Uploaded::Unfinished,
                        Err(e) => return (Err(Cut::Client), Uploaded::Failed(e)),
                    });
                }
            }
        }
    }
    let r = forwarded.await;
    (r, uploaded.unwrap_or(Uploaded::Unfinished))
}

/// Passes a `101 Switching Protocols` on to the client, sends the upstream what the client sent
/// after its request head (in `buf`), then relays bytes both ways until either side ends.
pub(super) async fn switch_protocols<C: AsyncRead + AsyncWrite + Unpin>(
    io: &mut C,
    buf: &mut BytesMut,
    down: &mut Vec<u8>,
    conn: Box<Conn>,
    request_id: Option<&HeaderValue>,
) -> Next {
    let Conn {
        io: mut up,
        buf: mut early,
        head,
    } = *conn;
    if write_switch(io, down, &head, &mut early, request_id)
        .await
        .is_err()
        || write_after_switch(&mut up, buf).await.is_err()
    {
        return Next::Close;
    }
    buf.clear();
    if let Err(e) = tokio::io::copy_bidirectional(io, &mut up).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
    Next::Close
}

// === impl Shared ===

impl<'b, C> Shared<'_, 'b, C> {
    fn lock(&self) -> MutexGuard<'_, &'b mut C> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<C: AsyncRead + Unpin> AsyncRead for Shared<'_, '_, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut **self.lock()).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for Shared<'_, '_, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut **self.lock()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut **self.lock()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut **self.lock()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut **self.lock()).poll_shutdown(cx)
    }
}
