//! devconsul-only cases: its test hooks and ACL enforcement.

use std::time::Duration;

use bytes::Bytes;
use discovery::consul::QueryOptions;
use discovery::devconsul::{DevConsul, Fault};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::harness::{dev_target, within};

#[tokio::test]
async fn leader_loss() {
    let t = dev_target(DevConsul::builder()).await;
    let hooks = t.hooks().unwrap();
    hooks.set_leader(false);
    let r = t.raw(Method::GET, "/v1/health/service/consul", b"").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader")
    );
    let r = t.raw(Method::PUT, "/v1/kv/a", b"v").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let r = t
        .raw(Method::GET, "/v1/health/service/consul?stale", b"")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-consul-knownleader"), Some("false"));
    assert_eq!(
        t.raw(Method::GET, "/v1/status/leader", b"").await.text(),
        r#""""#
    );
    hooks.set_leader(true);
    let r = t.raw(Method::GET, "/v1/health/service/consul", b"").await;
    assert_eq!(r.header("x-consul-knownleader"), Some("true"));
}

#[tokio::test]
async fn bump_index_changes_index_not_content() {
    let t = dev_target(DevConsul::builder()).await;
    let hooks = t.hooks().unwrap();
    let client = t.client();
    client.kv_put("k", b"v", None).await.unwrap();
    let first = client.kv_get("k", QueryOptions::default()).await.unwrap();
    let waiter = {
        let client = client.clone();
        let index = first.meta.index;
        tokio::spawn(async move {
            client
                .kv_get(
                    "k",
                    QueryOptions {
                        index,
                        wait: Some(Duration::from_secs(60)),
                    },
                )
                .await
        })
    };
    within(hooks.wait_for_blocked(1)).await;
    let bumped = hooks.bump_index();
    let second = within(waiter).await.unwrap().unwrap();
    assert_eq!(second.meta.index, bumped);
    assert_eq!(second.value, first.value, "same body, new index");
}

#[tokio::test]
async fn injected_faults_and_latency() {
    let t = dev_target(DevConsul::builder()).await;
    let hooks = t.hooks().unwrap();
    hooks.inject(Fault::too_many_requests(), 1);
    let r = t.raw(Method::GET, "/v1/catalog/services", b"").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("connection"), Some("close"));
    hooks.inject(Fault::no_leader().on_path("/v1/kv/"), 1);
    assert_eq!(
        t.raw(Method::GET, "/v1/catalog/services", b"").await.status,
        StatusCode::OK
    );
    assert_eq!(
        t.raw(Method::GET, "/v1/kv/x", b"").await.text(),
        "No cluster leader"
    );
    assert_eq!(
        t.raw(Method::GET, "/v1/kv/x", b"").await.status,
        StatusCode::NOT_FOUND
    );

    hooks.set_latency(Duration::from_millis(300));
    let start = Instant::now();
    t.raw(Method::GET, "/v1/status/leader", b"").await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    hooks.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn per_ip_connection_cap() {
    let t = dev_target(DevConsul::builder().max_conns_per_client(1)).await;
    let hooks = t.hooks().unwrap();
    // Connection 1: a blocking query that stays open.
    let client = t.client();
    client.kv_put("k", b"v", None).await.unwrap();
    let index = client
        .kv_get("k", QueryOptions::default())
        .await
        .unwrap()
        .meta
        .index;
    // Same client: it reuses its one pooled connection.
    let blocked = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .kv_get(
                    "k",
                    QueryOptions {
                        index,
                        wait: Some(Duration::from_secs(30)),
                    },
                )
                .await
        }
    });
    within(hooks.wait_for_blocked(1)).await;
    // Connection 2 from the same IP: over the cap.
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("{}/v1/kv/k", t.address))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = within(http.request(req)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["connection"], "close");
    let body = within(resp.into_body().collect()).await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("too many concurrent connections"));
    hooks.set_max_conns_per_client(200);
    client.kv_put("k", b"v2", None).await.unwrap();
    assert!(within(blocked).await.unwrap().is_ok());
}

#[tokio::test]
async fn acl_token_lookup_order() {
    let t = dev_target(DevConsul::builder().token("s3cret")).await;
    let r = t.raw(Method::GET, "/v1/catalog/services", b"").await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (StatusCode::FORBIDDEN, "Permission denied")
    );
    let ok = |r: super::harness::Raw| assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    ok(t.raw(Method::GET, "/v1/catalog/services?token=s3cret", b"")
        .await);
    ok(t.raw_with(
        Method::GET,
        "/v1/catalog/services",
        b"",
        &[("X-Consul-Token", "s3cret")],
    )
    .await);
    ok(t.raw_with(
        Method::GET,
        "/v1/catalog/services",
        b"",
        &[("Authorization", "Bearer s3cret")],
    )
    .await);
    // ?token wins over the header.
    let r = t
        .raw_with(
            Method::GET,
            "/v1/catalog/services?token=bad",
            b"",
            &[("X-Consul-Token", "s3cret")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.text(), "ACL not found");
    // The client sends X-Consul-Token.
    let client = t.client_with(|c| c.token = Some("s3cret".into()));
    assert!(client
        .catalog_services(QueryOptions::default())
        .await
        .is_ok());
    let anonymous = t.client();
    let err = anonymous
        .catalog_services(QueryOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.retry_class(), discovery::RetryClass::Forbidden);
}

#[tokio::test]
async fn agent_runs_http_and_tcp_checks() {
    let t = dev_target(DevConsul::builder()).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let body = serde_json::json!({
        "ID": "probed-1", "Name": "probed", "Port": 80,
        "Checks": [
            {"HTTP": format!("{}/v1/status/leader", t.address.to_string().trim_end_matches('/')), "Interval": "10s"},
            {"TCP": closed_addr, "Interval": "10s", "Timeout": "2s"}
        ]
    });
    let r = t
        .raw(
            Method::PUT,
            "/v1/agent/service/register",
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let client = t.client();
    let mut index = 0;
    within(async {
        loop {
            let q = QueryOptions {
                index,
                wait: Some(Duration::from_secs(5)),
            };
            let resp = client
                .health_service("probed", &Default::default(), q)
                .await
                .unwrap();
            index = resp.meta.index;
            let checks = &resp.value[0].checks;
            let status = |id: &str| {
                checks
                    .iter()
                    .find(|c| c.check_id == id)
                    .map(|c| (c.status.clone(), c.output.clone()))
            };
            let http = status("service:probed-1:1").unwrap();
            let tcp = status("service:probed-1:2").unwrap();
            if http.0 == "passing" && tcp.0 == "critical" && tcp.1.starts_with("dial tcp") {
                assert!(http.1.starts_with("HTTP GET "), "{}", http.1);
                return;
            }
        }
    })
    .await;
}
