//! The hyper path (HTTP/2 clients, h2c prior knowledge and h2 over ALPN, and HTTP/1.x
//! connections handed over for HTTP/2 or TLS upstreams): the same phases as the engine's, on
//! hyper's request and response types, through the same [`Exchange`] context.

use http::{HeaderValue, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::attempts::{attempts, Slot};
use super::body::{BodyIdle, ResponseBody};
use super::error::{respond, ClientFault, Fault, ProxyError, SendError};
use super::exchange::{policy_answer, Exchange, Policies};
use super::headers;
use super::request_body::{BodyWatch, RequestBody};
use super::trace;
use super::worker::{with_rng, ConnInfo, Worker};
use crate::config::{PathMatch, UpstreamProtocol};
use crate::metrics::Registry;
use crate::policy::Gate;
use crate::route::rewrite_path;
use crate::snapshot::RouteRuntime;

/// Proxies one request (HTTP/2 clients, and HTTP/1 requests for HTTP/2 upstreams). Never
/// fails: gateway-made errors become JSON responses.
pub async fn handle(
    mut req: Request<Incoming>,
    w: &Worker,
    conn: &ConnInfo,
) -> Response<ResponseBody> {
    let start = Instant::now();
    let snap = w.snapshot.load_full();
    let mut ex = Exchange::begin(w, conn, &snap, start);
    if ex.policies().request_id {
        ex.request_id = Some(with_rng(|rng| headers::request_id(req.headers_mut(), rng)));
    }
    ex.capture_log(&req);
    if w.tracer.is_some() {
        let values = req.headers().get_all(&trace::TRACEPARENT).iter();
        let incoming = trace::Incoming::from_values(values.map(HeaderValue::as_bytes));
        let host = req
            .headers()
            .get(http::header::HOST)
            .map(HeaderValue::as_bytes);
        ex.start_trace(incoming, &req, host);
    }
    // hyper drops this future when the client resets the stream or the connection.
    let cancelled = Cancelled::arm(&w.metrics);
    let mut resp = match handle_inner(req, &mut ex).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, code = e.code(), request_id = ?ex.request_id, "gateway error");
            w.metrics.count_error(&e);
            if let Some(s) = ex.trace.as_deref_mut().and_then(|t| t.span.as_mut()) {
                s.error = Some(e.code());
            }
            respond(&e, ex.request_id.as_ref(), ex.trace_id()).map(ResponseBody::full)
        }
    };
    cancelled.disarm();
    crate::policy::add_to(resp.headers_mut(), &ex.policy);
    // The id the gateway logs is the one the client sees, even if the upstream sent another.
    if let Some(id) = &ex.request_id {
        resp.headers_mut().insert(&headers::REQUEST_ID, id.clone());
    }
    ex.finish(resp.status().as_u16());
    resp
}

