//! One request's context, carried through the phases of DESIGN §2 by both front ends (the
//! HTTP/1.1 engine and the hyper path): the snapshot it started on, who sent it, its id, how far
//! it got (route, backend, when the upstream answered), the headers the route's policies put on
//! the answer, and the access-log facts. The phases that are the same for both front ends are
//! methods here: [`Exchange::select`] (route → split) and [`Exchange::finish`] (metrics shard +
//! access log), with [`Exchange::fail`] for gateway-made answers.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use rand::Rng;
use tokio::time::Instant;

use super::attempts::Call;
use super::error::{respond, ProxyError};
use super::trace::{Incoming, SpanFacts, Trace, TraceContext};
use super::worker::{with_rng, ConnInfo, Worker};
use crate::balance::{any_usable_within, nanos_at};
use crate::policy::ResponseHeaders;
use crate::snapshot::{RouteRuntime, ServiceRuntime, Snapshot};
use crate::split::Choice;

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

/// One request on its way through the phases. Built when its head has been read
/// ([`Exchange::begin`]), it outlives every phase and ends in [`Exchange::finish`].
#[derive(Debug)]
pub(crate) struct Exchange<'a> {
    /// The worker serving it.
    pub w: &'a Worker,
    /// The client connection.
    pub conn: &'a ConnInfo,
    /// The snapshot loaded once when the request began; every phase reads this one.
    pub snap: &'a Snapshot,
    /// When its head had been read (the deadline's base, the latency's start).
    pub start: Instant,
    /// `start` in [`nanos_at`]'s count, read once (balancers and outlier detection use it).
    pub start_nanos: u64,
    /// Its `x-request-id` (when the policy is on): the client's, or one the gateway made.
    pub request_id: Option<HeaderValue>,
    /// The route it matched (an index into `snap.routes`).
    pub route: Option<usize>,
    /// The backend the split chose (an index into the route's backends).
    pub backend: Option<usize>,
    /// When the upstream's response head arrived (saves a clock read for the latency).
    pub answered: Option<Instant>,
    /// The endpoint the last attempt went to (the access log's `meshgate.endpoint`).
    pub endpoint: Option<SocketAddr>,
    /// The backend's in-flight gauge was raised (a policy or body-limit refusal answers after
    /// the backend is chosen but before that: its finish must not lower the gauge).
    pub started: bool,
    /// Headers the route's policies put on the answer, whoever makes it.
    pub policy: ResponseHeaders,
    /// The route policy that answered instead of the upstream, and why (the access log's
    /// `meshgate.policy` and `meshgate.policy_reason`); only set on routes with policies.
    pub decided: Option<crate::policy::Decided>,
    /// Its trace context (only with `[tracing]`; boxed: a request without one carries a null
    /// pointer, not the context).
    pub trace: Option<Box<Trace>>,
    /// What the access log needs, captured only when the log samples requests; taken by the
    /// first [`Exchange::finish`].
    log: Option<LogLine>,
}

/// What the access log needs from the request.
#[derive(Debug)]
struct LogLine {
    method: Method,
    path: String,
    version: http::Version,
}

// === impl Policies ===

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

// === impl Exchange ===

impl<'a> Exchange<'a> {
    /// A request whose head came at `start`, served on `snap` (loaded once by the caller).
    pub(crate) fn begin(
        w: &'a Worker,
        conn: &'a ConnInfo,
        snap: &'a Snapshot,
        start: Instant,
    ) -> Self {
        Self {
            w,
            conn,
            snap,
            start,
            start_nanos: nanos_at(start),
            request_id: None,
            route: None,
            backend: None,
            answered: None,
            endpoint: None,
            started: false,
            policy: ResponseHeaders::new(),
            decided: None,
            trace: None,
            log: None,
        }
    }

