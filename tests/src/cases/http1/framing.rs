//! Message framing both ways: chunked request bodies streamed upstream, chunked responses kept
//! for HTTP/1.1 clients and decoded for HTTP/1.0 ones, and close-delimited responses.

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};

use super::request::{get, get10, pattern, post_chunked};
use super::upstream::{chunked_answer, echo, wikipedia, After, RawOrigin};
use super::wire::{lossy, Wire};
use super::{raw_and_origin, raw_behind_gateway};
use crate::cases::support::client;

/// [`pattern`]`(len)`, and a raw upstream behind a gateway answering `/big` with it in chunks
/// of `size` bytes and any other path with [`wikipedia`].
async fn big_and_small(len: usize, size: usize) -> (Vec<u8>, RawOrigin, Gateway) {
    let big = pattern(len);
    let b = big.clone();
    let (up, gw) = raw_behind_gateway(After::KeepAlive, move |s| match s.head.target() {
        "/big" => chunked_answer(&s.head, &b, size),
        _ => wikipedia(s),
    })
    .await;
    (big, up, gw)
}

/// Sends `request` with reqwest and expects a 200 with exactly `want` (`what` when it differs).
async fn expect_body(request: reqwest::RequestBuilder, want: &[u8], what: &str) {
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == want, "{what}");
}

/// The body [`big_and_small`] answers `path` with.
fn body_for<'a>(path: &str, big: &'a [u8]) -> &'a [u8] {
    if path == "/big" {
        big
    } else {
        b"Wikipedia"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_body_streams_to_the_origin_and_the_connection_is_reused() {
    trace_init();
    let up = RawOrigin::start(After::KeepAlive, echo).await;
    let o = Origin::start("o").await;
    let gw = raw_and_origin(&up, &o, "/upload");
    let mut c = Wire::connect(gw.addr).await;
    c.send(post_chunked("/raw/a", "")).await;
    // The head goes upstream before any of the body exists: the streamed path, for certain.
    eventually("the request head to reach the origin", || async {
        (up.heads() == 1).then_some(())
    })
    .await;
    for part in [
        "5\r\nhel",
        "lo\r\n",
        "6;name=value\r\n wor",
        "ld\r\n1",
        "0\r\n0123456789",
        "abcdef\r\n0\r\n",
        "x-trailer: t\r\n",
        "\r\n",
    ] {
        c.send(part).await;
    }
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", r.head.text);
    assert_eq!(r.text(), "hello world0123456789abcdef");
    let seen = up.seen();
    assert_eq!(seen[0].head.get("transfer-encoding"), Some("chunked"));
    assert_eq!(seen[0].body, b"hello world0123456789abcdef");
    // The same connection: a chunked body that arrives with its head, then a GET.
    let r = c.ask(post_chunked("/raw/b", "3\r\nabc\r\n0\r\n\r\n")).await;
    assert_eq!((r.status, r.text()), (200, "abc".into()));
    let r = c.ask(get("/raw/c")).await;
    assert_eq!(r.header("x-echo"), Some("GET /raw/c"));
    // hyper's own chunked parser on the origin side agrees.
    c.send(post_chunked("/upload", "4\r\nhell")).await;
    let r = c.ask("\r\n7\r\no world\r\n0\r\n\r\n").await;
    assert_eq!((r.status, r.text()), (200, "11".into()));
    // Every request of that client connection used one upstream connection.
    assert_eq!(up.connections(), 1);
    assert_eq!(up.seen().len(), 3);
    assert!(up.seen().iter().all(|s| s.conn == 0));
    // A Content-Length body spanning many reads arrives byte for byte.
    let big = pattern(300 * 1024);
    let request = client().post(gw.url("/raw/big")).body(big.clone());
    expect_body(request, &big, "echoed body differs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_reaches_http11_clients_intact() {
    trace_init();
    let (big, up, gw) = big_and_small(200 * 1024 + 17, 1000).await;
    let mut c = Wire::connect(gw.addr).await;
    for path in ["/small", "/big", "/small"] {
        let r = c.ask(get(path)).await;
        assert_eq!(r.status, 200);
        r.expect_header("transfer-encoding", "chunked");
        assert!(!r.head.has("content-length"));
        assert!(!r.head.has("connection"), "keep-alive: {}", r.head.text);
        assert!(r.body == body_for(path, &big), "{path}: body differs");
    }
    // The upstream connection went back to the pool after each chunked body.
    assert_eq!(up.connections(), 1);
    let http = client();
    for _ in 0..3 {
        expect_body(http.get(gw.url("/big")), &big, "reqwest: body differs").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_to_an_http10_client_is_decoded_and_closed() {
    trace_init();
    let (big, _up, gw) = big_and_small(100 * 1024 + 3, 777).await;
    for (path, keep_alive) in [("/small", false), ("/big", false), ("/big", true)] {
        let mut c = Wire::connect(gw.addr).await;
        let r = c.ask(get10(path, keep_alive)).await;
        assert_eq!(r.status, 200, "{}", r.head.text);
        assert!(!r.head.has("transfer-encoding"), "{}", r.head.text);
        r.expect_header("connection", "close");
        let want = body_for(path, &big);
        // Read to the close: the bytes are the data alone, with no chunk framing.
        assert!(
            r.wire == want,
            "{path}: got {} bytes, want {}; starts {:?}",
            r.wire.len(),
            want.len(),
            lossy(&r.wire[..r.wire.len().min(40)])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_http10_response_arrives_whole() {
    trace_init();
    let body = pattern(256 * 1024 + 5);
    let b = body.clone();
    let (up, gw) = raw_behind_gateway(After::Close, move |_| {
        let mut out = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nx-old: yes\r\n\r\n".to_vec();
        out.extend_from_slice(&b);
        out
    })
    .await;
    for _ in 0..2 {
        let r = Wire::connect(gw.addr).await.ask(get("/old")).await;
        assert_eq!(r.status, 200);
        assert!(r.head.start.starts_with("HTTP/1.1 "), "{}", r.head.start);
        r.expect_header("connection", "close");
        r.expect_header("x-old", "yes");
        assert!(!r.head.has("content-length") && !r.head.has("transfer-encoding"));
        // `response` read to the close, so the gateway closed the client connection too.
        let (got, want) = (r.body.len(), body.len());
        assert!(r.body == body, "got {got} bytes of {want}");
    }
    let r = client().get(gw.url("/old")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connection"], "close");
    assert!(r.bytes().await.unwrap() == body, "reqwest: body differs");
    assert_eq!(up.connections(), 3);
}
