//! Proxy behaviour: gateway-made errors, header hygiene, WebSocket, h2c, balancing, streaming.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Empty};
use meshgate_e2e::harness::{trace_init, Gateway, Origin, OriginKind};
use serde_json::Value;

use super::support::{client, origin_of, service};

/// A loopback port with nothing listening.
fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_is_502_and_timeout_is_504() {
    trace_init();
    let slow = Origin::start_kind("slow", OriginKind::Slow(Duration::from_secs(3))).await;
    let cfg = format!(
        "[services.dead]\nendpoints = [\"{}\"]\n\n{}[[routes]]\nname = \"dead\"\npath_prefix = \"/dead\"\nbackends = [{{ name = \"dead\", weight = 1 }}]\n\n[[routes]]\nname = \"slow\"\npath_prefix = \"/slow\"\ntimeout = \"300ms\"\nbackends = [{{ name = \"slow\", weight = 1 }}]\n",
        closed_port(),
        service("slow", &[&slow], "round_robin")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let r = http.get(gw.url("/dead")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-meshgate-error"], "upstream_connect_failed");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "upstream_connect_failed");
    for _ in 0..2 {
        let r = http.get(gw.url("/slow")).send().await.unwrap();
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()["x-meshgate-error"], "upstream_timeout");
    }
    // A timed-out attempt leaves no phantom in-flight request and counts as a failure.
    let u: Value = gw.admin_get_json(&http, "/v1/upstreams").await;
    let ep = &u
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "slow")
        .unwrap()["endpoints"][0];
    assert_eq!(ep["in_flight"], 0, "{ep}");
    assert_eq!(ep["failures"], 2, "{ep}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_on_another_endpoint() {
    trace_init();
    let live = Origin::start("live").await;
    let cfg = format!(
        "[services.mixed]\nendpoints = [\"{}\", \"{}\"]\nbalance = \"round_robin\"\n\n[[routes]]\nname = \"r\"\nretries = 1\nbackends = [{{ name = \"mixed\", weight = 1 }}]\n",
        closed_port(),
        live.addr
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for _ in 0..20 {
        let r = http.get(gw.url("/")).send().await.unwrap();
        assert_eq!(origin_of(r).await, (200, "live".into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_hop_by_hop_hygiene() {
    trace_init();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[[routes]]\nname = \"r\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[&o], "round_robin")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let r = http
        .get(gw.url("/h"))
        .header("host", "shop.example")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "do not forward")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "generated request id is echoed");
    let v: Value = r.json().await.unwrap();
    let h = &v["headers"];
    assert!(
        h.get("x-secret").is_none(),
        "Connection-listed header removed: {h}"
    );
    assert!(h.get("keep-alive").is_none());
    // The client is no trusted proxy: what it says about its address is replaced.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(h["host"], "shop.example");
    assert_eq!(h["x-request-id"], id.as_str());
    let r = http
        .get(gw.url("/h"))
        .header("x-request-id", "client-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-request-id"], "client-id-1", "propagated");
}

/// A trusted proxy's `X-Forwarded-For` is appended to and its scheme kept (the HTTP/2 path's
/// handling is pinned by `proxy::headers`' unit test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarding_headers_are_kept() {
    trace_init();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[[routes]]\nname = \"r\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[&o], "round_robin")
    );
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{cfg}",
        meshgate_e2e::harness::gateway::preamble(2).replace(
            "[gateway]\n",
            "[gateway]\ntrusted_proxies = [\"127.0.0.0/8\", \"::1\"]\n"
        )
    );
    std::fs::write(dir.path().join("gatewayd.toml"), body).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    let http = client();
    let v: Value = http
        .get(gw.url("/h"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_passed_through() {
    trace_init();
    let o = Origin::start("ws").await;
    let cfg = format!(
        "{}[[routes]]\nname = \"r\"\nbackends = [{{ name = \"ws\", weight = 1 }}]\n",
        service("ws", &[&o], "round_robin")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        let msg = format!("hello {i}");
        ws.send(tokio_tungstenite::tungstenite::Message::text(msg.clone()))
            .await
            .unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), msg);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_and_h2c_upstreams() {
    trace_init();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[services.o2]\nendpoints = [\"{}\"]\nprotocol = \"h2c\"\n\n[[routes]]\nname = \"h1\"\npath_prefix = \"/h1\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[[routes]]\nname = \"h2\"\npath_prefix = \"/h2\"\nbackends = [{{ name = \"o2\", weight = 1 }}]\n",
        service("o", &[&o], "round_robin"),
        o.addr
    );
    let gw = Gateway::start(&cfg).unwrap();
    // HTTP/2 with prior knowledge from the client.
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (path, upstream_version) in [("/h1/x", "HTTP/1.1"), ("/h2/y", "HTTP/2.0")] {
        let req = http::Request::builder()
            .uri(format!("http://app.example{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["version"], upstream_version);
        if upstream_version == "HTTP/1.1" {
            assert_eq!(
                v["headers"]["host"], "app.example",
                "HTTP/2 authority becomes Host for HTTP/1.1"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_even_and_p2c_ewma_avoids_a_slow_endpoint() {
    trace_init();
    let (a, b, c) = (
        Origin::start("a").await,
        Origin::start("b").await,
        Origin::start("c").await,
    );
    let fast = Origin::start("fast").await;
    let slow = Origin::start_kind("slow", OriginKind::Slow(Duration::from_millis(150))).await;
    let cfg = format!(
        "{}{}[[routes]]\nname = \"rr\"\npath_prefix = \"/rr\"\nbackends = [{{ name = \"rr\", weight = 1 }}]\n\n[[routes]]\nname = \"p2c\"\npath_prefix = \"/p2c\"\nbackends = [{{ name = \"p2c\", weight = 1 }}]\n",
        service("rr", &[&a, &b, &c], "round_robin"),
        service("p2c", &[&fast, &slow], "p2c_ewma")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for _ in 0..300 {
        assert_eq!(http.get(gw.url("/rr")).send().await.unwrap().status(), 200);
    }
    // Two workers each rotate on their own: each endpoint gets 100 ± a few.
    for o in [&a, &b, &c] {
        assert!(
            (95..=105).contains(&o.hits()),
            "{} got {}",
            o.name,
            o.hits()
        );
    }
    // 8 concurrent clients × 25 requests: the slow endpoint's EWMA keeps most traffic away.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (http.clone(), gw.url("/p2c"));
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(fast.hits() + slow.hits(), 200);
    assert!(
        slow.hits() * 4 < fast.hits(),
        "slow got {}, fast got {}",
        slow.hits(),
        fast.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1gib_upload_streams_with_flat_memory() {
    trace_init();
    let o = Origin::start("sink").await;
    let cfg = format!("{}[[routes]]\nname = \"r\"\ntimeout = \"120s\"\nbackends = [{{ name = \"sink\", weight = 1 }}]\n", service("sink", &[&o], "round_robin"));
    let gw = Gateway::start(&cfg).unwrap();
    const CHUNK: usize = 256 * 1024;
    const TOTAL: u64 = 1 << 30;
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    let chunks = (TOTAL / CHUNK as u64) as usize;
    let stream = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let r = client()
        .post(gw.url("/upload"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), TOTAL.to_string());
    let peak = gw.peak_rss_kib().unwrap();
    assert!(
        peak < 64 * 1024,
        "gatewayd peak RSS {peak} KiB while streaming 1 GiB: the body was buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    trace_init();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[[routes]]\nname = \"r\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[&o], "round_robin")
    );
    let gw = Gateway::start(&cfg).unwrap();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        let head = String::from_utf8_lossy(&buf);
        assert!(head.starts_with("HTTP/1.1 4"), "{raw:?} got {head:?}");
    }
    assert_eq!(o.hits(), 0);
    // The daemon is still serving.
    assert_eq!(
        client().get(gw.url("/")).send().await.unwrap().status(),
        200
    );
}