    /// Joins the trace the client's `traceparent` values name, or starts one (only with
    /// `[tracing]`: call it when `self.w.tracer` is set). A sampled request whose spans are
    /// exported also keeps what its span reports: method, path, `host` (the `Host` field or
    /// authority, port removed) and the client.
    pub(crate) fn start_trace<B>(
        &mut self,
        incoming: Incoming,
        req: &Request<B>,
        host: Option<&[u8]>,
    ) {
        let Some(tracer) = self.w.tracer.as_deref() else {
            return;
        };
        let ctx = with_rng(|rng| TraceContext::start(incoming, &tracer.sampler, rng));
        let span = (ctx.sampled && tracer.exports()).then(|| SpanFacts {
            start_unix_nanos: super::trace::unix_nanos(std::time::SystemTime::now()),
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            server_address: host
                .or_else(|| req.uri().host().map(str::as_bytes))
                .map(|h| String::from_utf8_lossy(super::trace::strip_port(h)).into_owned()),
            client: self.conn.peer,
            https: self.conn.tls,
            attempts: 0,
            error: None,
        });
        self.trace = Some(Box::new(Trace { ctx, span }));
    }

    /// The trace id (32 hex digits) when the request has a trace context.
    pub(crate) fn trace_id(&self) -> Option<&str> {
        self.trace.as_deref().map(|t| t.ctx.trace_id_hex())
    }

    /// Notes how many attempts went upstream (the span's `meshgate.retries` is one less).
    pub(crate) fn attempts(&mut self, n: u32) {
        if let Some(s) = self.trace.as_deref_mut().and_then(|t| t.span.as_mut()) {
            s.attempts = n;
        }
    }

    /// The `[gateway]` policies of its snapshot.
    pub(crate) fn policies(&self) -> Policies {
        Policies::of(self.snap)
    }

    /// Keeps the method and path for the access log, when it samples requests.
    pub(crate) fn capture_log<B>(&mut self, req: &Request<B>) {
        if self.w.access_log_sample > 0.0 {
            self.log = Some(LogLine {
                method: req.method().clone(),
                path: req.uri().path().to_string(),
                version: req.version(),
            });
        }
    }

    /// The route and split phases: matches the route and chooses the backend, and remembers
    /// both (`route`, `backend`) for the metrics whatever happens next.
    pub(crate) fn select<B>(&mut self, req: &Request<B>) -> Result<(usize, usize), ProxyError> {
        let snap = self.snap;
        let Some(ri) = snap.table.match_request(req) else {
            let host = crate::route::host_of(req)
                .map(|h| h.into_owned())
                .unwrap_or_default();
            return Err(ProxyError::NoRoute {
                host,
                path: req.uri().path().to_string(),
            });
        };
        self.route = Some(ri);
        let route = &snap.routes[ri];
        // Clock reads are a measurable share of the per-request cost: the first attempt reuses
        // the request's start time, and one read when the upstream answers serves every later
        // use.
        let now = self.start_nanos;
        let usable = |b: usize| {
            let svc = &snap.services[route.backends[b].service];
            any_usable_within(&svc.endpoints, now, svc.config.outlier.panic_threshold)
        };
        let bi = match with_rng(|rng| route.split.choose(req, usable, rng)) {
            Choice::Backend(b) => b,
            Choice::Empty(_) | Choice::Nothing => {
                return Err(ProxyError::NoHealthyEndpoints {
                    route: route.config.name.clone(),
                })
            }
        };
        self.backend = Some(bi);
        Ok((ri, bi))
    }

