//! The `[gateway]` policy switches, checked on both paths: the hand-written engine (`/h1`) and
//! the handover to hyper (`/h2`).

use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use serde_json::Value;

use super::{h1_and_h2c, route, start_with_gateway_keys};
use crate::cases::support::client;

/// Three plain requests to `path` get no request id and forward no `x-forwarded-*`; a client's
/// own id is just a header then: forwarded, not echoed.
async fn expect_no_ids_or_forwarding(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    version: &str,
) {
    for _ in 0..3 {
        let r = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("x-request-id"), "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["version"], version);
        let h = v["headers"].as_object().unwrap();
        for absent in [
            "x-request-id",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
        ] {
            assert!(!h.contains_key(absent), "{path}: {absent} sent: {h:?}");
        }
    }
    let r = http
        .get(gw.url(path))
        .header("x-request-id", "mine")
        .header("x-forwarded-for", "203.0.113.9");
    let r = r.send().await.unwrap();
    assert!(!r.headers().contains_key("x-request-id"), "{path}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-request-id"], "mine");
    // Not added, and a forged one from an untrusted peer is not passed on either.
    assert!(v["headers"].get("x-forwarded-for").is_none(), "{path}: {v}");
}

/// Route `name` in `/v1/stats` counted four 2xx requests and recorded no latency.
fn expect_counted_without_histogram(stats: &Value, name: &str) {
    let route = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("route {name} in {stats}"));
    let b = &route["backends"][0];
    assert_eq!(b["requests"], 4, "{name}: {b}");
    assert_eq!(b["by_class"]["2xx"], 4, "{name}: {b}");
    assert_eq!(b["latency_ms"]["p99"], 0.0, "{name}: no histogram: {b}");
    assert_eq!(b["latency_ms"]["max"], 0.0, "{name}: no histogram: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_switches_turn_off_request_ids_forwarding_headers_and_histograms() {
    trace_init();
    let o = Origin::start("o").await;
    let (_dir, gw) = start_with_gateway_keys(
        "request_id = false\nforwarded_headers = false\nlatency_histograms = false\n",
        &h1_and_h2c(&o, route),
    );
    let http = client();
    for (path, version) in [("/h1/x", "HTTP/1.1"), ("/h2/x", "HTTP/2.0")] {
        expect_no_ids_or_forwarding(&http, &gw, path, version).await;
    }
    let r = http.get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.headers().contains_key("x-request-id"));
    // Counters are kept without histograms.
    let s: Value = gw.admin_get_json(&http, "/v1/stats").await;
    for name in ["h1", "h2"] {
        expect_counted_without_histogram(&s, name);
    }
    assert_eq!(s["unmatched_requests"], 1);
}
