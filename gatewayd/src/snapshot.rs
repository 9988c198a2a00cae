//! The immutable routing snapshot: config + effective weights + endpoint sets, swapped whole
//! through [`SnapshotHandle`]. A request loads it once and finishes on it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use discovery::ServiceState;

use crate::balance::{Balancer, EndpointRuntime, EndpointStats};
use crate::config::{Config, RouteConfig, ServiceConfig};
use crate::metrics::{BackendMetrics, Registry};
use crate::route::RouteTable;
use crate::split::Split;

/// The pointer every worker reads once per request.
pub type SnapshotHandle = Arc<ArcSwap<Snapshot>>;

/// Where a route's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsSource {
    /// The config file's defaults.
    File,
    /// A runtime override (state file or Consul KV) at this revision.
    Override {
        /// Monotonic revision of the override.
        revision: u64,
        /// "state_file" or "consul".
        store: &'static str,
    },
}

/// Runtime weights of one route: backend name → weight, plus their origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightOverride {
    /// Backend name → weight.
    pub weights: BTreeMap<String, u32>,
    /// Revision.
    pub revision: u64,
    /// "state_file" or "consul".
    pub store: &'static str,
}

/// One immutable generation of the routing state.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every swap.
    pub generation: u64,
    /// The config it was built from.
    pub config: Arc<Config>,
    /// Compiled matchers; indexes into `routes`.
    pub table: RouteTable,
    /// Routes in declaration order.
    pub routes: Vec<RouteRuntime>,
    /// Services, by index.
    pub services: Vec<Arc<ServiceRuntime>>,
    /// Service name → index.
    pub service_index: HashMap<String, usize>,
    /// Some route matches on a header, or some split reads a header or cookie: requests need
    /// their full header map to be routed (otherwise only `Host` is looked at).
    pub needs_headers: bool,
}

/// A route ready to serve.
#[derive(Debug)]
pub struct RouteRuntime {
    /// The route's config.
    pub config: RouteConfig,
    /// Backend choice with effective weights.
    pub split: Split,
    /// Backends in declaration order.
    pub backends: Vec<BackendRuntime>,
    /// Origin of the weights in `split`.
    pub weights_source: WeightsSource,
    /// Metrics of requests that matched this route but reached no backend.
    pub unrouted: Arc<BackendMetrics>,
    /// The route's retry budget (kept across reloads).
    pub budget: Arc<crate::proxy::RetryBudget>,
    /// The route's requests in flight, for `max_in_flight` (kept across reloads).
    pub load: Arc<std::sync::atomic::AtomicU32>,
    /// The route's policy chain; None when it lists none (then no policy code runs).
    pub policies: Option<Arc<crate::policy::RoutePolicies>>,
}

/// A backend of a route.
#[derive(Debug)]
pub struct BackendRuntime {
    /// Backend name.
    pub name: String,
    /// Index into `Snapshot::services`.
    pub service: usize,
    /// Metrics of (route, backend).
    pub metrics: Arc<BackendMetrics>,
}

/// A service's endpoints and balancer.
#[derive(Debug)]
pub struct ServiceRuntime {
    /// The service's config.
    pub config: ServiceConfig,
    /// Endpoints with live stats.
    pub endpoints: Vec<EndpointRuntime>,
    /// Balancer over `endpoints`.
    pub balancer: Balancer,
    /// Provider state (source, freshness) behind `endpoints`.
    pub state: ServiceState,
    /// Upstream TLS (`tls = {…}`), shared with the previous snapshot while unchanged.
    pub tls: Option<Arc<crate::tls::UpstreamTlsRuntime>>,
}

/// Endpoint statistics by (service, address), kept across snapshots so a reload does not
/// forget in-flight counts, latency estimates or ejections.
#[derive(Debug, Default)]
pub struct EndpointStatsRegistry {
    map: Mutex<HashMap<(String, SocketAddr), Arc<EndpointStats>>>,
}

impl EndpointStatsRegistry {
    fn get(&self, service: &str, addr: SocketAddr) -> Arc<EndpointStats> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((service.to_string(), addr)).or_default().clone()
    }

    fn retain(&self, keep: impl Fn(&str, SocketAddr) -> bool) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(s, a), _| keep(s, *a));
    }
}

/// What a snapshot is built from.
pub struct Inputs<'a> {
    /// Validated config.
    pub config: &'a Arc<Config>,
    /// Runtime weight overrides by route name.
    pub overrides: &'a BTreeMap<String, WeightOverride>,
    /// Endpoint state per service name (services missing here have no endpoints).
    pub services: &'a BTreeMap<String, ServiceState>,
    /// Metrics registry.
    pub metrics: &'a Registry,
    /// Endpoint statistics registry.
    pub endpoint_stats: &'a EndpointStatsRegistry,
    /// Compiled policies (kept across reloads).
    pub policies: &'a crate::policy::PolicyRegistry,
    /// The snapshot being replaced, whose unchanged services are reused.
    pub previous: Option<&'a Snapshot>,
}

