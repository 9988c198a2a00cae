//! The request path: route → split → balance → upstream, with one table from failure to
//! response. [`handle`] never fails; [`handle_inner`] uses `?` and classified errors.

mod body;
mod client;
mod error;
mod h1;
mod h2guard;
mod headers;
pub mod proxy_protocol;
mod redirect;
mod retry;
mod server;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use http::{HeaderValue, Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

pub use body::{BodyWatch, RequestBody, ResponseBody};
pub use client::{PoolReturn, SendError, Upstreams};
pub use error::{respond, ClientFault, EndpointFault, Fault, ProxyError};
pub use retry::{RetryBudget, RetryReason};
pub use server::{bind_listener, run_worker, stopped, ListenerMode, WorkerSet};

/// The HTTP/1.1 engine's head parsing and writing, for the criterion benches
/// (`benches/h1_heads.rs`). Not a stable API.
#[doc(hidden)]
pub mod bench {
    pub use super::h1::forward::{write_upstream_head, Additions};
    pub use super::h1::head::{parse_request, Field, RequestHead};
    pub use super::h1::response::ResponseHead;
}

/// A 64-hex-digit random token (admin API secrets).
pub fn new_token<R: Rng + ?Sized>(rng: &mut R) -> String {
    let a = headers::new_request_id(rng);
    let b = headers::new_request_id(rng);
    format!("{}{}", a.to_str().unwrap_or(""), b.to_str().unwrap_or(""))
}

use crate::balance::{any_usable, nanos_at, now_nanos, observe_latency};
use crate::config::{PathMatch, UpstreamProtocol};
use crate::health::{record_outcome, Outcome};
use crate::metrics::Registry;
use crate::policy::Gate;
use crate::route::rewrite_path;
use crate::snapshot::{RouteRuntime, ServiceRuntime, Snapshot, SnapshotHandle};
use crate::split::Choice;

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_entropy());
}

/// Runs `f` with this thread's RNG.
pub fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|r| f(&mut r.borrow_mut()))
}

/// What one worker thread shares between its connections.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Worker index (selects the metrics shard).
    pub id: usize,
    /// The routing snapshot.
    pub snapshot: SnapshotHandle,
    /// Metrics registry.
    pub metrics: Arc<Registry>,
    /// This worker's upstream pool.
    pub upstreams: Upstreams,
    /// Fraction of requests written to the access log.
    pub access_log_sample: f64,
}

/// Facts about the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// The address the client connected to: the `Host` an HTTP/1.0 request without one is
    /// forwarded with.
    pub local: SocketAddr,
    /// True when the client connected over TLS.
    pub tls: bool,
}

/// The per-request policies that cost something, read from the snapshot's `[gateway]` table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policies {
    /// Generate or propagate `x-request-id` and echo it.
    pub request_id: bool,
    /// Set `X-Forwarded-For`, `-Proto` and `-Host`.
    pub forwarded_headers: bool,
    /// Record latency histograms (counters are always kept).
    pub latency_histograms: bool,
}

impl Policies {
    pub(crate) fn of(snap: &Snapshot) -> Self {
        let g = &snap.config.gateway;
        Self {
            request_id: g.request_id,
            forwarded_headers: g.forwarded_headers,
            latency_histograms: g.latency_histograms,
        }
    }
}

/// Which route and backend a request reached, for metrics.
#[derive(Debug, Default)]
pub(crate) struct Reached {
    route: Option<usize>,
    backend: Option<usize>,
    /// When the upstream's response head arrived (saves a clock read for the latency).
    answered: Option<Instant>,
    /// The endpoint the last attempt went to (the access log's `meshgate.endpoint`).
    endpoint: Option<SocketAddr>,
    /// The backend's in-flight gauge was raised (a policy or body-limit refusal answers after
    /// the backend is chosen but before that: its finish must not lower the gauge).
    started: bool,
    /// Headers the route's policies put on the answer, whoever makes it.
    policy: crate::policy::ResponseHeaders,
}

/// What the access log needs from the request, captured only when the log samples requests.
#[derive(Debug)]
pub(crate) struct LogLine {
    method: http::Method,
    path: String,
    version: http::Version,
}

impl LogLine {
    pub(crate) fn capture<B>(w: &Worker, req: &Request<B>) -> Option<Self> {
        (w.access_log_sample > 0.0).then(|| Self {
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            version: req.version(),
        })
    }
}