    /// What the attempts phase needs to send this request to `svc` on `route`.
    pub(crate) fn call<'c>(
        &'c self,
        (route, svc): (&'c RouteRuntime, &'c ServiceRuntime),
        method: &'c Method,
        path: &'c str,
    ) -> Call<'c> {
        Call {
            w: self.w,
            route,
            svc,
            start: self.start,
            start_nanos: self.start_nanos,
            method,
            path,
            request_id: self.request_id.as_ref(),
            tried: Default::default(),
        }
    }

    /// A gateway-made answer for `e`: logged at debug, counted when it is the client's fault,
    /// and recorded with its status.
    pub(crate) fn fail(&mut self, e: &ProxyError) {
        tracing::debug!(error = %e, code = e.code(), request_id = ?self.request_id, "gateway error");
        self.w.metrics.count_error(e);
        if let Some(s) = self.trace.as_deref_mut().and_then(|t| t.span.as_mut()) {
            s.error = Some(e.code());
        }
        self.finish(e.status().as_u16());
    }

    /// The last phase: records the answer's `status` in the metrics shard of the route and
    /// backend reached (or of the route's unrouted requests, or of unmatched requests), and
    /// writes the sampled access-log line. Call once per request.
    pub(crate) fn finish(&mut self, status: u16) {
        let (w, snap) = (self.w, self.snap);
        let histograms = self.policies().latency_histograms;
        let log = self.log.take();
        let span = self.trace.as_deref_mut().and_then(|t| t.span.take());
        let latency = (histograms || log.is_some() || span.is_some()).then(|| {
            self.answered
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(self.start)
        });
        let latency_hist = latency.filter(|_| histograms);
        match (self.route, self.backend) {
            (Some(r), Some(b)) if self.started => snap.routes[r].backends[b]
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
                self.access_log(status, &l, latency);
            }
        }
        if let (Some(facts), Some(latency)) = (span, latency) {
            self.export_span(facts, status, latency);
        }
    }

    /// Hands the request's span to the exporter's queue (never waits).
    fn export_span(&self, f: SpanFacts, status: u16, latency: std::time::Duration) {
        let (Some(tracer), Some(t)) = (self.w.tracer.as_deref(), self.trace.as_deref()) else {
            return;
        };
        let route = self.route.map(|r| &self.snap.routes[r]);
        let reached = super::trace::Reached {
            route: route.map(|r| r.config.name.as_str()),
            backend: route
                .zip(self.backend)
                .map(|(r, b)| r.backends[b].name.as_str()),
            endpoint: self.endpoint,
            status,
            latency,
        };
        tracer.submit(f.into_record(&t.ctx, &reached));
    }

    /// Writes one access-log event. Its field names are Elastic Common Schema names (the JSON
    /// format writes it as an ECS document: `telemetry::AccessOrJson`); they are a stable
    /// interface (docs/operations.md, "Access log"): add fields, never rename or drop one.
    fn access_log(&self, status: u16, l: &LogLine, latency: std::time::Duration) {
        let (snap, conn) = (self.snap, self.conn);
        let route = self.route.map(|r| &snap.routes[r]);
        let backend = route
            .zip(self.backend)
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
            http.request.id = self.request_id.as_ref().and_then(|v| v.to_str().ok()),
            meshgate.route = route.map(|r| r.config.name.as_str()),
            meshgate.backend = backend,
            meshgate.endpoint = self.endpoint.map(tracing::field::display),
            meshgate.policy = self.decided.as_ref().map(|d| &*d.policy),
            meshgate.policy_reason = self.decided.as_ref().map(|d| d.reason),
            trace.id = self.trace_id(),
            span.id = self.trace.as_deref().map(|t| t.ctx.span_id_hex()),
        );
    }
}

/// A route policy's answer: the gateway's JSON error when it has a code, else the body it
/// carries (an auth service's) or none (empty); the policy's headers on it either way.
pub(crate) fn policy_answer(
    a: crate::policy::Answer,
    request_id: Option<&HeaderValue>,
    trace_id: Option<&str>,
) -> http::Response<Bytes> {
    let mut resp = match a.code {
        Some(code) => respond(
            &ProxyError::Refused {
                status: a.status,
                code,
            },
            request_id,
            trace_id,
        ),
        None => {
            let mut r = http::Response::new(a.body.unwrap_or_default());
            *r.status_mut() = a.status;
            r
        }
    };
    crate::policy::add_to(resp.headers_mut(), &a.headers);
    resp
}
