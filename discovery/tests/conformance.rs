//! Conformance suite: the behaviour consul-api.md specifies, checked against an in-process
//! devconsul and, when `CONSUL_HTTP_ADDR` is set, against that real agent too (cases needing
//! devconsul's test hooks run against devconsul only).
//!
//! Nothing sleeps to synchronise: cases wait on blocking queries or watch channels, bounded by
//! `harness::PATIENCE`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use discovery::consul::{BlockingIndex, IndexUpdate, QueryOptions};
use http::{Method, StatusCode};
use tokio::time::Instant;

#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/health.rs"]
mod health;
#[path = "conformance/hooks.rs"]
mod hooks;
#[path = "conformance/tls.rs"]
mod tls;
#[path = "conformance/watchers.rs"]
mod watchers;

use harness::{targets, unique, within};

fn opts(index: u64, wait_ms: u64) -> QueryOptions {
    QueryOptions {
        index,
        wait: Some(Duration::from_millis(wait_ms)),
    }
}

#[tokio::test]
async fn blocking_query_returns_immediately_when_index_is_lower() {
    for t in targets().await {
        let client = t.client();
        let key = unique("conf/blocking-now");
        assert!(client.kv_put(&key, b"v1", None).await.unwrap());
        let first = client.kv_get(&key, QueryOptions::default()).await.unwrap();
        let index = first.meta.index;
        assert!(index > 1, "{}: index must be above 1", t.name);
        let start = Instant::now();
        let again = within(client.kv_get(&key, opts(index - 1, 30_000)))
            .await
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{}: should not block",
            t.name
        );
        assert_eq!(again.meta.index, index);
        client.kv_delete(&key, None).await.unwrap();
    }
}

#[tokio::test]
async fn blocking_query_blocks_until_a_write() {
    for t in targets().await {
        let client = t.client();
        let key = unique("conf/blocking-write");
        client.kv_put(&key, b"v1", None).await.unwrap();
        let index = client
            .kv_get(&key, QueryOptions::default())
            .await
            .unwrap()
            .meta
            .index;
        let waiter = {
            let client = client.clone();
            let key = key.clone();
            tokio::spawn(async move { client.kv_get(&key, opts(index, 60_000)).await })
        };
        if let Some(hooks) = t.hooks() {
            within(hooks.wait_for_blocked(1)).await;
            assert!(
                !waiter.is_finished(),
                "{}: answered before any write",
                t.name
            );
        }
        client.kv_put(&key, b"v2", None).await.unwrap();
        let resp = within(waiter).await.unwrap().unwrap();
        assert!(resp.meta.index > index, "{}", t.name);
        assert_eq!(resp.value.unwrap().value, b"v2");
        client.kv_delete(&key, None).await.unwrap();
    }
}

#[tokio::test]
async fn blocking_query_times_out_with_the_same_index() {
    for t in targets().await {
        let client = t.client();
        let key = unique("conf/blocking-timeout");
        client.kv_put(&key, b"v1", None).await.unwrap();
        let index = client
            .kv_get(&key, QueryOptions::default())
            .await
            .unwrap()
            .meta
            .index;
        let wait = Duration::from_millis(400);
        let start = Instant::now();
        let resp = within(client.kv_get(&key, opts(index, 400))).await.unwrap();
        let elapsed = start.elapsed();
        assert_eq!(
            resp.meta.index, index,
            "{}: same index at the deadline",
            t.name
        );
        assert_eq!(
            resp.value.unwrap().value,
            b"v1",
            "{}: full body at the deadline",
            t.name
        );
        assert!(
            elapsed >= wait,
            "{}: answered after {elapsed:?}, before the wait",
            t.name
        );
        // Upper bound: wait + wait/16 of jitter, plus slack for a loaded machine.
        assert!(
            elapsed <= wait + wait / 16 + Duration::from_secs(5),
            "{}: {elapsed:?}",
            t.name
        );
        let mut idx = BlockingIndex::new();
        assert_eq!(idx.observe(index), IndexUpdate::Changed);
        assert_eq!(idx.observe(resp.meta.index), IndexUpdate::Unchanged);
        client.kv_delete(&key, None).await.unwrap();
    }
}

