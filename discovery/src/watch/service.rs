//! [`ServiceWatcher`]: `/v1/health/service/<name>` → [`ServiceState`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{after_error, unless_stopped, CancellationToken, Pacer};
use crate::consul::{CheckStatus, ConsulClient, HealthQuery, IndexUpdate, ServiceEntry};
use crate::endpoint::{Endpoint, EndpointSet, Health, ServiceState, Source, Staleness};

/// Which instances a service watch keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HealthFilter {
    /// Only instances whose every check passes (the server filters with `?passing`).
    #[default]
    Passing,
    /// Passing and warning instances: no `?passing`; critical ones are dropped here and warning
    /// ones get `Weights.Warning`.
    PassingOrWarning,
}

/// What to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceWatchOptions {
    /// Consul service name.
    pub service: String,
    /// Health filter.
    pub health: HealthFilter,
    /// Required tags (ANDed).
    pub tags: Vec<String>,
    /// Datacenter (`None`: the agent's).
    pub datacenter: Option<String>,
}

/// Follows one service's healthy endpoints.
#[derive(Debug, Clone)]
pub struct ServiceWatcher {
    client: ConsulClient,
    options: ServiceWatchOptions,
}

/// How long one hostname resolution may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

// === impl ServiceWatchOptions ===

impl ServiceWatchOptions {
    /// Passing instances of `service`, any tags, local datacenter.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            ..Self::default()
        }
    }
}

// === impl ServiceWatcher ===

impl ServiceWatcher {
    /// A watcher; nothing runs until [`ServiceWatcher::spawn`] or [`ServiceWatcher::run`].
    pub fn new(client: ConsulClient, options: ServiceWatchOptions) -> Self {
        Self { client, options }
    }

    /// The state before the first successful read: empty set, `last_success: None`.
    pub fn initial_state() -> ServiceState {
        ServiceState {
            set: Arc::new(EndpointSet::default()),
            source: Source::Consul,
            last_success: None,
            stale: None,
        }
    }

    /// Spawns the loop on the current runtime. The first successful read is always sent (so
    /// `last_success` tells "loaded, empty" from "not loaded yet"); later values only when the
    /// set or the staleness changes. Stops on `shutdown` or when every receiver is dropped.
    pub fn spawn(self, shutdown: CancellationToken) -> watch::Receiver<ServiceState> {
        let (tx, rx) = watch::channel(Self::initial_state());
        tokio::spawn(self.run(tx, shutdown));
        rx
    }

    /// The loop itself, for callers that manage the task.
    pub async fn run(self, tx: watch::Sender<ServiceState>, shutdown: CancellationToken) {
        let Self { client, options } = self;
        let query = HealthQuery {
            passing_only: options.health == HealthFilter::Passing,
            tags: options.tags.clone(),
            filter: None,
            datacenter: options.datacenter.clone(),
        };
        let service = options.service.as_str();
        let mut pacer = Pacer::new(client.config());
        loop {
            let opts = pacer.options();
            let read = async {
                pacer.pace().await;
                client.health_service(service, &query, opts).await
            };
            let Some(result) = unless_stopped(&shutdown, &tx, read).await else {
                return;
            };
            match result {
                Ok(resp) => {
                    let update = pacer.on_success(resp.meta.index);
                    let loaded = tx.borrow().last_success.is_some();
                    let set = if update == IndexUpdate::Unchanged && loaded {
                        None
                    } else {
                        let resolve = endpoints_from_entries(&resp.value, options.health);
                        match unless_stopped(&shutdown, &tx, resolve).await {
                            Some(set) => Some(set),
                            None => return,
                        }
                    };
                    publish(&tx, set, service);
                }
                Err(e) => {
                    if !after_error(&mut pacer, &e, &tx, &shutdown, service, |s| &mut s.stale).await
                    {
                        return;
                    }
                }
            }
        }
    }
}

/// How long a service that had instances before a Consul outage keeps them when Consul comes
/// back with none (a server restarted empty or restored from an old snapshot: agents register
/// their services again at their next anti-entropy sync, within a minute or so).
pub const EMPTY_AFTER_OUTAGE_GRACE: Duration = Duration::from_secs(120);

/// The staleness reason while such a set is held.
pub const HELD_REASON: &str =
    "Consul answered with no instance right after an outage; keeping the last known set";

