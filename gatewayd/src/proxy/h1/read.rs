//! Reading the client's request: its head (or the HTTP/2 preface) within the listener's header
//! and keep-alive timeouts, and whether its whole body is in the buffer already.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::chunked::Chunked;
use super::head::{self, Field, Framing, RequestHead};
use super::timers::Timers;
use crate::proxy::error::ProxyError;

/// How long an idle keep-alive connection of a stopping worker waits for one more request
/// (answered with `Connection: close`). Closing it at once would race a request the client is
/// sending right then, which fails without the client knowing whether it was served; a client
/// under load sends its next request well within this, so a restart or hand-over costs none.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// A client connection's read buffer: most heads fit, and an idle keep-alive connection holds no
/// more (it grows for larger heads and for bodies).
pub(super) const HEAD_BUF: usize = 4 * 1024;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[allow(clippy::large_enum_variant)] // returned once per request: a box would be an allocation
pub(super) enum Read {
    Head(RequestHead),
    Http2,
    Closed,
    Bad(ProxyError),
}

pub(super) async fn read_request<C: AsyncRead + Unpin, S: std::future::Future>(
    io: &mut C,
    buf: &mut BytesMut,
    fields: &mut Vec<Field>,
    t: &mut Timers<'_, S>,
    first: bool,
) -> Read {
    // An idle connection (a new one before its first byte) is kept for the keep-alive timeout.
    let mut deadline = t.last + t.limits.keepalive;
    let mut head_started = false;
    loop {
        if first && PREFACE.starts_with(&buf[..buf.len().min(PREFACE.len())]) {
            if buf.len() >= PREFACE.len() {
                return Read::Http2;
            }
        } else {
            match head::parse_request(buf, fields, t.limits.max_target) {
                Ok(Some(h)) => return Read::Head(h),
                Ok(None) => {}
                Err(e) => return Read::Bad(e),
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(HEAD_BUF);
        }
        // Between requests a stopping worker gives the client DRAIN_IDLE for one more request;
        // mid-head it waits.
        let idle = buf.is_empty();
        if !idle && !head_started {
            // A head that takes more than one read: from now on it has the header timeout to
            // end, so a client trickling its head (slowloris) is cut off with a 408 (a clock
            // read only for such heads).
            head_started = true;
            deadline = deadline.min(tokio::time::Instant::now() + t.limits.header);
        }
        let r = tokio::select! {
            biased;
            r = io.read_buf(buf) => r,
            () = t.idle.until(deadline) => {
                return match idle {
                    true => Read::Closed,
                    false => Read::Bad(ProxyError::HeadTimeout(t.limits.header)),
                };
            }
            () = t.stop.wait(), if idle && !t.stopping => {
                t.stopping = true;
                deadline = deadline.min(tokio::time::Instant::now() + DRAIN_IDLE);
                continue;
            }
        };
        match r {
            Ok(0) | Err(_) => return Read::Closed,
            Ok(_) => {}
        }
    }
}

/// The whole request body's length when all of it is in `buf` already.
pub(super) fn whole_body(buf: &[u8], framing: Framing) -> Option<usize> {
    match framing {
        Framing::None => Some(0),
        Framing::Length(n) => usize::try_from(n).ok().filter(|&n| n <= buf.len()),
        Framing::Chunked => {
            let mut c = Chunked::default();
            let used = c.feed(buf, |_| {}).ok()?;
            c.is_done().then_some(used)
        }
        Framing::Close => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_body_only_when_complete() {
        assert_eq!(whole_body(b"", Framing::None), Some(0));
        assert_eq!(whole_body(b"abcdef", Framing::Length(3)), Some(3));
        assert_eq!(whole_body(b"ab", Framing::Length(3)), None);
        assert_eq!(
            whole_body(b"1\r\na\r\n0\r\n\r\nGET", Framing::Chunked),
            Some(11)
        );
        assert_eq!(whole_body(b"1\r\na\r\n", Framing::Chunked), None);
    }
}
