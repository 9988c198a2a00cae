//! Choosing an endpoint inside a backend's endpoint set.
//!
//! Every policy skips ejected endpoints (and, on retry, the endpoint that just failed). The RNG is
//! passed in by the caller: each worker thread owns one, and tests seed theirs.

mod endpoint_set;
mod ewma;
mod p2c;
mod round_robin;

#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering::Relaxed;

use rand::Rng;

pub use endpoint_set::{nanos_at, now_nanos, EndpointRuntime, EndpointStats};
pub use ewma::{observe as observe_latency, DECAY, DEFAULT_RTT};

use crate::config::BalancePolicy;
use round_robin::{RoundRobin, SmoothWeighted};

/// A backend's balancer. Its state (round-robin position) lives as long as the endpoint set.
#[derive(Debug)]
pub enum Balancer {
    /// Each endpoint in turn.
    RoundRobin(RoundRobin),
    /// Smooth weighted round robin.
    Weighted(SmoothWeighted),
    /// P2C over outstanding requests (weighted).
    P2cLeastRequest,
    /// P2C over peak-EWMA latency × (outstanding + 1).
    P2cEwma,
}

impl Balancer {
    /// A balancer for `endpoints` under `policy`.
    pub fn new(policy: BalancePolicy, endpoints: &[EndpointRuntime]) -> Self {
        match policy {
            BalancePolicy::RoundRobin => Self::RoundRobin(RoundRobin::default()),
            BalancePolicy::WeightedRoundRobin => Self::Weighted(SmoothWeighted::new(endpoints)),
            BalancePolicy::P2cLeastRequest => Self::P2cLeastRequest,
            BalancePolicy::P2cEwma => Self::P2cEwma,
        }
    }

    /// Index of the endpoint to use, or `None` when every endpoint is ejected or excluded.
    /// `now` is [`now_nanos`]; `exclude` is an endpoint that already failed this request.
    pub fn pick<R: Rng + ?Sized>(
        &self,
        eps: &[EndpointRuntime],
        now: u64,
        exclude: Option<usize>,
        rng: &mut R,
    ) -> Option<usize> {
        self.pick_within(eps, now, exclude, None, rng)
    }

    /// [`Balancer::pick`], skipping endpoints with `limit` requests or more in flight.
    pub fn pick_within<R: Rng + ?Sized>(
        &self,
        eps: &[EndpointRuntime],
        now: u64,
        exclude: Option<usize>,
        limit: Option<u32>,
        rng: &mut R,
    ) -> Option<usize> {
        self.pick_panicking(eps, now, exclude, limit, 0, rng)
    }

    /// [`Balancer::pick_within`] under a panic threshold (percent, 0: none): while fewer than
    /// that share of `eps` is usable ([`panicking`]), ejected endpoints are used like the others.
    pub fn pick_panicking<R: Rng + ?Sized>(
        &self,
        eps: &[EndpointRuntime],
        now: u64,
        exclude: Option<usize>,
        limit: Option<u32>,
        panic_threshold: u8,
        rng: &mut R,
    ) -> Option<usize> {
        let panic = panicking(eps, now, panic_threshold);
        let room = |i: usize| limit.is_none_or(|l| eps[i].stats.in_flight.load(Relaxed) < l);
        let usable =
            |i: usize| Some(i) != exclude && (panic || !eps[i].stats.is_ejected(now)) && room(i);
        match self {
            Self::RoundRobin(rr) => rr.pick(eps.len(), usable),
            Self::Weighted(w) => w.pick(usable),
            Self::P2cLeastRequest => {
                p2c::pick(eps.len(), usable, rng, |i| p2c::least_request_cost(&eps[i]))
            }
            Self::P2cEwma => p2c::pick(eps.len(), usable, rng, |i| ewma::cost(&eps[i], now)),
        }
    }
}

/// True when at least one endpoint is neither ejected nor excluded.
pub fn any_usable(eps: &[EndpointRuntime], now: u64) -> bool {
    eps.iter().any(|e| !e.stats.is_ejected(now))
}

/// [`any_usable`] under a panic threshold (percent, 0: none): a backend whose endpoints are all
/// ejected is still usable when it panics.
pub fn any_usable_within(eps: &[EndpointRuntime], now: u64, panic_threshold: u8) -> bool {
    any_usable(eps, now) || (panic_threshold > 0 && !eps.is_empty())
}

/// True when fewer than `threshold` percent of `eps` are usable (not ejected) at `now`: the
/// backend is in panic, and ejections are ignored. Always false for a threshold of 0 (no scan).
///
/// Outlier ejection never takes more than `max_ejected_percent` of a backend out, so a panic
/// threshold at or below `100 - max_ejected_percent` never triggers.
pub fn panicking(eps: &[EndpointRuntime], now: u64, threshold: u8) -> bool {
    if threshold == 0 || eps.is_empty() {
        return false;
    }
    let usable = eps.iter().filter(|e| !e.stats.is_ejected(now)).count();
    usable * 100 < eps.len() * usize::from(threshold)
}