/// Records a finished request: metrics (and the sampled access log line).
#[allow(clippy::too_many_arguments)] // each is one fact of the request; a struct would only rename them
pub(crate) fn finish(
    w: &Worker,
    snap: &Snapshot,
    conn: &ConnInfo,
    reached: &Reached,
    start: Instant,
    status: u16,
    request_id: Option<&HeaderValue>,
    log: Option<LogLine>,
) {
    let timed = Policies::of(snap).latency_histograms || log.is_some();
    let latency = if timed {
        Some(
            reached
                .answered
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(start),
        )
    } else {
        None
    };
    let latency_hist = latency.filter(|_| Policies::of(snap).latency_histograms);
    match (reached.route, reached.backend) {
        (Some(r), Some(b)) if reached.started => snap.routes[r].backends[b]
            .metrics
            .shard(w.id)
            .finish(status, latency_hist),
        (Some(r), Some(b)) => snap.routes[r].backends[b]
            .metrics
            .shard(w.id)
            .record(status, latency_hist),
        (Some(r), None) => snap.routes[r]
            .unrouted
            .shard(w.id)
            .record(status, latency_hist),
        _ => w.metrics.unmatched.shard(w.id).record(status, latency_hist),
    }
    if let (Some(l), Some(latency)) = (log, latency) {
        if with_rng(|rng| rng.gen_bool(w.access_log_sample.clamp(0.0, 1.0))) {
            access_log(snap, conn, reached, status, request_id, &l, latency);
        }
    }
}

/// Writes one access-log event. Its field names are Elastic Common Schema names (the JSON
/// format writes it as an ECS document: `telemetry::AccessOrJson`); they are a stable interface
/// (docs/operations.md, "Access log"): add fields, never rename or drop one.
fn access_log(
    snap: &Snapshot,
    conn: &ConnInfo,
    reached: &Reached,
    status: u16,
    request_id: Option<&HeaderValue>,
    l: &LogLine,
    latency: std::time::Duration,
) {
    let route = reached.route.map(|r| &snap.routes[r]);
    let backend = route
        .zip(reached.backend)
        .map(|(r, b)| r.backends[b].name.as_str());
    let version = match l.version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    };
    tracing::info!(
        target: "access",
        message = %format_args!("{} {} {status}", l.method, l.path),
        http.request.method = %l.method,
        url.path = %l.path,
        http.version = version,
        http.response.status_code = u64::from(status),
        event.duration = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX),
        event.outcome = if status < 400 { "success" } else { "failure" },
        client.ip = %conn.peer.ip(),
        client.port = u64::from(conn.peer.port()),
        http.request.id = request_id.and_then(|v| v.to_str().ok()),
        meshgate.route = route.map(|r| r.config.name.as_str()),
        meshgate.backend = backend,
        meshgate.endpoint = reached.endpoint.map(tracing::field::display),
    );
}

/// Proxies one request (HTTP/2 clients, and HTTP/1 requests for HTTP/2 upstreams). Never
/// fails: gateway-made errors become JSON responses.
pub async fn handle(
    mut req: Request<Incoming>,
    w: &Worker,
    conn: &ConnInfo,
) -> Response<ResponseBody> {
    let start = Instant::now();
    let snap = w.snapshot.load_full();
    let request_id = Policies::of(&snap)
        .request_id
        .then(|| with_rng(|rng| headers::request_id(req.headers_mut(), rng)));
    let log = LogLine::capture(w, &req);
    let mut reached = Reached::default();
    // hyper drops this future when the client resets the stream or the connection.
    let cancelled = Cancelled::arm(&w.metrics);
    let inner = handle_inner(
        req,
        &snap,
        w,
        conn,
        start,
        request_id.as_ref(),
        &mut reached,
    );
    let mut resp = match inner.await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, code = e.code(), request_id = ?request_id, "gateway error");
            w.metrics.count_error(&e);
            respond(&e, request_id.as_ref())
        }
    };
    cancelled.disarm();
    crate::policy::add_to(resp.headers_mut(), &reached.policy);
    // The id the gateway logs is the one the client sees, even if the upstream sent another.
    if let Some(id) = &request_id {
        resp.headers_mut().insert(&headers::REQUEST_ID, id.clone());
    }
    let status = resp.status().as_u16();
    finish(
        w,
        &snap,
        conn,
        &reached,
        start,
        status,
        request_id.as_ref(),
        log,
    );
    resp
}

