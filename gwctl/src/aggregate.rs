//! Exact aggregation of several gateways' stats: counters add, and latency histograms (base64
//! hdrhistogram V2, µs) are decoded and added, so merged percentiles are the percentiles of all
//! requests — not an average of percentiles. Also the interval difference the canary judges on.

use std::collections::BTreeMap;

use base64::Engine as _;
use gatewayd::admin::model::{BackendStats, EndpointInfo, LatencyMs, Stats, UpstreamInfo};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

/// A histogram string that is not base64 of an hdrhistogram V2 encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable histogram: {0}")]
pub struct HistogramError(String);

/// One second of a backend's traffic, summed over gateways.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    /// Requests completed in that second.
    pub requests: u64,
    /// 5xx answers in that second.
    pub errors: u64,
    /// Highest p99 (ms) any gateway saw in that second (p99s cannot be added exactly).
    pub p99_ms: f64,
}

/// One backend of a route, merged over gateways.
#[derive(Debug, Clone)]
pub struct BackendAgg {
    /// Backend name ("" for requests that reached no backend).
    pub backend: String,
    /// Requests in total.
    pub requests: u64,
    /// 5xx answers in total.
    pub errors: u64,
    /// By status class (`1xx` … `5xx`).
    pub by_class: BTreeMap<String, u64>,
    /// In flight now.
    pub in_flight: i64,
    /// Requests per second over the gateways' window.
    pub rps: f64,
    /// Latencies in µs of every request.
    pub hist: Histogram<u64>,
    /// Per-second traffic, keyed by unix second (empty unless history was asked for).
    pub per_second: BTreeMap<u64, Second>,
    /// Gateways whose histogram did not decode (their latencies are missing from `hist`).
    pub undecodable: usize,
}

/// One route, merged over gateways.
#[derive(Debug, Clone)]
pub struct RouteAgg {
    /// Route name.
    pub route: String,
    /// Backends in the order the first gateway listed them.
    pub backends: Vec<BackendAgg>,
}

/// Traffic of one backend between two samples (the canary's judging window).
#[derive(Debug, Clone)]
pub struct Window {
    /// Requests in the window.
    pub requests: u64,
    /// 5xx answers in the window.
    pub errors: u64,
    /// Latencies (µs) of the window's requests.
    pub hist: Histogram<u64>,
}

/// An empty µs histogram that grows as needed (3 significant figures, as gatewayd records).
pub fn empty_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap_or_else(|_| {
        // `new(3)` only fails for sigfig > 5; keep a bounded fallback rather than panic.
        Histogram::new_with_bounds(1, u64::MAX / 2, 2).unwrap_or_else(|_| std::process::abort())
    });
    h.auto(true);
    h
}

/// Decodes base64 of an hdrhistogram V2 (or V2-deflate) encoding. The empty string, which
/// gatewayd sends when it could not encode, decodes as an empty histogram.
pub fn decode_histogram(b64: &str) -> Result<Histogram<u64>, HistogramError> {
    if b64.is_empty() {
        return Ok(empty_histogram());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| HistogramError(e.to_string()))?;
    let decoded: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| HistogramError(format!("{e:?}")))?;
    let mut h = empty_histogram();
    h.add(&decoded)
        .map_err(|e| HistogramError(format!("{e:?}")))?;
    Ok(h)
}

/// Percentiles in ms of a µs histogram (all 0 when empty): the gateway's own computation.
pub fn latency_of(h: &Histogram<u64>) -> LatencyMs {
    gatewayd::metrics::percentiles(h)
}

