//! The HTTP/1.1 engine: one task per client connection reads the request head, routes it, writes
//! it to a pooled upstream connection and streams the answer back, all in that one task. Bodies
//! are forwarded as they arrive (chunked bodies pass through unchanged), heads are written with
//! one vectored write together with the first body bytes, and nothing is copied that is not
//! changed. HTTP/2 clients (prior-knowledge preface) and requests for HTTP/2 upstreams are handed
//! to hyper with the bytes already read put back.

mod chunked;
pub(crate) mod head;
mod rewind;
pub(crate) mod upstream;

use std::borrow::Cow;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderValue, Method, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use self::chunked::Chunked;
use self::head::{put_field, Field, Framing, Kind, RequestHead, ResponseHead};
pub(crate) use self::rewind::Rewind;
use self::upstream::{write_all_vectored, Conn, Downstream, Outgoing, READ_BUF};
use super::error::{respond, ProxyError};
use super::{
    attempts, finish, select, stopped, with_rng, ConnInfo, LogLine, Policies, Reached, Worker,
};
use crate::config::{PathMatch, UpstreamProtocol};
use crate::route::rewrite_path;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A client connection's read buffer: most heads fit, and an idle keep-alive connection holds no
/// more (it grows for larger heads and for bodies).
const HEAD_BUF: usize = 4 * 1024;
/// How long a client may take to send a request head, and how long an idle keep-alive
/// connection is kept.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the connection does after a request.
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Serve the rest of the connection with hyper, these bytes first.
    Handover(Bytes),
}

#[allow(clippy::large_enum_variant)] // returned once per request: a box would be an allocation
enum Read {
    Head(RequestHead),
    Http2,
    Closed,
    Bad(ProxyError),
}

/// Per-connection scratch buffers, reused by every request on it.
#[derive(Debug, Default)]
struct Scratch {
    up: Vec<u8>,
    down: Vec<u8>,
    fields: Vec<Field>,
}