/// A route policy's answer: the gateway's JSON error when it has a code, else the body it
/// carries (an auth service's) or none; the policy's headers on it either way.
pub(crate) fn policy_answer(
    a: crate::policy::Answer,
    request_id: Option<&HeaderValue>,
) -> Response<ResponseBody> {
    let mut resp = match a.code {
        Some(code) => respond(
            &ProxyError::Refused {
                status: a.status,
                code,
            },
            request_id,
        ),
        None => {
            let body = a.body.map_or_else(ResponseBody::empty, ResponseBody::full);
            let mut r = Response::new(body);
            *r.status_mut() = a.status;
            r
        }
    };
    crate::policy::add_to(resp.headers_mut(), &a.headers);
    resp
}

/// Matches the route and chooses the backend; `reached` says how far the request got.
pub(crate) fn select<B>(
    snap: &Snapshot,
    req: &Request<B>,
    start: Instant,
    reached: &mut Reached,
) -> Result<(usize, usize), ProxyError> {
    let Some(ri) = snap.table.match_request(req) else {
        let host = crate::route::host_of(req)
            .map(|h| h.into_owned())
            .unwrap_or_default();
        return Err(ProxyError::NoRoute {
            host,
            path: req.uri().path().to_string(),
        });
    };
    reached.route = Some(ri);
    let route = &snap.routes[ri];
    // Clock reads are a measurable share of the per-request cost: the first attempt reuses the
    // request's start time, and one read when the upstream answers serves every later use.
    let now = nanos_at(start);
    let usable = |b: usize| any_usable(&snap.services[route.backends[b].service].endpoints, now);
    let bi = match with_rng(|rng| route.split.choose(req, usable, rng)) {
        Choice::Backend(b) => b,
        Choice::Empty(_) | Choice::Nothing => {
            return Err(ProxyError::NoHealthyEndpoints {
                route: route.config.name.clone(),
            })
        }
    };
    reached.backend = Some(bi);
    Ok((ri, bi))
}

/// An upstream answer whose status decides the endpoint's outcome.
pub(crate) trait Answer {
    fn status(&self) -> u16;
}

impl<B> Answer for Response<B> {
    fn status(&self) -> u16 {
        Response::status(self).as_u16()
    }
}

impl<A: Answer, R> Answer for (A, R) {
    fn status(&self) -> u16 {
        self.0.status()
    }
}

/// One request's way to a service: what [`attempts`] needs besides the request itself.
pub(crate) struct Call<'a> {
    pub w: &'a Worker,
    pub route: &'a RouteRuntime,
    pub svc: &'a ServiceRuntime,
    /// When the request arrived (the first attempt's send time, the deadline's base).
    pub start: Instant,
    /// Method and path, for the failure notes an ejection reports.
    pub method: &'a http::Method,
    pub path: &'a str,
    pub request_id: Option<&'a HeaderValue>,
    /// Index + 1 of the endpoint the last attempt went to (0: none yet).
    pub tried: std::sync::atomic::AtomicUsize,
}

impl Call<'_> {
    /// The endpoint the last attempt went to.
    pub(crate) fn endpoint(&self) -> Option<SocketAddr> {
        let i = self.tried.load(Relaxed).checked_sub(1)?;
        Some(self.svc.endpoints.get(i)?.endpoint.addr)
    }

    /// Feeds outlier detection with an outcome of endpoint `ei`; `why` is the failure's text.
    fn record(&self, ei: usize, outcome: Outcome, now: u64, why: &dyn std::fmt::Display) {
        let note = || {
            let id = self.request_id.and_then(|v| v.to_str().ok()).unwrap_or("-");
            format!("{} {} (request {id}): {why}", self.method, self.path)
        };
        let svc = self.svc;
        if let Some(e) = record_outcome(&svc.endpoints, ei, outcome, &svc.config.outlier, now, note)
        {
            self.w.metrics.count_ejection(&svc.config.name, e);
        }
    }

    /// Counts `e` against endpoint `ei` when, and only when, it is the endpoint's own fault.
    fn blame(&self, ei: usize, e: &ProxyError, now: u64) {
        if let Fault::Endpoint(kind) = e.fault() {
            self.record(ei, Outcome::Fault(kind), now, e);
        }
    }
}

