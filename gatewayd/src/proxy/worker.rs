//! What one worker thread shares between its connections, what the request path knows of a
//! client connection, and the worker's RNG and shutdown signal.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::watch;

use super::client::Upstreams;
use crate::metrics::Registry;
use crate::snapshot::SnapshotHandle;

thread_local! {
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_entropy());
}

/// Runs `f` with this thread's RNG.
pub fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|r| f(&mut r.borrow_mut()))
}

/// What one worker thread shares between its connections.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Worker index (selects the metrics shard).
    pub id: usize,
    /// The routing snapshot.
    pub snapshot: SnapshotHandle,
    /// Metrics registry.
    pub metrics: Arc<Registry>,
    /// This worker's upstream pool.
    pub upstreams: Upstreams,
    /// Fraction of requests written to the access log.
    pub access_log_sample: f64,
    /// Trace context and span export (`[tracing]`); `None`: the gateway takes no part in
    /// traces and costs nothing for them.
    pub tracer: Option<Arc<crate::telemetry::Tracer>>,
}

/// Facts about the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// Client address.
    pub peer: SocketAddr,
    /// The address the client connected to: the `Host` an HTTP/1.0 request without one is
    /// forwarded with.
    pub local: SocketAddr,
    /// True when the client connected over TLS.
    pub tls: bool,
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&s| s).await.map(|_| ());
}
