//! Admin API: auth, weights, flip, conflicts, persistence, stats and metrics.

use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use reqwest::Method;
use serde_json::{json, Value};

use super::support::{client, origin_of};

fn blue_green(blue: &Origin, green: &Origin) -> String {
    super::support::blue_green(blue, green, 100, 0, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requires_the_token_but_probes_are_open() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let http = client();
    for path in ["/v1/routes", "/v1/stats", "/metrics", "/v1/config"] {
        let r = http.get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unauthorized");
        let r = http
            .get(gw.admin_url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }
    let r = http
        .post(gw.admin_url("/v1/routes/web/flip"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        http.get(gw.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r: Value = http
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ready"], true);
    let r = gw
        .admin_req(&http, Method::GET, "/v1/routes/nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flip_moves_traffic_and_survives_a_restart() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let mut gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let http = client();
    for _ in 0..10 {
        assert_eq!(
            origin_of(http.get(gw.url("/")).send().await.unwrap())
                .await
                .1,
            "blue"
        );
    }
    let r = gw
        .admin_req(&http, Method::POST, "/v1/routes/web/flip")
        .json(&json!({"reason": "release 42", "changed_by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["change"]["weights"], json!({"blue": 0, "green": 100}));
    assert_eq!(v["change"]["previous"], json!({"blue": 100, "green": 0}));
    assert_eq!(v["route"]["weights"]["source"], "state_file");
    for _ in 0..10 {
        assert_eq!(
            origin_of(http.get(gw.url("/")).send().await.unwrap())
                .await
                .1,
            "green"
        );
    }
    // Restart on the same directory: the flip is still in force.
    assert!(gw.terminate().unwrap().success());
    let dir = gw.dir.clone();
    let gw2 = Gateway::start_in(&dir).unwrap();
    for _ in 0..10 {
        assert_eq!(
            origin_of(http.get(gw2.url("/")).send().await.unwrap())
                .await
                .1,
            "green"
        );
    }
    let d: Value = gw2.admin_get_json(&http, "/v1/routes/web").await;
    assert_eq!(d["history"][0]["changed_by"], "alice");
    assert_eq!(d["history"][0]["reason"], "release 42");
    assert_eq!(d["route"]["weights"]["revision"], 1);
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_changes_are_validated_and_conflicts_are_409() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let http = client();
    let put = |body: Value| {
        gw.admin_req(&http, Method::PUT, "/v1/routes/web/weights")
            .json(&body)
            .send()
    };
    let r = put(json!({"weights": {"blue": 90, "purple": 10}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["field"], "weights.purple");
    let r = put(json!({"weights": {"blue": 0, "green": 0}}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = put(json!({"weigths": {"blue": 1}})).await.unwrap();
    assert_eq!(r.status(), 400, "unknown field in body");
    let r = put(json!({"weights": {"blue": 90, "green": 10}, "expected_revision": 0}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A second writer still believing revision 0 loses.
    let r = put(json!({"weights": {"blue": 0, "green": 100}, "expected_revision": 0}))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["current_revision"], 1);
    // Back to the file's weights.
    let r = gw
        .admin_req(&http, Method::DELETE, "/v1/routes/web/weights")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["route"]["weights"]["source"], "file");
    assert_eq!(v["route"]["backends"][0]["weight"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_count_requests() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let cfg = format!(
        "{}\n[services.blue.outlier]\nconsecutive_5xx = 5\n",
        blue_green(&blue, &green)
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for _ in 0..50 {
        http.get(gw.url("/")).send().await.unwrap();
    }
    for _ in 0..5 {
        http.get(gw.url("/status/503")).send().await.unwrap();
    }
    let s: Value = gw.admin_get_json(&http, "/v1/stats").await;
    let b = &s["routes"][0]["backends"][0];
    assert_eq!(s["routes"][0]["route"], "web");
    assert_eq!(b["backend"], "blue");
    assert_eq!(b["requests"], 55);
    assert_eq!(b["by_class"]["2xx"], 50);
    assert_eq!(b["by_class"]["5xx"], 5);
    assert!(b["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert!(
        b["histogram"].as_str().unwrap().len() > 10,
        "serialized histogram present"
    );
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert!(
        m.contains("meshgate_requests_total{route=\"web\",backend=\"blue\",code_class=\"2xx\"} 50"),
        "{m}"
    );
    assert!(
        m.contains("meshgate_request_duration_seconds_count{route=\"web\",backend=\"blue\"} 55")
    );
    // Counted before this: the loop below adds requests.
    // rps comes from once-a-second samples: keep a little traffic flowing until it shows.
    let rps = meshgate_e2e::harness::eventually::eventually("rps to be reported", || async {
        http.get(gw.url("/")).send().await.ok()?;
        let s: Value = gw
            .admin_req(&http, Method::GET, "/v1/stats")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let rps = s["routes"][0]["backends"][0]["rps"].as_f64()?;
        (rps > 0.0).then_some(rps)
    })
    .await;
    assert!(rps < 10_000.0, "rps {rps}");
    // Five 503s in a row ejected blue's only endpoint (`consecutive_5xx = 5`).
    assert!(
        m.contains("meshgate_upstream_endpoints{service=\"blue\",state=\"ejected\"} 1"),
        "{m}"
    );
    assert!(m.contains("meshgate_upstream_endpoints{service=\"green\",state=\"healthy\"} 1"));
    assert!(m.contains("meshgate_ejections_total 1"));
    let u: Value = gw.admin_get_json(&http, "/v1/upstreams").await;
    let blue_ep = &u
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "blue")
        .unwrap()["endpoints"][0];
    assert_eq!(blue_ep["ejected"], true);
    assert_eq!(blue_ep["requests"], 55);
}
