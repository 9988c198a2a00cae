//! The attempts phase (DESIGN §2, "balance → upstream exchange"): pick an endpoint, send one
//! attempt over whatever transport the front end uses, retry elsewhere when it is safe and the
//! route's budget allows, feed outlier detection with the endpoint's own faults only — all
//! within the route's timeout and `max_in_flight`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http::{HeaderValue, Response};
use tokio::time::Instant;

use super::error::{Fault, ProxyError, SendError};
use super::retry::RetryReason;
use super::worker::{with_rng, Worker};
use crate::balance::{nanos_at, now_nanos, observe_latency};
use crate::health::{record_outcome, Outcome};
use crate::snapshot::{RouteRuntime, ServiceRuntime};

/// A request an attempt gives back with a retryable answer ([`SendError::Status`]).
pub(crate) trait Resend {
    /// Its answer goes to the client after all: whatever was kept to send it again is released
    /// (the engine's kept body is consumed from the client's buffer).
    fn settle(self);
}

impl<B> Resend for http::Request<B> {
    fn settle(self) {}
}

/// An upstream answer whose status decides the endpoint's outcome.
pub(crate) trait Answer {
    fn status(&self) -> u16;

    /// Dropped before a retry: its connection goes back to `w`'s pool when what is left of the
    /// answer is already read (a connection that cannot be drained cheaply is closed).
    fn discard(self, _w: &Worker, _svc: &ServiceRuntime)
    where
        Self: Sized,
    {
    }
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
    /// `start` as [`nanos_at`] counts it (read once per request: the conversion is not free).
    pub start_nanos: u64,
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
/// sent or may be sent again (within the route's `retries` and retry budget; an answer in the
/// route's `retry_on` is discarded once another endpoint is found, relayed when none is), feed
/// outlier detection and latency estimates, all within the route's timeout. `send` carries one
/// attempt over whatever transport the caller uses, with the route's per-try timeout.
/// `deadline` resolves when the route's timeout (from `start`) has passed; `client_slow` says,
/// at that moment, whether the attempt was waiting for the client's body rather than for the
/// upstream (then the client gets a 408 and the endpoint is not blamed).
///
/// Only the endpoint's own faults ([`Fault::Endpoint`]) reach outlier detection; a dropped
/// attempt (the client went away) releases its in-flight slot and records no latency.
pub(crate) async fn attempts<Q: Resend, A, F, Fut>(
    call: &Call<'_>,
    mut req: Q,
    mut send: F,
    deadline: impl std::future::Future<Output = ()>,
    client_slow: impl Fn() -> bool,
) -> Result<(A, Instant), ProxyError>
where
    A: Answer,
    F: FnMut(SocketAddr, Q, Option<std::time::Duration>) -> Fut,
    Fut: std::future::Future<Output = Result<A, SendError<Q, A>>>,
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
    const SECOND: u64 = 1_000_000_000;
    if route.config.retries > 0 {
        route.budget.deposit(call.start_nanos / SECOND);
    }
    // The endpoint being tried, so a timeout (which drops the attempt) can be blamed on it.
    let trying = std::sync::atomic::AtomicUsize::new(usize::MAX);
    let attempt = async {
        let mut exclude = None;
        let mut attempts_left = route.config.retries;
        let mut last_error = None;
        // A retryable answer held until another endpoint is found for the retry (boxed: a rare
        // path that would make every request's attempt state larger).
        let mut held: Option<Box<(A, Instant, u64)>> = None;
        loop {
            let sent_at = if exclude.is_none() {
                start
            } else {
                Instant::now()
            };
            let sent = if exclude.is_none() {
                call.start_nanos
            } else {
                nanos_at(sent_at)
            };
            let now = sent;
            let limit = svc.config.max_in_flight_per_endpoint;
            let panic = svc.config.outlier.panic_threshold;
            let picked = with_rng(|rng| {
                svc.balancer
                    .pick_panicking(&svc.endpoints, now, exclude, limit, panic, rng)
            });
            if let Some(h) = held.take() {
                let (answer, answered, second) = *h;
                if picked.is_none() {
                    // Nowhere else to go: the answer the client gets is the upstream's.
                    route.budget.refund(second);
                    req.settle();
                    return Ok((answer, answered));
                }
                w.metrics.count_retry(RetryReason::Status);
                answer.discard(w, svc);
            }
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
            // A retry's place: false when none is left or the budget is spent (counted).
            let mut allowed = |e: &dyn std::fmt::Display| {
                if attempts_left == 0 {
                    return false;
                }
                if !route.budget.withdraw(policy, now / SECOND) {
                    w.metrics.retries_refused.fetch_add(1, Relaxed);
                    tracing::debug!(error = %e, route = %route.config.name, "retry budget spent");
                    return false;
                }
                attempts_left -= 1;
                true
            };
            // Takes the request back for another endpoint, or says why it cannot be.
            let mut retry = |reason: RetryReason, e: ProxyError, r: Box<Q>| {
                if !allowed(&e) {
                    return Err(e);
                }
                tracing::debug!(error = %e, reason = reason.as_str(), "retrying on another endpoint");
                w.metrics.count_retry(reason);
                exclude = Some(ei);
                last_error = Some(e);
                Ok(*r)
            };
            match result {
                Ok(answer) => {
                    observe_latency(
                        &ep.stats,
                        now,
                        Duration::from_nanos(now.saturating_sub(sent)),
                    );
                    let status = answer.status();
                    if status >= 500 {
                        let why = format!("answered {status}");
                        call.record(ei, Outcome::ServerError(status), now, &why);
                    } else {
                        call.record(ei, Outcome::Success, now, &"");
                    }
                    return Ok((answer, answered));
                }
                Err(SendError::Status(r, answer)) => {
                    observe_latency(
                        &ep.stats,
                        now,
                        Duration::from_nanos(now.saturating_sub(sent)),
                    );
                    let status = answer.status();
                    let why = format!("answered {status}");
                    let outcome = match status {
                        500.. => Outcome::ServerError(status),
                        _ => Outcome::Success,
                    };
                    call.record(ei, outcome, now, &why);
                    if !allowed(&why) {
                        r.settle();
                        return Ok((answer, answered));
                    }
                    tracing::debug!(status, reason = "status", "retrying on another endpoint");
                    // Counted and discarded once another endpoint is found for it.
                    held = Some(Box::new((answer, answered, now / SECOND)));
                    exclude = Some(ei);
                    req = *r;
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

/// A place among a route's `max_in_flight` requests (or the gateway's), held until dropped (the
/// attempts end, or the client went away).
pub(crate) struct Slot<'a>(&'a std::sync::atomic::AtomicU32);

impl<'a> Slot<'a> {
    /// A place under `max` in `load`; None when all are taken. Both `then`s are lazy on
    /// purpose: a `Slot` built and dropped on a refusal would give back a place it never took
    /// (the count would fall below the places held, then wrap).
    pub(crate) fn take(load: &'a std::sync::atomic::AtomicU32, max: u32) -> Option<Self> {
        let taken = load
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then(|| n + 1))
            .is_ok();
        taken.then(|| Self(load))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    use super::Slot;

    #[test]
    fn a_refused_place_leaves_the_count_alone() {
        let load = AtomicU32::new(0);
        let a = Slot::take(&load, 2).expect("first place");
        let b = Slot::take(&load, 2).expect("second place");
        for _ in 0..3 {
            assert!(Slot::take(&load, 2).is_none());
        }
        assert_eq!(load.load(Relaxed), 2, "refusals give back nothing");
        drop(a);
        assert_eq!(load.load(Relaxed), 1);
        let c = Slot::take(&load, 2).expect("the freed place");
        drop((b, c));
        assert_eq!(load.load(Relaxed), 0);
    }
}
