//! The request body on its way upstream: streamed from the client as it arrives, at the same time
//! as the answer comes back (full duplex). [`Upload::pump`] is cancel-safe — every await is a
//! single read or write whose effect is recorded before the next one — so the connection's task
//! can stop it at any point (the response head arrived, the response ended) and resume it later
//! without losing or repeating a byte.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::chunked::Chunked;
use super::head::Framing;
use super::io::READ_BUF;
use super::respond::{write_continue, CONTINUE};
use crate::proxy::error::ProxyError;

/// How far a request body got on its way upstream.
#[derive(Debug)]
pub(crate) struct Upload {
    framing: Framing,
    chunked: Chunked,
    /// Bytes of a `Content-Length` body not yet scanned.
    left: u64,
    /// Data bytes of a chunked body so far (counted against `max_body`).
    data: u64,
    max_body: Option<u64>,
    /// Bytes at the front of the client buffer that belong to the body and are still to be
    /// written upstream.
    pending: usize,
    /// Bytes of the request head written upstream.
    head_written: usize,
    /// Bytes of [`CONTINUE`] written to the client (`None`: the client did not ask for it).
    continue_sent: Option<usize>,
    /// The endpoint it goes to (named in errors).
    addr: SocketAddr,
    /// The final response head has reached the client: no interim answer may follow.
    pub(crate) answered: bool,
}

/// What became of a request body by the time the response head arrived.
#[derive(Debug)]
pub(crate) enum Body {
    /// All of it went upstream.
    Sent,
    /// Part of it is still to come from the client: it keeps streaming while the response is
    /// relayed. (Boxed: every answer moves this enum a few times, and few requests stream.)
    Streaming(Box<Upload>),
    /// The upstream stopped taking it (and answered anyway).
    Abandoned,
}

// === impl Upload ===

impl Upload {
    /// A body delimited by `framing`, checked against `max_body` when chunked (a declared length
    /// was checked before), after a request head of which nothing is written yet.
    pub(crate) fn new(
        framing: Framing,
        max_body: Option<u64>,
        expect_continue: bool,
        addr: SocketAddr,
    ) -> Self {
        Self {
            framing,
            chunked: Chunked::default(),
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            data: 0,
            max_body,
            pending: 0,
            head_written: 0,
            continue_sent: expect_continue.then_some(0),
            addr,
            answered: false,
        }
    }

    /// Every byte of the body has been scanned (what is scanned may still be pending).
    fn scanned(&self) -> bool {
        match self.framing {
            Framing::Chunked => self.chunked.is_done(),
            Framing::Length(_) => self.left == 0,
            Framing::None | Framing::Close => true,
        }
    }

    /// The client asked for `100 Continue` and has not had it: it may be holding its body back.
    pub(crate) fn continue_due(&self) -> bool {
        self.continue_sent == Some(0)
    }