/// Merges the stats of several gateways route by route, backend by backend. Routes and backends
/// keep the order in which they are first seen. No input: no routes.
pub fn merge_stats<'a, I: IntoIterator<Item = &'a Stats>>(stats: I) -> Vec<RouteAgg> {
    let mut routes: Vec<RouteAgg> = Vec::new();
    for s in stats {
        for rs in &s.routes {
            let idx = match routes.iter().position(|r| r.route == rs.route) {
                Some(i) => i,
                None => {
                    routes.push(RouteAgg {
                        route: rs.route.clone(),
                        backends: Vec::new(),
                    });
                    routes.len() - 1
                }
            };
            let route = &mut routes[idx];
            for bs in &rs.backends {
                match route.backends.iter_mut().find(|b| b.backend == bs.backend) {
                    Some(b) => b.add(bs),
                    None => {
                        let mut b = BackendAgg::empty(&bs.backend);
                        b.add(bs);
                        route.backends.push(b);
                    }
                }
            }
        }
    }
    routes
}

/// The traffic of `route`/`backend` between two samples of the same gateways (`start[i]` and
/// `end[i]` come from gateway `i`; `None` = unreachable then). A gateway missing at either end
/// contributes nothing; one whose counters went backwards (restarted) contributes its `end`
/// totals, which are exactly its traffic since the restart.
pub fn window(
    start: &[Option<Stats>],
    end: &[Option<Stats>],
    route: &str,
    backend: &str,
) -> Window {
    let mut w = Window {
        requests: 0,
        errors: 0,
        hist: empty_histogram(),
    };
    for (s, e) in start.iter().zip(end) {
        let (Some(s), Some(e)) = (s, e) else { continue };
        let Some(eb) = find_backend(e, route, backend) else {
            continue;
        };
        let e_hist = decode_histogram(&eb.histogram).unwrap_or_else(|_| empty_histogram());
        let sb = find_backend(s, route, backend);
        let (s_req, s_err, s_hist) = match sb {
            Some(sb) => (
                sb.requests,
                errors_of(sb),
                decode_histogram(&sb.histogram).unwrap_or_else(|_| empty_histogram()),
            ),
            None => (0, 0, empty_histogram()),
        };
        let restarted = eb.requests < s_req || e_hist.len() < s_hist.len();
        if restarted {
            w.requests += eb.requests;
            w.errors += errors_of(eb);
            let _ = w.hist.add(&e_hist);
            continue;
        }
        w.requests += eb.requests - s_req;
        w.errors += errors_of(eb).saturating_sub(s_err);
        let mut diff = e_hist.clone();
        if diff.subtract(&s_hist).is_ok() {
            let _ = w.hist.add(&diff);
        }
    }
    w
}

/// Merges several gateways' views of the upstreams: services by name, endpoints by address.
/// Counters and in-flight add; EWMA latency and ejection time take the worst; an endpoint is
/// ejected or `warning` when any gateway says so; a service is stale when any view is.
pub fn merge_upstreams(lists: &[&[UpstreamInfo]]) -> Vec<UpstreamInfo> {
    let mut out: Vec<UpstreamInfo> = Vec::new();
    for list in lists {
        for u in *list {
            let Some(m) = out.iter_mut().find(|m| m.service == u.service) else {
                out.push(u.clone());
                continue;
            };
            if u.stale {
                m.stale = true;
                m.stale_seconds = max_opt(m.stale_seconds, u.stale_seconds);
                if m.stale_reason.is_none() {
                    m.stale_reason.clone_from(&u.stale_reason);
                }
            }
            if u.last_update > m.last_update {
                m.last_update.clone_from(&u.last_update);
            }
            for e in &u.endpoints {
                match m.endpoints.iter_mut().find(|x| x.addr == e.addr) {
                    Some(x) => merge_endpoint(x, e),
                    None => m.endpoints.push(e.clone()),
                }
            }
        }
    }
    out
}

