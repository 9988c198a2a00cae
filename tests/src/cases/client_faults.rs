//! Whose fault is it: what clients do (protocol errors, resets, aborted or stalled uploads,
//! clients that stop reading or go away) never counts against an endpoint's health, on the
//! HTTP/1.1 engine and on the HTTP/2 path alike; what endpoints do (refuse, reset before
//! answering, stop answering) still ejects them, and the ejection names its causes.

pub mod abuse;
pub mod upstreams;

use std::net::SocketAddr;

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use serde_json::Value;

use self::upstreams::{Nginx, Sink, SinkKind};
use super::support::{client, service};

/// A service of raw endpoints, each ejected at its `failures`-th counted failure in a row.
pub fn strict_service(name: &str, addrs: &[SocketAddr], failures: u32) -> String {
    let eps: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[services.{name}]\nendpoints = [{}]\nbalance = \"round_robin\"\n\n[services.{name}.outlier]\nconsecutive_failures = {failures}\nmax_ejected_percent = 100\n\n",
        eps.join(", ")
    )
}

pub fn route(name: &str, prefix: &str, service: &str, extra: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\n{extra}backends = [{{ name = \"{service}\", weight = 1 }}]\n\n")
}

/// The endpoints of `service` in `/v1/upstreams`.
pub async fn endpoints(gw: &Gateway, http: &reqwest::Client, service: &str) -> Vec<Value> {
    let u: Value = gw.admin_get_json(http, "/v1/upstreams").await;
    u.as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == service)
        .unwrap_or_else(|| panic!("no service {service} in {u}"))["endpoints"]
        .as_array()
        .unwrap()
        .clone()
}

/// The value of one sample line (`name{labels}`), 0 when absent.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Every endpoint of `service` is unblamed: never ejected, no failure counted, nothing left in
/// flight, and (for `answered = false`) no latency estimate from requests it never answered.
async fn assert_unblamed(gw: &Gateway, http: &reqwest::Client, service: &str, answered: bool) {
    let eps = eventually(&format!("{service}: nothing left in flight"), || async {
        let eps = endpoints(gw, http, service).await;
        eps.iter().all(|e| e["in_flight"] == 0).then_some(eps)
    })
    .await;
    for e in &eps {
        assert_eq!(e["ejected"], false, "{service}: {e}");
        assert_eq!(e["ejections"], 0, "{service}: {e}");
        assert_eq!(e["failures"], 0, "{service}: {e}");
        if !answered {
            assert_eq!(
                e["ewma_ms"], 0.0,
                "{service}: latency of unanswered requests: {e}"
            );
        }
    }
}

/// Ordinary requests through both protocols all succeed.
async fn ordinary_requests_succeed(gw: &Gateway) {
    let h1 = client();
    for i in 0..10 {
        let r = h1.get(gw.url("/ok")).send().await.unwrap();
        assert_eq!(r.status(), 200, "HTTP/1.1 request {i}");
        assert_eq!(abuse::h2_get(gw, "/ok").await, 200, "HTTP/2 request {i}");
    }
}

/// The gateway every "not the endpoint's fault" case runs against: `/ok` on two healthy
/// origins, `/sink` on an endpoint that reads bodies and never answers, `/silent` on one that
/// never answers; the last two ejected at their first counted failure.
async fn abuse_target(
    ok: (&Origin, &Origin),
    sink: &Sink,
    silent: &Sink,
    sink_timeout: &str,
) -> Gateway {
    let cfg = format!(
        "{}[services.ok.outlier]\nconsecutive_failures = 1\n\n{}{}{}{}{}",
        service("ok", &[ok.0, ok.1], "round_robin"),
        strict_service("sink", &[sink.addr], 1),
        strict_service("silent", &[silent.addr], 1),
        route("ok", "/", "ok", ""),
        route(
            "sink",
            "/sink",
            "sink",
            &format!("timeout = \"{sink_timeout}\"\n")
        ),
        route("silent", "/silent", "silent", ""),
    );
    Gateway::start(&cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_that_abort_reset_stall_or_send_garbage_blame_no_endpoint() {
    trace_init();
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sink = Sink::start(SinkKind::ReadForever).await;
    let silent = Sink::start(SinkKind::ReadForever).await;
    let gw = abuse_target((&a, &b), &sink, &silent, "1s").await;
    let http = client();
    for _ in 0..3 {
        abuse::h1_upload_then_close(&gw, &sink, false).await;
        abuse::h1_upload_then_close(&gw, &sink, true).await;
        abuse::h1_broken_chunked_body(&gw, &sink).await;
        abuse::h1_garbage(&gw).await;
        abuse::h1_reset_mid_response(&gw).await;
        abuse::h1_stop_reading(&gw).await;
    }
    abuse::h1_stalled_upload(&gw, &sink).await;
    for s in ["ok", "sink", "silent"] {
        assert_unblamed(&gw, &http, s, s == "ok").await;
    }
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert_eq!(sample(&m, "meshgate_ejections_total"), 0.0, "{m}");
    for kind in [
        "aborted_upload",
        "malformed_request",
        "aborted_response",
        "stalled_upload",
    ] {
        let n = sample(
            &m,
            &format!("meshgate_client_errors_total{{kind=\"{kind}\"}}"),
        );
        assert!(n >= 1.0, "client errors of kind {kind} counted: {m}");
    }
    ordinary_requests_succeed(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_that_reset_streams_blame_no_endpoint() {
    trace_init();
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let sink = Sink::start(SinkKind::ReadForever).await;
    let silent = Sink::start(SinkKind::ReadForever).await;
    let gw = abuse_target((&a, &b), &sink, &silent, "30s").await;
    let http = client();
    for _ in 0..3 {
        abuse::h2_reset_mid_upload(&gw, &sink).await;
        abuse::h2_reset_while_waiting(&gw, &silent).await;
        abuse::h2_reset_mid_response(&gw).await;
        abuse::h2_connection_dropped_mid_upload(&gw, &sink).await;
        abuse::h2_body_longer_than_declared(&gw, &sink).await;
    }
    for s in ["ok", "sink", "silent"] {
        assert_unblamed(&gw, &http, s, s == "ok").await;
    }
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert_eq!(sample(&m, "meshgate_ejections_total"), 0.0, "{m}");
    // Each abusive request is counted as the client's: as cancelled when hyper drops the
    // request at the reset, as an aborted upload when the broken body reached the upstream
    // exchange first, as an aborted response once the answer was under way.
    let kind = |k: &str| sample(&m, &format!("meshgate_client_errors_total{{kind=\"{k}\"}}"));
    let counted = kind("cancelled") + kind("aborted_upload") + kind("aborted_response");
    assert!(
        counted >= 15.0,
        "every abusive request counted as the client's: {m}"
    );
    assert!(kind("aborted_response") >= 3.0, "{m}");
    ordinary_requests_succeed(&gw).await;
}

/// The independent HTTP/2 conformance suite sends malformed frames, resets streams and breaks
/// protocol rules on purpose; run three times against a service of two nginx endpoints, it
/// must not take the service down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_conformance_suite_run_repeatedly_ejects_nothing() {
    trace_init();
    let nginx = Nginx::start().await;
    let cfg = format!(
        "{}{}",
        strict_service("ok", &nginx.addrs, 2),
        route("ok", "/", "ok", "")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for run in 0..3 {
        let (passed, total, failed) = abuse::httpwg(gw.addr).await;
        eprintln!("httpwg run {run}: {passed}/{total}; failed: {failed:#?}");
        // The target of issue 10 (HAProxy 2.6 scores 101 here); docs/request-path.md names the
        // cases still failing and why.
        assert!(passed >= 101, "{passed}/{total}; failed: {failed:#?}");
    }
    assert_unblamed(&gw, &http, "ok", true).await;
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert_eq!(sample(&m, "meshgate_ejections_total"), 0.0, "{m}");
    assert!(!gw.logged("endpoint ejected"));
    let protocol = sample(&m, "meshgate_client_errors_total{kind=\"protocol_error\"}");
    assert!(
        protocol >= 3.0,
        "the suite's protocol errors are counted as the client's: {m}"
    );
    for e in endpoints(&gw, &http, "ok").await {
        let ms = e["ewma_ms"].as_f64().unwrap();
        assert!(ms < 1000.0, "latency estimate untouched by the suite: {e}");
    }
    ordinary_requests_succeed(&gw).await;
}

/// The contrary cases: an endpoint's own faults still eject it, on both protocols, and the
/// ejection's log line and event name the requests and errors that caused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn endpoints_that_refuse_reset_or_stop_answering_are_still_ejected() {
    trace_init();
    let live = Origin::start("live").await;
    let refused = upstreams::closed_port();
    let reset = Sink::start(SinkKind::ResetAfterHead).await;
    let silent = Sink::start(SinkKind::ReadForever).await;
    let cfg = format!(
        "{}{}{}{}{}{}",
        strict_service("refused", &[refused, live.addr], 1),
        strict_service("reset", &[reset.addr], 1),
        strict_service("silent", &[silent.addr], 1),
        route("refused", "/refused", "refused", "retries = 0\n"),
        route("reset", "/reset", "reset", ""),
        route("silent", "/silent", "silent", "timeout = \"300ms\"\n"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for (path, service, status, over_h2) in [
        ("/refused", "refused", 502, false),
        ("/reset", "reset", 502, true),
        ("/silent", "silent", 504, false),
    ] {
        // The first failure ejects (consecutive_failures = 1); round robin may start on the
        // live endpoint of `refused`, so ask until one failure came back.
        eventually(&format!("{path} fails with {status}"), || async {
            let got = if over_h2 {
                abuse::h2_get(&gw, path).await
            } else {
                http.get(gw.url(path))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            };
            (got == status).then_some(())
        })
        .await;
        let eps = endpoints(&gw, &http, service).await;
        let ejected: Vec<_> = eps.iter().filter(|e| e["ejected"] == true).collect();
        assert_eq!(ejected.len(), 1, "{service}: {eps:?}");
        assert_eq!(ejected[0]["ejections"], 1);
    }
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert_eq!(sample(&m, "meshgate_ejections_total"), 3.0, "{m}");
    // The log line and the event name the request and the error.
    for needle in [
        "connect",
        "GET /refused",
        "GET /reset",
        "GET /silent",
        "300ms",
    ] {
        // The harness reads the log lines as they come: wait for them.
        eventually(&format!("the ejection log names {needle}"), || async {
            gw.logged(needle).then_some(())
        })
        .await;
    }
    let events = abuse::events_until(&gw, &http, |t| {
        t.matches("event: endpoint_ejected").count() >= 3
    })
    .await;
    for service in ["refused", "reset", "silent"] {
        assert!(
            events.contains(&format!("\"message\":\"{service}: ")),
            "event for {service}: {events}"
        );
    }
    assert!(events.contains("GET /silent (request "), "{events}");
}
