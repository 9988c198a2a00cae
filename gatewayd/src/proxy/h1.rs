//! The HTTP/1.1 engine: one task per client connection reads the request head, routes it, writes
//! it to a pooled upstream connection and streams the answer back, all in that one task, both
//! bodies at once (full duplex: the request body keeps streaming upstream while the answer is
//! relayed). Bodies are forwarded as they arrive (chunked bodies pass through unchanged), heads
//! are written with one vectored write together with the first body bytes, and nothing is
//! copied that is not changed. HTTP/2 clients (prior-knowledge preface) and requests for HTTP/2
//! or TLS upstreams are handed to hyper with the bytes already read put back.
//!
//! Files by the side they serve, each socket written from the file of its side: `read` and
//! `head` read the client; `respond` writes the client (response heads and bodies, gateway
//! answers, `100 Continue`, the lingering close); `forward` builds the upstream head,
//! `upstream` writes and reads the upstream and `upload` writes the request body to it (reading
//! the client, and calling `respond` for `100 Continue`); `duplex` runs both directions at once
//! through those writers (the relay while a body still streams), and is the one file that
//! writes both sockets itself (the tunnel after `101`, `copy_bidirectional`); `attempt` plugs
//! `upstream` into the attempts phase; `io` holds what both sides share (buffer size, the
//! side-neutral vectored write, field lines).
//!
//! Imports inside: the codecs (`head`, `response`, `chunked`, `io`) import no side; `respond`
//! imports only codecs; `upload` imports codecs and `respond`, `upstream` codecs and `upload`;
//! neither imports the worker or the attempts phase (the worker owns their pool: that would be
//! a circle). `duplex`, `attempt`, `read` and `forward` sit above them, and `h1.rs` above all.

mod attempt;
mod chunked;
mod duplex;
pub(super) mod forward;
pub(crate) mod head;
mod idle;
mod io;
mod read;
mod respond;
pub(super) mod response;
mod rewind;
mod timers;
mod upload;
pub(crate) mod upstream;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use bytes::{Buf as _, Bytes, BytesMut};
use http::{Method, Version};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use self::duplex::{switch_protocols, Uploaded};
use self::head::{Field, Framing, RequestHead};
use self::idle::Watched;
use self::read::{read_request, whole_body, Read, HEAD_BUF};
use self::respond::{
    add_fields, answer, error_reply, finish_continue, forward_body, linger, response_head,
    write_synthetic, Cut, Forwarded, Next, Reply,
};
pub(crate) use self::rewind::Rewind;
use self::timers::{LazyDeadline, Stop, Timers};
use self::upload::Body;
pub(super) use self::upstream::Pool;
use self::upstream::{Downstream, Outgoing};
use super::attempts::{attempts, Slot};
use super::error::{ClientFault, ProxyError};
use super::exchange::{policy_answer, Exchange};
use super::trace::Incoming;
use super::worker::{stopped, with_rng, ConnInfo, Worker};
use crate::config::{ClientTimeouts, StatusSet, UpstreamProtocol};
use crate::policy::{Gate, RequestView, UpstreamEdits};

/// Per-connection scratch buffers, reused by every request on it.
#[derive(Debug, Default)]
struct Scratch {
    up: Vec<u8>,
    down: Vec<u8>,
    fields: Vec<Field>,
}

/// A client connection as the engine serves it: the socket, what was read from it and not used
/// yet, scratch space, its timers, and the worker it belongs to.
struct Client<'a, C, S> {
    io: C,
    buf: BytesMut,
    s: Scratch,
    t: Timers<'a, S>,
    info: &'a ConnInfo,
    w: &'a Worker,
    shutdown: &'a watch::Receiver<bool>,
}

/// What the answer phase needs to know of the request.
#[derive(Debug, Clone, Copy)]
struct Asked {
    keep_alive: bool,
    http10: bool,
    head_request: bool,
    upgrade: bool,
}