/// The phases between the request head and the response head; `ex` says how far it got.
async fn handle_inner(
    req: Request<Incoming>,
    ex: &mut Exchange<'_>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (w, conn, snap) = (ex.w, ex.conn, ex.snap);
    // Load shedding (HTTP/2 streams hold their place until the response head).
    let _admitted = match snap.config.gateway.max_in_flight {
        None => None,
        Some(max) => Some(Slot::take(&w.metrics.in_flight, max).ok_or_else(|| {
            w.metrics
                .shed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ProxyError::Overloaded("the gateway".into())
        })?),
    };
    let (parts, body) = req.into_parts();
    let (body, watch) = RequestBody::watched(body);
    let mut req = Request::from_parts(parts, body);
    let (ri, bi) = ex.select(&req)?;
    let route = &snap.routes[ri];
    let max_body = route.config.max_body;
    if let Some(max) = max_body {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(ProxyError::BodyTooLarge(max));
        }
        req = req.map(|b| b.limit(Some(max)));
    }
    let mut edits = crate::policy::UpstreamEdits::default();
    if let Some(chain) = &route.policies {
        let xff = req.headers().get_all(&headers::X_FORWARDED_FOR).iter();
        let view = crate::policy::RequestView {
            method: req.method(),
            uri: req.uri(),
            client: crate::policy::client_ip(
                &snap.config.gateway,
                conn.peer.ip(),
                xff.map(HeaderValue::as_bytes),
            ),
            tls: conn.tls,
            headers: req.headers(),
        };
        match chain.apply(&view, w, snap).await {
            Gate::Pass(h, e) => (ex.policy, edits) = (h, e),
            Gate::Answer(mut a) => {
                ex.decided = a.by.take();
                let resp = policy_answer(a, ex.request_id.as_ref(), ex.trace_id());
                return Ok(resp.map(ResponseBody::full));
            }
        }
    }
    route.backends[bi].metrics.shard(w.id).start();
    ex.started = true;
    let svc = &snap.services[route.backends[bi].service];

    let upgrade = headers::is_upgrade(req.headers()) && req.version() == http::Version::HTTP_11;
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    // Protocol switches always go over HTTP/1.1, whatever the service's protocol.
    let proto = if upgrade {
        UpstreamProtocol::Http1
    } else {
        svc.config.protocol
    };
    let trusted = snap.config.gateway.trusts(conn.peer.ip());
    prepare(
        &mut req,
        route,
        conn,
        proto,
        upgrade,
        ex.policies(),
        trusted,
    )?;
    edits.apply(req.headers_mut());
    if let Some(t) = ex.trace.as_deref() {
        let h = req.headers_mut();
        if let Ok(v) = HeaderValue::from_bytes(t.ctx.traceparent()) {
            h.insert(trace::TRACEPARENT.clone(), v);
        }
        if t.ctx.drop_tracestate {
            h.remove(&trace::TRACESTATE);
        }
    }

    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let call = ex.call((route, svc), &method, &path);
    let watch = watch.as_deref();
    // A request without a body whose method allows it can be sent again after a per-try
    // timeout or a close before the response head: rebuilt from a copy of its head.
    let replay = (!upgrade
        && req.body().is_end_stream()
        && (req.method().is_idempotent() || route.config.retry.non_idempotent))
        .then(|| head_copy(&req));
    let replay = replay.as_ref();
    let retry_on = match route.config.retries {
        0 => Default::default(),
        _ => route.config.retry.on_status,
    };
    let send_once = |addr, req, try_timeout: Option<std::time::Duration>| async move {
        let sent = if upgrade {
            w.upstreams
                .send_upgrade(addr, &svc.config, svc.tls.as_deref(), req)
                .await
                .map(|r| (r, None))
                .map_err(SendError::Failed)
        } else {
            let once = w.upstreams.send(addr, &svc.config, svc.tls.as_deref(), req);
            match try_timeout {
                None => once.await,
                Some(t) => tokio::time::timeout(t, once)
                    .await
                    .unwrap_or(Err(SendError::Failed(ProxyError::UpstreamTimeout(t)))),
            }
        };
        let sent = match (sent.map_err(SendError::widen), replay) {
            (Err(SendError::Failed(e)), Some(head)) if matches!(e.fault(), Fault::Endpoint(_)) => {
                Err(SendError::Replayable(Box::new(rebuild(head)), e))
            }
            // An answer the route retries on, to a request that can be sent again.
            (Ok(answer), Some(head)) if retry_on.contains(answer.0.status().as_u16()) => {
                Err(SendError::Status(Box::new(rebuild(head)), answer))
            }
            (other, _) => other,
        };
        // hyper reports a body the client broke as the upstream exchange failing (or, when the
        // upstream connection's task died of it before sending, as a cancelled connection):
        // neither is the endpoint's doing, and neither may be retried.
        match sent {
            Err(SendError::Failed(_) | SendError::NotSent(..))
                if watch.is_some_and(BodyWatch::too_large) =>
            {
                Err(SendError::Failed(ProxyError::BodyTooLarge(
                    max_body.unwrap_or(0),
                )))
            }
            Err(SendError::Failed(_) | SendError::NotSent(..))
                if watch.is_some_and(BodyWatch::failed) =>
            {
                Err(SendError::Failed(ProxyError::ClientClosed(
                    "request body aborted",
                )))
            }
            other => other,
        }
    };
    // Attempts, for the span's retry count.
    let mut sends = 0u32;
    let send = |addr, req, try_timeout| {
        sends += 1;
        send_once(addr, req, try_timeout)
    };
    let deadline = tokio::time::sleep_until(ex.start + route.config.timeout);
    let client_slow = || watch.is_some_and(BodyWatch::waiting);
    let sent = attempts(&call, req, send, deadline, client_slow).await;
    let endpoint = call.endpoint();
    ex.endpoint = endpoint;
    ex.attempts(sends);
    let ((mut resp, ret), answered) = sent?;
    ex.answered = Some(answered);
    if let (Some(down), true) = (
        downstream_upgrade,
        resp.status() == http::StatusCode::SWITCHING_PROTOCOLS,
    ) {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(splice(down, up));
        headers::remove_hop_by_hop(resp.headers_mut(), true);
        return Ok(resp.map(|_| ResponseBody::empty()));
    }
    headers::remove_hop_by_hop(resp.headers_mut(), false);
    // We are the client's server: speak our own version, not the upstream's (an HTTP/1.0
    // upstream must not turn the client's keep-alive connection into HTTP/1.0).
    *resp.version_mut() = http::Version::HTTP_11;
    Ok(resp.map(|body| ResponseBody::Upstream {
        body,
        ret,
        client_gone: Some(w.metrics.clone()),
        idle: BodyIdle::new(route.config.body_idle_timeout),
    }))
}

