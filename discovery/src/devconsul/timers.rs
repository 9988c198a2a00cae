//! Background timers: TTL expiry and the critical-service reaper (tokio time: tests can pause).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::probe;
use super::shared::Shared;
use super::state::State;

/// Turns TTL checks critical when their deadline passes (tokio time: tests can pause).
pub(crate) async fn ttl_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let next = shared.read(State::next_ttl_deadline);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.ttl_wake.notified() => {}
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                shared.write(|st| st.expire_ttls(Instant::now()));
            }
        }
    }
}

/// Periodically deregisters services critical for longer than `DeregisterCriticalServiceAfter`.
pub(crate) async fn reap_loop(
    shared: Arc<Shared>,
    cancel: CancellationToken,
    every: Duration,
    min_after: Duration,
) {
    let every = every.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {
                let due = shared.read(|st| !st.critical_expired(Instant::now(), min_after).is_empty());
                if due {
                    let removed = shared.write(|st| st.reap_critical(Instant::now(), min_after));
                    tracing::info!(?removed, "devconsul reaped critical services");
                }
            }
        }
    }
}

/// Runs the agent's `http`/`tcp` checks on their intervals and records the results.
pub(crate) async fn probe_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut running = JoinSet::new();
    loop {
        for (node, id, check, timeout) in shared.write_quiet(|st| st.due_probes(Instant::now())) {
            let shared = shared.clone();
            running.spawn(async move {
                let (status, output) = probe::run(&check, timeout).await;
                shared.write(|st| {
                    let idx = st.next_index();
                    st.catalog
                        .set_check_status(idx, &node, &id, status, &output, Instant::now())
                });
            });
        }
        let next = shared.read(State::next_probe);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.probe_wake.notified() => {}
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::devconsul::state::{CheckDefinition, CheckKind, ServiceDefinition, Status};
    use crate::devconsul::DevConsul;

    fn definition() -> ServiceDefinition {
        ServiceDefinition {
            id: Some("api-1".into()),
            name: "api".into(),
            tags: Vec::new(),
            address: String::new(),
            tagged_addresses: BTreeMap::new(),
            meta: None,
            port: 80,
            weights: None,
            enable_tag_override: false,
            kind: String::new(),
            checks: vec![CheckDefinition {
                id: None,
                name: None,
                notes: String::new(),
                status: Some(Status::Passing),
                kind: CheckKind::Ttl(Duration::from_secs(10)),
                interval: None,
                timeout: None,
                deregister_after: Some(Duration::from_secs(60)),
                service_id: None,
            }],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_expires_then_the_reaper_deregisters() {
        let consul = DevConsul::builder()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let shared = consul.handle().shared;
        let node = shared.settings.node_name.clone();
        shared.write(|st| st.agent_register(definition(), false, Instant::now()));
        let check = |shared: &Shared| {
            shared.read(|st| {
                st.catalog
                    .check(&node, "service:api-1")
                    .map(|c| (c.status, c.output.clone()))
            })
        };
        // Virtual time: these sleeps advance the paused clock, timers fire in order.
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(check(&shared), Some((Status::Passing, String::new())));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            check(&shared),
            Some((Status::Critical, "TTL expired".into()))
        );
        // Critical since t=10s; the reaper (every 30 s) removes it at its first tick past 70 s.
        tokio::time::sleep(Duration::from_secs(55)).await;
        assert!(
            check(&shared).is_some(),
            "not before DeregisterCriticalServiceAfter"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(check(&shared), None);
        assert!(shared.read(|st| st.catalog.service(&node, "api-1").is_none()));
    }
}
