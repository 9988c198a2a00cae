//! Wiring: [`Control`] owns the mutable state (config, weights, endpoint sets) and builds
//! snapshots; [`App`] binds listeners, starts workers, the admin API, reload and signals.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use discovery::ServiceState;
use tokio::sync::watch;

use crate::admin::model::{ReloadStatus, WeightChange};
use crate::config::{self, Config};
use crate::events::Events;
use crate::metrics::Registry;
use crate::policy::PolicyRegistry;
use crate::proxy::{
    bind_listener, run_worker, ConnCap, ListenerMode, Listening, Upstreams, Worker, WorkerSet,
};
use crate::snapshot::{EndpointStatsRegistry, Inputs, Snapshot, SnapshotHandle};
use crate::weights::{rfc3339, WeightStore, WeightsError};

/// Errors that stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The admin token file could not be read or created.
    #[error("admin token file {path}: {reason}")]
    Token {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The Consul link could not start.
    #[error("consul: {0}")]
    Consul(String),
    /// A worker thread could not start.
    #[error("cannot start worker: {0}")]
    Worker(std::io::Error),
    /// A TLS listener's certificate or key, or a service's upstream TLS file, could not be used
    /// (names the file).
    #[error("{what}: {source}")]
    Tls {
        /// `listener NAME` or `services.NAME.tls`.
        what: String,
        /// What is wrong, naming the file.
        source: crate::tls::TlsError,
    },
}

/// The control plane's state, behind one lock (never taken on the request path).
#[derive(Debug)]
struct State {
    config: Arc<Config>,
    loaded_at: SystemTime,
    last_reload: ReloadStatus,
    services: BTreeMap<String, ServiceState>,
    weights: WeightStore,
}

/// Shared by the admin API, reload and discovery.
#[derive(Debug)]
pub struct Control {
    /// The snapshot every worker reads.
    pub snapshot: SnapshotHandle,
    /// Metrics.
    pub metrics: Arc<Registry>,
    /// Events for `/v1/events`.
    pub events: Events,
    /// Config file path (None when built from a string in tests).
    pub config_path: Option<PathBuf>,
    /// Admin bearer token.
    pub token: Option<String>,
    /// True after SIGTERM.
    pub draining: AtomicBool,
    /// The Consul link, when `[consul]` is configured.
    pub consul: std::sync::OnceLock<Arc<crate::consul::ConsulLink>>,
    /// Certificates of the TLS listeners (set once at start; listeners need a restart).
    pub tls: std::sync::OnceLock<Vec<Arc<crate::tls::ListenerCerts>>>,
    endpoint_stats: EndpointStatsRegistry,
    /// Compiled policies and their state (rate-limit buckets), kept across reloads.
    pub policies: PolicyRegistry,
    /// Set while Consul KV cannot be read: the weights last read keep serving.
    weights_stale: Mutex<Option<discovery::Staleness>>,
    generation: AtomicU64,
    state: Mutex<State>,
}