/// A copy of a bodiless request's head, to send it again.
fn head_copy<B>(req: &Request<B>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// The request [`head_copy`] kept, with an empty body.
fn rebuild(head: &Request<()>) -> Request<RequestBody> {
    let mut req = Request::new(RequestBody::empty());
    *req.method_mut() = head.method().clone();
    *req.uri_mut() = head.uri().clone();
    *req.version_mut() = head.version();
    *req.headers_mut() = head.headers().clone();
    req
}

/// Counts a hyper-path request whose client went away before the answer (the future was
/// dropped before [`Cancelled::disarm`]).
struct Cancelled<'a>(Option<&'a Registry>);

impl<'a> Cancelled<'a> {
    fn arm(metrics: &'a Registry) -> Self {
        Self(Some(metrics))
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.count_client_fault(ClientFault::Cancelled);
        }
    }
}

/// Copies bytes both ways between the two sides of a protocol switch until either closes.
async fn splice(down: hyper::upgrade::OnUpgrade, up: hyper::upgrade::OnUpgrade) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "protocol switch failed");
            return;
        }
    };
    let mut down = hyper_util::rt::TokioIo::new(down);
    let mut up = hyper_util::rt::TokioIo::new(up);
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// Rewrites the request for the upstream: path rewrite, origin-form (HTTP/1.1) or authority-form
/// (HTTP/2) URI, `Host`, hop-by-hop removal and forwarding headers.
pub(crate) fn prepare<B>(
    req: &mut Request<B>,
    route: &RouteRuntime,
    conn: &ConnInfo,
    proto: UpstreamProtocol,
    upgrade: bool,
    policies: Policies,
    trusted: bool,
) -> Result<(), ProxyError> {
    let host = headers::host_value(req.headers(), req.uri());
    let uri = req.uri();
    let path = match (&route.config.rewrite, &route.config.path) {
        (Some(rw), PathMatch::Prefix(prefix)) => {
            Some(rewrite_path(rw, prefix, uri.path()).into_owned())
        }
        _ => None,
    };
    let new_uri = match (proto, path) {
        (UpstreamProtocol::Http1, None) if uri.authority().is_none() => None,
        (proto, path) => {
            let p = path.as_deref().unwrap_or(uri.path());
            let pq = match uri.query() {
                Some(q) => format!("{p}?{q}"),
                None => p.to_string(),
            };
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(
                pq.parse()
                    .map_err(|_| ProxyError::BadRequest("path cannot be rewritten"))?,
            );
            if proto == UpstreamProtocol::H2c {
                parts.scheme = Some(http::uri::Scheme::HTTP);
                let authority = host
                    .as_ref()
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost");
                parts.authority = Some(
                    authority
                        .parse()
                        .map_err(|_| ProxyError::BadRequest("invalid host"))?,
                );
            }
            Some(
                Uri::from_parts(parts)
                    .map_err(|_| ProxyError::BadRequest("invalid request target"))?,
            )
        }
    };
    if let Some(u) = new_uri {
        *req.uri_mut() = u;
    }
    let h = req.headers_mut();
    headers::remove_hop_by_hop(h, upgrade);
    if policies.forwarded_headers {
        headers::add_forwarded(h, conn.peer.ip(), conn.tls, host.as_ref(), trusted);
    } else if !trusted {
        headers::remove_forwarded(h);
    }
    match proto {
        UpstreamProtocol::Http1 => {
            let http10 = req.version() == http::Version::HTTP_10;
            *req.version_mut() = http::Version::HTTP_11;
            let host = match host {
                Some(h) => h,
                // RFC 9112 §3.2: HTTP/1.1 requires `Host`; an HTTP/1.0 request without one is
                // forwarded naming the address it was sent to, as the client meant.
                None if http10 => HeaderValue::from_str(&conn.local.to_string())
                    .map_err(|_| ProxyError::BadRequest("missing Host header"))?,
                None => return Err(ProxyError::BadRequest("missing Host header")),
            };
            // One `Host` already (the usual case) is left as it is: re-inserting costs a lookup.
            let h = req.headers_mut();
            let mut hosts = h.get_all(http::header::HOST).iter();
            if hosts.next().is_none() || hosts.next().is_some() {
                h.insert(http::header::HOST, host);
            }
        }
        UpstreamProtocol::H2c => {
            *req.version_mut() = http::Version::HTTP_2;
            req.headers_mut().remove(http::header::HOST);
        }
    }
    Ok(())
}