impl Snapshot {
    /// Builds a snapshot. Weights overrides that no longer fit the route (unknown backends, all
    /// zero) are ignored with a warning and the file's weights apply.
    pub fn build(generation: u64, inp: &Inputs<'_>) -> Self {
        let config = inp.config;
        let mut services = Vec::with_capacity(config.services.len());
        let mut service_index = HashMap::with_capacity(config.services.len());
        for (name, svc) in &config.services {
            let state = inp
                .services
                .get(name)
                .cloned()
                .unwrap_or_else(|| match &svc.consul {
                    // Not read from Consul yet: no endpoints, no success, until the watcher answers.
                    Some(_) => ServiceState {
                        set: Arc::default(),
                        source: discovery::Source::Consul,
                        last_success: None,
                        stale: None,
                    },
                    None => discovery::static_provider::service_state(&svc.endpoints),
                });
            let previous = inp
                .previous
                .and_then(|p| Some(&p.services[*p.service_index.get(name)?]));
            // The client config (and its session store) lives on while the table is the same.
            let tls = svc.tls.as_ref().map(|t| {
                previous
                    .and_then(|old| old.tls.clone())
                    .filter(|old| old.settings == *t)
                    .unwrap_or_else(|| Arc::new(crate::tls::UpstreamTlsRuntime::new(t)))
            });
            let reused = previous.and_then(|old| {
                (old.config == *svc && old.state.set == state.set).then(|| {
                    // Static states are rebuilt with a fresh timestamp each time; only a change
                    // of source or staleness is news.
                    if old.state.source == state.source && old.state.stale == state.stale {
                        old.clone()
                    } else {
                        // Same endpoints, new freshness: keep balancer and stats, new state.
                        Arc::new(ServiceRuntime {
                            config: svc.clone(),
                            endpoints: old.endpoints.clone(),
                            balancer: Balancer::new(svc.balance, &old.endpoints),
                            state: state.clone(),
                            tls: tls.clone(),
                        })
                    }
                })
            });
            let rt = reused.unwrap_or_else(|| {
                let endpoints: Vec<EndpointRuntime> = state
                    .set
                    .endpoints()
                    .iter()
                    .map(|e| EndpointRuntime::new(e.clone(), inp.endpoint_stats.get(name, e.addr)))
                    .collect();
                Arc::new(ServiceRuntime {
                    config: svc.clone(),
                    balancer: Balancer::new(svc.balance, &endpoints),
                    endpoints,
                    state,
                    tls,
                })
            });
            service_index.insert(name.clone(), services.len());
            services.push(rt);
        }
        inp.endpoint_stats.retain(|s, a| {
            service_index
                .get(s)
                .is_some_and(|&i| services[i].endpoints.iter().any(|e| e.endpoint.addr == a))
        });

        let routes: Vec<RouteRuntime> = config
            .routes
            .iter()
            .zip(inp.policies.routes(config))
            .map(|(r, policies)| {
                let (weights, weights_source) = effective_weights(r, inp.overrides.get(&r.name));
                let backends = r
                    .backends
                    .iter()
                    .map(|b| BackendRuntime {
                        name: b.name.clone(),
                        service: service_index.get(&b.service).copied().unwrap_or(0),
                        metrics: inp.metrics.backend(&r.name, &b.name),
                    })
                    .collect();
                RouteRuntime {
                    split: Split::new(
                        weights,
                        r.cohorts.clone(),
                        r.sticky.clone(),
                        r.on_empty_backend,
                    ),
                    config: r.clone(),
                    backends,
                    weights_source,
                    unrouted: inp.metrics.backend(&r.name, ""),
                    budget: inp.metrics.retry_budget(&r.name),
                    load: inp.metrics.route_load(&r.name),
                    policies,
                }
            })
            .collect();
        // Metrics of (route, backend) pairs that no longer exist are dropped; "" is the
        // route's own no-backend series.
        let live: std::collections::HashSet<(&str, &str)> = config
            .routes
            .iter()
            .flat_map(|r| {
                std::iter::once((r.name.as_str(), "")).chain(
                    r.backends
                        .iter()
                        .map(move |b| (r.name.as_str(), b.name.as_str())),
                )
            })
            .collect();
        inp.metrics
            .retain(|route, backend| live.contains(&(route, backend)));
        let table = RouteTable::new(&config.routes);
        let needs_headers = table.reads_headers() || routes.iter().any(|r| r.split.reads_headers());
        Self {
            generation,
            config: config.clone(),
            table,
            routes,
            services,
            service_index,
            needs_headers,
        }
    }

    /// Index of the route named `name`.
    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.config.name == name)
    }
}

/// The weights a route uses: a valid override, or the file's.
pub fn effective_weights(r: &RouteConfig, o: Option<&WeightOverride>) -> (Vec<u32>, WeightsSource) {
    let file = || {
        (
            r.backends.iter().map(|b| b.weight).collect(),
            WeightsSource::File,
        )
    };
    let Some(o) = o else { return file() };
    let fits = o
        .weights
        .keys()
        .all(|k| r.backends.iter().any(|b| &b.name == k))
        && o.weights.values().any(|&w| w > 0);
    if !fits {
        tracing::warn!(route = %r.name, revision = o.revision, "weight override does not fit the route's backends; using the file's weights");
        return file();
    }
    let w = r
        .backends
        .iter()
        .map(|b| o.weights.get(&b.name).copied().unwrap_or(0))
        .collect();
    (
        w,
        WeightsSource::Override {
            revision: o.revision,
            store: o.store,
        },
    )
}
