//! Following many services over few connections (consul-api.md, design (c)).
//!
//! One blocking query per service holds one HTTP connection per service, and an agent answers
//! 429 past 200 connections from one client IP. The fleet watcher instead long-polls two
//! endpoints and re-reads only what changed:
//! - `/v1/health/state/any`: a service whose checks changed *status* (output-only changes are
//!   ignored) is re-read;
//! - `/v1/catalog/services`: its index moves on any registration, including a port or weight
//!   change that touches no check and cannot be attributed, so every service is re-read.
//!
//! Re-reads are plain (non-blocking) `/v1/health/service/<name>` reads with bounded
//! concurrency, coalesced while they run. Each service still gets its own
//! [`ServiceState`] channel with the same rules as [`super::ServiceWatcher`]: a value is sent
//! on the first success and then only when the set or staleness changes; errors keep the last
//! good set and mark it stale.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash as _, Hasher as _};

use futures_util::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::service::{endpoints_from_entries, publish, HealthFilter, ServiceWatchOptions};
use super::{mark_stale, Pacer};
use crate::consul::{ConsulClient, HealthCheck, HealthQuery, IndexUpdate, QueryOptions};
use crate::endpoint::ServiceState;

/// Concurrent re-reads.
const CONCURRENCY: usize = 8;

/// Watches many services with two blocking queries plus re-reads on change.
#[derive(Debug)]
pub struct FleetWatcher {
    client: ConsulClient,
    services: Vec<ServiceWatchOptions>,
}

struct Shared {
    client: ConsulClient,
    services: Vec<ServiceWatchOptions>,
    txs: Vec<watch::Sender<ServiceState>>,
    /// Consul service name → indexes into `services`.
    by_name: HashMap<String, Vec<usize>>,
}

impl FleetWatcher {
    /// A watcher for `services` (several entries may name one Consul service with other tags).
    pub fn new(client: ConsulClient, services: Vec<ServiceWatchOptions>) -> Self {
        Self { client, services }
    }