/// Sends `req` to the service's endpoints: balance, retry on another endpoint what was never
/// sent or may be sent again (within the route's `retries` and retry budget), feed outlier
/// detection and latency estimates, all within the route's timeout. `send` carries one attempt
/// over whatever transport the caller uses, with the route's per-try timeout.
/// `deadline` resolves when the route's timeout (from `start`) has passed; `client_slow` says,
/// at that moment, whether the attempt was waiting for the client's body rather than for the
/// upstream (then the client gets a 408 and the endpoint is not blamed).
///
/// Only the endpoint's own faults ([`Fault::Endpoint`]) reach outlier detection; a dropped
/// attempt (the client went away) releases its in-flight slot and records no latency.
pub(crate) async fn attempts<Q, A, F, Fut>(
    call: &Call<'_>,
    mut req: Q,
    mut send: F,
    deadline: impl std::future::Future<Output = ()>,
    client_slow: impl Fn() -> bool,
) -> Result<(A, Instant), ProxyError>
where
    A: Answer,
    F: FnMut(SocketAddr, Q, Option<std::time::Duration>) -> Fut,
    Fut: std::future::Future<Output = Result<A, SendError<Q>>>,
{
    let (w, route, svc, start) = (call.w, call.route, call.svc, call.start);
    let _slot = match route.config.max_in_flight {
        Some(max) => Some(
            Slot::take(&route.load, max)
                .ok_or_else(|| ProxyError::Overloaded(format!("route {}", route.config.name)))?,
        ),
        None => None,
    };
    let timeout = route.config.timeout;
    let policy = &route.config.retry;
    let second = |t: Instant| nanos_at(t) / 1_000_000_000;
    if route.config.retries > 0 {
        route.budget.deposit(second(start));
    }
    // The endpoint being tried, so a timeout (which drops the attempt) can be blamed on it.
    let trying = std::sync::atomic::AtomicUsize::new(usize::MAX);
    let attempt = async {
        let mut exclude = None;
        let mut attempts_left = route.config.retries;
        let mut last_error = None;
        loop {
            let sent_at = if exclude.is_none() {
                start
            } else {
                Instant::now()
            };
            let now = nanos_at(sent_at);
            let limit = svc.config.max_in_flight_per_endpoint;
            let picked = with_rng(|rng| {
                svc.balancer
                    .pick_within(&svc.endpoints, now, exclude, limit, rng)
            });
            let Some(ei) = picked else {
                // A retry that finds no other endpoint reports why the first attempt failed.
                if let Some(e) = last_error {
                    return Err(e);
                }
                let healthy = svc.endpoints.iter().any(|e| !e.stats.is_ejected(now));
                return Err(match (limit, healthy) {
                    (Some(_), true) => {
                        ProxyError::Overloaded(format!("every endpoint of {}", svc.config.name))
                    }
                    _ => ProxyError::NoHealthyEndpoints {
                        route: route.config.name.clone(),
                    },
                });
            };
            let ep = &svc.endpoints[ei];
            let in_flight = InFlight::start(&ep.stats);
            ep.stats.requests.fetch_add(1, Relaxed);
            trying.store(ei, Relaxed);
            call.tried.store(ei + 1, Relaxed);
            let result = send(ep.endpoint.addr, req, policy.try_timeout).await;
            drop(in_flight);
            trying.store(usize::MAX, Relaxed);
            let answered = Instant::now();
            let now = nanos_at(answered);
            // Takes the request back for another endpoint, or says why it cannot be.
            let mut retry = |reason: RetryReason, e: ProxyError, r: Box<Q>| {
                if attempts_left == 0 {
                    return Err(e);
                }
                if !route.budget.withdraw(policy, second(answered)) {
                    w.metrics.retries_refused.fetch_add(1, Relaxed);
                    tracing::debug!(error = %e, route = %route.config.name, "retry budget spent");
                    return Err(e);
                }
                tracing::debug!(error = %e, reason = reason.as_str(), "retrying on another endpoint");
                attempts_left -= 1;
                w.metrics.count_retry(reason);
                exclude = Some(ei);
                last_error = Some(e);
                Ok(*r)
            };
            match result {
                Ok(answer) => {
                    observe_latency(&ep.stats, now, answered.saturating_duration_since(sent_at));
                    let status = answer.status();
                    if status >= 500 {
                        let why = format!("answered {status}");
                        call.record(ei, Outcome::ServerError, now, &why);
                    } else {
                        call.record(ei, Outcome::Success, now, &"");
                    }
                    return Ok((answer, answered));
                }
                Err(SendError::NotSent(r, e)) if e.is_retryable() => {
                    call.blame(ei, &e, now);
                    req = retry(RetryReason::Connect, e, r)?;
                }
                Err(SendError::Replayable(r, e)) => {
                    call.blame(ei, &e, now);
                    let reason = match e {
                        ProxyError::UpstreamTimeout(_) => RetryReason::TryTimeout,
                        _ => RetryReason::Reset,
                    };
                    req = retry(reason, e, r)?;
                }
                Err(SendError::NotSent(_, e)) => {
                    call.blame(ei, &e, now);
                    return Err(e);
                }
                Err(SendError::Failed(e)) => {
                    call.blame(ei, &e, now);
                    return Err(e);
                }
            }
        }
    };
    tokio::select! {
        biased;
        r = attempt => r,
        () = deadline => {
            if client_slow() {
                return Err(ProxyError::ClientTimeout(timeout));
            }
            let e = ProxyError::UpstreamTimeout(timeout);
            let ei = trying.load(Relaxed);
            if ei != usize::MAX {
                call.blame(ei, &e, now_nanos());
            }
            Err(e)
        }
    }
}

