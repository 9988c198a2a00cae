//! A small Consul HTTP API client: health, catalog, KV and agent endpoints, with blocking-query
//! metadata and the index rules of consul-api.md ("What a robust client must do").
//!
//! [`ConsulClient`] is cheap to clone (one pooled hyper client inside). Reads take
//! [`QueryOptions`] (`index`, `wait`) and return a [`QueryResponse`] with the server's
//! [`QueryMeta`]; the watch loops in [`crate::watch`] drive them with [`BlockingIndex`],
//! [`TokenBucket`] and [`crate::Backoff`]. Both `http://` and `https://` addresses work; for
//! `https://` the agent's certificate is verified against [`ConsulConfig::ca_file`], or against
//! the bundled Mozilla roots (`webpki-roots`) when no CA file is set.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use crate::backoff::Backoff;
use crate::error::DiscoveryError;

mod agent;
mod blocking;
mod catalog;
mod client;
mod health;
mod kv;
mod tls;

pub use agent::{AgentServiceCheck, AgentServiceRegistration, RegistrationWeights};
pub use blocking::{BlockingIndex, IndexUpdate, TokenBucket};
pub use catalog::CatalogServices;
pub use client::ConsulClient;
pub use health::{
    CheckStatus, HealthCheck, HealthNode, HealthQuery, HealthService, ServiceAddress, ServiceEntry,
    ServiceWeights,
};
pub use kv::KvPair;

/// Read consistency mode (consul-api.md §2). Writes are always consistent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The leader answers (no query parameter).
    #[default]
    Default,
    /// Any server answers, even without quorum (`?stale`); spreads load, may lag.
    Stale,
    /// The leader confirms quorum first (`?consistent`); one extra round trip.
    Consistent,
}

/// How to reach Consul and how to pace queries.
#[derive(Debug, Clone)]
pub struct ConsulConfig {
    /// Agent address, `http://127.0.0.1:8500` by default; `https://` uses TLS (see `ca_file`).
    pub address: Uri,
    /// PEM file of the CA certificate(s) that signed the agent's certificate, read once at
    /// [`ConsulClient::new`]; used only for `https://` addresses. `None` trusts the Mozilla
    /// roots compiled into the binary (`webpki-roots`), never the platform store, so a private
    /// CA always needs this set.
    pub ca_file: Option<PathBuf>,
    /// ACL token, sent as `X-Consul-Token` (never in the query string, which ends up in logs).
    pub token: Option<String>,
    /// `?dc=` for every request; `None` uses the agent's datacenter.
    pub datacenter: Option<String>,
    /// Read consistency.
    pub consistency: Consistency,
    /// Blocking-query wait (`?wait=`); Consul caps it at 10 minutes. Default 60 s.
    pub wait: Duration,
    /// Token-bucket refill period per watch loop (burst 2): a churning result is polled at
    /// most once per `min_interval`. Default 1 s.
    pub min_interval: Duration,
    /// Retry policy for failed reads. Default: 500 ms doubling to 60 s, 20 % jitter.
    pub backoff: Backoff,
    /// Shortest delay after a 429/503 (rate limited). Default 5 s.
    pub rate_limited_floor: Duration,
    /// Timeout of non-blocking requests (writes, immediate reads). Default 10 s. Blocking reads
    /// use [`ConsulConfig::blocking_timeout`].
    pub request_timeout: Duration,
}

/// Blocking parameters of one read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Last index seen; 0 reads immediately.
    pub index: u64,
    /// Overrides [`ConsulConfig::wait`] for this read (only used when `index > 0`).
    pub wait: Option<Duration>,
}

/// Server metadata of a read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Consul-Index` (0 if the header was missing).
    pub index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact`: time since the answering server heard from the leader.
    pub last_contact: Duration,
    /// `X-Consul-Effective-Consistency` (`leader`, `stale`, `consistent`), when sent.
    pub effective_consistency: Option<String>,
}

/// A decoded read plus its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResponse<T> {
    /// The body.
    pub value: T,
    /// Headers.
    pub meta: QueryMeta,
}

// === impl ConsulConfig ===

impl ConsulConfig {
    /// Defaults pointing at `address`.
    pub fn new(address: Uri) -> Self {
        Self {
            address,
            ca_file: None,
            token: None,
            datacenter: None,
            consistency: Consistency::Default,
            wait: Duration::from_secs(60),
            min_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
            rate_limited_floor: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Parses an address the way `CONSUL_HTTP_ADDR` is written: `host:port`,
    /// `http://host:port` or `https://host:port`.
    pub fn parse_address(address: &str) -> Result<Uri, DiscoveryError> {
        let with_scheme = if address.contains("://") {
            address.to_owned()
        } else {
            format!("http://{address}")
        };
        let invalid = |reason: String| DiscoveryError::InvalidAddress {
            address: address.to_owned(),
            reason,
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
        if uri.host().is_none() {
            return Err(invalid("no host".to_owned()));
        }
        Ok(uri)
    }

    /// The HTTP read timeout of a blocking read waiting `wait`: above Consul's longest answer
    /// time (`wait + wait/16`), as `wait·1.1 + 5 s`, so a quiet watch is never an error.
    pub fn blocking_timeout(wait: Duration) -> Duration {
        wait + wait / 10 + Duration::from_secs(5)
    }
}

impl Default for ConsulConfig {
    /// `http://127.0.0.1:8500` with the defaults of [`ConsulConfig::new`].
    fn default() -> Self {
        Self::new(Uri::from_static("http://127.0.0.1:8500"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_consul_http_addr_forms() {
        assert_eq!(
            ConsulConfig::parse_address("127.0.0.1:8500").unwrap(),
            Uri::from_static("http://127.0.0.1:8500")
        );
        assert_eq!(
            ConsulConfig::parse_address("http://consul:8500")
                .unwrap()
                .host(),
            Some("consul")
        );
        assert!(ConsulConfig::parse_address("http://").is_err());
    }

    #[test]
    fn blocking_timeout_exceeds_consul_jitter() {
        let wait = Duration::from_secs(60);
        assert!(ConsulConfig::blocking_timeout(wait) > wait + wait / 16);
    }
}