#[tokio::test]
async fn read_errors_and_headers() {
    for t in targets().await {
        let missing = unique("conf/none");
        let r = t
            .raw(
                Method::GET,
                &format!("/v1/kv/{missing}?stale&consistent"),
                b"",
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.text().trim(),
            "Cannot specify ?stale with ?consistent, conflicting semantics."
        );
        let r = t
            .raw(
                Method::GET,
                &format!("/v1/kv/{missing}?index=1&wait=10"),
                b"",
            )
            .await;
        assert_eq!(
            (r.status, r.text().trim()),
            (StatusCode::BAD_REQUEST, "Invalid wait time")
        );
        let r = t
            .raw(Method::GET, &format!("/v1/kv/{missing}?index=x"), b"")
            .await;
        assert_eq!(
            (r.status, r.text().trim()),
            (StatusCode::BAD_REQUEST, "Invalid index")
        );
        let r = t.raw(Method::GET, "/v1/catalog/services", b"").await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.index() > 0);
        assert_eq!(r.header("x-consul-knownleader"), Some("true"));
        assert!(r.header("x-consul-lastcontact").is_some());
        assert_eq!(r.header("x-consul-effective-consistency"), Some("leader"));
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let r = t.raw(Method::GET, "/v1/catalog/services?stale", b"").await;
        assert_eq!(r.header("x-consul-effective-consistency"), Some("stale"));
        let r = t
            .raw(Method::POST, "/v1/agent/service/register", b"{}")
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", t.name);
        assert!(r.header("allow").unwrap().contains("PUT"));
        let r = t.raw(Method::GET, "/v1/status/leader", b"").await;
        assert!(r.json().as_str().unwrap().ends_with(":8300"), "{}", t.name);
        let r = t.raw(Method::GET, "/v1/agent/self", b"").await;
        assert!(r.json()["Config"]["Datacenter"].is_string());
        assert!(r.json()["Config"]["NodeName"].is_string());
    }
}

