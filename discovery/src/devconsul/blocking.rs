//! Blocking queries (consul-api.md §1): run the query; answer now if its index is above the
//! client's; else wait for a write and re-run, until `wait + rand(0..=wait/16)` has passed, then
//! answer 200 with the current body and (usually) the same index.
//!
//! Deviation from Consul, harmless to clients: every write wakes every blocked query, which
//! re-runs and answers as soon as its index exceeds the client's. Consul only re-runs when data
//! the query read changed, so a query whose index is a table index (a missing KV key, an unknown
//! service) may answer here before the deadline where Consul would wait.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::state::State;
use super::Shared;

/// Blocking parameters of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BlockingParams {
    /// `?index=`; 0 (or missing) means an immediate read.
    pub(crate) index: u64,
    /// `?wait=` when strictly positive.
    pub(crate) wait: Option<Duration>,
}

/// Consul's timeout: `wait` (default when unset, capped at `max`) plus a random 0..=wait/16.
pub(crate) fn timeout(
    wait: Option<Duration>,
    default: Duration,
    max: Duration,
    rng: &mut impl Rng,
) -> Duration {
    let base = wait.unwrap_or(default).min(max);
    let spread = base / 16;
    let jitter = if spread.is_zero() {
        Duration::ZERO
    } else {
        rng.gen_range(Duration::ZERO..=spread)
    };
    base + jitter
}

/// Runs `query` (which returns a body and its index) under the blocking rules.
pub(crate) async fn run<T>(
    shared: &Arc<Shared>,
    params: BlockingParams,
    mut query: impl FnMut(&State) -> (T, u64),
) -> (T, u64) {
    // Subscribe before the first read so a write between the read and the wait is not missed.
    let mut changes = shared.subscribe();
    let (mut body, mut index) = shared.read(&mut query);
    if params.index == 0 || index > params.index {
        return (body, index);
    }
    let settings = &shared.settings;
    let timeout = timeout(
        params.wait,
        settings.default_wait,
        settings.max_wait,
        &mut rand::thread_rng(),
    );
    let deadline = Instant::now() + timeout;
    let _blocked = shared.blocked_guard();
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
        (body, index) = shared.read(&mut query);
        if index > params.index {
            break;
        }
    }
    (body, index)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    use super::*;
    use crate::devconsul::DevConsul;

    #[test]
    fn timeout_defaults_caps_and_jitters() {
        let mut rng = SmallRng::seed_from_u64(7);
        let (default, max) = (Duration::from_secs(300), Duration::from_secs(600));
        for _ in 0..1000 {
            let t = timeout(Some(Duration::from_secs(60)), default, max, &mut rng);
            assert!(
                t >= Duration::from_secs(60) && t <= Duration::from_millis(63_750),
                "{t:?}"
            );
            let t = timeout(None, default, max, &mut rng);
            assert!(t >= default && t <= default + default / 16);
            let t = timeout(Some(Duration::from_secs(3600)), default, max, &mut rng);
            assert!(t >= max && t <= max + max / 16);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_until_deadline_then_returns_same_index() {
        let consul = DevConsul::builder()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let shared = consul.handle().shared;
        let idx = shared.read(|st| st.catalog.services_table_index());
        let start = Instant::now();
        let wait = Duration::from_secs(16);
        let params = BlockingParams {
            index: idx,
            wait: Some(wait),
        };
        let (_, got) = run(&shared, params, |st| {
            ((), st.catalog.services_table_index())
        })
        .await;
        let elapsed = start.elapsed();
        assert_eq!(got, idx);
        assert!(
            elapsed >= wait && elapsed <= wait + wait / 16,
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_at_once_when_index_is_lower_and_on_write() {
        let consul = DevConsul::builder()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let handle = consul.handle();
        let shared = handle.shared.clone();
        shared.write(|st| {
            let i = st.next_index();
            st.kv.put(i, "other", Vec::new(), 0, None)
        });
        let idx = shared.read(|st| st.kv.get("k").1);
        assert!(idx > 1);
        let params = BlockingParams {
            index: idx - 1,
            wait: Some(Duration::from_secs(60)),
        };
        let start = Instant::now();
        run(&shared, params, |st| ((), st.kv.get("k").1)).await;
        assert_eq!(start.elapsed(), Duration::ZERO);

        let params = BlockingParams {
            index: idx,
            wait: Some(Duration::from_secs(60)),
        };
        let waiter = {
            let shared = shared.clone();
            tokio::spawn(async move { run(&shared, params, |st| ((), st.kv.get("k").1)).await.1 })
        };
        handle.wait_for_blocked(1).await;
        shared.write(|st| {
            let i = st.next_index();
            st.kv.put(i, "k", b"v".to_vec(), 0, None)
        });
        let got = waiter.await.unwrap();
        assert!(got > idx);
        assert!(start.elapsed() < Duration::from_secs(60));
        assert_eq!(handle.blocked_queries(), 0);
    }
}