impl Control {
    /// Builds the control plane and the first snapshot.
    pub fn new(config: Config, config_path: Option<PathBuf>, token: Option<String>) -> Arc<Self> {
        let metrics = Arc::new(Registry::new(config.gateway.workers));
        let (weights, weights_err) = WeightStore::load(config.gateway.state_file.clone());
        if let Some(e) = &weights_err {
            tracing::error!(error = %e, "weights state file ignored; the config file's weights apply");
        }
        let config = Arc::new(config);
        let state = State {
            config: config.clone(),
            loaded_at: SystemTime::now(),
            last_reload: ReloadStatus {
                ok: true,
                at: None,
                errors: Vec::new(),
                restart_required: Vec::new(),
            },
            services: BTreeMap::new(),
            weights,
        };
        let endpoint_stats = EndpointStatsRegistry::default();
        let policies = PolicyRegistry::default();
        let first = Snapshot::build(
            1,
            &Inputs {
                config: &config,
                overrides: &state.weights.overrides(),
                services: &state.services,
                metrics: &metrics,
                endpoint_stats: &endpoint_stats,
                policies: &policies,
                previous: None,
            },
        );
        Arc::new(Self {
            snapshot: Arc::new(ArcSwap::from_pointee(first)),
            metrics,
            events: Events::new(),
            config_path,
            token,
            draining: AtomicBool::new(false),
            consul: std::sync::OnceLock::new(),
            tls: std::sync::OnceLock::new(),
            endpoint_stats,
            policies,
            weights_stale: Mutex::new(None),
            generation: AtomicU64::new(1),
            state: Mutex::new(State { ..state }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds a snapshot from `st` and swaps it in.
    fn rebuild(&self, st: &State) {
        let previous = self.snapshot.load_full();
        let generation = self.generation.fetch_add(1, Relaxed) + 1;
        let next = Snapshot::build(
            generation,
            &Inputs {
                config: &st.config,
                overrides: &st.weights.overrides(),
                services: &st.services,
                metrics: &self.metrics,
                endpoint_stats: &self.endpoint_stats,
                policies: &self.policies,
                previous: Some(&previous),
            },
        );
        self.snapshot.store(Arc::new(next));
    }

    /// Re-reads the config file; on success swaps in a new snapshot, on failure keeps serving
    /// the old one. Either way the result is remembered for `/v1/config` and `/readyz`.
    pub fn reload(&self) -> ReloadStatus {
        let Some(path) = &self.config_path else {
            return ReloadStatus {
                ok: false,
                at: Some(rfc3339(SystemTime::now())),
                errors: vec!["no config file to reload".into()],
                restart_required: vec![],
            };
        };
        let result = config::load(path);
        let mut st = self.lock();
        let at = Some(rfc3339(SystemTime::now()));
        let status = match result {
            Ok(cfg) => {
                let restart_required = restart_required(&st.config, &cfg);
                if *st.config == cfg {
                    ReloadStatus {
                        ok: true,
                        at,
                        errors: vec![],
                        restart_required,
                    }
                } else {
                    st.config = Arc::new(cfg);
                    st.loaded_at = SystemTime::now();
                    self.rebuild(&st);
                    self.metrics.reloads_ok.fetch_add(1, Relaxed);
                    if let Some(link) = self.consul.get() {
                        link.sync(&st.config);
                    }
                    tracing::info!(file = %path.display(), routes = st.config.routes.len(), "config reloaded");
                    self.events.emit(
                        "config_reloaded",
                        None,
                        None,
                        format!(
                            "{} reloaded: {} routes",
                            path.display(),
                            st.config.routes.len()
                        ),
                    );
                    if !restart_required.is_empty() {
                        tracing::warn!(settings = ?restart_required, "changed settings take effect after a restart");
                    }
                    ReloadStatus {
                        ok: true,
                        at,
                        errors: vec![],
                        restart_required,
                    }
                }
            }
            Err(e) => {
                self.metrics.reloads_failed.fetch_add(1, Relaxed);
                tracing::warn!(file = %path.display(), error = %e, "config rejected; keeping previous");
                self.events
                    .emit("config_rejected", None, None, e.to_string());
                ReloadStatus {
                    ok: false,
                    at,
                    errors: e.0.iter().map(ToString::to_string).collect(),
                    restart_required: vec![],
                }
            }
        };
        st.last_reload = status.clone();
        status
    }

    /// Re-reads every TLS listener's certificates (SIGHUP, `POST /v1/reload`); a refused set
    /// leaves the previous one serving. Returns the refusals (each names its file).
    pub fn reload_tls(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for l in self.tls.get().map_or(&[][..], Vec::as_slice) {
            let r = l.reload();
            self.tls_reloaded(l, &r);
            if let Err(e) = r {
                errors.push(format!("listener {}: {e}", l.listener));
            }
        }
        errors
    }

    /// Records a certificate reload's outcome (metrics, events).
    pub fn tls_reloaded(&self, l: &crate::tls::ListenerCerts, r: &Result<(), String>) {
        match r {
            Ok(()) => self.events.emit(
                "certificates_reloaded",
                None,
                None,
                format!("listener {}: certificates reloaded", l.listener),
            ),
            Err(e) => {
                self.events.emit(
                    "certificates_rejected",
                    None,
                    None,
                    format!("listener {}: {e}", l.listener),
                );
            }
        }
    }

    /// Certificate state of every TLS listener.
    pub fn tls_status(&self) -> Vec<crate::tls::TlsListenerStatus> {
        self.tls
            .get()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|l| l.status())
            .collect()
    }

    /// Last reload result, config, and when it was loaded.
    pub fn config_status(&self) -> (Arc<Config>, SystemTime, ReloadStatus) {
        let st = self.lock();
        (st.config.clone(), st.loaded_at, st.last_reload.clone())
    }

    /// Replaces a service's endpoint state (from discovery); no swap when nothing changed.
    pub fn update_service(&self, name: &str, state: ServiceState) {
        let mut st = self.lock();
        if st.services.get(name) == Some(&state) {
            return;
        }
        let changed_set = st.services.get(name).is_none_or(|old| old.set != state.set);
        let n = state.set.len();
        st.services.insert(name.to_string(), state);
        self.rebuild(&st);
        if changed_set {
            self.events.emit(
                "endpoints_changed",
                None,
                Some(name.to_string()),
                format!("{name}: {n} endpoints"),
            );
        }
    }

    /// Changes a route's weights (`None`: back to the file's). See [`WeightStore::change`].
    pub fn change_weights(
        &self,
        route: &str,
        new: Option<BTreeMap<String, u32>>,
        expected_revision: Option<u64>,
        changed_by: String,
        reason: String,
    ) -> Result<Option<WeightChange>, WeightsError> {
        let mut st = self.lock();
        let snap = self.snapshot.load();
        let Some(ri) = snap.route_index(route) else {
            return Ok(None);
        };
        let r = &snap.routes[ri];
        let effective: BTreeMap<String, u32> = r
            .backends
            .iter()
            .zip(r.split.weights())
            .map(|(b, &w)| (b.name.clone(), w))
            .collect();
        let change = st.weights.change(
            &r.config,
            effective,
            new,
            expected_revision,
            changed_by,
            reason,
        )?;
        self.rebuild(&st);
        self.announce_change(route, &change, "state file");
        Ok(Some(change))
    }

    /// A service's current endpoint state, if known.
    pub fn service_state(&self, name: &str) -> Option<ServiceState> {
        self.lock().services.get(name).cloned()
    }

    /// A route's config and the weights serving now.
    pub fn route_and_weights(
        &self,
        route: &str,
    ) -> Option<(crate::config::RouteConfig, BTreeMap<String, u32>)> {
        let snap = self.snapshot.load();
        let r = &snap.routes[snap.route_index(route)?];
        Some((
            r.config.clone(),
            r.backends
                .iter()
                .zip(r.split.weights())
                .map(|(b, &w)| (b.name.clone(), w))
                .collect(),
        ))
    }

    /// Replaces every route's weights with the state read from Consul KV; rebuilds and reports
    /// only when something changed.
    /// Records whether the weights in Consul KV can be read; the weights last read keep
    /// serving meanwhile (as the endpoints do in a Consul outage). Logged and announced when it
    /// changes.
    pub fn set_weights_staleness(&self, stale: Option<discovery::Staleness>) {
        let mut cur = self.weights_stale.lock().unwrap_or_else(|e| e.into_inner());
        match (cur.is_some(), &stale) {
            (false, Some(s)) => {
                tracing::warn!(error = %s.reason, "Consul KV unreachable: the last good weights keep serving");
                self.events.emit(
                    "weights_stale",
                    None,
                    None,
                    format!(
                        "Consul KV unreachable ({}): the last good weights keep serving",
                        s.reason
                    ),
                );
            }
            (true, None) => {
                tracing::info!("Consul KV readable again: weights follow it");
                self.events.emit(
                    "weights_fresh",
                    None,
                    None,
                    "Consul KV readable again: weights follow it".to_string(),
                );
            }
            _ => {}
        }
        self.metrics
            .weights_stale
            .store(u64::from(stale.is_some()), Relaxed);
        *cur = stale;
    }

    /// Why the weights are stale (the last Consul KV error), if they are.
    pub fn weights_staleness(&self) -> Option<discovery::Staleness> {
        self.weights_stale
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn apply_kv_weights(&self, routes: BTreeMap<String, crate::weights::RouteWeights>) {
        let mut st = self.lock();
        let changed = st.weights.replace_from_kv(routes);
        if changed.is_empty() {
            return;
        }
        self.rebuild(&st);
        for route in changed {
            match st
                .weights
                .route(&route)
                .and_then(|w| w.history.back().cloned())
            {
                Some(c) => self.announce_change(&route, &c, "consul"),
                None => {
                    tracing::info!(
                        route,
                        "weights key deleted in Consul: back to the file's weights"
                    );
                    self.events.emit(
                        "weights_changed",
                        Some(route.clone()),
                        None,
                        format!("{route}: back to the file's weights (key deleted in Consul)"),
                    );
                }
            }
        }
    }

    /// Applies one route's new state right after this gateway wrote it to KV (the KV watch
    /// will deliver the same value; applying it now makes the answer reflect the change).
    pub fn apply_route_weights(
        &self,
        route: &str,
        state: crate::weights::RouteWeights,
        change: &WeightChange,
    ) {
        let mut st = self.lock();
        let mut all: BTreeMap<String, crate::weights::RouteWeights> = st
            .config
            .routes
            .iter()
            .filter_map(|r| {
                st.weights
                    .route(&r.name)
                    .map(|w| (r.name.clone(), w.clone()))
            })
            .collect();
        all.insert(route.to_string(), state);
        if st.weights.replace_from_kv(all).is_empty() {
            return;
        }
        self.rebuild(&st);
        self.announce_change(route, change, "consul");
    }

    /// Logs a weight change and publishes it as a `weights_changed` event.
    fn announce_change(&self, route: &str, change: &WeightChange, store: &str) {
        tracing::info!(route, revision = change.revision, weights = ?change.weights, by = %change.changed_by, store, "weights changed");
        self.events.emit(
            "weights_changed",
            Some(route.to_string()),
            None,
            format!(
                "{route}: {:?} → {:?} by {} ({})",
                change.previous, change.weights, change.changed_by, change.reason
            ),
        );
    }

    /// Current revision and history of a route's weights.
    pub fn weight_history(&self, route: &str) -> (u64, Vec<WeightChange>) {
        let st = self.lock();
        st.weights.route(route).map_or((0, vec![]), |w| {
            (w.revision, w.history.iter().cloned().collect())
        })
    }

    /// Snapshot generation now serving.
    pub fn generation(&self) -> u64 {
        self.snapshot.load().generation
    }
}

/// Names of settings that differ between `a` and `b` but only take effect after a restart.
fn restart_required(a: &Config, b: &Config) -> Vec<String> {
    let checks = [
        ("listeners", a.listeners != b.listeners),
        ("admin.address", a.admin.addr != b.admin.addr),
        ("admin.token_file", a.admin.token_file != b.admin.token_file),
        ("gateway.workers", a.gateway.workers != b.gateway.workers),
        (
            "gateway.drain_timeout",
            a.gateway.drain_timeout != b.gateway.drain_timeout,
        ),
        (
            "gateway.state_file",
            a.gateway.state_file != b.gateway.state_file,
        ),
        ("gateway.cluster", a.gateway.cluster != b.gateway.cluster),
        (
            "gateway.handover_socket",
            a.gateway.handover_socket != b.gateway.handover_socket,
        ),
        ("log", a.log != b.log),
        // Workers hold the tracer (sampler and export queue) from their start.
        ("tracing", a.tracing != b.tracing),
        // The Consul client is built once; services' `consul = {…}` entries do reload live.
        ("consul", a.consul != b.consul),
    ];
    checks
        .iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| (*name).to_string())
        .collect()
}

/// Reads the admin token, creating the file with a random token (mode 0600) when it is absent.
pub fn load_token(path: &std::path::Path) -> Result<String, StartError> {
    let err = |reason: String| StartError::Token {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Err(err("file is empty".into())),
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = crate::proxy::new_token(&mut rand::rngs::OsRng);
            crate::weights::write_atomic(path, format!("{token}\n").as_bytes())
                .map_err(|e| err(e.to_string()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
            }
            tracing::info!(file = %path.display(), "created admin token file");
            Ok(token)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct App {
    /// Control plane.
    pub control: Arc<Control>,
    /// Proxy listener addresses as bound (ports resolved).
    pub listen_addrs: Vec<std::net::SocketAddr>,
    /// Admin API address as bound.
    pub admin_addr: std::net::SocketAddr,
    workers: WorkerSet,
    shutdown: watch::Sender<bool>,
    /// The admin API outlives the drain, so `/readyz` can answer 503 while it runs.
    admin_shutdown: watch::Sender<bool>,
    /// The admin server's task: done once its connections closed.
    admin_task: tokio::task::JoinHandle<()>,
    /// Duplicates of every listening socket for a successor, with the hand-over socket's path
    /// (`[gateway] handover_socket`); offered once [`App::run`] starts.
    handover: Option<(PathBuf, crate::handover::Offer)>,
    /// How to start a successor on SIGUSR2: the executable's path and the arguments.
    successor: Option<(PathBuf, Vec<std::ffi::OsString>)>,
}

impl App {
    /// Binds every socket and starts workers and the admin API. Must run inside the control
    /// runtime (the admin server and background tasks are spawned on it).
    pub async fn build(config: Config, config_path: Option<PathBuf>) -> Result<Self, StartError> {
        Self::build_with(config, config_path, crate::handover::Inheritance::default()).await
    }

    /// [`App::build`] on the listening sockets a predecessor handed over where they match
    /// the config (by listener name and address); the rest are bound fresh, and inherited
    /// sockets the config no longer has are closed.
    pub async fn build_with(
        config: Config,
        config_path: Option<PathBuf>,
        mut inherited: crate::handover::Inheritance,
    ) -> Result<Self, StartError> {
        let token = config
            .admin
            .token_file
            .as_deref()
            .map(load_token)
            .transpose()?;
        let workers_n = config.gateway.workers.max(1);
        let mut handover = config
            .gateway
            .handover_socket
            .clone()
            .map(|p| (p, crate::handover::Offer::default()));
        // Bind the first socket of each listener, then the others on the port it got (port 0
        // resolves once), so every worker shares one address through SO_REUSEPORT.
        let mut per_worker: Vec<Vec<(std::net::TcpListener, Listening)>> =
            (0..workers_n).map(|_| Vec::new()).collect();
        let mut listen_addrs = Vec::new();
        let mut tls = Vec::new();
        for l in &config.listeners {
            let mode = match &l.tls {
                Some(t) => {
                    let certs = crate::tls::ListenerCerts::load(&l.name, t).map_err(|source| {
                        StartError::Tls {
                            what: format!("listener {}", l.name),
                            source,
                        }
                    })?;
                    let certs = Arc::new(certs);
                    tls.push(certs.clone());
                    match l.proxy_protocol {
                        true => ListenerMode::ProxyProtocolTls(certs.terminator()),
                        false => ListenerMode::Tls(certs.terminator()),
                    }
                }
                None if l.redirect_https => ListenerMode::RedirectHttps,
                None if l.proxy_protocol => ListenerMode::ProxyProtocol,
                None => ListenerMode::Plain,
            };
            let sockets = listener_sockets(l, workers_n, &mut inherited)?;
            let addr = sockets.addr;
            if let Some((_, offer)) = &mut handover {
                for s in &sockets.sockets {
                    let meta = crate::handover::SocketMeta {
                        role: crate::handover::Role::Proxy,
                        name: l.name.clone(),
                        configured: l.addr,
                        bound: addr,
                    };
                    offer
                        .add(meta, s)
                        .map_err(|source| StartError::Bind { addr, source })?;
                }
            }
            // A worker may get several sockets of one listener (a predecessor with more
            // workers): none of their queued connections is lost.
            // One cap for the listener, shared by every worker's socket of it.
            let spec = Listening {
                mode,
                cap: ConnCap::new(l.max_connections),
                timeouts: l.timeouts,
            };
            for (i, s) in sockets.sockets.into_iter().enumerate() {
                per_worker[i % workers_n].push((s, spec.clone()));
            }
            let kind = match spec.mode {
                ListenerMode::Plain => "http",
                ListenerMode::Tls(_) => "https",
                ListenerMode::RedirectHttps => "redirect-https",
                ListenerMode::ProxyProtocol => "http+proxy-protocol",
                ListenerMode::ProxyProtocolTls(_) => "https+proxy-protocol",
            };
            tracing::info!(listener = %l.name, %addr, kind, workers = workers_n, inherited = sockets.inherited, "listening");
            listen_addrs.push(addr);
        }
        // A service whose TLS files do not load would fail every request: refuse to start.
        for (name, s) in &config.services {
            if let Some(t) = &s.tls {
                crate::tls::client_config(t).map_err(|source| StartError::Tls {
                    what: format!("services.{name}.tls"),
                    source,
                })?;
            }
        }
        let admin_bind_err = |source| StartError::Bind {
            addr: config.admin.addr,
            source,
        };
        let admin_listener = match inherited.take_admin(config.admin.addr) {
            Some(l) => {
                l.set_nonblocking(true).map_err(admin_bind_err)?;
                tokio::net::TcpListener::from_std(l).map_err(admin_bind_err)?
            }
            None => tokio::net::TcpListener::bind(config.admin.addr)
                .await
                .map_err(admin_bind_err)?,
        };
        if let Some((_, offer)) = &mut handover {
            let meta = crate::handover::SocketMeta {
                role: crate::handover::Role::Admin,
                name: "admin".into(),
                configured: config.admin.addr,
                bound: admin_listener.local_addr().map_err(admin_bind_err)?,
            };
            offer.add(meta, &admin_listener).map_err(admin_bind_err)?;
        }
        if !inherited.is_empty() {
            tracing::info!(sockets = ?inherited.leftovers(), "inherited sockets the config no longer has: closed");
        }
        drop(inherited);
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.admin.addr,
                source,
            })?;
        let drain = config.gateway.drain_timeout;
        let sample = config.log.access_log_sample;
        let tracing_cfg = config.tracing.clone();
        let control = Control::new(config, config_path, token);
        // One tracer for every worker: the sampler, and the export queue of the exporter it
        // spawns on this (the control) runtime.
        let tracer = tracing_cfg
            .as_ref()
            .map(|t| crate::telemetry::Tracer::start(t, control.metrics.clone()));
        let _ = control.tls.set(tls.clone());
        let (shutdown, shutdown_rx) = watch::channel(false);
        {
            let c = control.clone();
            crate::tls::spawn_poller(tls, shutdown_rx.clone(), move |l, r| c.tls_reloaded(l, r));
        }
        // Order matters: everything that reacts to the outside world (the config file watch,
        // workers, Consul watchers, the admin API) is running before the last log line below
        // announces the gateway; an edit made right after that line is never missed.
        if let Some(path) = control.config_path.clone() {
            crate::reload::spawn_watcher(path, control.clone(), shutdown_rx.clone());
        }
        let mut threads = Vec::new();
        for (id, listeners) in per_worker.into_iter().enumerate() {
            let w = Worker {
                id,
                snapshot: control.snapshot.clone(),
                metrics: control.metrics.clone(),
                upstreams: Upstreams::default(),
                access_log_sample: sample,
                tracer: tracer.clone(),
            };
            threads.push(
                run_worker(w, listeners, shutdown_rx.clone(), drain).map_err(StartError::Worker)?,
            );
        }
        let link = match control.snapshot.load().config.consul.clone() {
            Some(settings) => {
                let cfg = control.snapshot.load().config.clone();
                let link = crate::consul::ConsulLink::start(
                    control.clone(),
                    &cfg,
                    settings,
                    tokio_util::sync::CancellationToken::new(),
                )
                .map_err(|e| StartError::Consul(e.to_string()))?;
                let _ = control.consul.set(link.clone());
                Some(link)
            }
            None => None,
        };
        let (admin_shutdown, admin_shutdown_rx) = watch::channel(false);
        let admin_task = tokio::spawn(crate::admin::serve(
            admin_listener,
            control.clone(),
            admin_shutdown_rx,
        ));
        // Registered only once the admin API it advertises answers.
        if let Some(link) = link {
            link.register(admin_addr).await;
        }
        tokio::spawn(sampler(control.clone(), shutdown_rx.clone()));
        tracing::info!(%admin_addr, "admin API listening");
        Ok(Self {
            control,
            listen_addrs,
            admin_addr,
            workers: WorkerSet { threads },
            shutdown,
            admin_shutdown,
            admin_task,
            handover,
            successor: None,
        })
    }

    /// Lets SIGUSR2 start a successor: `exe` (its path, read again then, so a replaced binary
    /// file starts the new version) with `args`, which must make it take over.
    pub fn set_successor_command(&mut self, exe: PathBuf, args: Vec<std::ffi::OsString>) {
        self.successor = Some((exe, args));
    }

    /// Serves until SIGTERM or SIGINT, or until a successor took the listening sockets over,
    /// then drains and returns. SIGHUP reloads the config; SIGUSR2 starts a successor (see
    /// [`App::set_successor_command`]).
    pub async fn run(mut self) {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr2)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined2()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        let (slot, mut successor_ready) = match self.handover.take() {
            Some((path, offer)) => match crate::handover::serve(&path, offer) {
                Ok((slot, rx)) => {
                    tracing::info!(path = %path.display(), "hand-over socket listening");
                    (Some(slot), Some(rx))
                }
                Err(e) => {
                    tracing::error!(error = %e, "no hand-over socket: a successor cannot take over");
                    (None, None)
                }
            },
            None => (None, None),
        };
        crate::handover::notify_systemd("READY=1");
        let successor = loop {
            tokio::select! {
                _ = term.recv() => break None,
                _ = int.recv() => break None,
                _ = hup.recv() => {
                    let s = self.control.reload();
                    let c = self.control.clone();
                    let tls = tokio::task::spawn_blocking(move || c.reload_tls()).await.unwrap_or_default();
                    tracing::info!(ok = s.ok, tls_ok = tls.is_empty(), "reload on SIGHUP");
                }
                _ = usr2.recv() => self.start_successor(slot.is_some()),
                pid = async { successor_ready.as_mut()?.await.ok() }, if successor_ready.is_some() => {
                    match pid {
                        Some(pid) => break Some(pid),
                        // The hand-over thread is gone: no successor can come.
                        None => successor_ready = None,
                    }
                }
            }
        };
        if let Some(slot) = &slot {
            slot.withdraw();
        }
        // A second SIGTERM or SIGINT during the drain means "now": exit without waiting.
        let drain = async {
            match successor {
                Some(pid) => self.hand_over(pid).await,
                None => {
                    crate::handover::notify_systemd("STOPPING=1");
                    self.shutdown().await
                }
            }
        };
        tokio::select! {
            _ = drain => {}
            _ = term.recv() => force_exit(),
            _ = int.recv() => force_exit(),
        }
    }

    /// SIGUSR2: starts the successor, which takes the sockets over and tells this process to
    /// drain once it serves. Its failure leaves this process serving.
    fn start_successor(&self, can_hand_over: bool) {
        let Some((exe, args)) = self.successor.clone().filter(|_| can_hand_over) else {
            tracing::warn!(
                "SIGUSR2 ignored: no [gateway] handover_socket, or no command to start a successor"
            );
            return;
        };
        match std::process::Command::new(&exe).args(&args).spawn() {
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(successor = pid, exe = %exe.display(), "SIGUSR2: successor started");
                // Reaps it; its exit before the hand-over is worth a line (this one serves on).
                let _ = std::thread::Builder::new()
                    .name("successor".into())
                    .spawn(move || {
                        if let Ok(status) = child.wait() {
                            tracing::warn!(successor = pid, %status, "successor exited");
                        }
                    });
            }
            Err(e) => {
                tracing::error!(error = %e, exe = %exe.display(), "SIGUSR2: cannot start a successor; still serving");
            }
        }
    }

    /// After a hand-over: the successor serves on the same sockets. Stops accepting (the admin
    /// API first, so its answers come from the successor), drains in-flight requests and
    /// keep-alive connections (up to the drain deadline) and returns.
    pub async fn hand_over(self, successor: u32) {
        tracing::info!(successor, "handed over: draining in-flight requests");
        // Not `draining`: the admin requests this process still answers (accepted just before
        // the hand-over) ask about the gateway at this address, which the successor serves.
        let _ = self.admin_shutdown.send(true);
        if let Some(link) = self.control.consul.get() {
            link.stop_after_handover().await;
        }
        let _ = self.shutdown.send(true);
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || workers.join()).await;
        let _ = self.admin_task.await;
        tracing::info!("drained after hand-over; bye");
    }

    /// Stops accepting, drains in-flight requests (up to the drain deadline) and returns. The
    /// admin API keeps answering during the drain (`/readyz` says 503) and stops last.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: draining in-flight requests");
        self.control.draining.store(true, Relaxed);
        if let Some(link) = self.control.consul.get() {
            link.stop().await;
        }
        let _ = self.shutdown.send(true);
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || workers.join()).await;
        let _ = self.admin_shutdown.send(true);
        let _ = self.admin_task.await;
        tracing::info!("drained; bye");
    }
}