/// Records a successful read: clears staleness, stamps `last_success`, swaps the set when it
/// differs. Sends only when something a consumer acts on changed (or on the first success).
///
/// One exception: the first reads after an outage that find no instance where there were some
/// keep the last known set, still marked stale, for [`EMPTY_AFTER_OUTAGE_GRACE`] (the set a
/// restarted Consul has not been told again yet is not an instruction to fail every request).
pub(crate) fn publish(tx: &watch::Sender<ServiceState>, set: Option<EndpointSet>, service: &str) {
    let now = SystemTime::now();
    tx.send_if_modified(|state| {
        if let (Some(stale), Some(new)) = (&state.stale, &set) {
            if new.is_empty() && !state.set.is_empty() {
                let held_since = (stale.reason == HELD_REASON).then_some(stale.since);
                match held_since {
                    None => {
                        tracing::warn!(service, grace = ?EMPTY_AFTER_OUTAGE_GRACE, "{HELD_REASON}");
                        state.stale = Some(Staleness {
                            since: now,
                            reason: HELD_REASON.to_string(),
                        });
                        return true;
                    }
                    Some(since)
                        if now.duration_since(since).unwrap_or_default()
                            < EMPTY_AFTER_OUTAGE_GRACE =>
                    {
                        return false;
                    }
                    Some(_) => {} // the grace is over: Consul's answer stands
                }
            }
        }
        let mut changed = state.stale.take().is_some() || state.last_success.is_none();
        state.last_success = Some(now);
        if let Some(set) = set.filter(|set| *state.set != *set) {
            tracing::info!(service, endpoints = set.len(), "service endpoints changed");
            state.set = Arc::new(set);
            changed = true;
        }
        changed
    });
}

/// Builds the endpoint set of health entries: critical instances are dropped (and warning ones
/// too under [`HealthFilter::Passing`]); the weight is `Weights.Passing` or `Weights.Warning`
/// (instances with weight 0 are dropped); the address is `Service.Address`, else
/// `Node.Address`, resolved with the system resolver when it is a hostname. Instances with
/// port 0 or an unresolvable host are skipped with a warning.
pub async fn endpoints_from_entries(entries: &[ServiceEntry], filter: HealthFilter) -> EndpointSet {
    let mut endpoints = Vec::with_capacity(entries.len());
    for entry in entries {
        let (health, weight) = match (entry.status(), filter) {
            (CheckStatus::Passing, _) => (Health::Passing, entry.service.weights.passing),
            (CheckStatus::Warning, HealthFilter::PassingOrWarning) => {
                (Health::Warning, entry.service.weights.warning)
            }
            _ => continue,
        };
        if weight == 0 || entry.service.port == 0 {
            continue;
        }
        let Some(addr) = resolve(entry.host(), entry.service.port).await else {
            tracing::warn!(id = %entry.service.id, host = entry.host(), "cannot resolve instance address; skipping it");
            continue;
        };
        endpoints.push(Endpoint {
            addr,
            weight,
            health,
            id: entry.service.id.clone(),
        });
    }
    EndpointSet::new(endpoints)
}

async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    if host.is_empty() {
        return None;
    }
    let lookup = tokio::net::lookup_host((host, port));
    let addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .ok()?
        .ok()?
        .collect();
    // Prefer IPv4, as Consul's own DNS interface answers A records first.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::consul::{HealthCheck, HealthNode, HealthService, ServiceWeights};

    fn entry(id: &str, node_addr: &str, addr: &str, port: u16, statuses: &[&str]) -> ServiceEntry {
        ServiceEntry {
            node: HealthNode {
                address: node_addr.into(),
                ..HealthNode::default()
            },
            service: HealthService {
                id: id.into(),
                address: addr.into(),
                port,
                weights: ServiceWeights {
                    passing: 10,
                    warning: 2,
                },
                ..HealthService::default()
            },
            checks: statuses
                .iter()
                .map(|s| HealthCheck {
                    status: (*s).into(),
                    ..HealthCheck::default()
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn builds_sets_with_weights_and_fallback_addresses() {
        let entries = vec![
            entry("a", "10.0.0.5", "", 80, &["passing", "passing"]),
            entry("b", "10.0.0.5", "10.0.0.7", 81, &["passing", "warning"]),
            entry("c", "10.0.0.5", "10.0.0.8", 82, &["passing", "critical"]),
            entry("d", "10.0.0.5", "localhost", 83, &["passing"]),
        ];
        let set = endpoints_from_entries(&entries, HealthFilter::PassingOrWarning).await;
        let got: Vec<_> = set
            .endpoints()
            .iter()
            .map(|e| (e.id.as_str(), e.addr.to_string(), e.weight, e.health))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", "10.0.0.5:80".to_owned(), 10, Health::Passing),
                ("b", "10.0.0.7:81".to_owned(), 2, Health::Warning),
                ("d", "127.0.0.1:83".to_owned(), 10, Health::Passing),
            ]
        );
        let passing = endpoints_from_entries(&entries, HealthFilter::Passing).await;
        assert_eq!(passing.len(), 2);
    }

    #[tokio::test]
    async fn drops_zero_weight_and_port() {
        let mut e = entry("a", "10.0.0.5", "", 80, &["warning"]);
        e.service.weights.warning = 0;
        let zero_port = entry("b", "10.0.0.5", "", 0, &["passing"]);
        let set = endpoints_from_entries(&[e, zero_port], HealthFilter::PassingOrWarning).await;
        assert!(set.is_empty());
    }
}