/// Serves one client connection under its listener's timeouts. Returns the socket (with the
/// bytes already read from it) when the rest belongs to hyper.
pub(crate) async fn serve<C: AsyncRead + AsyncWrite + Unpin>(
    io: C,
    (info, limits): (&ConnInfo, ClientTimeouts),
    w: &Worker,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(C, Bytes)> {
    let mut stop_rx = shutdown.clone();
    let probe = shutdown.clone();
    let stop = stopped(&mut stop_rx);
    tokio::pin!(stop);
    let stop = Stop::new(stop, probe);
    let now = Instant::now();
    let mut c = Client {
        io,
        buf: BytesMut::with_capacity(HEAD_BUF),
        s: Scratch::default(),
        t: Timers {
            idle: LazyDeadline::new(now + limits.keepalive),
            route: LazyDeadline::new(now + limits.keepalive),
            last: now,
            limits,
            stop,
            stopping: false,
        },
        info,
        w,
        shutdown,
    };
    let mut first = true;
    loop {
        let read = read_request(&mut c.io, &mut c.buf, &mut c.s.fields, &mut c.t, first).await;
        let head = match read {
            Read::Head(h) => h,
            Read::Http2 => return Some((c.io, c.buf.split().freeze())),
            Read::Closed => return None,
            Read::Bad(e) => {
                tracing::debug!(error = %e, client = %info.peer, "malformed request");
                w.metrics.count_error(&e);
                w.metrics
                    .unmatched
                    .shard(w.id)
                    .record(e.status().as_u16(), None);
                // With `[tracing]`, even this answer names a (new) trace.
                let trace = w.tracer.as_ref().map(|t| {
                    let incoming = super::trace::Incoming::Absent;
                    with_rng(|rng| super::trace::TraceContext::start(incoming, &t.sampler, rng))
                });
                let ids = (None, trace.as_ref().map(|t| t.trace_id_hex()));
                if write_synthetic(&mut c.io, &e, ids, Reply::Close, false)
                    .await
                    .is_ok()
                {
                    linger(&mut c.io, &mut c.buf).await;
                }
                return None;
            }
        };
        first = false;
        match c.request(head).await {
            Next::KeepAlive => {}
            Next::Close => {
                linger(&mut c.io, &mut c.buf).await;
                return None;
            }
            Next::Handover(pre) => return Some((c.io, pre)),
        }
    }
}

// === impl Client ===

impl<C: AsyncRead + AsyncWrite + Unpin, S: std::future::Future> Client<'_, C, S> {
    /// One request through the phases: begin (snapshot, request id) → route and split →
    /// [handover to hyper] → request policies → limits → upstream head → attempts (balance,
    /// exchange, retries) → answer (response head, both bodies) → finish (metrics, access log).
    async fn request(&mut self, mut head: RequestHead) -> Next {
        let start = Instant::now();
        self.t.last = start;
        let (w, info) = (self.w, self.info);
        let snap = w.snapshot.load_full();
        let mut ex = Exchange::begin(w, info, &snap, start);
        let pol = ex.policies();
        let mut new_request_id = None;
        if pol.request_id {
            let (v, generated) = with_rng(|rng| head::request_id(&head, &self.s.fields, rng));
            ex.request_id = Some(v.clone());
            new_request_id = generated.then_some(v);
        }
        let asked = Asked {
            keep_alive: head.keep_alive,
            http10: head.req.version() == Version::HTTP_10,
            head_request: head.req.method() == Method::HEAD,
            upgrade: head.upgrade,
        };
        ex.capture_log(&head.req);
        if w.tracer.is_some() {
            let raw = &head.raw[..];
            let values = self.s.fields.iter().filter(|f| {
                f.kind == head::Kind::Other && f.name(raw).eq_ignore_ascii_case(b"traceparent")
            });
            let incoming = Incoming::from_values(values.map(|f| f.value(raw)));
            let host = head.host.map(|(o, l)| &raw[o as usize..(o + l) as usize]);
            ex.start_trace(incoming, &head.req, host);
        }
        // Every gateway-made error: recorded, then answered with the route's policy headers.
        macro_rules! refuse {
            ($e:expr, $reply:expr) => {{
                let e = $e;
                ex.fail(&e);
                let ids = (ex.request_id.as_ref(), ex.trace_id());
                let reply = $reply;
                return error_reply(&mut self.io, &e, ids, reply, asked.head_request, &ex.policy)
                    .await;
            }};
        }
        // An unread body ends the connection; an HTTP/1.0 client is told it stays.
        let after_error = reply_for(!head.keep_alive || head.framing != Framing::None, asked);
        // Load shedding: held until the answer has been relayed.
        let _admitted = match snap.config.gateway.max_in_flight {
            None => None,
            Some(max) => match Slot::take(&w.metrics.in_flight, max) {
                Some(slot) => Some(slot),
                None => {
                    w.metrics.shed.fetch_add(1, Relaxed);
                    refuse!(ProxyError::Overloaded("the gateway".into()), after_error);
                }
            },
        };
        let filled = if snap.needs_headers {
            head.fill_headers(&self.s.fields)
        } else if snap.table.reads_host() {
            head.insert_host()
        } else {
            Ok(())
        };
        if let Err(e) = filled {
            refuse!(e, Reply::Close);
        }
        let (ri, bi) = match ex.select(&head.req) {
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
        if (svc.config.protocol != UpstreamProtocol::Http1 && !asked.upgrade) || svc.tls.is_some() {
            // An HTTP/2 or TLS upstream: hyper's client serves it, on this connection from now
            // on (the engine's own upstream connections are plain TCP).
            let mut pre = BytesMut::with_capacity(head.raw.len() + self.buf.len());
            pre.extend_from_slice(&head.raw);
            pre.extend_from_slice(&self.buf);
            self.buf.clear();
            return Next::Handover(pre.freeze());
        }
        // Request policies.
        let mut edits = UpstreamEdits::default();
        if let Some(chain) = &route.policies {
            let fields = head::FieldsView {
                raw: &head.raw,
                fields: &self.s.fields,
            };
            let xff = self
                .s
                .fields
                .iter()
                .filter(|f| f.kind == head::Kind::ForwardedFor);
            let client = crate::policy::client_ip(
                &snap.config.gateway,
                info.peer.ip(),
                xff.map(|f| f.value(&head.raw)),
            );
            let view = RequestView {
                method: head.req.method(),
                uri: head.req.uri(),
                client,
                tls: info.tls,
                headers: &fields,
            };
            match chain.apply(&view, w, &snap).await {
                Gate::Pass(h, e) => (ex.policy, edits) = (h, e),
                Gate::Answer(mut a) => {
                    ex.decided = a.by.take();
                    let status = a.status.as_u16();
                    let resp = policy_answer(a, ex.request_id.as_ref(), ex.trace_id());
                    ex.finish(status);
                    return answer(&mut self.io, resp, after_error, asked.head_request).await;
                }
            }
        }
        // Limits.
        if let (Some(max), Framing::Length(n)) = (route.config.max_body, head.framing) {
            if n > max {
                // Refused before one byte of it is read; the unread body ends the connection.
                refuse!(ProxyError::BodyTooLarge(max), Reply::Close);
            }
        }
        backend.metrics.shard(w.id).start();
        ex.started = true;
        // The upstream head.
        let trusted = snap.config.gateway.trusts(info.peer.ip());
        let written = forward::upstream_head(
            &mut self.s.up,
            &head,
            &self.s.fields,
            route,
            info,
            (pol.forwarded_headers, trusted),
            (
                new_request_id.as_ref(),
                &edits,
                ex.trace.as_deref().map(|t| &t.ctx),
            ),
        );
        if let Err(e) = written {
            refuse!(e, after_error);
        }
        // The replay buffer: a small body of a request that may be sent again is read whole
        // first, so a retry can send it again.
        let resendable = head.req.method().is_idempotent() || route.config.retry.non_idempotent;
        if resendable && route.config.retries > 0 && !head.expect_continue && !asked.upgrade {
            let keep = match head.framing {
                Framing::Length(n) => n <= route.config.retry.body_max,
                Framing::Chunked => route.config.max_body.is_none(),
                Framing::None | Framing::Close => false,
            };
            if keep {
                let max = usize::try_from(route.config.retry.body_max).unwrap_or(usize::MAX);
                let timeout = route.config.timeout;
                if let Err(e) = self.keep_body(head.framing, max, (start, timeout)).await {
                    refuse!(e, Reply::Close);
                }
            }
        }
        // Attempts: balance, exchange, retries.
        let waiting = AtomicBool::new(false);
        let out = Outgoing {
            head: &self.s.up,
            framing: head.framing,
            // A chunked body under a size limit is streamed, where its data is counted.
            buffered: whole_body(&self.buf, head.framing)
                .filter(|_| head.framing != Framing::Chunked || route.config.max_body.is_none()),
            down: Downstream {
                io: &mut self.io,
                buf: &mut self.buf,
                expect_continue: head.expect_continue,
                waiting: &waiting,
            },
            connect_timeout: svc.config.connect_timeout,
            now: start,
            idempotent: resendable,
            max_body: route.config.max_body,
            retry_on: match route.config.retries {
                0 => &StatusSet::EMPTY,
                _ => &route.config.retry.on_status,
            },
        };
        // A protocol switch takes its upstream connection for good: never from or to the pool.
        let pool = (!asked.upgrade).then(|| w.upstreams.raw());
        // Attempts, for the span's retry count.
        let mut sends = 0u32;
        let send = |addr, out, try_timeout| {
            sends += 1;
            upstream::exchange(pool, addr, out, try_timeout)
        };
        let deadline = self.t.route.until(start + route.config.timeout);
        let client_slow = || waiting.load(Relaxed);
        let (method, path) = (head.req.method(), head.req.uri().path());
        let call = ex.call((route, svc), method, path);
        let sent = attempts(&call, out, send, deadline, client_slow).await;
        let endpoint = call.endpoint();
        ex.endpoint = endpoint;
        ex.attempts(sends);
        let (up, answered) = match sent {
            Ok(x) => x,
            Err(e) => refuse!(e, Reply::Close),
        };
        ex.answered = Some(answered);
        self.t.last = answered;
        let status = up.conn.head.status;
        if status == 101 && !asked.upgrade {
            // A protocol switch nobody asked for: the connection now speaks something else.
            let e = ProxyError::UpstreamBroken {
                addr: up.addr,
                reason: "101 Switching Protocols to a request without Upgrade".into(),
            };
            refuse!(e, Reply::Close);
        }
        ex.finish(status);
        if asked.upgrade && status == 101 {
            let id = ex.request_id.as_ref();
            return switch_protocols(&mut self.io, &mut self.buf, &mut self.s.down, up.conn, id)
                .await;
        }
        let idle = (svc.config.max_idle_per_endpoint, svc.config.idle_timeout);
        self.relay(&ex, up, asked, idle, route.config.body_idle_timeout)
            .await
    }

    /// Reads the request body into the client buffer until it is all there, or `max` bytes of
    /// it are (then it streams, and is never sent twice), within the route's timeout from the
    /// request's start.
    async fn keep_body(
        &mut self,
        framing: Framing,
        max: usize,
        (start, timeout): (Instant, std::time::Duration),
    ) -> Result<(), ProxyError> {
        let until = start + timeout;
        while whole_body(&self.buf, framing).is_none() && self.buf.len() < max {
            if self.buf.capacity() - self.buf.len() < HEAD_BUF {
                self.buf.reserve(HEAD_BUF.max(self.buf.len()));
            }
            match tokio::time::timeout_at(until, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Err(ProxyError::ClientTimeout(timeout)),
                Ok(Ok(0) | Err(_)) => return Err(ProxyError::ClientClosed("connection closed")),
                Ok(Ok(_)) => {}
            }
        }
        Ok(())
    }

    /// The answer phase: the response head the client gets, then its body relayed while the
    /// request body (if still streaming) goes on upstream; the upstream connection goes back to
    /// the pool (`idle`: its size and timeout) when both messages ended cleanly.
    async fn relay(
        &mut self,
        ex: &Exchange<'_>,
        up: upstream::Answered,
        asked: Asked,
        idle: (usize, std::time::Duration),
        body_idle: std::time::Duration,
    ) -> Next {
        let upstream::Answered {
            mut conn,
            addr,
            body,
        } = up;
        let framing = conn.head.framing(asked.head_request);
        let decode = framing == Framing::Chunked && asked.http10;
        let abandoned = matches!(body, Body::Abandoned);
        // An upstream that answers while the body still streams and then closes will not take
        // the rest: the client is told now that its connection ends with this answer.
        let cut_short = matches!(body, Body::Streaming(_)) && conn.head.close;
        let closing = !asked.keep_alive
            || framing == Framing::Close
            || decode
            || abandoned
            || cut_short
            || *self.shutdown.borrow();
        let reply = reply_for(closing, asked);
        let id = ex.request_id.as_ref();
        let down = &mut self.s.down;
        response_head(down, &conn.head, &conn.buf, id, reply, !asked.http10);
        add_fields(down, &ex.policy);
        let head_len = conn.head.len;
        conn.buf.advance(head_len);
        // Bytes moved either way during the body relay (the body-idle timeout's watch).
        let progress = AtomicU64::new(0);
        let from = ex.answered.unwrap_or(ex.start);
        let watch = idle::watch(&mut self.t.route, from, body_idle, &progress);
        let (forwarded, uploaded) = match body {
            Body::Sent | Body::Abandoned => {
                let mut up_io = Watched::new(&mut conn.io, &progress);
                let up = (&mut up_io, &mut conn.buf);
                let mut client = Watched::new(&mut self.io, &progress);
                let forwarding = forward_body(&mut client, up, down, framing, decode);
                let forwarded = tokio::select! {
                    biased;
                    f = forwarding => f,
                    () = watch => Err(Cut::Idle),
                };
                let uploaded = match abandoned {
                    true => Uploaded::Unfinished,
                    false => Uploaded::Sent,
                };
                (forwarded, uploaded)
            }
            Body::Streaming(mut upload) => {
                // An interim `100 Continue` cut short is finished before the final answer.
                let rest = upload.take_continue_rest();
                if finish_continue(&mut self.io, rest).await.is_err() {
                    ex.w.metrics
                        .count_client_fault(ClientFault::AbortedResponse);
                    return Next::Close;
                }
                let client = (&mut self.io, &mut self.buf);
                let upstream = (&mut *conn, &mut *upload, &self.s.up[..]);
                let both = (&down[..], framing, decode);
                tokio::select! {
                    biased;
                    r = duplex::relay(client, upstream, both, &progress) => r,
                    () = watch => (Err(Cut::Idle), Uploaded::Unfinished),
                }
            }
        };
        match (forwarded, uploaded) {
            (_, Uploaded::Failed(e)) => {
                // The answer was under way: the upstream request is dropped (the endpoint not
                // blamed) and the client's connection closed.
                tracing::debug!(error = %e, code = e.code(), request_id = ?id, "request body failed mid-response");
                ex.w.metrics.count_error(&e);
                Next::Close
            }
            (Ok(Forwarded { reusable, waited }), uploaded) => {
                if waited {
                    // A long body: the idle clock starts when it ended, not when the head came.
                    self.t.last = Instant::now();
                }
                let body_sent = matches!(uploaded, Uploaded::Sent);
                // After a HEAD the upstream may still send the body its head announced (some
                // do): a pooled connection would hand those bytes to the next request as its
                // answer.
                let poolable = reusable && body_sent && !asked.upgrade && !asked.head_request;
                if poolable && !conn.head.close {
                    let answered = ex.answered.unwrap_or(ex.start);
                    let pool = ex.w.upstreams.raw();
                    pool.give_back(addr, conn, idle.0, idle.1, answered);
                }
                // The rest of an unfinished request body was never read: what follows on the
                // client's connection is not a request head.
                match closing || !body_sent {
                    true => Next::Close,
                    false => Next::KeepAlive,
                }
            }
            (Err(Cut::Client), _) => {
                ex.w.metrics
                    .count_client_fault(ClientFault::AbortedResponse);
                Next::Close
            }
            (Err(Cut::Upstream), _) => Next::Close,
            (Err(Cut::Idle), _) => {
                // Cut truthfully: the client sees a short body and the close.
                tracing::debug!(request_id = ?id, timeout = ?body_idle, "body relay idle; cut");
                ex.w.metrics.body_idle_timeouts.fetch_add(1, Relaxed);
                Next::Close
            }
        }
    }
}

/// How a gateway or upstream answer ends: closing, or kept alive (said explicitly to an
/// HTTP/1.0 client).
fn reply_for(closing: bool, asked: Asked) -> Reply {
    match (closing, asked.http10) {
        (true, _) => Reply::Close,
        (false, true) => Reply::KeepAlive10,
        (false, false) => Reply::KeepAlive,
    }
}
