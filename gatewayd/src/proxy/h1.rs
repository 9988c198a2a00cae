//! The HTTP/1.1 engine: one task per client connection reads the request head, routes it, writes
//! it to a pooled upstream connection and streams the answer back, all in that one task. Bodies
//! are forwarded as they arrive (chunked bodies pass through unchanged), heads are written with
//! one vectored write together with the first body bytes, and nothing is copied that is not
//! changed. HTTP/2 clients (prior-knowledge preface) and requests for HTTP/2 upstreams are handed
//! to hyper with the bytes already read put back.

mod chunked;
mod duplex;
pub(super) mod forward;
pub(crate) mod head;
mod read;
mod respond;
pub(super) mod response;
mod rewind;
mod timers;
mod upload;
pub(crate) mod upstream;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::{Method, Version};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio::time::Instant;

use self::duplex::Uploaded;
use self::head::{Field, Framing, RequestHead};
use self::read::{read_request, whole_body, Read};
use self::respond::{
    add_fields, answer, error_reply, forward_body, response_head, switch_protocols,
    write_synthetic, Cut, Forwarded, Reply,
};
pub(crate) use self::rewind::Rewind;
use self::timers::{LazyDeadline, Timers};
use self::upload::Body;
use self::upstream::{Downstream, Outgoing, READ_BUF};
use super::error::{ClientFault, ProxyError};
use super::{
    attempts, finish, select, stopped, with_rng, Call, ConnInfo, LogLine, Policies, Reached, Worker,
};
use crate::config::UpstreamProtocol;
use crate::policy::{Gate, RequestView, ResponseHeaders, UpstreamEdits};

/// A client connection's read buffer: most heads fit, and an idle keep-alive connection holds no
/// more (it grows for larger heads and for bodies).
const HEAD_BUF: usize = 4 * 1024;
/// How long an idle keep-alive connection is kept (and a new one waits for its first byte).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send the rest of a request head once its first byte came: a
/// client trickling its head (slowloris) is cut off with a 408.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection does after a request.
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Serve the rest of the connection with hyper, these bytes first.
    Handover(Bytes),
}

/// Per-connection scratch buffers, reused by every request on it.
#[derive(Debug, Default)]
struct Scratch {
    up: Vec<u8>,
    down: Vec<u8>,
    fields: Vec<Field>,
}