fn merge_endpoint(x: &mut EndpointInfo, e: &EndpointInfo) {
    if e.health != "passing" {
        x.health.clone_from(&e.health);
    }
    x.ejected |= e.ejected;
    x.ejected_seconds = max_opt(x.ejected_seconds, e.ejected_seconds);
    x.in_flight += e.in_flight;
    x.ewma_ms = x.ewma_ms.max(e.ewma_ms);
    x.requests += e.requests;
    x.failures += e.failures;
    x.ejections += e.ejections;
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn find_backend<'a>(s: &'a Stats, route: &str, backend: &str) -> Option<&'a BackendStats> {
    s.routes
        .iter()
        .find(|r| r.route == route)?
        .backends
        .iter()
        .find(|b| b.backend == backend)
}

fn errors_of(b: &BackendStats) -> u64 {
    b.by_class.get("5xx").copied().unwrap_or(0)
}

// === impl BackendAgg ===

impl BackendAgg {
    /// A backend with no traffic.
    pub fn empty(backend: &str) -> Self {
        Self {
            backend: backend.to_string(),
            requests: 0,
            errors: 0,
            by_class: BTreeMap::new(),
            in_flight: 0,
            rps: 0.0,
            hist: empty_histogram(),
            per_second: BTreeMap::new(),
            undecodable: 0,
        }
    }

    /// 5xx / requests (0 when no request).
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.requests)
    }

    /// Percentiles of every merged request, in ms.
    pub fn latency(&self) -> LatencyMs {
        latency_of(&self.hist)
    }

    /// Adds one gateway's stats of this backend.
    pub fn add(&mut self, b: &BackendStats) {
        self.requests += b.requests;
        self.errors += errors_of(b);
        for (class, n) in &b.by_class {
            *self.by_class.entry(class.clone()).or_default() += n;
        }
        self.in_flight += b.in_flight;
        self.rps += b.rps;
        match decode_histogram(&b.histogram) {
            Ok(h) => {
                if self.hist.add(&h).is_err() {
                    self.undecodable += 1;
                }
            }
            Err(_) => self.undecodable += 1,
        }
        if let Some(history) = &b.history {
            let mut samples = history.clone();
            samples.sort_by_key(|p| p.at);
            for pair in samples.windows(2) {
                let (prev, cur) = (pair[0], pair[1]);
                // Counters going backwards mean the gateway restarted: `cur` is all it saw since.
                let req = cur
                    .requests
                    .checked_sub(prev.requests)
                    .unwrap_or(cur.requests);
                let err = cur.errors.checked_sub(prev.errors).unwrap_or(cur.errors);
                let sec = self.per_second.entry(cur.at).or_default();
                sec.requests += req;
                sec.errors += err;
                sec.p99_ms = sec.p99_ms.max(cur.p99_ms);
            }
        }
    }

    /// Adds another merged backend (used to total a route over its backends).
    pub fn absorb(&mut self, other: &BackendAgg) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (class, n) in &other.by_class {
            *self.by_class.entry(class.clone()).or_default() += n;
        }
        self.in_flight += other.in_flight;
        self.rps += other.rps;
        let _ = self.hist.add(&other.hist);
        for (at, s) in &other.per_second {
            let sec = self.per_second.entry(*at).or_default();
            sec.requests += s.requests;
            sec.errors += s.errors;
            sec.p99_ms = sec.p99_ms.max(s.p99_ms);
        }
        self.undecodable += other.undecodable;
    }
}

// === impl RouteAgg ===

impl RouteAgg {
    /// The named backend, if the stats have it.
    pub fn backend(&self, name: &str) -> Option<&BackendAgg> {
        self.backends.iter().find(|b| b.backend == name)
    }

    /// The whole route: every backend's traffic added together.
    pub fn total(&self) -> BackendAgg {
        let mut t = BackendAgg::empty("");
        for b in &self.backends {
            t.absorb(b);
        }
        t
    }
}

// === impl Window ===

impl Window {
    /// 5xx / requests in the window (0 when no request).
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.requests)
    }

    /// p99 in ms of the window's requests; `None` when the histogram is empty.
    pub fn p99_ms(&self) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests;
