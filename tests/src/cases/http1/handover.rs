//! Requests for h2c routes: the engine hands the connection to hyper, with the bytes it already
//! read, and the client notices nothing. Routes `h1` (HTTP/1.1) and `h2` (h2c) strip their
//! prefix, so the origin sees the rest of the path.

use std::net::SocketAddr;

use meshgate_e2e::harness::{trace_init, Gateway, Origin};

use super::request::{get, post, post_chunked};
use super::wire::Wire;
use super::{h1_and_h2c, route};
use crate::cases::support::client;

/// [`route`] with `strip_prefix = true`.
fn stripping(name: &str, prefix: &str, service: &str) -> String {
    route(name, prefix, service).replacen("retries = 0\n", "retries = 0\nstrip_prefix = true\n", 1)
}

/// First the engine's own request, then the handover, then both through hyper, one at a time.
async fn one_at_a_time(addr: SocketAddr) {
    let mut c = Wire::connect(addr).await;
    for (path, version) in [
        ("/h1/a", "HTTP/1.1"),
        ("/h2/b", "HTTP/2.0"),
        ("/h1/c", "HTTP/1.1"),
        ("/h2/d", "HTTP/2.0"),
    ] {
        let r = c.ask(get(path)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.head.text);
        let v = r.json();
        assert_eq!(v["version"], version, "{path}");
        assert_eq!(v["path"], &path[3..]);
        if version == "HTTP/1.1" {
            assert_eq!(v["headers"]["host"], "app.test", "{path}");
        }
    }
    let r = c.ask(post("/h2/upload", "hello")).await;
    assert_eq!((r.status, r.text()), (200, "5".into()));
    let r = c
        .ask(post_chunked("/h1/upload", "3\r\nabc\r\n0\r\n\r\n"))
        .await;
    assert_eq!((r.status, r.text()), (200, "3".into()));
}

/// Pipelined: the engine's request, then one it hands over with the bytes it already read.
async fn pipelined(addr: SocketAddr) {
    let mut c = Wire::connect(addr).await;
    c.send([get("/h1/p1"), get("/h2/p2"), get("/h1/p3")].concat())
        .await;
    for (path, version) in [
        ("/p1", "HTTP/1.1"),
        ("/p2", "HTTP/2.0"),
        ("/p3", "HTTP/1.1"),
    ] {
        let r = c.response(false).await;
        assert_eq!(r.status, 200, "{path}: {}", r.head.text);
        let v = r.json();
        assert_eq!(
            (v["path"].as_str(), v["version"].as_str()),
            (Some(path), Some(version))
        );
    }
}

/// The handover as the first request, with a pipelined request for an HTTP/1.1 route.
async fn handover_first(addr: SocketAddr) {
    let mut c = Wire::connect(addr).await;
    c.send(get("/h2/e") + &get("/h1/f")).await;
    let r = c.response(false).await;
    assert_eq!(r.json()["version"], "HTTP/2.0");
    assert_eq!(r.json()["path"], "/e");
    let r = c.response(false).await;
    assert_eq!(r.json()["version"], "HTTP/1.1");
    assert_eq!(r.json()["path"], "/f");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_h2c_routes_are_handed_to_hyper_on_the_same_connection() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&h1_and_h2c(&o, stripping)).unwrap();
    one_at_a_time(gw.addr).await;
    pipelined(gw.addr).await;
    handover_first(gw.addr).await;
    // And a real client.
    let http = client();
    for path in ["/h2/g", "/h1/h", "/h2/i"] {
        let r = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}
