//! The endpoint-set contract between discovery and the gateway.
//!
//! A provider (static TOML, Consul watcher) yields whole [`EndpointSet`]s. Sets are sorted and
//! compare with `Eq`, so a consumer can skip rebuilding when an update carries nothing new (an
//! unchanged Consul index, or a change in check output only).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Health of an endpoint as its provider reports it. Critical endpoints never appear in a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every check passes (static endpoints are always passing).
    Passing,
    /// At least one check warns, none is critical.
    Warning,
}

/// Where an endpoint set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Listed in the gateway's TOML file.
    Static,
    /// Followed from Consul's health endpoint.
    Consul,
    /// Restored from the on-disk last-known-good snapshot (Consul unreachable since start).
    Saved,
}

/// One dialable upstream instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Resolved address to dial.
    pub addr: SocketAddr,
    /// Relative weight for weighted balancing, at least 1.
    pub weight: u32,
    /// Reported health.
    pub health: Health,
    /// Provider's instance id (Consul `Service.ID`; the address for static endpoints).
    pub id: String,
}

impl Endpoint {
    /// A passing endpoint with weight 1 whose id is its address.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            weight: 1,
            health: Health::Passing,
            id: addr.to_string(),
        }
    }

    /// Same endpoint with another weight (clamped to at least 1).
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }
}

/// A sorted, de-duplicated set of endpoints of one service (or service + tags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSet {
    endpoints: Vec<Endpoint>,
}

impl EndpointSet {
    /// Builds a set: sorts by address and keeps the first entry of each duplicated address.
    pub fn new(mut endpoints: Vec<Endpoint>) -> Self {
        endpoints.sort();
        endpoints.dedup_by(|a, b| a.addr == b.addr);
        Self { endpoints }
    }

    /// The endpoints, sorted by address.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when the set has no endpoint (a backend with an empty set is skipped by splits).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// What a provider knows about one watched service: its set plus freshness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// Last known good endpoints. Never replaced by an error: only a successful read replaces it.
    pub set: std::sync::Arc<EndpointSet>,
    /// Where the set came from.
    pub source: Source,
    /// Wall-clock time of the last successful read (not of the last change).
    pub last_success: Option<SystemTime>,
    /// Set while the provider cannot reach its source: when the first failure happened, and why.
    pub stale: Option<Staleness>,
}

/// Why and since when a service's set may be out of date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staleness {
    /// First failed read since the last success.
    pub since: SystemTime,
    /// Last error, for operators.
    pub reason: String,
}

impl Staleness {
    /// How long the set has been stale, measured against `now` (zero if the clock went back).
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.since).unwrap_or_default()
    }
}

impl ServiceState {
    /// A fresh state from a static list (never stale).
    pub fn from_static(set: EndpointSet) -> Self {
        Self {
            set: std::sync::Arc::new(set),
            source: Source::Static,
            last_success: Some(SystemTime::now()),
            stale: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        let a: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let set = EndpointSet::new(vec![Endpoint::new(a), Endpoint::new(b), Endpoint::new(a)]);
        let addrs: Vec<_> = set.endpoints().iter().map(|e| e.addr).collect();
        assert_eq!(addrs, vec![b, a]);
        assert_eq!(
            set,
            EndpointSet::new(vec![Endpoint::new(b), Endpoint::new(a)])
        );
    }
}
