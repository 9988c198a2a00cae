//! What the client is sent: the response head written from the upstream's, the body streamed
//! after it, a protocol switch passed on, and the gateway's own answers.

use std::io::IoSlice;
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

use super::chunked::Chunked;
use super::head::{self, Framing, Kind};
use super::io::{put_field, write_all_vectored, LineCopier, READ_BUF};
use super::response::ResponseHead;
use crate::proxy::error::{respond, ProxyError};

/// The interim answer to `Expect: 100-continue`.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the connection does after a request.
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Serve the rest of the connection with hyper, these bytes first.
    Handover(Bytes),
}

/// How the response head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// HTTP/1.1 keep-alive (the default: no `Connection` header).
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive.
    KeepAlive10,
    /// `Connection: close`.
    Close,
    /// `101 Switching Protocols` passed through.
    Upgrade,
}

/// How a response body went.
pub(super) struct Forwarded {
    /// The upstream connection ended cleanly at the message's end and may be reused.
    pub(super) reusable: bool,
    /// More than the first read was needed (the body took time).
    pub(super) waited: bool,
}

/// Writes the client's response head from the upstream's: our own status line, hop-by-hop
/// fields removed (RFC 9110 §7.6.1), the request id, and our own framing and connection fields.
pub(super) fn response_head(
    out: &mut Vec<u8>,
    h: &ResponseHead,
    b: &[u8],
    request_id: Option<&HeaderValue>,
    reply: Reply,
    keep_te: bool,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(h.status).as_slice());
    out.push(b' ');
    out.extend_from_slice(&b[h.reason.0 as usize..(h.reason.0 + h.reason.1) as usize]);
    out.extend_from_slice(b"\r\n");
    let upgrade = reply == Reply::Upgrade;
    // Field names listed in `Connection` are hop-by-hop too.
    let listed = h.fields.iter().any(|f| {
        f.kind == Kind::Connection
            && head::tokens(f.value(b)).any(|t| {
                !(t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"upgrade"))
            })
    });
    let mut copy = LineCopier::new(b);
    for f in &h.fields {
        let drop = match f.kind {
            Kind::Te
            | Kind::Trailer
            | Kind::Connection
            | Kind::KeepAlive
            | Kind::ProxyConnection => true,
            // Passed on as received (codings included) to an HTTP/1.1 client; an HTTP/1.0
            // client gets the body decoded, or until close.
            Kind::TransferEncoding => !keep_te,
            Kind::Upgrade => !upgrade,
            Kind::RequestId => request_id.is_some(),
            Kind::ContentLength => h.has_te,
            _ => false,
        };
        // Only plain fields can be made hop-by-hop by `Connection` (not the framing ones).
        let hop = drop
            || (listed
                && f.kind == Kind::Other
                && head::listed_in_connection(b, &h.fields, f.name(b)));
        if !hop {
            copy.keep(out, f);
        }
    }
    copy.flush(out);
    if let Some(id) = request_id {
        put_field(out, b"x-request-id", id.as_bytes());
    }
    match reply {
        Reply::KeepAlive => {}
        Reply::KeepAlive10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Reply::Close => out.extend_from_slice(b"connection: close\r\n"),
        Reply::Upgrade => out.extend_from_slice(b"connection: upgrade\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

fn itoa3(n: u16) -> [u8; 3] {
    let n = n.min(999);
    [
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

/// Writes the client its `101 Switching Protocols`, made from the upstream's head at the front
/// of `early` (into `down`), and the bytes the upstream sent after that head.
pub(super) async fn write_switch<C: AsyncWrite + Unpin>(
    io: &mut C,
    down: &mut Vec<u8>,
    head: &ResponseHead,
    early: &mut BytesMut,
    request_id: Option<&HeaderValue>,
) -> std::io::Result<()> {
    response_head(down, head, early, request_id, Reply::Upgrade, false);
    early.advance(head.len);
    let parts = [IoSlice::new(down), IoSlice::new(early)];
    write_all_vectored(io, parts).await
}

/// Which side cut a response body short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    /// The client went away (or its socket failed) while the body was written to it.
    Client,
    /// The upstream closed, failed or sent a malformed body.
    Upstream,
    /// No byte moved either way for the route's `body_idle_timeout`.
    Idle,
}

/// Streams the response body after `head` (already in `down_head`) to the client.
pub(super) async fn forward_body<C: AsyncWrite + Unpin, U: AsyncRead + Unpin>(
    down: &mut C,
    (up, buf): (&mut U, &mut BytesMut),
    down_head: &[u8],
    framing: Framing,
    decode: bool,
) -> Result<Forwarded, Cut> {
    let mut waited = false;
    let reusable =
        forward_body_inner(down, up, buf, down_head, framing, decode, &mut waited).await?;
    Ok(Forwarded { reusable, waited })
}

async fn forward_body_inner<C: AsyncWrite + Unpin, U: AsyncRead + Unpin>(
    down: &mut C,
    up: &mut U,
    buf: &mut BytesMut,
    down_head: &[u8],
    framing: Framing,
    decode: bool,
    waited: &mut bool,
) -> Result<bool, Cut> {
    let mut head = Some(down_head);
    match framing {
        Framing::None => {
            write2(down, head.take(), &[]).await?;
            Ok(buf.is_empty())
        }
        Framing::Length(n) => {
            let mut left = n;
            loop {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                write2(down, head.take(), &buf[..take]).await?;
                left -= take as u64;
                if left == 0 {
                    return Ok(buf.len() == take);
                }
                *waited = true;
                refill(up, buf).await?;
            }
        }
        Framing::Chunked if !decode => {
            let mut c = Chunked::default();
            loop {
                let used = c.feed(buf, |_| {}).map_err(|_| Cut::Upstream)?;
                write2(down, head.take(), &buf[..used]).await?;
                if c.is_done() {
                    return Ok(buf.len() == used);
                }
                *waited = true;
                refill(up, buf).await?;
            }
        }
        Framing::Chunked => {
            write2(down, head.take(), &[]).await?;
            let mut c = Chunked::default();
            let mut ranges = Vec::new();
            loop {
                ranges.clear();
                let used = c.feed(buf, |r| ranges.push(r)).map_err(|_| Cut::Upstream)?;
                for r in &ranges {
                    write2(down, None, &buf[r.clone()]).await?;
                }
                if c.is_done() {
                    return Ok(buf.len() == used);
                }
                *waited = true;
                refill(up, buf).await?;
            }
        }
        Framing::Close => loop {
            write2(down, head.take(), buf).await?;
            *waited = true;
            buf.clear();
            if buf.capacity() < READ_BUF / 2 {
                buf.reserve(READ_BUF);
            }
            match up.read_buf(buf).await {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(_) => return Err(Cut::Upstream),
            }
        },
    }
}

/// Writes an optional head and some body bytes to the client, in one system call when it can.
async fn write2<C: AsyncWrite + Unpin>(
    down: &mut C,
    head: Option<&[u8]>,
    data: &[u8],
) -> Result<(), Cut> {
    let parts = [IoSlice::new(head.unwrap_or(&[])), IoSlice::new(data)];
    write_all_vectored(down, parts)
        .await
        .map_err(|_| Cut::Client)
}

/// Replaces `buf`'s (forwarded) content with the next bytes from the upstream; end of stream
/// mid-body is an error.
async fn refill<U: AsyncRead + Unpin>(up: &mut U, buf: &mut BytesMut) -> Result<(), Cut> {
    buf.clear();
    if buf.capacity() < READ_BUF / 2 {
        buf.reserve(READ_BUF);
    }
    match up.read_buf(buf).await {
        Ok(0) | Err(_) => Err(Cut::Upstream),
        Ok(_) => Ok(()),
    }
}

/// Writes what is left of [`CONTINUE`] after its first `sent` bytes with one write, and counts
/// what went in `sent` before it flushes the end: cancel-safe, as the upload that calls it
/// (`upload::Upload::pump`) must be.
pub(super) async fn write_continue<C: AsyncWrite + Unpin>(
    client: &mut C,
    sent: &mut usize,
) -> Result<(), ProxyError> {
    let n = client
        .write(&CONTINUE[*sent..])
        .await
        .map_err(|_| ProxyError::ClientClosed("write failed"))?;
    if n == 0 {
        return Err(ProxyError::ClientClosed("write failed"));
    }
    *sent += n;
    if *sent == CONTINUE.len() {
        client
            .flush()
            .await
            .map_err(|_| ProxyError::ClientClosed("write failed"))?;
    }
    Ok(())
}

/// Finishes an interim `100 Continue` whose write was cut short (`rest`, empty when none was)
/// before the final answer goes out.
pub(super) async fn finish_continue<C: AsyncWrite + Unpin>(
    io: &mut C,
    rest: &[u8],
) -> std::io::Result<()> {
    if rest.is_empty() {
        return Ok(());
    }
    io.write_all(rest).await
}

/// Closes after a response: sends FIN, then reads and discards what the client still sends for
/// a short while (bounded in time and bytes), so an unread request body does not turn the close
/// into a reset that destroys the response before the client reads it (nginx's lingering close).
pub(super) async fn linger<C: AsyncRead + AsyncWrite + Unpin>(io: &mut C, buf: &mut BytesMut) {
    const LINGER: Duration = Duration::from_secs(2);
    const MAX: usize = 8 * 1024 * 1024;
    if io.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    while drained < MAX {
        buf.clear();
        buf.reserve(READ_BUF);
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}

/// Answers with the gateway's own JSON error for `e` (with the route's policy headers, `extra`).
pub(super) async fn error_reply<C: AsyncWrite + Unpin>(
    io: &mut C,
    e: &ProxyError,
    (request_id, trace_id): (Option<&HeaderValue>, Option<&str>),
    reply: Reply,
    head_request: bool,
    extra: &[(HeaderName, HeaderValue)],
) -> Next {
    let mut resp = respond(e, request_id, trace_id);
    crate::policy::add_to(resp.headers_mut(), extra);
    answer(io, resp, reply, head_request).await
}

/// Answers with an in-memory response the gateway made (a policy's, an error).
pub(super) async fn answer<C: AsyncWrite + Unpin>(
    io: &mut C,
    resp: http::Response<Bytes>,
    reply: Reply,
    head_request: bool,
) -> Next {
    match write_response(io, &resp, reply, head_request).await {
        Ok(()) if reply != Reply::Close => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// Puts a route's policy headers on a response head already written to `out` (ending in the
/// blank line), as [`crate::policy::add_to`] does on a header map: on a route with a CORS
/// policy the upstream's `Access-Control-*` lines are removed whatever the origin, and its
/// `Vary` lines merged with the policy's into one.
pub(super) fn add_fields(out: &mut Vec<u8>, extra: &[(HeaderName, HeaderValue)]) {
    if extra.is_empty() {
        return;
    }
    out.truncate(out.len().saturating_sub(2));
    let mut vary = None;
    if crate::policy::cors_authority(extra) {
        let mut kept = Vec::with_capacity(out.len());
        let mut merged = Vec::new();
        for (i, line) in out.split_inclusive(|&b| b == b'\n').enumerate() {
            let name =
                |n: &[u8]| i > 0 && line.len() > n.len() && line[..n.len()].eq_ignore_ascii_case(n);
            if name(b"vary:") {
                crate::policy::merge_vary(&mut merged, &line[5..]);
            } else if !name(b"access-control-") {
                kept.extend_from_slice(line);
            }
        }
        *out = kept;
        vary = Some(merged);
    }
    for (k, v) in extra {
        match &mut vary {
            Some(merged) if k == http::header::VARY => {
                crate::policy::merge_vary(merged, v.as_bytes())
            }
            _ => put_field(out, k.as_str().as_bytes(), v.as_bytes()),
        }
    }
    if let Some(v) = vary {
        put_field(out, b"vary", &v);
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the gateway's own JSON answer for `e`.
pub(super) async fn write_synthetic<C: AsyncWrite + Unpin>(
    io: &mut C,
    e: &ProxyError,
    (request_id, trace_id): (Option<&HeaderValue>, Option<&str>),
    reply: Reply,
    head_request: bool,
) -> std::io::Result<()> {
    write_response(io, &respond(e, request_id, trace_id), reply, head_request).await
}

/// Writes an in-memory response with a `content-length`, `date` and our connection field.
async fn write_response<C: AsyncWrite + Unpin>(
    io: &mut C,
    resp: &http::Response<Bytes>,
    reply: Reply,
    head_request: bool,
) -> std::io::Result<()> {
    let body = resp.body();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(resp.status().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        resp.status()
            .canonical_reason()
            .unwrap_or("Error")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in resp.headers() {
        put_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    put_field(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    put_field(&mut out, b"date", date.as_bytes());
    match reply {
        Reply::Close => out.extend_from_slice(b"connection: close\r\n"),
        Reply::KeepAlive10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        Reply::KeepAlive | Reply::Upgrade => {}
    }
    out.extend_from_slice(b"\r\n");
    let body: &[u8] = if head_request { &[] } else { body };
    write_all_vectored(io, [IoSlice::new(&out), IoSlice::new(body)]).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rewritten(raw: &[u8], id: Option<&HeaderValue>, reply: Reply, keep_te: bool) -> String {
        let mut h = ResponseHead::default();
        assert!(h.parse(raw).unwrap());
        let mut out = Vec::new();
        response_head(&mut out, &h, raw, id, reply, keep_te);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_heads_drop_hop_by_hop_but_never_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, content-length, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nContent-Length: 3\r\nX-Request-Id: theirs\r\nX-End: 2\r\n\r\n";
        let id = HeaderValue::from_static("ours");
        assert_eq!(
            rewritten(raw, Some(&id), Reply::KeepAlive, true),
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-End: 2\r\nx-request-id: ours\r\n\r\n"
        );
    }

    #[test]
    fn transfer_codings_pass_to_http11_clients_only() {
        let raw =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(
            rewritten(raw, None, Reply::KeepAlive, true),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        );
        assert_eq!(
            rewritten(raw, None, Reply::Close, false),
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_cors_route_replaces_the_upstreams_access_control_and_merges_its_vary() {
        let raw = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nVary: Accept-Encoding, origin\r\nContent-Length: 0\r\nACCESS-CONTROL-ALLOW-CREDENTIALS: true\r\nvary: Cookie\r\n\r\n";
        let refused = [(http::header::VARY, HeaderValue::from_static("Origin"))];
        let mut out = rewritten(raw, None, Reply::KeepAlive, true).into_bytes();
        add_fields(&mut out, &refused);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nvary: Accept-Encoding, origin, Cookie\r\n\r\n"
        );
        // Without a CORS policy (a rate limit alone) the upstream's fields stay as they are.
        let limit = [(
            crate::policy::RATELIMIT,
            HeaderValue::from_static("\"l\";r=1;t=1"),
        )];
        let mut out = rewritten(raw, None, Reply::KeepAlive, true).into_bytes();
        add_fields(&mut out, &limit);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("Access-Control-Allow-Origin: *\r\n"), "{out}");
        assert!(out.ends_with("ratelimit: \"l\";r=1;t=1\r\n\r\n"), "{out}");
    }

    #[test]
    fn status_digits() {
        assert_eq!(&itoa3(204), b"204");
        assert_eq!(&itoa3(101), b"101");
    }
}
