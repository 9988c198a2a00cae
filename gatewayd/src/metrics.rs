//! Request metrics: per (route, backend) counters by status class, in-flight gauges and latency
//! hdrhistograms, sharded per worker thread (a worker only locks its own shard, uncontended) and
//! merged when the admin API reads them.

mod histogram;
mod prometheus;
mod shard;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use histogram::{encode_histogram, new_histogram, percentiles};
pub use prometheus::{render as render_prometheus, Gauges, RouteGauge, ServiceGauge, BUCKETS};
pub use shard::{class_index, Shard, CLASSES};

use hdrhistogram::Histogram;

use crate::health::Ejected;
use crate::proxy::{ClientFault, Fault, ProxyError, RetryBudget, RetryReason};

/// Seconds of history kept for rps and sparklines.
pub const HISTORY_SECONDS: usize = 300;
/// Window of the `rps` figure.
pub const RPS_WINDOW: usize = 10;
/// Ejections kept for the admin events between two drains.
const EJECTIONS_QUEUED: usize = 100;

/// Metrics of one (route, backend) pair, kept across reloads while the pair exists.
#[derive(Debug)]
pub struct BackendMetrics {
    /// Route name ("" for requests that matched no route).
    pub route: String,
    /// Backend name ("" when no backend was chosen).
    pub backend: String,
    shards: Box<[Shard]>,
    history: Mutex<History>,
}

/// Merged view of a [`BackendMetrics`].
#[derive(Debug, Clone)]
pub struct Totals {
    /// Requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [u64; 5],
    /// Requests in flight now.
    pub in_flight: i64,
    /// Latency in microseconds, merged over shards.
    pub latency: Histogram<u64>,
}

impl Totals {
    /// All requests.
    pub fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// 5xx responses.
    pub fn errors(&self) -> u64 {
        self.by_class[4]
    }
}

/// One sample per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: u64,
    /// Requests in total at that time.
    pub requests: u64,
    /// 5xx in total at that time.
    pub errors: u64,
    /// p99 in microseconds of the requests of the second before (0 when there were none).
    pub p99_us: u64,
}

#[derive(Debug, Default)]
struct History {
    samples: std::collections::VecDeque<Sample>,
    last: Option<Histogram<u64>>,
}

impl BackendMetrics {
    fn new(route: &str, backend: &str, shards: usize) -> Self {
        Self {
            route: route.to_string(),
            backend: backend.to_string(),
            shards: (0..shards).map(|_| Shard::default()).collect(),
            history: Mutex::new(History::default()),
        }
    }

    /// The shard of worker `worker` (the last shard serves the control runtime).
    pub fn shard(&self, worker: usize) -> &Shard {
        &self.shards[worker.min(self.shards.len() - 1)]
    }