/// A deadline that costs no timer-wheel insert and remove per request: moving it later is free
/// until the timer armed for an earlier deadline fires, which then re-arms once. A connection
/// with back-to-back requests touches the timer wheel about once per timeout period.
#[derive(Debug)]
pub(crate) struct LazyDeadline {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl LazyDeadline {
    /// A timer first armed at `at`.
    pub(crate) fn new(at: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Resolves once `deadline` has passed (never before).
    pub(crate) async fn until(&mut self, deadline: Instant) {
        loop {
            if self.sleep.deadline() > deadline {
                self.sleep.as_mut().reset(deadline);
            }
            (&mut self.sleep).await;
            if Instant::now() >= deadline {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// The connection's timers and its view of the worker's shutdown.
struct Timers<'a, S> {
    /// Request-head and keep-alive deadline.
    idle: LazyDeadline,
    /// Route timeouts.
    route: LazyDeadline,
    /// When the connection was last busy (a request started or a response ended).
    last: Instant,
    /// Resolves when the worker stops.
    stop: std::pin::Pin<&'a mut S>,
}

/// Serves one client connection. Returns the socket (with the bytes already read from it) when
/// the rest belongs to hyper.
pub(crate) async fn serve(
    mut io: TcpStream,
    info: &ConnInfo,
    w: &Worker,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, Bytes)> {
    let mut buf = BytesMut::with_capacity(HEAD_BUF);
    let mut scratch = Scratch::default();
    let mut stop_rx = shutdown.clone();
    let stop = stopped(&mut stop_rx);
    tokio::pin!(stop);
    let now = Instant::now();
    let mut t = Timers {
        idle: LazyDeadline::new(now + HEAD_TIMEOUT),
        route: LazyDeadline::new(now + HEAD_TIMEOUT),
        last: now,
        stop,
    };
    let mut first = true;
    loop {
        let head = match read_request(&mut io, &mut buf, &mut scratch.fields, &mut t, first).await {
            Read::Head(h) => h,
            Read::Http2 => return Some((io, buf.split().freeze())),
            Read::Closed => return None,
            Read::Bad(e) => {
                tracing::debug!(error = %e, client = %info.peer, "malformed request");
                w.metrics
                    .unmatched
                    .shard(w.id)
                    .record(e.status().as_u16(), None);
                let _ = write_synthetic(&mut io, &e, None, Reply::Close, false).await;
                return None;
            }
        };
        first = false;
        let next = request(
            &mut io,
            &mut buf,
            head,
            info,
            w,
            shutdown,
            &mut scratch,
            &mut t,
        )
        .await;
        match next {
            Next::KeepAlive => {}
            Next::Close => {
                linger(&mut io, &mut buf).await;
                return None;
            }
            Next::Handover(pre) => return Some((io, pre)),
        }
    }
}

/// Closes after a response: sends FIN, then reads and discards what the client still sends for
/// a short while (bounded in time and bytes), so an unread request body does not turn the close
/// into a reset that destroys the response before the client reads it (nginx's lingering close).
async fn linger(io: &mut TcpStream, buf: &mut BytesMut) {
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

async fn read_request<S: std::future::Future>(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    fields: &mut Vec<Field>,
    t: &mut Timers<'_, S>,
    first: bool,
) -> Read {
    let deadline = t.last + HEAD_TIMEOUT;
    loop {
        if first && PREFACE.starts_with(&buf[..buf.len().min(PREFACE.len())]) {
            if buf.len() >= PREFACE.len() {
                return Read::Http2;
            }
        } else {
            match head::parse_request(buf, fields) {
                Ok(Some(h)) => return Read::Head(h),
                Ok(None) => {}
                Err(e) => return Read::Bad(e),
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(HEAD_BUF);
        }
        // Between requests a stopping worker closes the connection; mid-head it waits.
        let idle = buf.is_empty();
        let r = tokio::select! {
            biased;
            r = io.read_buf(buf) => r,
            () = t.idle.until(deadline) => return Read::Closed,
            _ = t.stop.as_mut(), if idle => return Read::Closed,
        };
        match r {
            Ok(0) | Err(_) => return Read::Closed,
            Ok(_) => {}
        }
    }
}

/// The whole request body's length when all of it is in `buf` already.
fn whole_body(buf: &[u8], framing: Framing) -> Option<usize> {
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

#[allow(clippy::too_many_arguments)]
async fn request<S: std::future::Future>(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    mut head: RequestHead,
    info: &ConnInfo,
    w: &Worker,
    shutdown: &watch::Receiver<bool>,
    s: &mut Scratch,
    t: &mut Timers<'_, S>,
) -> Next {
    let start = Instant::now();
    t.last = start;
    let snap = w.snapshot.load_full();
    let pol = Policies::of(&snap);
    let id = pol
        .request_id
        .then(|| with_rng(|rng| head::request_id(&head, &s.fields, rng)));
    let (request_id, new_request_id) = match id {
        Some((v, generated)) => (Some(v.clone()), generated.then_some(v)),
        None => (None, None),
    };
    let mut reached = Reached::default();
    let client_http10 = head.req.version() == Version::HTTP_10;
    let head_request = head.req.method() == Method::HEAD;
    let upgrade = head.upgrade;
    let body_pending = head.framing != Framing::None;
    let mut log = LogLine::capture(w, &head.req);
    let record = |status: u16, reached: &Reached, log: Option<LogLine>| {
        finish(
            w,
            &snap,
            info,
            reached,
            start,
            status,
            request_id.as_ref(),
            log,
        );
    };
    let fail = |e: &ProxyError, reached: &Reached, log: Option<LogLine>| {
        tracing::debug!(error = %e, code = e.code(), request_id = ?request_id, "gateway error");
        record(e.status().as_u16(), reached, log);
    };
    // An unread body ends the connection; an HTTP/1.0 client is told it stays.
    let after_error = match (!head.keep_alive || body_pending, client_http10) {
        (true, _) => Reply::Close,
        (false, true) => Reply::KeepAlive10,
        (false, false) => Reply::KeepAlive,
    };
    let filled = if snap.needs_headers {
        head.fill_headers(&s.fields)
    } else if snap.table.reads_host() {
        head.insert_host()
    } else {
        Ok(())
    };
    if let Err(e) = filled {
        fail(&e, &reached, log.take());
        return error_reply(io, &e, request_id.as_ref(), Reply::Close, head_request).await;
    }
    let (ri, bi) = match select(&snap, &head.req, start, &mut reached) {
        Ok(x) => x,
        Err(mut e) => {
            if let ProxyError::NoRoute { host, .. } = &mut e {
                // Routing did not need the host; the answer names it all the same.
                if host.is_empty() && head.insert_host().is_ok() {
                    *host = crate::route::host_of(&head.req)
                        .map(|h| h.into_owned())
                        .unwrap_or_default();
                }
            }
            fail(&e, &reached, log.take());
            return error_reply(io, &e, request_id.as_ref(), after_error, head_request).await;
        }
    };
    let route = &snap.routes[ri];
    let backend = &route.backends[bi];
    let svc = &snap.services[backend.service];
    if svc.config.protocol != UpstreamProtocol::Http1 && !upgrade {
        // An HTTP/2 upstream: hyper's client serves it, on this connection from now on.
        let mut pre = BytesMut::with_capacity(head.raw.len() + buf.len());
        pre.extend_from_slice(&head.raw);
        pre.extend_from_slice(buf);
        buf.clear();
        return Next::Handover(pre.freeze());
    }
    backend.metrics.shard(w.id).start();
    let uri = head.req.uri();
    let target = match (&route.config.rewrite, &route.config.path) {
        (Some(rw), PathMatch::Prefix(prefix)) => {
            let path = rewrite_path(rw, prefix, uri.path());
            match uri.query() {
                Some(q) => Cow::Owned(format!("{path}?{q}")),
                None => path,
            }
        }
        _ => Cow::Borrowed(uri.path_and_query().map_or("/", |pq| pq.as_str())),
    };
    let add = head::Additions {
        target: &target,
        forwarded_for: pol.forwarded_headers.then(|| info.peer.ip()),
        https: info.tls,
        new_request_id: new_request_id.as_ref(),
    };
    if let Err(e) = head::write_upstream_head(&mut s.up, &head, &s.fields, &add) {
        fail(&e, &reached, log.take());
        return error_reply(io, &e, request_id.as_ref(), after_error, head_request).await;
    }
    let waiting = AtomicBool::new(false);
    let out = Outgoing {
        head: &s.up,
        framing: head.framing,
        buffered: whole_body(buf, head.framing),
        down: Downstream {
            io: &mut *io,
            buf: &mut *buf,
            expect_continue: head.expect_continue,
            waiting: &waiting,
        },
        connect_timeout: svc.config.connect_timeout,
        now: start,
        idempotent: head.req.method().is_idempotent(),
    };
    // A protocol switch takes its upstream connection for good: never from or to the pool.
    let pool = (!upgrade).then(|| w.upstreams.raw());
    let send = |addr, out| upstream::exchange(pool, addr, out);
    let deadline = t.route.until(start + route.config.timeout);
    let client_slow = || waiting.load(Relaxed);
    let sent = attempts(w, route, svc, start, out, send, deadline, client_slow).await;
    let (ex, answered) = match sent {
        Ok(x) => x,
        Err(e) => {
            fail(&e, &reached, log.take());
            return error_reply(io, &e, request_id.as_ref(), Reply::Close, head_request).await;
        }
    };
    reached.answered = Some(answered);
    t.last = answered;
    let upstream::Exchange {
        mut conn,
        addr,
        body_sent,
    } = ex;
    let status = conn.head.status;
    if status == 101 && !upgrade {
        // A protocol switch nobody asked for: the connection now speaks something else.
        let e = ProxyError::UpstreamBroken {
            addr,
            reason: "101 Switching Protocols to a request without Upgrade".into(),
        };
        fail(&e, &reached, log.take());
        return error_reply(io, &e, request_id.as_ref(), Reply::Close, head_request).await;
    }
    record(status, &reached, log.take());
    if upgrade && status == 101 {
        response_head(
            &mut s.down,
            &conn.head,
            &conn.buf,
            request_id.as_ref(),
            Reply::Upgrade,
            false,
        );
        let Conn {
            io: mut up,
            buf: mut early,
            head,
        } = conn;
        early.advance(head.len);
        let parts = [IoSlice::new(&s.down), IoSlice::new(&early)];
        if write_all_vectored(io, parts).await.is_err() || up.write_all(buf).await.is_err() {
            return Next::Close;
        }
        buf.clear();
        if let Err(e) = tokio::io::copy_bidirectional(io, &mut up).await {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
        return Next::Close;
    }
    let framing = conn.head.framing(head_request);
    let decode = framing == Framing::Chunked && client_http10;
    let closing =
        !head.keep_alive || framing == Framing::Close || decode || !body_sent || *shutdown.borrow();
    let reply = match (closing, client_http10) {
        (true, _) => Reply::Close,
        (false, true) => Reply::KeepAlive10,
        (false, false) => Reply::KeepAlive,
    };
    let keep_te = !client_http10;
    response_head(
        &mut s.down,
        &conn.head,
        &conn.buf,
        request_id.as_ref(),
        reply,
        keep_te,
    );
    let head_len = conn.head.len;
    conn.buf.advance(head_len);
    match forward_body(io, &mut conn, &s.down, framing, decode).await {
        Ok(Forwarded { reusable, waited }) => {
            if waited {
                // A long body: the idle clock starts when it ended, not when the head came.
                t.last = Instant::now();
            }
            // After a HEAD the upstream may still send the body its head announced (some do):
            // a pooled connection would hand those bytes to the next request as its answer.
            if reusable && body_sent && !upgrade && !head_request && !conn.head.close {
                w.upstreams.raw().give_back(
                    addr,
                    conn,
                    svc.config.max_idle_per_endpoint,
                    svc.config.idle_timeout,
                    answered,
                );
            }
        }
        Err(()) => return Next::Close,
    }
    if closing {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

/// How the response head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// HTTP/1.1 keep-alive (the default: no `Connection` header).
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive.
    KeepAlive10,
    /// `Connection: close`.
    Close,
    /// `101 Switching Protocols` passed through.
    Upgrade,
}

/// Writes the client's response head from the upstream's: our own status line, hop-by-hop
/// fields removed (RFC 9110 §7.6.1), the request id, and our own framing and connection fields.
fn response_head(
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
    let mut copy = head::LineCopier::new(b);
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

/// How a response body went.
struct Forwarded {
    /// The upstream connection ended cleanly at the message's end and may be reused.
    reusable: bool,
    /// More than the first read was needed (the body took time).
    waited: bool,
}

/// Streams the response body after `head` (already in `down_head`) to the client.
async fn forward_body(
    down: &mut TcpStream,
    conn: &mut Conn,
    down_head: &[u8],
    framing: Framing,
    decode: bool,
) -> Result<Forwarded, ()> {
    let mut waited = false;
    let reusable = forward_body_inner(down, conn, down_head, framing, decode, &mut waited).await?;
    Ok(Forwarded { reusable, waited })
}

async fn forward_body_inner(
    down: &mut TcpStream,
    conn: &mut Conn,
    down_head: &[u8],
    framing: Framing,
    decode: bool,
    waited: &mut bool,
) -> Result<bool, ()> {
    let Conn { io: up, buf, .. } = conn;
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
                let used = c.feed(buf, |_| {}).map_err(|_| ())?;
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
                let used = c.feed(buf, |r| ranges.push(r)).map_err(|_| ())?;
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
                Err(_) => return Err(()),
            }
        },
    }
}

/// Writes an optional head and some body bytes to the client, in one system call when it can.
async fn write2(down: &mut TcpStream, head: Option<&[u8]>, data: &[u8]) -> Result<(), ()> {
    let parts = [IoSlice::new(head.unwrap_or(&[])), IoSlice::new(data)];
    write_all_vectored(down, parts).await.map_err(|_| ())
}

/// Replaces `buf`'s (forwarded) content with the next bytes from the upstream; end of stream
/// mid-body is an error.
async fn refill(up: &mut TcpStream, buf: &mut BytesMut) -> Result<(), ()> {
    buf.clear();
    if buf.capacity() < READ_BUF / 2 {
        buf.reserve(READ_BUF);
    }
    match up.read_buf(buf).await {
        Ok(0) | Err(_) => Err(()),
        Ok(_) => Ok(()),
    }
}

async fn error_reply(
    io: &mut TcpStream,
    e: &ProxyError,
    request_id: Option<&HeaderValue>,
    reply: Reply,
    head_request: bool,
) -> Next {
    match write_synthetic(io, e, request_id, reply, head_request).await {
        Ok(()) if reply != Reply::Close => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// Writes the gateway's own JSON answer for `e`.
async fn write_synthetic(
    io: &mut TcpStream,
    e: &ProxyError,
    request_id: Option<&HeaderValue>,
    reply: Reply,
    head_request: bool,
) -> std::io::Result<()> {
    let resp = respond(e, request_id);
    let body = match resp.body() {
        super::ResponseBody::Full(Some(b)) => b.clone(),
        _ => Bytes::new(),
    };
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
    let body: &[u8] = if head_request { &[] } else { &body };
    write_all_vectored(io, [IoSlice::new(&out), IoSlice::new(body)]).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
    fn status_digits() {
        assert_eq!(&itoa3(204), b"204");
        assert_eq!(&itoa3(101), b"101");
    }
}
