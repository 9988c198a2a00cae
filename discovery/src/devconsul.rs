//! `devconsul`: an in-memory server speaking the subset of Consul's HTTP API meshgate (and
//! common clients such as py-consul or Ansible's `consul_kv`) use, for tests, demos and
//! development machines without Consul.
//!
//! It reproduces the contract in `consul-api.md`: one global index above 1 advancing on every
//! write, per-resource indexes, blocking queries (`?index=&wait=` with Go durations, jittered
//! timeouts), the read headers, the JSON shapes of the health, catalog, agent and KV endpoints,
//! TTL checks, ACL tokens and plain-text errors. A [`DevConsulHandle`] offers test hooks: bump
//! or rewind the index, inject 429/500 answers or latency, lose the leader, cap connections.
//!
//! ```no_run
//! # async fn demo() -> Result<(), discovery::devconsul::DevConsulError> {
//! use discovery::devconsul::DevConsul;
//! let consul = DevConsul::builder().start("127.0.0.1:0".parse().unwrap()).await?;
//! println!("Consul at {}", consul.url());
//! consul.handle().bump_index();
//! consul.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod blocking;
mod filter;
mod hooks;
// Handlers return ready-made error responses as `Err`; they are answered once, never propagated
// far, so boxing them would only add noise.
#[allow(clippy::result_large_err)]
mod http;
mod listener;
mod probe;
mod shared;
mod state;
mod timers;
mod tls;
mod wire;

pub use self::hooks::{DevConsulHandle, Fault};
pub(crate) use self::shared::{Settings, Shared};
use self::state::State;

/// Consul's `http_max_conns_per_client` default.
pub const DEFAULT_MAX_CONNS_PER_CLIENT: usize = 200;

/// The body of Consul's per-IP connection-limit answer.
pub const TOO_MANY_CONNECTIONS: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls";

/// Entry point: `DevConsul::builder()`.
#[derive(Debug)]
pub struct DevConsul;

/// Settings of a dev server; every setter has Consul's default.
#[derive(Debug, Clone)]
pub struct DevConsulBuilder {
    datacenter: String,
    node_name: String,
    token: Option<String>,
    default_wait: Duration,
    max_wait: Duration,
    max_conns_per_client: usize,
    reap_interval: Duration,
    min_deregister_after: Duration,
    consul_service: bool,
    /// `(certificate chain PEM, private key PEM)` when serving https.
    tls: Option<(PathBuf, PathBuf)>,
}

/// A started dev server. Dropping it stops it (listener, connections, timers).
#[derive(Debug)]
pub struct RunningDevConsul {
    addr: SocketAddr,
    handle: DevConsulHandle,
    tls: Option<tls::Tls>,
    listener: tokio::sync::Mutex<Option<listener::Listener>>,
    background: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Failure to start or resume a dev server.
#[derive(Debug, thiserror::Error)]
pub enum DevConsulError {
    /// The listen address could not be bound.
    #[error("devconsul cannot listen on {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded (unreadable, not PEM, not matching).
    #[error("devconsul TLS setup failed: {reason}")]
    Tls {
        /// What went wrong, naming the file.
        reason: String,
    },
}

// === impl DevConsul ===

impl DevConsul {
    /// A builder with Consul's defaults: datacenter `dc1`, node `devconsul`, no ACL token,
    /// default wait 5m, max wait 10m, 200 connections per client IP.
    pub fn builder() -> DevConsulBuilder {
        DevConsulBuilder {
            datacenter: "dc1".to_owned(),
            node_name: "devconsul".to_owned(),
            token: None,
            default_wait: Duration::from_secs(300),
            max_wait: Duration::from_secs(600),
            max_conns_per_client: DEFAULT_MAX_CONNS_PER_CLIENT,
            reap_interval: Duration::from_secs(30),
            min_deregister_after: Duration::from_secs(60),
            consul_service: true,
            tls: None,
        }
    }
}

// === impl DevConsulBuilder ===

impl DevConsulBuilder {
    /// Datacenter name (`?dc=` naming another one answers 500 `No path to datacenter`).
    pub fn datacenter(mut self, dc: impl Into<String>) -> Self {
        self.datacenter = dc.into();
        self
    }

    /// The agent's node name (its address is 127.0.0.1).
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = name.into();
        self
    }

    /// Requires this ACL token on every endpoint but `/v1/status/*`: a request without a token
    /// gets 403 `Permission denied`, one with another token 403 `ACL not found`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Blocking wait used when `?wait` is missing or not positive (Consul: 5m).
    pub fn default_wait(mut self, wait: Duration) -> Self {
        self.default_wait = wait;
        self
    }