fn force_exit() -> ! {
    tracing::warn!("second signal during drain: exiting without waiting for in-flight requests");
    std::process::exit(1)
}

/// A proxy listener's sockets: at least one per worker, inherited ones first.
struct ListenerSockets {
    addr: std::net::SocketAddr,
    sockets: Vec<std::net::TcpListener>,
    inherited: usize,
}

/// Takes the listener's inherited sockets, or binds the first one (port 0 resolves once), then
/// binds more on the port it got until every worker has one (SO_REUSEPORT).
fn listener_sockets(
    l: &config::ListenerConfig,
    workers: usize,
    inherited: &mut crate::handover::Inheritance,
) -> Result<ListenerSockets, StartError> {
    let err = |addr| move |source| StartError::Bind { addr, source };
    let mut sockets = inherited.take_proxy(&l.name, l.addr);
    let n = sockets.len();
    for s in &sockets {
        s.set_nonblocking(true).map_err(err(l.addr))?;
    }
    if sockets.is_empty() {
        sockets.push(bind_listener(l.addr).map_err(err(l.addr))?);
    }
    let addr = sockets[0].local_addr().map_err(err(l.addr))?;
    while sockets.len() < workers {
        sockets.push(bind_listener(addr).map_err(err(addr))?);
    }
    Ok(ListenerSockets {
        addr,
        sockets,
        inherited: n,
    })
}

/// Once a second: takes a metrics history sample (and the policies' decision counts, for their
/// recent decisions) and announces the ejections the workers recorded (workers never touch the
/// event log themselves).
async fn sampler(control: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let metrics = &control.metrics;
                let now = crate::metrics::unix_secs(SystemTime::now());
                metrics.sample_all(now);
                control.policies.sample(now);
                for (service, e) in metrics.take_ejections() {
                    control.events.emit(
                        "endpoint_ejected",
                        None,
                        Some(service.clone()),
                        ejection_message(&service, &e),
                    );
                }
            }
            _ = crate::proxy::stopped(&mut shutdown) => return,
        }
    }
}

/// "web-blue: 127.0.0.1:8081 ejected for 10s after 5 consecutive_failures: GET /a: …; …".
fn ejection_message(service: &str, e: &crate::health::Ejected) -> String {
    format!(
        "{service}: {} ejected for {:?} after {} {}: {}",
        e.endpoint,
        e.duration,
        e.after,
        e.rule,
        e.causes.join("; ")
    )
}