    /// Merges every shard.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            by_class: [0; 5],
            in_flight: 0,
            latency: new_histogram(),
        };
        for s in self.shards.iter() {
            s.merge_into(&mut t);
        }
        t
    }

    /// Takes one history sample (called once a second by the sampler).
    pub fn sample(&self, at: u64) {
        let t = self.totals();
        let Ok(mut h) = self.history.lock() else {
            return;
        };
        let p99_us = match &h.last {
            Some(prev) if t.latency.len() > prev.len() => {
                let mut delta = t.latency.clone();
                // Cannot fail: the previous merge only has values the current one has too.
                let _ = delta.subtract(prev);
                delta.value_at_quantile(0.99)
            }
            None if !t.latency.is_empty() => t.latency.value_at_quantile(0.99),
            _ => 0,
        };
        h.samples.push_back(Sample {
            at,
            requests: t.requests(),
            errors: t.errors(),
            p99_us,
        });
        while h.samples.len() > HISTORY_SECONDS + 1 {
            h.samples.pop_front();
        }
        h.last = Some(t.latency);
    }

    /// Requests per second over the last [`RPS_WINDOW`] seconds of samples.
    pub fn rps(&self) -> f64 {
        let Ok(h) = self.history.lock() else {
            return 0.0;
        };
        let n = h.samples.len();
        if n < 2 {
            return 0.0;
        }
        let last = h.samples[n - 1];
        let first = h.samples[n.saturating_sub(RPS_WINDOW + 1)];
        let secs = last.at.saturating_sub(first.at).max(1);
        last.requests.saturating_sub(first.requests) as f64 / secs as f64
    }

    /// Per-second samples, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.history
            .lock()
            .map(|h| h.samples.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Every metric of the process. Lookups by name happen only when a snapshot is built.
#[derive(Debug)]
pub struct Registry {
    shards: usize,
    pairs: Mutex<HashMap<(String, String), Arc<BackendMetrics>>>,
    /// Requests that matched no route.
    pub unmatched: Arc<BackendMetrics>,
    /// Retried upstream attempts, by reason ([`RetryReason::index`]).
    pub retries: [AtomicU64; RetryReason::ALL.len()],
    /// Retries not made because the route's retry budget was spent.
    pub retries_refused: AtomicU64,
    /// Requests the process serves now (counted only under `gateway.max_in_flight`).
    pub in_flight: AtomicU32,
    /// Requests refused at once because the gateway held `gateway.max_in_flight` (load shed).
    pub shed: AtomicU64,
    /// Body relays cut after the route's `body_idle_timeout` without a byte.
    pub body_idle_timeouts: AtomicU64,
    /// Retry budgets by route name, kept across reloads.
    budgets: Mutex<HashMap<String, Arc<RetryBudget>>>,
    /// Requests in flight by route name (for `max_in_flight`), kept across reloads.
    route_loads: Mutex<HashMap<String, Arc<AtomicU32>>>,
    /// Outlier ejections.
    pub ejections: AtomicU64,
    /// Failures that were the client's, by kind ([`ClientFault::index`]); never counted against
    /// an endpoint.
    pub client_faults: [AtomicU64; ClientFault::ALL.len()],
    /// Ejections not yet announced as admin events (the control runtime drains them each
    /// second; bounded, the oldest dropped first).
    ejected: Mutex<VecDeque<(String, Ejected)>>,
    /// Config reloads applied.
    pub reloads_ok: AtomicU64,
    /// Config reloads rejected.
    pub reloads_failed: AtomicU64,
    /// 1 while Consul KV cannot be read and the last good weights serve.
    pub weights_stale: AtomicU64,
    /// Client connections open now (every listener, every worker).
    pub connections_open: AtomicI64,
    /// Client connections accepted.
    pub connections_accepted: AtomicU64,
    /// Client connections closed at once because their listener held `max_connections`.
    pub connections_refused: AtomicU64,
    /// Span export (`[tracing] otlp_endpoint`).
    pub spans: SpanCounters,
    /// Process start, for uptime.
    pub started: SystemTime,
}

/// What became of the spans the gateway recorded for export.
#[derive(Debug, Default)]
pub struct SpanCounters {
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the export queue was full (the collector slow or down).
    pub dropped_queue_full: AtomicU64,
    /// Spans dropped with a batch the collector refused, or that failed every retry.
    pub dropped_export_failed: AtomicU64,
    /// Export requests that failed (each retry counts).
    pub export_failures: AtomicU64,
}

impl Registry {
    /// A registry with one shard per worker plus one for the control runtime.
    pub fn new(workers: usize) -> Self {
        let shards = workers + 1;
        Self {
            shards,
            pairs: Mutex::new(HashMap::new()),
            unmatched: Arc::new(BackendMetrics::new("", "", shards)),
            retries: Default::default(),
            retries_refused: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            shed: AtomicU64::new(0),
            body_idle_timeouts: AtomicU64::new(0),
            budgets: Mutex::new(HashMap::new()),
            route_loads: Mutex::new(HashMap::new()),
            ejections: AtomicU64::new(0),
            client_faults: Default::default(),
            ejected: Mutex::new(VecDeque::new()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            weights_stale: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            spans: SpanCounters::default(),
            started: SystemTime::now(),
        }
    }

    /// The metrics of (route, backend), created on first use and kept across reloads.
    pub fn backend(&self, route: &str, backend: &str) -> Arc<BackendMetrics> {
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs
            .entry((route.to_string(), backend.to_string()))
            .or_insert_with(|| Arc::new(BackendMetrics::new(route, backend, self.shards)))
            .clone()
    }

    /// Drops pairs that no longer exist in the config (`keep` says which do).
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        pairs.retain(|(r, b), _| keep(r, b));
        // A route's unrouted pair ("" backend) exists as long as the route does.
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets.retain(|r, _| keep(r, ""));
        drop(budgets);
        let mut loads = self.route_loads.lock().unwrap_or_else(|e| e.into_inner());
        loads.retain(|r, _| keep(r, ""));
    }

    /// Every pair, sorted by route then backend.
    pub fn all(&self) -> Vec<Arc<BackendMetrics>> {
        let pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = pairs.values().cloned().collect();
        v.sort_by(|a, b| (&a.route, &a.backend).cmp(&(&b.route, &b.backend)));
        v
    }

    /// One history sample for every pair (the sampler's tick).
    pub fn sample_all(&self, at: u64) {
        for m in self.all() {
            m.sample(at);
        }
        self.unmatched.sample(at);
    }

    /// Counts a retried attempt.
    pub fn count_retry(&self, reason: RetryReason) {
        self.retries[reason.index()].fetch_add(1, Relaxed);
    }

    /// The in-flight counter of `route`, created on first use and kept across reloads (requests
    /// that started on an older snapshot still count, and still release their slot).
    pub fn route_load(&self, route: &str) -> Arc<AtomicU32> {
        let mut l = self.route_loads.lock().unwrap_or_else(|e| e.into_inner());
        l.entry(route.to_string()).or_default().clone()
    }

    /// The retry budget of `route`, created on first use and kept across reloads.
    pub fn retry_budget(&self, route: &str) -> Arc<RetryBudget> {
        let mut b = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        b.entry(route.to_string()).or_default().clone()
    }

    /// Counts a failure the client caused.
    pub fn count_client_fault(&self, kind: ClientFault) {
        self.client_faults[kind.index()].fetch_add(1, Relaxed);
    }

    /// Counts a response the client went away from (or stopped reading) mid-body: a
    /// [`ClientFault::AbortedResponse`].
    pub fn count_aborted_response(&self) {
        self.count_client_fault(ClientFault::AbortedResponse);
    }

    /// Counts a gateway-made answer when it was the client's fault (other faults are counted
    /// where they happen: ejections, the status class of the request).
    pub fn count_error(&self, e: &ProxyError) {
        if let Fault::Client(kind) = e.fault() {
            self.count_client_fault(kind);
        }
    }

    /// Records an ejection of an endpoint of `service` for the admin events.
    pub fn count_ejection(&self, service: &str, e: Ejected) {
        self.ejections.fetch_add(1, Relaxed);
        let mut q = self.ejected.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == EJECTIONS_QUEUED {
            q.pop_front();
        }
        q.push_back((service.to_string(), e));
    }

    /// The ejections recorded since the last call, oldest first, with their service.
    pub fn take_ejections(&self) -> Vec<(String, Ejected)> {
        let mut q = self.ejected.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    }
}

/// Unix seconds of `t`.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Microseconds of `d`, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
