//! Watcher cases: content changes, staleness with last-known-good, backoff, index reset.

use std::time::Duration;

use discovery::devconsul::{DevConsul, Fault};
use discovery::watch::{CancellationToken, HealthFilter, KvWatcher, ServiceWatchOptions};
use discovery::{CatalogWatcher, Health, ServiceWatcher};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::harness::{dev_target, targets, unique, wait_for, within, Target};

async fn register(t: &Target, service: &str, id: &str, port: u16, status: &str) {
    let body = json!({"ID": id, "Name": service, "Address": "127.0.0.1", "Port": port,
                      "Weights": {"Passing": 5, "Warning": 2},
                      "Check": {"TTL": "60s", "Status": status}});
    let r = t
        .raw(
            Method::PUT,
            "/v1/agent/service/register",
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn service_watcher_follows_instances_and_health() {
    for t in targets().await {
        let service = unique("conf-watch");
        let client = t.client();
        let (a, b) = (format!("{service}-a"), format!("{service}-b"));
        register(&t, &service, &a, 10001, "passing").await;
        let shutdown = CancellationToken::new();
        let mut options = ServiceWatchOptions::new(service.clone());
        options.health = HealthFilter::PassingOrWarning;
        let mut rx = ServiceWatcher::new(client.clone(), options).spawn(shutdown.clone());
        let state = wait_for(&mut rx, "first read", |s| s.set.len() == 1).await;
        let e = &state.set.endpoints()[0];
        assert_eq!(
            (e.addr.port(), e.weight, e.health, e.id.as_str()),
            (10001, 5, Health::Passing, a.as_str())
        );
        assert!(state.stale.is_none() && state.last_success.is_some());

        register(&t, &service, &b, 10002, "passing").await;
        wait_for(&mut rx, "second instance", |s| s.set.len() == 2).await;
        client
            .agent_check_update(
                &format!("service:{a}"),
                discovery::consul::CheckStatus::Warning,
                "slow",
            )
            .await
            .unwrap();
        let state = wait_for(&mut rx, "warning weight", |s| {
            s.set
                .endpoints()
                .iter()
                .any(|e| e.health == Health::Warning)
        })
        .await;
        let warned = state.set.endpoints().iter().find(|e| e.id == a).unwrap();
        assert_eq!(warned.weight, 2, "warning instances use Weights.Warning");
        client
            .agent_check_update(
                &format!("service:{a}"),
                discovery::consul::CheckStatus::Critical,
                "down",
            )
            .await
            .unwrap();
        wait_for(&mut rx, "critical dropped", |s| {
            s.set.len() == 1 && s.set.endpoints()[0].id == b
        })
        .await;
        client.agent_service_deregister(&a).await.unwrap();
        client.agent_service_deregister(&b).await.unwrap();
        wait_for(&mut rx, "empty", |s| s.set.is_empty()).await;
        shutdown.cancel();
    }
}

#[tokio::test]
async fn watcher_keeps_last_good_set_while_consul_is_away() {
    let t = dev_target(DevConsul::builder()).await;
    let Some(dev) = t.dev.as_ref() else {
        unreachable!()
    };
    let service = unique("conf-away");
    register(&t, &service, "away-1", 10003, "passing").await;
    let shutdown = CancellationToken::new();
    let mut rx = ServiceWatcher::new(t.client(), ServiceWatchOptions::new(service.clone()))
        .spawn(shutdown.clone());
    wait_for(&mut rx, "loaded", |s| s.set.len() == 1).await;

    dev.stop_listening().await;
    let state = wait_for(&mut rx, "stale", |s| s.stale.is_some()).await;
    assert_eq!(
        state.set.len(),
        1,
        "the last good set is kept through errors"
    );
    assert!(!state.stale.as_ref().unwrap().reason.is_empty());

    dev.resume_listening().await.unwrap();
    let state = wait_for(&mut rx, "fresh again", |s| s.stale.is_none()).await;
    assert_eq!(state.set.len(), 1);
    shutdown.cancel();
}

#[tokio::test]
async fn watcher_backs_off_on_injected_errors() {
    let t = dev_target(DevConsul::builder()).await;
    let hooks = t.hooks().unwrap();
    let service = unique("conf-faults");
    register(&t, &service, "faults-1", 10004, "passing").await;
    // 3 × 500 with backoff 100, 200, 400 ms (no jitter) before the first success.
    hooks.inject(Fault::server_error().on_path("/v1/health/"), 3);
    let client = t.client_with(|c| {
        c.backoff =
            discovery::Backoff::try_new(Duration::from_millis(100), Duration::from_secs(2), 0.0)
                .unwrap();
    });
    let start = Instant::now();
    let shutdown = CancellationToken::new();
    let mut rx = ServiceWatcher::new(client.clone(), ServiceWatchOptions::new(service.clone()))
        .spawn(shutdown.clone());
    let state = wait_for(&mut rx, "recovered from 500s", |s| s.set.len() == 1).await;
    assert!(state.stale.is_none());
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "backoff waited {:?}",
        start.elapsed()
    );
    shutdown.cancel();

    // 429s use the longer floor (300 ms in the harness) even on the first retry. Another
    // service, so a request the first watcher had in flight cannot take an injected answer.
    let service = unique("conf-faults");
    register(&t, &service, "faults-2", 10006, "passing").await;
    hooks.inject(
        Fault::too_many_requests().on_path(format!("/v1/health/service/{service}")),
        2,
    );
    let start = Instant::now();
    let shutdown = CancellationToken::new();
    let mut rx =
        ServiceWatcher::new(client, ServiceWatchOptions::new(service)).spawn(shutdown.clone());
    wait_for(&mut rx, "recovered from 429s", |s| s.set.len() == 1).await;
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "429 floor waited {:?}",
        start.elapsed()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn kv_watcher_follows_prefix() {
    for t in targets().await {
        let client = t.client();
        let prefix = format!("{}/", unique("conf/kvwatch"));
        let shutdown = CancellationToken::new();
        let mut rx = KvWatcher::new(client.clone(), prefix.clone()).spawn(shutdown.clone());
        let state = wait_for(&mut rx, "first read (404)", |s| s.index > 0).await;
        assert!(state.entries.is_empty());
        let key = format!("{prefix}routes/api/weights");
        client
            .kv_put(&key, br#"{"weights":{"blue":100}}"#, Some(0))
            .await
            .unwrap();
        let state = wait_for(&mut rx, "key appears", |s| s.entries.contains_key(&key)).await;
        let entry = &state.entries[&key];
        assert_eq!(entry.value, br#"{"weights":{"blue":100}}"#);
        // CAS with the watched ModifyIndex wins once; a second writer with the same index loses.
        assert!(client
            .kv_put(
                &key,
                br#"{"weights":{"green":100}}"#,
                Some(entry.modify_index)
            )
            .await
            .unwrap());
        assert!(!client
            .kv_put(&key, b"late", Some(entry.modify_index))
            .await
            .unwrap());
        wait_for(&mut rx, "update", |s| {
            s.entries
                .get(&key)
                .is_some_and(|e| e.value == br#"{"weights":{"green":100}}"#)
        })
        .await;
        client.kv_delete(&key, None).await.unwrap();
        wait_for(&mut rx, "delete", |s| s.entries.is_empty()).await;
        shutdown.cancel();
    }
}

#[tokio::test]
async fn kv_watcher_resets_when_the_index_goes_backwards() {
    let t = dev_target(DevConsul::builder()).await;
    let hooks = t.hooks().unwrap();
    let client = t.client_with(|c| c.wait = Duration::from_millis(500));
    let prefix = "conf/rewind/".to_owned();
    for i in 0..20 {
        client
            .kv_put(&format!("other/{i}"), b"x", None)
            .await
            .unwrap();
    }
    client.kv_put("conf/rewind/a", b"1", None).await.unwrap();
    let shutdown = CancellationToken::new();
    let mut rx = KvWatcher::new(client.clone(), prefix).spawn(shutdown.clone());
    let before = wait_for(&mut rx, "loaded", |s| s.entries.len() == 1).await;
    // Snapshot restore: every index drops far below what the watcher holds.
    hooks.set_index(5);
    client.kv_put("conf/rewind/a", b"2", None).await.unwrap();
    let after = wait_for(&mut rx, "sees the write after the reset", |s| {
        s.entries
            .get("conf/rewind/a")
            .is_some_and(|e| e.value == b"2")
    })
    .await;
    assert!(
        after.index < before.index,
        "index went backwards: {} → {}",
        before.index,
        after.index
    );
    shutdown.cancel();
}

#[tokio::test]
async fn catalog_watcher_sees_new_services() {
    for t in targets().await {
        let service = unique("conf-catalog");
        let shutdown = CancellationToken::new();
        let mut rx = CatalogWatcher::new(t.client()).spawn(shutdown.clone());
        wait_for(&mut rx, "loaded", |s| s.index > 0).await;
        register(&t, &service, &service, 10005, "passing").await;
        wait_for(&mut rx, "new service", |s| {
            s.services.contains_key(&service)
        })
        .await;
        t.client().agent_service_deregister(&service).await.unwrap();
        wait_for(&mut rx, "gone", |s| !s.services.contains_key(&service)).await;
        shutdown.cancel();
    }
}

#[tokio::test]
async fn watchers_stop_when_receivers_drop_or_on_shutdown() {
    let t = dev_target(DevConsul::builder()).await;
    let hooks = t.hooks().unwrap();
    let (tx, rx) = watch::channel(ServiceWatcher::initial_state());
    let task = tokio::spawn(
        ServiceWatcher::new(t.client(), ServiceWatchOptions::new("x"))
            .run(tx, CancellationToken::new()),
    );
    within(hooks.wait_for_blocked(1)).await;
    drop(rx);
    within(task).await.unwrap();

    let shutdown = CancellationToken::new();
    let (tx, _rx) = watch::channel(Default::default());
    let task = tokio::spawn(KvWatcher::new(t.client(), "p/").run(tx, shutdown.clone()));
    shutdown.cancel();
    within(task).await.unwrap();
}
