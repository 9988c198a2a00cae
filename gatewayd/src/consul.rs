//! Consul glue, off the request path: service watchers feed [`Control::update_service`], a KV
//! watcher applies every gateway's weight changes, weight writes go to KV with CAS, the last
//! good endpoint sets are cached on disk, and the gateway can register itself.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use discovery::consul::QueryOptions;
use discovery::watch::{HealthFilter, ServiceWatchOptions};
use discovery::{
    ConsulClient, ConsulConfig, Endpoint, EndpointSet, KvWatcher, Registration, ServiceState,
    ServiceWatcher, Source, Staleness,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::admin::model::WeightChange;
use crate::app::Control;
use crate::config::{
    Config, ConsulConsistency, ConsulHealth, ConsulService, ConsulSettings, WatchMode,
};
use crate::weights::{plan_change, KvValue, RouteWeights, WeightsError};

/// Errors starting the Consul link.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// The ACL token file could not be read.
    #[error("consul token file {path}: {reason}")]
    Token {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The client could not be built.
    #[error("consul client: {0}")]
    Client(#[from] discovery::DiscoveryError),
}

/// The KV key of a route's weights.
pub fn weights_key(cluster: &str, route: &str) -> String {
    format!("meshgate/{cluster}/routes/{route}/weights")
}

/// The running link between a gateway and Consul.
pub struct ConsulLink {
    client: ConsulClient,
    control: Arc<Control>,
    settings: ConsulSettings,
    cluster: String,
    rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
    watchers: Mutex<Watchers>,
    cache: Mutex<BTreeMap<String, CachedService>>,
    registration: tokio::sync::Mutex<Option<Registration>>,
    /// The `meshgate` service watch of fleet-wide rate limits, while one is configured.
    fleet_watch: Mutex<Option<CancellationToken>>,
    /// This gateway's registration id, once chosen.
    own_id: Mutex<Option<String>>,
}

impl std::fmt::Debug for ConsulLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulLink")
            .field("address", &self.settings.address)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Running watchers: one per service, or one fleet for all.
#[derive(Default)]
struct Watchers {
    per_service: HashMap<(String, ConsulService), CancellationToken>,
    fleet: Option<(Vec<(String, ConsulService)>, CancellationToken)>,
}

fn watch_options(svc: &ConsulService) -> ServiceWatchOptions {
    ServiceWatchOptions {
        service: svc.service.clone(),
        health: match svc.health {
            ConsulHealth::Passing => HealthFilter::Passing,
            ConsulHealth::PassingOrWarning => HealthFilter::PassingOrWarning,
        },
        tags: svc.tags.clone(),
        datacenter: svc.datacenter.clone(),
    }
}

/// The gateways alive: the passing `meshgate` instances, this one counted whether or not its
/// own registration is listed yet (it is serving), at least 1.
pub fn fleet_size(set: &EndpointSet, own_id: Option<&str>) -> u32 {
    let listed = set
        .endpoints()
        .iter()
        .filter(|e| Some(e.id.as_str()) != own_id)
        .count();
    let own = u32::from(own_id.is_some());
    u32::try_from(listed)
        .unwrap_or(u32::MAX)
        .saturating_add(own)
        .max(1)
}

/// One service in the last-good cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedService {
    endpoints: Vec<Endpoint>,
    saved_at: u64,
}

impl ConsulLink {
    /// Builds the client, seeds services from the cache file, and starts the watchers (service
    /// watchers for every Consul-backed service, the KV weights watcher when enabled). Must be
    /// called inside the control runtime.
    pub fn start(
        control: Arc<Control>,
        config: &Config,
        settings: ConsulSettings,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, ConsulError> {
        let token = match &settings.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map(|s| s.trim().to_string())
                    .map_err(|e| ConsulError::Token {
                        path: p.display().to_string(),
                        reason: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let mut cc = ConsulConfig::new(settings.address.clone());
        cc.ca_file = settings.ca_file.clone();
        cc.token = token;
        cc.datacenter = settings.datacenter.clone();
        cc.wait = settings.wait;
        cc.request_timeout = settings.wait.mul_f64(1.1) + Duration::from_secs(5);
        cc.consistency = match settings.consistency {
            ConsulConsistency::Default => discovery::Consistency::Default,
            ConsulConsistency::Stale => discovery::Consistency::Stale,
            ConsulConsistency::Consistent => discovery::Consistency::Consistent,
        };
        let min = Duration::from_millis(500).min(settings.backoff_max);
        if let Ok(b) = discovery::Backoff::try_new(min, settings.backoff_max, 0.2) {
            cc.backoff = b;
        }
        // Let a burst of flips through quickly; a churning service still slows to this pace.
        cc.min_interval = Duration::from_millis(100);
        let client = ConsulClient::new(cc)?;
        let link = Arc::new(Self {
            client,
            control,
            cluster: config.gateway.cluster.clone(),
            settings,
            rt: tokio::runtime::Handle::current(),
            shutdown,
            watchers: Mutex::new(Watchers::default()),
            cache: Mutex::new(BTreeMap::new()),
            registration: tokio::sync::Mutex::new(None),
            fleet_watch: Mutex::new(None),
            own_id: Mutex::new(None),
        });
        link.seed_from_cache(config);
        link.sync(config);
        if link.settings.kv_weights {
            link.spawn_kv();
        }
        Ok(link)
    }

    /// True when weights live in Consul KV.
    pub fn kv_weights(&self) -> bool {
        self.settings.kv_weights
    }

    /// Starts watchers for Consul-backed services that have none, stops those of services that
    /// are gone or changed. Called at start and after every applied reload.
    pub fn sync(self: &Arc<Self>, config: &Config) {
        self.sync_fleet(crate::policy::PolicyRegistry::wants_fleet(config));
        let wanted: BTreeMap<String, ConsulService> = config
            .services
            .iter()
            .filter_map(|(n, s)| s.consul.clone().map(|c| (n.clone(), c)))
            .collect();
        let fleet = match self.settings.watch_mode {
            WatchMode::Fleet => true,
            WatchMode::PerService => false,
            WatchMode::Auto => wanted.len() > WatchMode::AUTO_FLEET_ABOVE,
        };
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if fleet {
            // One fleet for the whole set: restarted when the set changes.
            let key: Vec<(String, ConsulService)> = wanted.into_iter().collect();
            if w.fleet.as_ref().is_some_and(|(k, _)| *k == key) {
                return;
            }
            w.per_service.drain().for_each(|(_, t)| t.cancel());
            if let Some((_, t)) = w.fleet.take() {
                t.cancel();
            }
            if !key.is_empty() {
                let token = self.shutdown.child_token();
                self.spawn_fleet(key.clone(), token.clone());
                w.fleet = Some((key, token));
            }
            return;
        }
        if let Some((_, t)) = w.fleet.take() {
            t.cancel();
        }
        w.per_service.retain(|(name, svc), token| {
            let keep = wanted.get(name) == Some(svc);
            if !keep {
                token.cancel();
            }
            keep
        });
        for key in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = w.per_service.entry(key) {
                let token = self.shutdown.child_token();
                self.spawn_service(slot.key().0.clone(), slot.key().1.clone(), token.clone());
                slot.insert(token);
            }
        }
    }

    /// Follows the gateways alive (passing instances of service `meshgate`) while a
    /// fleet-wide rate limit is configured, and tells the policies their count.
    fn sync_fleet(self: &Arc<Self>, wanted: bool) {
        let mut w = self.fleet_watch.lock().unwrap_or_else(|e| e.into_inner());
        match (wanted, w.take()) {
            (true, Some(token)) => *w = Some(token),
            (true, None) => {
                let token = self.shutdown.child_token();
                let link = self.clone();
                self.rt.spawn(link.follow_fleet(token.clone()));
                *w = Some(token);
            }
            (false, Some(token)) => token.cancel(),
            (false, None) => {}
        }
    }

    async fn follow_fleet(self: Arc<Self>, token: CancellationToken) {
        let opts = ServiceWatchOptions::new(discovery::register::DEFAULT_SERVICE_NAME);
        let mut rx = ServiceWatcher::new(self.client.clone(), opts).spawn(token.clone());
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
            let st = rx.borrow_and_update().clone();
            // Never read yet: the last count stays (1 at start). A failed read keeps the last
            // good set (marked stale), so an outage keeps the last known count too.
            if st.last_success.is_none() {
                continue;
            }
            let own = self
                .own_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let n = fleet_size(&st.set, own.as_deref());
            self.control.policies.set_fleet_size(n);
        }
    }

    fn spawn_fleet(
        self: &Arc<Self>,
        services: Vec<(String, ConsulService)>,
        token: CancellationToken,
    ) {
        tracing::info!(
            services = services.len(),
            "following Consul services with the fleet watcher (2 connections)"
        );
        let link = self.clone();
        self.rt.spawn(async move {
            let opts = services.iter().map(|(_, s)| watch_options(s)).collect();
            let rxs =
                discovery::watch::FleetWatcher::new(link.client.clone(), opts).spawn(token.clone());
            for ((name, _), rx) in services.into_iter().zip(rxs) {
                tokio::spawn(link.clone().forward(name, rx, token.clone()));
            }
        });
    }

    fn spawn_service(self: &Arc<Self>, name: String, svc: ConsulService, token: CancellationToken) {
        let opts = watch_options(&svc);
        let link = self.clone();
        self.rt.spawn(async move {
            let rx = ServiceWatcher::new(link.client.clone(), opts).spawn(token.clone());
            link.forward(name, rx, token).await;
        });
    }

    /// Applies every state a watcher publishes for service `name` until `token` fires or the
    /// watcher ends.
    async fn forward(
        self: Arc<Self>,
        name: String,
        mut rx: tokio::sync::watch::Receiver<ServiceState>,
        token: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
            let st = rx.borrow_and_update().clone();
            self.on_service_state(&name, st);
        }
    }

    /// Applies a watcher's state. Until a watcher's first successful read, the current set
    /// (saved at start, or from the watcher it replaces) keeps serving and only its staleness
    /// is updated: an unreachable Consul never empties a service.
    fn on_service_state(&self, name: &str, st: ServiceState) {
        if st.last_success.is_none() {
            if let Some(mut cur) = self.control.service_state(name) {
                cur.stale = st.stale.clone().or(cur.stale);
                self.control.update_service(name, cur);
                return;
            }
        }
        if st.last_success.is_some() && st.stale.is_none() {
            self.save_cache(name, &st.set);
        }
        self.control.update_service(name, st);
    }

    fn seed_from_cache(&self, config: &Config) {
        let Some(path) = &self.settings.cache_file else {
            return;
        };
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        let cached: BTreeMap<String, CachedService> = match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "discovery cache ignored");
                return;
            }
        };
        for (name, c) in &cached {
            if config
                .services
                .get(name)
                .is_some_and(|s| s.consul.is_some())
            {
                let saved_at = SystemTime::UNIX_EPOCH + Duration::from_secs(c.saved_at);
                tracing::info!(service = %name, endpoints = c.endpoints.len(), "serving saved endpoints until Consul answers");
                self.control.update_service(
                    name,
                    ServiceState {
                        set: Arc::new(EndpointSet::new(c.endpoints.clone())),
                        source: Source::Saved,
                        last_success: Some(saved_at),
                        stale: Some(Staleness {
                            since: SystemTime::now(),
                            reason: "not yet read from Consul since start; serving the saved set"
                                .into(),
                        }),
                    },
                );
            }
        }
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = cached;
    }

    fn save_cache(&self, name: &str, set: &EndpointSet) {
        let Some(path) = &self.settings.cache_file else {
            return;
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache
            .get(name)
            .is_some_and(|c| c.endpoints == set.endpoints())
        {
            return;
        }
        let saved_at = crate::metrics::unix_secs(SystemTime::now());
        cache.insert(
            name.to_string(),
            CachedService {
                endpoints: set.endpoints().to_vec(),
                saved_at,
            },
        );
        match serde_json::to_vec_pretty(&*cache) {
            Ok(bytes) => {
                if let Err(e) = crate::weights::write_atomic(path, &bytes) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot save the discovery cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the discovery cache"),
        }
    }

    fn spawn_kv(self: &Arc<Self>) {
        let prefix = format!("meshgate/{}/routes/", self.cluster);
        let link = self.clone();
        let token = self.shutdown.child_token();
        self.rt.spawn(async move {
            let mut rx = KvWatcher::new(link.client.clone(), prefix.clone()).spawn(token.clone());
            let mut last_good: BTreeMap<String, RouteWeights> = BTreeMap::new();
            // A KV that comes back empty right after an outage (a server restarted empty or
            // restored from an old snapshot) keeps the weights last read, reported stale, for
            // the same grace as an emptied service: a flip is undone only by a write.
            let mut was_stale = false;
            let mut held: Option<discovery::Staleness> = None;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
                let st = rx.borrow_and_update().clone();
                let emptied = st.stale.is_none()
                    && st.index != 0
                    && !last_good.is_empty()
                    && !st.entries.keys().any(|k| k.starts_with(&prefix))
                    && (was_stale || held.is_some());
                was_stale = st.stale.is_some();
                if emptied {
                    let now = std::time::SystemTime::now();
                    let h = held.get_or_insert_with(|| discovery::Staleness {
                        since: now,
                        reason: "Consul KV answered with no weights right after an outage; keeping the last good ones".to_string(),
                    });
                    if h.age(now) < discovery::EMPTY_AFTER_OUTAGE_GRACE {
                        link.control.set_weights_staleness(Some(h.clone()));
                        continue;
                    }
                }
                held = None;
                link.control.set_weights_staleness(st.stale.clone());
                if st.index == 0 {
                    continue; // never loaded: keep what we have
                }
                let mut routes = BTreeMap::new();
                for (key, entry) in &st.entries {
                    let Some(route) = key.strip_prefix(&prefix).and_then(|k| k.strip_suffix("/weights")) else { continue };
                    match serde_json::from_slice::<KvValue>(&entry.value) {
                        Ok(v) => {
                            routes.insert(route.to_string(), v.into_state());
                        }
                        Err(e) => {
                            // A bad value never moves traffic: the last good one stays.
                            tracing::warn!(key = %key, error = %e, "ignoring invalid weights in Consul KV; keeping the last good value");
                            if let Some(prev) = last_good.get(route) {
                                routes.insert(route.to_string(), prev.clone());
                            }
                        }
                    }
                }
                last_good.clone_from(&routes);
                link.control.apply_kv_weights(routes);
            }
        });
    }

    /// Changes a route's weights in KV with CAS: read the key, plan the change, write it only
    /// if nobody wrote in between. A lost race is a [`WeightsError::Conflict`] naming the
    /// current revision. `Ok(None)`: no such route.
    pub async fn change_weights(
        &self,
        route: &str,
        new: Option<BTreeMap<String, u32>>,
        expected: Option<u64>,
        by: String,
        reason: String,
    ) -> Result<Option<WeightChange>, WeightsError> {
        let Some((route_cfg, effective)) = self.control.route_and_weights(route) else {
            return Ok(None);
        };
        let key = weights_key(&self.cluster, route);
        let unavailable = |e: discovery::DiscoveryError| WeightsError::Unavailable {
            reason: e.to_string(),
        };
        let got = self
            .client
            .kv_get(&key, QueryOptions::default())
            .await
            .map_err(unavailable)?;
        let (entry, modify_index) = match got.value {
            Some(pair) => (
                serde_json::from_slice::<KvValue>(&pair.value)
                    .map(KvValue::into_state)
                    .unwrap_or_default(),
                pair.modify_index,
            ),
            None => (RouteWeights::default(), 0),
        };
        let (next, change) = plan_change(&route_cfg, &entry, effective, new, expected, by, reason)?;
        let body = serde_json::to_vec(&KvValue::from_state(&next)).map_err(|e| {
            WeightsError::Unavailable {
                reason: e.to_string(),
            }
        })?;
        if !self
            .client
            .kv_put(&key, &body, Some(modify_index))
            .await
            .map_err(unavailable)?
        {
            let current = match self.client.kv_get(&key, QueryOptions::default()).await {
                Ok(r) => r
                    .value
                    .and_then(|p| serde_json::from_slice::<KvValue>(&p.value).ok())
                    .map_or(0, |v| v.revision),
                Err(_) => entry.revision + 1,
            };
            return Err(WeightsError::Conflict {
                route: route.to_string(),
                current,
                expected: expected.unwrap_or(entry.revision),
            });
        }
        self.control.apply_route_weights(route, next, &change);
        Ok(Some(change))
    }

    /// Registers this gateway as service `meshgate` (admin address) with a TTL check.
    pub async fn register(&self, admin: SocketAddr) {
        if !self.settings.register {
            return;
        }
        let id = self
            .settings
            .register_id
            .clone()
            .unwrap_or_else(|| format!("meshgate-{}-{}", admin.port(), std::process::id()));
        *self.own_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        match discovery::register_self(
            self.client.clone(),
            id.clone(),
            discovery::register::DEFAULT_SERVICE_NAME,
            admin,
            self.settings.register_ttl,
        )
        .await
        {
            Ok(r) => {
                tracing::info!(service_id = %id, %admin, "registered in Consul");
                *self.registration.lock().await = Some(r);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot register in Consul; gwctl --consul will not find this gateway")
            }
        }
    }

    /// Deregisters (at shutdown, before draining) and stops every watcher.
    pub async fn stop(&self) {
        self.stop_registration(true).await;
    }

    /// Stops every watcher after a hand-over: the registration goes too unless its id is the
    /// configured `register_id`, which the successor has registered again already.
    pub async fn stop_after_handover(&self) {
        let own_id = self.settings.register_id.is_none();
        self.stop_registration(own_id).await;
    }

    async fn stop_registration(&self, deregister: bool) {
        let registration = self.registration.lock().await.take();
        if let Some(r) = registration.filter(|_| deregister) {
            match tokio::time::timeout(Duration::from_secs(2), r.deregister()).await {
                Ok(Ok(())) => tracing::info!("deregistered from Consul"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot deregister from Consul"),
                Err(_) => tracing::warn!("deregistering from Consul timed out"),
            }
        }
        self.shutdown.cancel();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> EndpointSet {
        EndpointSet::new(
            ids.iter()
                .enumerate()
                .map(|(i, id)| Endpoint {
                    id: (*id).to_string(),
                    ..Endpoint::new(SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)))
                })
                .collect(),
        )
    }

    #[test]
    fn the_fleet_counts_this_gateway_once_listed_or_not() {
        assert_eq!(fleet_size(&set(&["a", "b"]), Some("a")), 2);
        assert_eq!(fleet_size(&set(&["b"]), Some("a")), 2, "not listed yet");
        assert_eq!(fleet_size(&set(&[]), Some("a")), 1);
        assert_eq!(fleet_size(&set(&[]), None), 1, "never below one");
        assert_eq!(fleet_size(&set(&["a", "b", "c"]), None), 3);
    }
}
