//! Pooled upstream connections that the upstream has closed: after every answer, or once idle.
//! The routes have no retries, so only the pool itself can hide the dead connection.

use std::time::Duration;

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::trace_init;

use super::raw_behind_gateway;
use super::request::{get, post};
use super::upstream::{echo, After};
use super::wire::Wire;
use crate::cases::support::client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_after_each_response_is_transparent() {
    trace_init();
    // Closes every connection after one answer, without `Connection: close`.
    let (up, gw) = raw_behind_gateway(After::Close, echo).await;
    let http = client();
    for i in 0..20 {
        let r = http.get(gw.url(&format!("/g/{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.headers()["x-echo"], format!("GET /g/{i}").as_str());
    }
    // Small bodies sent with their heads can be sent again too, when the method is idempotent
    // (PUT). A POST is never sent twice: it probes the pooled connection instead, and can lose
    // the race with a close that arrives just after the probe (RFC 9112 §9.3.1.1).
    let mut c = Wire::connect(gw.addr).await;
    for i in 0..10 {
        let path = format!("/r/{i}");
        let (request, want) = if i % 2 == 0 {
            (get(&path), String::new())
        } else {
            let body = format!("body-{i}");
            (post(&path, &body).replacen("POST", "PUT", 1), body)
        };
        let r = c.ask(request).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.head.text);
        assert_eq!(r.text(), want);
    }
    assert_eq!(up.seen().len(), 30);
    assert_eq!(up.connections(), 30, "one fresh connection per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_idle_connections_is_transparent() {
    trace_init();
    let (up, gw) = raw_behind_gateway(After::CloseIdle(Duration::from_millis(30)), echo).await;
    let mut c = Wire::connect(gw.addr).await;
    for i in 0..20 {
        let before = up.idle_closed();
        let r = c.ask(get(&format!("/i/{i}"))).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.head.text);
        assert_eq!(r.header("x-echo"), Some(format!("GET /i/{i}").as_str()));
        if i % 2 == 0 {
            // The next request finds its pooled connection closed by the upstream.
            eventually("the upstream to close the idle connection", || async {
                (up.idle_closed() > before).then_some(())
            })
            .await;
        }
    }
    assert_eq!(up.seen().len(), 20);
    assert!(up.idle_closed() >= 10);
    assert!(up.connections() >= 10);
}