    /// Starts the loops; returns one receiver per entry of `services`, in order. Everything
    /// stops when `shutdown` fires.
    pub fn spawn(self, shutdown: CancellationToken) -> Vec<watch::Receiver<ServiceState>> {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in self.services.iter().enumerate() {
            by_name.entry(s.service.clone()).or_default().push(i);
        }
        let (txs, rxs): (Vec<_>, Vec<_>) = self
            .services
            .iter()
            .map(|_| watch::channel(super::ServiceWatcher::initial_state()))
            .unzip();
        let shared = std::sync::Arc::new(Shared {
            client: self.client,
            services: self.services,
            txs,
            by_name,
        });
        let (dirty_tx, dirty_rx) = mpsc::unbounded_channel::<Dirty>();
        tokio::spawn(checks_loop(
            shared.clone(),
            dirty_tx.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(catalog_loop(shared.clone(), dirty_tx, shutdown.clone()));
        tokio::spawn(reader(shared, dirty_rx, shutdown));
        rxs
    }
}

/// What needs a re-read.
#[derive(Debug)]
enum Dirty {
    All,
    Names(BTreeSet<String>),
}

/// A hash of the status of every check of every watched service, node checks included (a
/// failing `serfHealth` fails every instance on that node).
fn fingerprints(
    checks: &[HealthCheck],
    watched: &HashMap<String, Vec<usize>>,
) -> HashMap<String, u64> {
    let mut node_checks: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    let mut per_service: HashMap<&str, Vec<(&str, &str, &str)>> = HashMap::new();
    for c in checks {
        if c.service_name.is_empty() {
            node_checks
                .entry(&c.node)
                .or_default()
                .push((&c.check_id, &c.status));
        } else if watched.contains_key(&c.service_name) {
            per_service
                .entry(&c.service_name)
                .or_default()
                .push((&c.node, &c.check_id, &c.status));
        }
    }
    watched
        .keys()
        .map(|name| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            let mut own = per_service.remove(name.as_str()).unwrap_or_default();
            own.sort_unstable();
            let mut nodes: Vec<&str> = own.iter().map(|c| c.0).collect();
            nodes.dedup();
            own.hash(&mut h);
            for n in nodes {
                let mut nc = node_checks.get(n).cloned().unwrap_or_default();
                nc.sort_unstable();
                (n, nc).hash(&mut h);
            }
            (name.clone(), h.finish())
        })
        .collect()
}

async fn checks_loop(
    s: std::sync::Arc<Shared>,
    dirty: mpsc::UnboundedSender<Dirty>,
    shutdown: CancellationToken,
) {
    let mut pacer = Pacer::new(s.client.config());
    let mut last: Option<HashMap<String, u64>> = None;
    loop {
        let opts = pacer.options();
        let read = async {
            pacer.pace().await;
            s.client.health_state("any", opts).await
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = read => r,
        };
        match result {
            Ok(resp) => {
                if pacer.on_success(resp.meta.index) == IndexUpdate::Unchanged && last.is_some() {
                    continue;
                }
                let now = fingerprints(&resp.value, &s.by_name);
                let changed: BTreeSet<String> = match &last {
                    None => BTreeSet::new(), // the reader starts with everything dirty
                    Some(prev) => now
                        .iter()
                        .filter(|(k, v)| prev.get(*k) != Some(*v))
                        .map(|(k, _)| k.clone())
                        .collect(),
                };
                last = Some(now);
                if !changed.is_empty() && dirty.send(Dirty::Names(changed)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let delay = pacer.on_error(&e);
                tracing::warn!(watch = "health/state/any", error = %e, ?delay, "consul read failed; keeping the last good sets");
                for tx in &s.txs {
                    tx.send_if_modified(|st| mark_stale(&mut st.stale, &e));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                // Whatever changed during the outage is unknown: re-read everything after it.
                last = None;
                if dirty.send(Dirty::All).is_err() {
                    return;
                }
            }
        }
    }
}

async fn catalog_loop(
    s: std::sync::Arc<Shared>,
    dirty: mpsc::UnboundedSender<Dirty>,
    shutdown: CancellationToken,
) {
    let mut pacer = Pacer::new(s.client.config());
    let mut first = true;
    loop {
        let opts: QueryOptions = pacer.options();
        let read = async {
            pacer.pace().await;
            s.client.catalog_services(opts).await
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = read => r,
        };
        match result {
            Ok(resp) => {
                let update = pacer.on_success(resp.meta.index);
                if !first && update != IndexUpdate::Unchanged && dirty.send(Dirty::All).is_err() {
                    return;
                }
                first = false;
            }
            Err(e) => {
                let delay = pacer.on_error(&e);
                tracing::warn!(watch = "catalog/services", error = %e, ?delay, "consul read failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn reader(
    s: std::sync::Arc<Shared>,
    mut dirty: mpsc::UnboundedReceiver<Dirty>,
    shutdown: CancellationToken,
) {
    let mut pending: BTreeSet<usize> = (0..s.services.len()).collect();
    loop {
        // Coalesce everything that arrived while the last batch was read.
        while let Ok(d) = dirty.try_recv() {
            add(&s, &mut pending, d);
        }
        if pending.is_empty() {
            let d = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = dirty.recv() => match d { Some(d) => d, None => return },
            };
            add(&s, &mut pending, d);
            continue;
        }
        let batch: Vec<usize> = std::mem::take(&mut pending).into_iter().collect();
        let reads = futures_util::stream::iter(batch).map(|i| {
            let s = s.clone();
            async move {
                let o = &s.services[i];
                let q = HealthQuery {
                    passing_only: o.health == HealthFilter::Passing,
                    tags: o.tags.clone(),
                    filter: None,
                    datacenter: o.datacenter.clone(),
                };
                (
                    i,
                    s.client
                        .health_service(&o.service, &q, QueryOptions::default())
                        .await,
                )
            }
        });
        let mut reads = reads.buffer_unordered(CONCURRENCY);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = reads.next() => n,
            };
            let Some((i, result)) = next else { break };
            let o = &s.services[i];
            match result {
                Ok(resp) => {
                    let set = endpoints_from_entries(&resp.value, o.health).await;
                    publish(&s.txs[i], Some(set), &o.service);
                }
                Err(e) => {
                    tracing::warn!(service = %o.service, error = %e, "consul re-read failed; keeping the last good set");
                    s.txs[i].send_if_modified(|st| mark_stale(&mut st.stale, &e));
                    pending.insert(i);
                }
            }
        }
        if !pending.is_empty() {
            // Failed re-reads are retried after a pause, not in a tight loop.
            let pause = s.client.config().backoff.min();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

fn add(s: &Shared, pending: &mut BTreeSet<usize>, d: Dirty) {
    match d {
        Dirty::All => pending.extend(0..s.services.len()),
        Dirty::Names(names) => {
            for n in names {
                if let Some(ix) = s.by_name.get(&n) {
                    pending.extend(ix.iter().copied());
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(node: &str, id: &str, status: &str, output: &str, service: &str) -> HealthCheck {
        HealthCheck {
            node: node.into(),
            check_id: id.into(),
            name: id.into(),
            status: status.into(),
            output: output.into(),
            service_id: service.into(),
            service_name: service.into(),
        }
    }

    fn watched() -> HashMap<String, Vec<usize>> {
        [("api".to_string(), vec![0]), ("web".to_string(), vec![1])].into()
    }

    #[test]
    fn output_changes_are_ignored_status_changes_are_not() {
        let base = vec![
            check("n1", "serfHealth", "passing", "", ""),
            check("n1", "service:api-1", "passing", "ok", "api"),
            check("n2", "service:web-1", "passing", "", "web"),
        ];
        let a = fingerprints(&base, &watched());
        let mut out = base.clone();
        out[1].output = "still ok, new text".into();
        assert_eq!(fingerprints(&out, &watched()), a, "output-only change");
        let mut st = base.clone();
        st[1].status = "critical".into();
        let b = fingerprints(&st, &watched());
        assert_ne!(b["api"], a["api"]);
        assert_eq!(b["web"], a["web"], "other services untouched");
    }

    #[test]
    fn a_node_check_touches_the_services_on_that_node() {
        let base = vec![
            check("n1", "serfHealth", "passing", "", ""),
            check("n1", "service:api-1", "passing", "", "api"),
            check("n2", "service:web-1", "passing", "", "web"),
        ];
        let a = fingerprints(&base, &watched());
        let mut node_down = base.clone();
        node_down[0].status = "critical".into();
        let b = fingerprints(&node_down, &watched());
        assert_ne!(b["api"], a["api"]);
        assert_eq!(b["web"], a["web"]);
    }
}