    /// The part of the interim `100 Continue` still to be written when a write of it was cut
    /// short (empty unless that happened); taken: it counts as sent from now on.
    pub(crate) fn take_continue_rest(&mut self) -> &'static [u8] {
        match self.continue_sent {
            Some(n) if n > 0 => {
                self.continue_sent = Some(CONTINUE.len());
                &CONTINUE[n.min(CONTINUE.len())..]
            }
            _ => &[],
        }
    }

    /// Sends `head` (from where an earlier call stopped) and then the body, reading it from
    /// `client` after what `buf` already holds, to `up`, until the body's end. `waiting`, when
    /// given, is set while the client is being waited for. Sends the client its `100 Continue`
    /// before waiting for the body, when it asked and no final answer went out yet.
    ///
    /// Errors: the client's ([`ProxyError::ClientClosed`], [`ProxyError::BodyTooLarge`]: not
    /// one byte past the limit goes upstream), or the upstream's ([`ProxyError::UpstreamBroken`]:
    /// it stopped taking the body).
    pub(crate) async fn pump<C, U>(
        &mut self,
        head: &[u8],
        client: &mut C,
        buf: &mut BytesMut,
        up: &mut U,
        waiting: Option<&AtomicBool>,
    ) -> Result<(), ProxyError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncWrite + Unpin,
    {
        let addr = self.addr;
        let broken = |reason: String| ProxyError::UpstreamBroken { addr, reason };
        loop {
            if self.pending == 0 && !self.scanned() {
                let take = match self.framing {
                    Framing::Chunked => {
                        let data = &mut self.data;
                        self.chunked
                            .feed(&buf[..], |r| *data += r.len() as u64)
                            .map_err(|e| ProxyError::ClientClosed(e.0))?
                    }
                    _ => usize::try_from(self.left)
                        .unwrap_or(usize::MAX)
                        .min(buf.len()),
                };
                if let Some(max) = self.max_body.filter(|&m| self.data > m) {
                    return Err(ProxyError::BodyTooLarge(max));
                }
                if self.framing != Framing::Chunked {
                    self.left -= take as u64;
                }
                self.pending = take;
            }
            let head_rest = &head[self.head_written.min(head.len())..];
            if !head_rest.is_empty() || self.pending > 0 {
                let parts = [IoSlice::new(head_rest), IoSlice::new(&buf[..self.pending])];
                let n = match up.write_vectored(&parts).await {
                    Ok(0) => return Err(broken("upstream took no more of the body".into())),
                    Ok(n) => n,
                    Err(e) => return Err(broken(e.to_string())),
                };
                let from_head = n.min(head_rest.len());
                self.head_written += from_head;
                buf.advance(n - from_head);
                self.pending -= n - from_head;
                continue;
            }
            if self.scanned() {
                // A TLS stream may hold the last record; on a TcpStream this is a no-op.
                up.flush().await.map_err(|e| broken(e.to_string()))?;
                return Ok(());
            }
            if let Some(sent) = self.continue_sent.as_mut().filter(|n| **n < CONTINUE.len()) {
                if self.answered {
                    // The final answer is out: the client decides whether its body follows.
                    return Err(ProxyError::ClientClosed("body held back after the answer"));
                }
                write_continue(client, sent).await?;
                continue;
            }
            if buf.capacity() - buf.len() < READ_BUF / 2 {
                buf.reserve(READ_BUF);
            }
            if let Some(w) = waiting {
                w.store(true, Relaxed);
            }
            let read = client.read_buf(buf).await;
            if let Some(w) = waiting {
                w.store(false, Relaxed);
            }
            match read {
                Ok(0) | Err(_) => return Err(ProxyError::ClientClosed("connection closed")),
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures_util::FutureExt as _;
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// Runs the pump one poll at a time and drops it after each poll (as the engine does when an
    /// answer arrives mid-upload), with an upstream that takes 7 bytes at a time, until it ends.
    /// Returns what it ended with, what the upstream got, and what stayed in the client buffer.
    async fn pumped_in_slices(
        framing: Framing,
        max_body: Option<u64>,
        head: &[u8],
        sent: &[u8],
    ) -> (Result<(), ProxyError>, Vec<u8>, Vec<u8>) {
        let (mut client_far, mut client) = tokio::io::duplex(1 << 20);
        client_far.write_all(sent).await.unwrap();
        let (mut up, mut up_far) = tokio::io::duplex(7);
        let mut upload = Upload::new(framing, max_body, false, "127.0.0.1:9".parse().unwrap());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for _ in 0..100_000 {
            let step = upload
                .pump(head, &mut client, &mut buf, &mut up, None)
                .now_or_never();
            let mut chunk = [0u8; 64];
            while let Some(Ok(n)) = up_far.read(&mut chunk).now_or_never() {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            if let Some(r) = step {
                return (r, got, buf.to_vec());
            }
            // Back to the runtime: tokio's I/O budget refills only between polls of the task.
            tokio::task::yield_now().await;
        }
        panic!("the pump never ended");
    }

    #[tokio::test]
    async fn a_length_body_survives_being_stopped_at_every_step() {
        let body: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut sent = body.clone();
        sent.extend_from_slice(b"GET /next");
        let (r, got, left) = pumped_in_slices(Framing::Length(1000), None, b"HEAD", &sent).await;
        r.unwrap();
        assert_eq!(&got[..4], b"HEAD");
        assert_eq!(&got[4..], &body[..], "every byte once, in order");
        assert_eq!(left, b"GET /next", "the next request stays in the buffer");
    }

    #[tokio::test]
    async fn a_chunked_body_passes_unchanged_and_max_body_stops_it() {
        let body = b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nt: 1\r\n\r\n";
        let mut sent = body.to_vec();
        sent.extend_from_slice(b"NEXT");
        let (r, got, left) = pumped_in_slices(Framing::Chunked, Some(11), b"H", &sent).await;
        r.unwrap();
        assert_eq!(&got[1..], &body[..]);
        assert_eq!(left, b"NEXT");
        let (r, got, _) = pumped_in_slices(Framing::Chunked, Some(10), b"H", &sent).await;
        assert!(matches!(r, Err(ProxyError::BodyTooLarge(10))), "{r:?}");
        assert!(
            !got.windows(5).any(|w| w == b"world"),
            "nothing past the limit went upstream"
        );
    }
}