async fn handle_inner(
    req: Request<Incoming>,
    snap: &Arc<Snapshot>,
    w: &Worker,
    conn: &ConnInfo,
    start: Instant,
    request_id: Option<&HeaderValue>,
    reached: &mut Reached,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let (body, watch) = RequestBody::watched(body);
    let mut req = Request::from_parts(parts, body);
    let (ri, bi) = select(snap, &req, start, reached)?;
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
        let view = crate::policy::RequestView {
            method: req.method(),
            uri: req.uri(),
            client: conn.peer.ip(),
            tls: conn.tls,
            headers: req.headers(),
        };
        match chain.apply(&view, w, snap).await {
            Gate::Pass(h, e) => (reached.policy, edits) = (h, e),
            Gate::Answer(a) => return Ok(policy_answer(a, request_id)),
        }
    }
    route.backends[bi].metrics.shard(w.id).start();
    reached.started = true;
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
        Policies::of(snap),
        trusted,
    )?;
    edits.apply(req.headers_mut());

    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let call = Call {
        w,
        route,
        svc,
        start,
        method: &method,
        path: &path,
        request_id,
        tried: Default::default(),
    };
    let watch = watch.as_deref();
    // A request without a body whose method allows it can be sent again after a per-try
    // timeout or a close before the response head: rebuilt from a copy of its head.
    let replay = (!upgrade
        && req.body().is_end_stream()
        && (req.method().is_idempotent() || route.config.retry.non_idempotent))
        .then(|| head_copy(&req));
    let replay = replay.as_ref();
    let send = |addr, req, try_timeout: Option<std::time::Duration>| async move {
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
        let sent = match (sent, replay) {
            (Err(SendError::Failed(e)), Some(head)) if matches!(e.fault(), Fault::Endpoint(_)) => {
                Err(SendError::Replayable(Box::new(rebuild(head)), e))
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
    let deadline = tokio::time::sleep_until(start + route.config.timeout);
    let client_slow = || watch.is_some_and(BodyWatch::waiting);
    let sent = attempts(&call, req, send, deadline, client_slow).await;
    reached.endpoint = call.endpoint();
    let ((mut resp, ret), answered) = sent?;
    reached.answered = Some(answered);
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
    }))
}

/// A place among a route's `max_in_flight` requests, held until dropped (the attempts end, or
/// the client went away).
struct Slot<'a>(&'a std::sync::atomic::AtomicU32);

impl<'a> Slot<'a> {
    fn take(load: &'a std::sync::atomic::AtomicU32, max: u32) -> Option<Self> {
        let taken = load
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok();
        taken.then_some(Self(load))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Counts a request as outstanding on an endpoint until dropped, so a timeout or a client that
/// goes away (both drop the attempt mid-way) never leaves the count high.
struct InFlight<'a>(&'a crate::balance::EndpointStats);

impl<'a> InFlight<'a> {
    fn start(stats: &'a crate::balance::EndpointStats) -> Self {
        stats.in_flight.fetch_add(1, Relaxed);
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
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
