//! Retries where they are safe: a per-try timeout and a close before the response head send an
//! idempotent request (or one on a route that opts in) to another endpoint, within the route's
//! retry budget; what cannot be sent again is never sent twice.

use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::client_faults::abuse::h2_get;
use super::client_faults::upstreams::{Sink, SinkKind};
use super::client_faults::{endpoints, route, sample, strict_service};
use super::support::client;

async fn metric(gw: &Gateway, series: &str) -> f64 {
    sample(&gw.admin_get_text(&client(), "/metrics").await, series)
}

/// One of two endpoints accepts and never answers: with a per-try timeout, every idempotent
/// request still succeeds (on the other endpoint), and the silent one is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_costs_a_try_not_a_request() {
    trace_init();
    let live = Origin::start("live").await;
    let silent = Sink::start(SinkKind::ReadForever).await;
    let cfg = format!(
        "{}{}",
        strict_service("svc", &[silent.addr, live.addr], 3),
        route("r", "/", "svc", "try_timeout = \"300ms\"\nretries = 1\n"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for i in 0..12 {
        let status = if i % 2 == 0 {
            http.get(gw.url("/a"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        } else {
            h2_get(&gw, "/a").await
        };
        assert_eq!(status, 200, "request {i}");
    }
    let retried = metric(&gw, "meshgate_retries_total{reason=\"try_timeout\"}").await;
    assert!(retried >= 1.0, "per-try timeouts retried: {retried}");
    let eps = endpoints(&gw, &http, "svc").await;
    let silent_ep = eps
        .iter()
        .find(|e| e["addr"] == silent.addr.to_string())
        .unwrap();
    assert_eq!(silent_ep["ejected"], true, "{eps:?}");
    meshgate_e2e::harness::eventually::eventually("the ejection's cause logged", || async {
        gw.logged("upstream did not answer within 300ms")
            .then_some(())
    })
    .await;
}

/// A POST is not idempotent: after a per-try timeout it is not sent again (504), unless its
/// route opts in; then its kept body goes to the other endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_sent_twice_only_where_the_route_allows_it() {
    trace_init();
    let live = Origin::start("live").await;
    let silent = Sink::start(SinkKind::ReadForever).await;
    let cfg = format!(
        "{}{}{}",
        strict_service("svc", &[silent.addr, live.addr], 100),
        route(
            "safe",
            "/safe",
            "svc",
            "try_timeout = \"300ms\"\nretries = 1\nstrip_prefix = true\n"
        ),
        route(
            "optin",
            "/optin",
            "svc",
            "try_timeout = \"300ms\"\nretries = 1\nretry_non_idempotent = true\nstrip_prefix = true\n"
        ),
    );
    let gw = Gateway::start(&cfg).unwrap();
    // Round robin: within two POSTs one goes to the silent endpoint first.
    let mut ok = 0;
    for _ in 0..2 {
        match post(&gw, "/safe/upload").await {
            (200, body) => {
                assert_eq!(body, "4");
                ok += 1;
            }
            (status, _) => assert_eq!(status, 504),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        metric(&gw, "meshgate_retries_total{reason=\"try_timeout\"}").await,
        0.0
    );
    for _ in 0..4 {
        assert_eq!(post(&gw, "/optin/upload").await, (200, "4".into()));
    }
    let retried = metric(&gw, "meshgate_retries_total{reason=\"try_timeout\"}").await;
    assert!(retried >= 1.0, "the opted-in POSTs were retried");
    // The live endpoint saw each POST once: the timed-out /safe one was never sent twice.
    assert_eq!(live.hits(), 5);
}

/// A POST with a 4-byte body over a raw socket: status and body (the origin's `/upload`
/// answers the length it received).
async fn post(gw: &Gateway, path: &str) -> (u16, String) {
    let mut io = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
    );
    io.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(meshgate_e2e::harness::patience(), io.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = if status == 200 {
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    } else {
        String::new()
    };
    (status, body)
}

/// An endpoint that resets every connection before answering: idempotent requests go to the
/// other endpoint; with a spent budget they are not retried, and that is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_before_the_head_are_retried_within_the_budget() {
    trace_init();
    let live = Origin::start("live").await;
    let reset = Sink::start(SinkKind::ResetAfterHead).await;
    let cfg = format!(
        "{}{}{}",
        strict_service("svc", &[reset.addr, live.addr], 100),
        route("r", "/", "svc", "retries = 1\n"),
        route(
            "stingy",
            "/stingy",
            "svc",
            "retries = 1\nretry_budget_percent = 0\nretry_budget_min_per_second = 0\n"
        ),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for i in 0..6 {
        let r = http.get(gw.url("/a")).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    let resets = metric(&gw, "meshgate_retries_total{reason=\"reset\"}").await;
    assert!(
        resets >= 3.0,
        "requests that met the resetting endpoint were retried"
    );
    let mut failed = 0.0;
    for _ in 0..4 {
        let r = http.get(gw.url("/stingy/a")).send().await.unwrap();
        if r.status() == 502 {
            failed += 1.0;
        }
    }
    assert!(failed >= 1.0, "no retry without budget");
    assert_eq!(
        metric(&gw, "meshgate_retries_refused_total").await,
        failed,
        "each refused retry is counted"
    );
    assert_eq!(
        metric(&gw, "meshgate_retries_total{reason=\"reset\"}").await,
        resets
    );
}

/// Concurrency limits answer a fast 503 with `Retry-After` instead of queueing: per endpoint
/// (`max_in_flight_per_endpoint`) and per route (`max_in_flight`), counted across workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limits_answer_fast_503s_with_retry_after() {
    trace_init();
    let silent = Sink::start(SinkKind::ReadForever).await;
    let cfg = format!(
        "[services.svc]\nendpoints = [\"{}\"]\nmax_in_flight_per_endpoint = 2\n\n{}{}[services.other]\nendpoints = [\"{}\"]\n\n",
        silent.addr,
        route("r", "/", "svc", "timeout = \"30s\"\n"),
        route("one", "/one", "other", "timeout = \"30s\"\nmax_in_flight = 1\n"),
        silent.addr,
    );
    let gw = Gateway::start(&cfg).unwrap();
    // Requests that wait on the silent endpoint hold their places; each on its own connection.
    let hold = |path: &'static str| {
        let url = gw.url(path);
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) })
    };
    let before = silent.heads();
    let held = [hold("/a"), hold("/b"), hold("/one/c")];
    silent.wait_heads(before + 2).await;
    meshgate_e2e::harness::eventually::eventually("three requests held", || async {
        (silent.heads() >= before + 3).then_some(())
    })
    .await;
    let http = client();
    for path in ["/d", "/one/e"] {
        let started = tokio::time::Instant::now();
        let r = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["x-meshgate-error"], "overloaded");
        // Fast: it did not wait for a place (the held ones wait 30 s).
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
    for h in held {
        h.abort();
    }
}
