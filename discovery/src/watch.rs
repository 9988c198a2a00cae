//! Watchers: long-running blocking-query loops that publish whole states on
//! `tokio::sync::watch` channels.
//!
//! - [`ServiceWatcher`] follows `/v1/health/service/<name>` and yields a
//!   [`ServiceState`](crate::ServiceState) (endpoint set + freshness).
//! - [`CatalogWatcher`] follows `/v1/catalog/services` (which services exist).
//! - [`KvWatcher`] follows a KV prefix recursively (traffic weights).
//!
//! Every loop applies the client rules of consul-api.md: the index starts at 0, goes back to 0
//! when the server's index goes backwards, and an unchanged index rebuilds nothing; a token
//! bucket (burst 2, one token per `min_interval`) paces each loop; errors back off
//! exponentially with jitter (longer floor on 429/503, the maximum delay on 403) and **keep the
//! last good state**, only marking it stale. A value is sent only when the content or the
//! staleness changes. A loop ends when its [`CancellationToken`] fires or when every receiver
//! is dropped.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::backoff::BackoffState;
use crate::consul::{BlockingIndex, ConsulConfig, IndexUpdate, QueryOptions, TokenBucket};
use crate::endpoint::Staleness;
use crate::error::{DiscoveryError, RetryClass};

mod catalog;
mod fleet;
mod kv;
mod service;

pub use catalog::{CatalogState, CatalogWatcher};
pub use fleet::FleetWatcher;
pub use kv::{KvEntry, KvState, KvWatcher};
pub use service::{
    endpoints_from_entries, HealthFilter, ServiceWatchOptions, ServiceWatcher,
    EMPTY_AFTER_OUTAGE_GRACE,
};
pub use tokio_util::sync::CancellationToken;

/// Burst of the per-loop token bucket.
const BUCKET_BURST: u32 = 2;

/// Pacing and index state of one watch loop.
#[derive(Debug)]
pub(crate) struct Pacer {
    index: BlockingIndex,
    bucket: TokenBucket,
    backoff: BackoffState,
    rate_limited_floor: Duration,
}

// === impl Pacer ===

impl Pacer {
    pub(crate) fn new(config: &ConsulConfig) -> Self {
        Self {
            index: BlockingIndex::new(),
            bucket: TokenBucket::new(BUCKET_BURST, config.min_interval),
            backoff: config.backoff.start(),
            rate_limited_floor: config.rate_limited_floor,
        }
    }

    /// Blocking options for the next read.
    pub(crate) fn options(&self) -> QueryOptions {
        QueryOptions {
            index: self.index.current(),
            wait: None,
        }
    }

    /// Waits for a token of the loop's rate limit.
    pub(crate) async fn pace(&mut self) {
        self.bucket.acquire().await;
    }

    /// Records a successful answer's index; resets the backoff.
    pub(crate) fn on_success(&mut self, index: u64) -> IndexUpdate {
        self.backoff.reset();
        self.index.observe(index)
    }

    /// The delay before retrying after `err`.
    ///
    /// The index is forgotten too: the next read is immediate. Across an outage or a failover
    /// the server may be another one (restarted empty, restored from a snapshot) that reaches
    /// the very index we hold with other content, and a blocking read at that index would then
    /// wait for a change that already happened.
    pub(crate) fn on_error(&mut self, err: &DiscoveryError) -> Duration {
        self.index.reset();
        let next = self.backoff.next_delay();
        match err.retry_class() {
            RetryClass::Transient => next,
            RetryClass::RateLimited => next.max(self.rate_limited_floor),
            // Retrying fast cannot fix a missing permission or our own bug.
            RetryClass::Forbidden | RetryClass::Permanent => self.backoff.policy().max(),
        }
    }
}

/// Runs `fut` unless `shutdown` fires or every receiver of `tx` is gone first (`None`).
pub(crate) async fn unless_stopped<T, S>(
    shutdown: &CancellationToken,
    tx: &watch::Sender<S>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        _ = tx.closed() => None,
        v = fut => Some(v),
    }
}

/// The staleness after `err`: the first failure time is kept, the reason is the latest.
pub(crate) fn staleness(previous: Option<&Staleness>, err: &DiscoveryError) -> Staleness {
    Staleness {
        since: previous.map_or_else(SystemTime::now, |p| p.since),
        reason: err.to_string(),
    }
}

/// After a failed read: marks the state stale (keeping its content), logs, and waits the
/// backoff. Returns `false` when the loop must stop instead.
pub(crate) async fn after_error<S>(
    pacer: &mut Pacer,
    err: &DiscoveryError,
    tx: &watch::Sender<S>,
    shutdown: &CancellationToken,
    what: &str,
    stale: impl Fn(&mut S) -> &mut Option<Staleness>,
) -> bool {
    let delay = pacer.on_error(err);
    tracing::warn!(watch = what, error = %err, ?delay, "consul read failed; keeping the last good state");
    tx.send_if_modified(|state| mark_stale(stale(state), err));
    unless_stopped(shutdown, tx, tokio::time::sleep(delay))
        .await
        .is_some()
}

/// Marks `stale` after an error; `true` when that is news (first failure or a new reason).
pub(crate) fn mark_stale(stale: &mut Option<Staleness>, err: &DiscoveryError) -> bool {
    let next = staleness(stale.as_ref(), err);
    if stale.as_ref() == Some(&next) {
        return false;
    }
    *stale = Some(next);
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::backoff::Backoff;

    fn status(code: u16) -> DiscoveryError {
        DiscoveryError::Status {
            path: "/v1/x".into(),
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
        }
    }

    #[test]
    fn error_delays_follow_classes() {
        let config = ConsulConfig {
            backoff: Backoff::try_new(Duration::from_millis(100), Duration::from_secs(30), 0.0)
                .unwrap(),
            rate_limited_floor: Duration::from_secs(5),
            ..ConsulConfig::default()
        };
        let mut pacer = Pacer::new(&config);
        assert_eq!(pacer.on_error(&status(500)), Duration::from_millis(100));
        assert_eq!(pacer.on_error(&status(500)), Duration::from_millis(200));
        assert_eq!(pacer.on_error(&status(429)), Duration::from_secs(5));
        assert_eq!(pacer.on_error(&status(403)), Duration::from_secs(30));
        pacer.on_success(10);
        assert_eq!(
            pacer.on_error(&status(500)),
            Duration::from_millis(100),
            "success resets"
        );
    }

    #[test]
    fn staleness_keeps_first_failure_time() {
        let mut stale = None;
        assert!(mark_stale(&mut stale, &status(500)));
        let since = stale.as_ref().unwrap().since;
        assert!(
            !mark_stale(&mut stale, &status(500)),
            "same reason is not news"
        );
        assert!(mark_stale(&mut stale, &status(429)));
        assert_eq!(stale.as_ref().unwrap().since, since);
    }
}