    /// Cap on a blocking wait (Consul: 10m).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Concurrent connections allowed per client IP before answering 429 (Consul: 200).
    pub fn max_conns_per_client(mut self, n: usize) -> Self {
        self.max_conns_per_client = n;
        self
    }

    /// How often the critical-service reaper runs (Consul: about 30 s).
    pub fn reap_interval(mut self, every: Duration) -> Self {
        self.reap_interval = every;
        self
    }

    /// Floor of `DeregisterCriticalServiceAfter` (Consul: 1m).
    pub fn min_deregister_after(mut self, min: Duration) -> Self {
        self.min_deregister_after = min;
        self
    }

    /// Whether the catalog holds the `consul` service, as a real server's does (default on).
    pub fn consul_service(mut self, on: bool) -> Self {
        self.consul_service = on;
        self
    }

    /// Serves https instead of http, with the PEM certificate chain (leaf first) in
    /// `cert_pem` and its PEM private key in `key_pem`. Both files are read by
    /// [`DevConsulBuilder::start`], which fails with [`DevConsulError::Tls`] if they are
    /// unusable. A client that fails the handshake is dropped without an HTTP answer.
    pub fn tls(mut self, cert_pem: impl Into<PathBuf>, key_pem: impl Into<PathBuf>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Binds `addr` (port 0 picks a free port) and starts serving on the current runtime.
    pub async fn start(self, addr: SocketAddr) -> Result<RunningDevConsul, DevConsulError> {
        let tls = match &self.tls {
            Some((cert, key)) => Some(tls::Tls::load(cert, key)?),
            None => None,
        };
        let now = Instant::now();
        let state = State::new(&self.datacenter, &self.node_name, self.consul_service, now);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changes: watch::channel(0).0,
            blocked: watch::channel(0).0,
            ttl_wake: Notify::new(),
            probe_wake: Notify::new(),
            settings: Settings {
                token: self.token.clone(),
                default_wait: self.default_wait,
                max_wait: self.max_wait,
                datacenter: self.datacenter.clone(),
                node_name: self.node_name.clone(),
            },
            faults: Mutex::new(Vec::new()),
            latency: Mutex::new(Duration::ZERO),
            max_conns: AtomicUsize::new(self.max_conns_per_client),
            conns: Mutex::new(HashMap::new()),
        });
        let (addr, listener) = listener::Listener::bind(shared.clone(), addr, tls.clone())
            .await
            .map_err(|source| DevConsulError::Bind { addr, source })?;
        let background = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(timers::ttl_loop(shared.clone(), background.clone())),
            tokio::spawn(timers::probe_loop(shared.clone(), background.clone())),
            tokio::spawn(timers::reap_loop(
                shared.clone(),
                background.clone(),
                self.reap_interval,
                self.min_deregister_after,
            )),
        ];
        tracing::debug!(%addr, "devconsul listening");
        Ok(RunningDevConsul {
            addr,
            handle: DevConsulHandle { shared },
            tls,
            listener: tokio::sync::Mutex::new(Some(listener)),
            background,
            tasks,
        })
    }
}

// === impl RunningDevConsul ===

impl RunningDevConsul {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, or `https://<addr>` when started with [`DevConsulBuilder::tls`].
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The hooks and state handle.
    pub fn handle(&self) -> DevConsulHandle {
        self.handle.clone()
    }

    /// Simulates the server going away: closes the listener and every open connection
    /// (in-flight blocking queries are cut). State is kept. Idempotent.
    pub async fn stop_listening(&self) {
        if let Some(listener) = self.listener.lock().await.take() {
            listener.stop().await;
        }
    }

    /// Listens again on the same address after [`RunningDevConsul::stop_listening`].
    pub async fn resume_listening(&self) -> Result<(), DevConsulError> {
        let mut guard = self.listener.lock().await;
        if guard.is_some() {
            return Ok(());
        }
        let (_, listener) =
            listener::Listener::bind(self.handle.shared.clone(), self.addr, self.tls.clone())
                .await
                .map_err(|source| DevConsulError::Bind {
                    addr: self.addr,
                    source,
                })?;
        *guard = Some(listener);
        Ok(())
    }

    /// Stops serving and waits for the background tasks to end.
    pub async fn shutdown(mut self) {
        self.stop_listening().await;
        self.background.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for RunningDevConsul {
    fn drop(&mut self) {
        self.background.cancel();
        if let Ok(mut guard) = self.listener.try_lock() {
            if let Some(listener) = guard.take() {
                listener.cancel();
            }
        }
    }
}
