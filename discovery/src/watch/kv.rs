//! [`KvWatcher`]: a recursive KV prefix → [`KvState`].

use std::collections::BTreeMap;

use tokio::sync::watch;

use super::{after_error, unless_stopped, CancellationToken, Pacer};
use crate::consul::{ConsulClient, IndexUpdate};
use crate::endpoint::Staleness;

/// One key's value under the watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// Decoded bytes (empty for a `null` value).
    pub value: Vec<u8>,
    /// The key's ModifyIndex: pass it as `cas` to update the key safely.
    pub modify_index: u64,
}

/// Everything under a prefix, as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvState {
    /// Full key → entry. Empty when the prefix has no keys (Consul's 404).
    pub entries: BTreeMap<String, KvEntry>,
    /// Index of the last successful read; 0 until the first one.
    pub index: u64,
    /// Set while reads fail; `entries` then holds the last good read.
    pub stale: Option<Staleness>,
}

/// Follows every key under a prefix with a recursive blocking query.
#[derive(Debug, Clone)]
pub struct KvWatcher {
    client: ConsulClient,
    prefix: String,
}

// === impl KvWatcher ===

impl KvWatcher {
    /// Watches `prefix` (e.g. `meshgate/<cluster>/`).
    pub fn new(client: ConsulClient, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    /// Spawns the loop. The first successful read is always sent (`index` becomes non-zero);
    /// later values only when entries or staleness change (a new index alone updates `index`
    /// silently). Stops on `shutdown` or when every receiver is dropped.
    pub fn spawn(self, shutdown: CancellationToken) -> watch::Receiver<KvState> {
        let (tx, rx) = watch::channel(KvState::default());
        tokio::spawn(self.run(tx, shutdown));
        rx
    }

    /// The loop itself, for callers that manage the task.
    pub async fn run(self, tx: watch::Sender<KvState>, shutdown: CancellationToken) {
        let Self { client, prefix } = self;
        let mut pacer = Pacer::new(client.config());
        loop {
            let opts = pacer.options();
            let read = async {
                pacer.pace().await;
                client.kv_list(&prefix, opts).await
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
                        if update != IndexUpdate::Unchanged {
                            let entries: BTreeMap<String, KvEntry> = resp
                                .value
                                .into_iter()
                                .map(|p| {
                                    let entry = KvEntry {
                                        value: p.value,
                                        modify_index: p.modify_index,
                                    };
                                    (p.key, entry)
                                })
                                .collect();
                            if entries != state.entries {
                                tracing::info!(prefix = %prefix, keys = entries.len(), "KV prefix changed");
                                state.entries = entries;
                                changed = true;
                            }
                        }
                        changed
                    });
                }
                Err(e) => {
                    if !after_error(&mut pacer, &e, &tx, &shutdown, &prefix, |s| &mut s.stale).await
                    {
                        return;
                    }
                }
            }
        }
    }
}
