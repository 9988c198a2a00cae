//! An endpoint as the proxy sees it: address, pre-built URI authority and live statistics.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use discovery::Endpoint;
use tokio::time::Instant;

/// Nanoseconds since the first call in this process (tokio clock, so tests can pause it).
pub fn now_nanos() -> u64 {
    nanos_at(Instant::now())
}

/// [`now_nanos`] of an instant already read (saves a clock read on the request path).
pub fn nanos_at(t: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// Live statistics of one endpoint, kept across snapshot rebuilds (keyed by service and address).
///
/// Atomics are written by the worker that used the endpoint; with one worker per core they are
/// uncontended. The EWMA fields are updated with plain loads and stores: a lost update between
/// two workers only drops one latency sample.
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Requests sent and not yet answered (head received or failed).
    pub in_flight: AtomicU32,
    /// Requests sent in total.
    pub requests: AtomicU64,
    /// Failed requests in total: the endpoint's own faults (connect errors, timeouts, broken
    /// exchanges) and its 5xx responses. What clients do is never counted here.
    pub failures: AtomicU64,
    pub(crate) ewma_bits: AtomicU64,
    pub(crate) ewma_stamp: AtomicU64,
    pub(crate) consecutive_failures: AtomicU32,
    pub(crate) consecutive_5xx: AtomicU32,
    /// The current run of 502/503/504 answers (`outlier.consecutive_gateway_errors`).
    pub(crate) consecutive_gateway: AtomicU32,
    /// What the failures in the current run were ("GET /x: connect refused"), newest last,
    /// at most [`crate::health::NOTES`]: an ejection reports them. Locked only on a failure, and
    /// on the first success after one.
    pub(crate) fault_notes: std::sync::Mutex<std::collections::VecDeque<String>>,
    pub(crate) ejected_until: AtomicU64,
    pub(crate) ejections_in_row: AtomicU32,
    /// Ejections in total.
    pub ejections: AtomicU64,
}

impl EndpointStats {
    /// True while an outlier ejection is in force at `now` ([`now_nanos`]).
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Relaxed);
        until != 0 && now < until
    }

    /// Nanoseconds of ejection left at `now`, if ejected.
    pub fn ejected_for(&self, now: u64) -> Option<u64> {
        let until = self.ejected_until.load(Relaxed);
        (until != 0 && now < until).then(|| until - now)
    }

    /// Current peak-EWMA latency estimate in nanoseconds, decayed to `now` (0 before any sample).
    pub fn ewma_nanos(&self, now: u64) -> f64 {
        super::ewma::estimate(self, now)
    }
}

/// One endpoint of a service in a snapshot.
#[derive(Debug, Clone)]
pub struct EndpointRuntime {
    /// The endpoint as discovery reported it.
    pub endpoint: Endpoint,
    /// `ip:port` authority for upstream URIs, built once.
    pub authority: http::uri::Authority,
    /// Shared live statistics.
    pub stats: Arc<EndpointStats>,
}

impl EndpointRuntime {
    /// Wraps `endpoint` with its (possibly pre-existing) statistics.
    pub fn new(endpoint: Endpoint, stats: Arc<EndpointStats>) -> Self {
        let authority = http::uri::Authority::try_from(endpoint.addr.to_string().as_str())
            .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"));
        Self {
            endpoint,
            authority,
            stats,
        }
    }

    /// Weight for weighted policies (≥ 1).
    pub fn weight(&self) -> u32 {
        self.endpoint.weight.max(1)
    }
}