/// Serves one client connection. Returns the socket (with the bytes already read from it) when
/// the rest belongs to hyper.
pub(crate) async fn serve<C: AsyncRead + AsyncWrite + Unpin>(
    mut io: C,
    info: &ConnInfo,
    w: &Worker,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(C, Bytes)> {
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
        stopping: false,
    };
    let mut first = true;
    loop {
        let head = match read_request(&mut io, &mut buf, &mut scratch.fields, &mut t, first).await {
            Read::Head(h) => h,
            Read::Http2 => return Some((io, buf.split().freeze())),
            Read::Closed => return None,
            Read::Bad(e) => {
                tracing::debug!(error = %e, client = %info.peer, "malformed request");
                w.metrics.count_error(&e);
                w.metrics
                    .unmatched
                    .shard(w.id)
                    .record(e.status().as_u16(), None);
                if write_synthetic(&mut io, &e, None, Reply::Close, false)
                    .await
                    .is_ok()
                {
                    linger(&mut io, &mut buf).await;
                }
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
async fn linger<C: AsyncRead + AsyncWrite + Unpin>(io: &mut C, buf: &mut BytesMut) {
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

#[allow(clippy::too_many_arguments)]
async fn request<C: AsyncRead + AsyncWrite + Unpin, S: std::future::Future>(
    io: &mut C,
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
    // Headers the route's policies put on the answer, whoever makes it.
    let mut extra = ResponseHeaders::new();
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
        w.metrics.count_error(e);
        record(e.status().as_u16(), reached, log);
    };
    // Every gateway-made error: recorded, then answered with the route's policy headers.
    macro_rules! refuse {
        ($e:expr, $reply:expr) => {{
            let e = $e;
            fail(&e, &reached, log.take());
            return error_reply(io, &e, request_id.as_ref(), $reply, head_request, &extra).await;
        }};
    }
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
        refuse!(e, Reply::Close);
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
            refuse!(e, after_error);
        }
    };
    let route = &snap.routes[ri];
    let backend = &route.backends[bi];
    let svc = &snap.services[backend.service];
    if (svc.config.protocol != UpstreamProtocol::Http1 && !upgrade) || svc.tls.is_some() {
        // An HTTP/2 or TLS upstream: hyper's client serves it, on this connection from now on
        // (the engine's own upstream connections are plain TCP).
        let mut pre = BytesMut::with_capacity(head.raw.len() + buf.len());
        pre.extend_from_slice(&head.raw);
        pre.extend_from_slice(buf);
        buf.clear();
        return Next::Handover(pre.freeze());
    }
    let mut edits = UpstreamEdits::default();
    if let Some(chain) = &route.policies {
        let fields = head::FieldsView {
            raw: &head.raw,
            fields: &s.fields,
        };
        let view = RequestView {
            method: head.req.method(),
            uri: head.req.uri(),
            client: info.peer.ip(),
            tls: info.tls,
            headers: &fields,
        };
        match chain.apply(&view, w, &snap).await {
            Gate::Pass(h, e) => (extra, edits) = (h, e),
            Gate::Answer(a) => {
                let status = a.status.as_u16();
                let resp = super::policy_answer(a, request_id.as_ref());
                record(status, &reached, log.take());
                return answer(io, resp, after_error, head_request).await;
            }
        }
    }
    if let (Some(max), Framing::Length(n)) = (route.config.max_body, head.framing) {
        if n > max {
            // Refused before one byte of it is read; the unread body ends the connection.
            let e = ProxyError::BodyTooLarge(max);
            refuse!(e, Reply::Close);
        }
    }
    backend.metrics.shard(w.id).start();
    reached.started = true;
    let written = forward::upstream_head(
        &mut s.up,
        &head,
        &s.fields,
        route,
        info,
        (
            pol.forwarded_headers,
            snap.config.gateway.trusts(info.peer.ip()),
        ),
        (new_request_id.as_ref(), &edits),
    );
    if let Err(e) = written {
        refuse!(e, after_error);
    }
    let waiting = AtomicBool::new(false);
    let out = Outgoing {
        head: &s.up,
        framing: head.framing,
        // A chunked body under a size limit is streamed, where its data is counted.
        buffered: whole_body(buf, head.framing)
            .filter(|_| head.framing != Framing::Chunked || route.config.max_body.is_none()),
        down: Downstream {
            io: &mut *io,
            buf: &mut *buf,
            expect_continue: head.expect_continue,
            waiting: &waiting,
        },
        connect_timeout: svc.config.connect_timeout,
        now: start,
        idempotent: head.req.method().is_idempotent() || route.config.retry.non_idempotent,
        max_body: route.config.max_body,
    };
    // A protocol switch takes its upstream connection for good: never from or to the pool.
    let pool = (!upgrade).then(|| w.upstreams.raw());
    let send = |addr, out, try_timeout| upstream::exchange(pool, addr, out, try_timeout);
    let deadline = t.route.until(start + route.config.timeout);
    let client_slow = || waiting.load(Relaxed);
    let call = Call {
        w,
        route,
        svc,
        start,
        method: head.req.method(),
        path: head.req.uri().path(),
        request_id: request_id.as_ref(),
        tried: Default::default(),
    };
    let sent = attempts(&call, out, send, deadline, client_slow).await;
    reached.endpoint = call.endpoint();
    let (ex, answered) = match sent {
        Ok(x) => x,
        Err(e) => {
            refuse!(e, Reply::Close);
        }
    };
    reached.answered = Some(answered);
    t.last = answered;
    let upstream::Exchange {
        mut conn,
        addr,
        body,
    } = ex;
    let status = conn.head.status;
    if status == 101 && !upgrade {
        // A protocol switch nobody asked for: the connection now speaks something else.
        let e = ProxyError::UpstreamBroken {
            addr,
            reason: "101 Switching Protocols to a request without Upgrade".into(),
        };
        refuse!(e, Reply::Close);
    }
    record(status, &reached, log.take());
    if upgrade && status == 101 {
        return switch_protocols(io, buf, &mut s.down, conn, request_id.as_ref()).await;
    }
    let framing = conn.head.framing(head_request);
    let decode = framing == Framing::Chunked && client_http10;
    let abandoned = matches!(body, Body::Abandoned);
    // An upstream that answers while the body still streams and then closes will not take the
    // rest: the client is told now that its connection ends with this answer.
    let cut_short = matches!(body, Body::Streaming(_)) && conn.head.close;
    let closing = !head.keep_alive
        || framing == Framing::Close
        || decode
        || abandoned
        || cut_short
        || *shutdown.borrow();
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
    add_fields(&mut s.down, &extra);
    let head_len = conn.head.len;
    conn.buf.advance(head_len);
    let (forwarded, uploaded) = match body {
        Body::Sent | Body::Abandoned => {
            let up = (&mut conn.io, &mut conn.buf);
            let forwarded = forward_body(io, up, &s.down, framing, decode).await;
            let uploaded = match abandoned {
                true => Uploaded::Unfinished,
                false => Uploaded::Sent,
            };
            (forwarded, uploaded)
        }
        Body::Streaming(mut upload) => {
            // An interim `100 Continue` cut short is finished before the final answer.
            let rest = upload.take_continue_rest();
            if !rest.is_empty() && io.write_all(rest).await.is_err() {
                w.metrics.count_client_fault(ClientFault::AbortedResponse);
                return Next::Close;
            }
            let how = (&s.down[..], framing, decode);
            duplex::relay(io, buf, &mut conn, &mut upload, how).await
        }
    };
    match (forwarded, uploaded) {
        (_, Uploaded::Failed(e)) => {
            // The answer was under way: the upstream request is dropped (the endpoint not
            // blamed) and the client's connection closed.
            tracing::debug!(error = %e, code = e.code(), request_id = ?request_id, "request body failed mid-response");
            w.metrics.count_error(&e);
            return Next::Close;
        }
        (Ok(Forwarded { reusable, waited }), uploaded) => {
            if waited {
                // A long body: the idle clock starts when it ended, not when the head came.
                t.last = Instant::now();
            }
            let body_sent = matches!(uploaded, Uploaded::Sent);
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
            if !body_sent {
                // The rest of the request body was never read: what follows on the client's
                // connection is not a request head.
                return Next::Close;
            }
        }
        (Err(Cut::Client), _) => {
            w.metrics.count_client_fault(ClientFault::AbortedResponse);
            return Next::Close;
        }
        (Err(Cut::Upstream), _) => return Next::Close,
    }
    if closing {
        Next::Close
    } else {
        Next::KeepAlive
    }
}