#[tokio::test]
async fn kv_semantics() {
    for t in targets().await {
        let client = t.client();
        let prefix = unique("conf/kv");
        let key = format!("{prefix}/a");
        // 404 with an index; the client turns it into None.
        let r = t.raw(Method::GET, &format!("/v1/kv/{key}"), b"").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.body.is_empty());
        assert!(r.index() > 0, "{}: 404 carries X-Consul-Index", t.name);
        assert_eq!(
            client
                .kv_get(&key, QueryOptions::default())
                .await
                .unwrap()
                .value,
            None
        );
        assert!(client
            .kv_list(&prefix, QueryOptions::default())
            .await
            .unwrap()
            .value
            .is_empty());

        // CAS: 0 creates only; a wrong index is 200 false; the right one wins.
        assert!(client.kv_put(&key, b"one", Some(0)).await.unwrap());
        assert!(!client.kv_put(&key, b"two", Some(0)).await.unwrap());
        let pair = client
            .kv_get(&key, QueryOptions::default())
            .await
            .unwrap()
            .value
            .unwrap();
        assert_eq!(pair.value, b"one");
        assert!(!client
            .kv_put(&key, b"two", Some(pair.modify_index + 1000))
            .await
            .unwrap());
        assert!(client
            .kv_put(&key, b"two", Some(pair.modify_index))
            .await
            .unwrap());
        let updated = client
            .kv_get(&key, QueryOptions::default())
            .await
            .unwrap()
            .value
            .unwrap();
        assert_eq!(
            updated.create_index, pair.create_index,
            "CreateIndex survives updates"
        );
        assert!(updated.modify_index > pair.modify_index);

        // Empty value is null on the wire, empty bytes in the client.
        client
            .kv_put(&format!("{prefix}/empty"), b"", None)
            .await
            .unwrap();
        let r = t
            .raw(Method::GET, &format!("/v1/kv/{prefix}/empty"), b"")
            .await;
        assert!(r.json()[0]["Value"].is_null(), "{}: {}", t.name, r.text());
        client
            .kv_put(&format!("{prefix}/sub/x"), b"x", None)
            .await
            .unwrap();

        // recurse is a presence flag (=false still recurses); keys with a separator; raw.
        let r = t
            .raw(Method::GET, &format!("/v1/kv/{prefix}/?recurse=false"), b"")
            .await;
        assert_eq!(r.json().as_array().unwrap().len(), 3, "{}", t.name);
        let keys = client
            .kv_keys(&format!("{prefix}/"), Some("/"), QueryOptions::default())
            .await
            .unwrap()
            .value;
        assert_eq!(
            keys,
            vec![
                format!("{prefix}/a"),
                format!("{prefix}/empty"),
                format!("{prefix}/sub/")
            ]
        );
        let r = t.raw(Method::GET, &format!("/v1/kv/{key}?raw"), b"").await;
        assert_eq!(r.body.as_ref(), b"two");
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        let r = t
            .raw(Method::GET, &format!("/v1/kv/{prefix}/nothing/?keys"), b"")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);

        // Errors.
        let r = t.raw(Method::GET, "/v1/kv/", b"").await;
        assert_eq!(
            (r.status, r.text().trim()),
            (StatusCode::BAD_REQUEST, "Missing key name")
        );
        let r = t
            .raw(Method::PUT, &format!("/v1/kv/{key}?cas=1&acquire=x"), b"v")
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text().starts_with("Conflicting flags: "), "{}", r.text());
        let r = t
            .raw(Method::DELETE, &format!("/v1/kv/{key}?cas=1&recurse"), b"")
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let big = vec![b'x'; 512 * 1024 + 1];
        let r = t
            .raw(Method::PUT, &format!("/v1/kv/{prefix}/big"), &big)
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", t.name);

        // Delete: true when missing, false on a CAS mismatch, recurse clears the prefix.
        assert!(client
            .kv_delete(&format!("{prefix}/missing"), None)
            .await
            .unwrap());
        assert!(!client.kv_delete(&key, Some(1)).await.unwrap());
        assert!(client
            .kv_delete(&key, Some(updated.modify_index))
            .await
            .unwrap());
        let before = client
            .kv_list(&prefix, QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(before.value.len(), 2);
        assert!(client.kv_delete_tree(&format!("{prefix}/")).await.unwrap());
        let after = client
            .kv_list(&prefix, QueryOptions::default())
            .await
            .unwrap();
        assert!(after.value.is_empty());
        assert!(
            after.meta.index >= before.meta.index,
            "tombstones keep the prefix index"
        );
    }
}

#[tokio::test]
async fn devconsul_binary_prints_its_address_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_devconsul"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--token",
            "s3cret",
            "--max-wait",
            "2s",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = within(lines.next_line()).await.unwrap().unwrap();
    let url = line
        .strip_prefix("devconsul listening on ")
        .unwrap()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let target = harness::Target {
        name: "devconsul binary".into(),
        address: url.parse().unwrap(),
        token: None,
        dev: None,
    };
    let r = target.raw(Method::GET, "/v1/kv/x", b"").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::FORBIDDEN, "Permission denied")
    );
    let r = target
        .raw_with(
            Method::GET,
            "/v1/kv/x",
            b"",
            &[("Authorization", "Bearer s3cret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = target.raw(Method::GET, "/v1/kv/x?token=s3cret", b"").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = target
        .raw_with(Method::GET, "/v1/kv/x", b"", &[("X-Consul-Token", "nope")])
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::FORBIDDEN, "ACL not found")
    );
    // --max-wait caps a long wait: 60s asked, about 2s served.
    let start = Instant::now();
    let r = target
        .raw(
            Method::GET,
            "/v1/kv/x?token=s3cret&index=999999&wait=60s",
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert!(start.elapsed() < Duration::from_secs(15));
    child.kill().await.unwrap();
}
