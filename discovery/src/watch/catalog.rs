//! [`CatalogWatcher`]: `/v1/catalog/services` → [`CatalogState`].

use tokio::sync::watch;

use super::{after_error, unless_stopped, CancellationToken, Pacer};
use crate::consul::{CatalogServices, ConsulClient, IndexUpdate};
use crate::endpoint::Staleness;

/// The catalog's service names, as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogState {
    /// Service name → union of tags.
    pub services: CatalogServices,
    /// Index of the last successful read; 0 until the first one.
    pub index: u64,
    /// Set while reads fail; `services` then holds the last good read.
    pub stale: Option<Staleness>,
}

/// Follows which services exist (to start and stop per-service watches).
#[derive(Debug, Clone)]
pub struct CatalogWatcher {
    client: ConsulClient,
}

// === impl CatalogWatcher ===

impl CatalogWatcher {
    /// A watcher of `/v1/catalog/services`.
    pub fn new(client: ConsulClient) -> Self {
        Self { client }
    }

    /// Spawns the loop. The first successful read is always sent; later values only when the
    /// names/tags or the staleness change. Stops on `shutdown` or when every receiver is
    /// dropped.
    pub fn spawn(self, shutdown: CancellationToken) -> watch::Receiver<CatalogState> {
        let (tx, rx) = watch::channel(CatalogState::default());
        tokio::spawn(self.run(tx, shutdown));
        rx
    }

    /// The loop itself, for callers that manage the task.
    pub async fn run(self, tx: watch::Sender<CatalogState>, shutdown: CancellationToken) {
        let client = self.client;
        let mut pacer = Pacer::new(client.config());
        loop {
            let opts = pacer.options();
            let read = async {
                pacer.pace().await;
                client.catalog_services(opts).await
            };
            let Some(result) = unless_stopped(&shutdown, &tx, read).await else {
                return;
            };
            match result {
                Ok(resp) => {
                    let update = pacer.on_success(resp.meta.index);
                    let index = resp.meta.index.max(1);
                    tx.send_if_modified(|state| {
                        let mut changed = state.stale.take().is_some() || state.index == 0;
                        state.index = index;
                        if update != IndexUpdate::Unchanged && state.services != resp.value {
                            state.services = resp.value;
                            changed = true;
                        }
                        changed
                    });
                }
                Err(e) => {
                    if !after_error(&mut pacer, &e, &tx, &shutdown, "catalog/services", |s| {
                        &mut s.stale
                    })
                    .await
                    {
                        return;
                    }
                }
            }
        }
    }
}
