//! Connection management: HTTP/1.0 keep-alive, a client's `Connection: close`, a graceful drain
//! and pipelined requests.

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{patience, trace_init};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::request::{get, get10, get_close, post, post_chunked};
use super::upstream::{chunked_answer, wikipedia, After};
use super::wire::{lossy, Reply, Wire};
use super::{origin_behind_gateway, raw_behind_gateway, raw_gateway};

/// A 200 that says `Connection: close` and carries `Wikipedia`, however it was framed.
fn expect_closing_wikipedia(r: &Reply) {
    assert_eq!(r.status, 200);
    r.expect_header("connection", "close");
    assert_eq!(
        r.text(),
        "Wikipedia",
        "head:\n{}\nbody on the wire: {:?}",
        r.head.text,
        lossy(&r.wire)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_keep_alive_is_honoured_for_length_delimited_responses() {
    trace_init();
    let (_o, gw) = origin_behind_gateway().await;
    let mut c = Wire::connect(gw.addr).await;
    for i in 0..3 {
        let r = c.ask(get10(&format!("/k/{i}"), true)).await;
        assert_eq!(r.status, 200);
        assert!(r.head.start.starts_with("HTTP/1.1 "), "{}", r.head.start);
        r.expect_header("connection", "keep-alive");
        assert!(r.head.length().is_some(), "{}", r.head.text);
        assert_eq!(r.json()["path"], format!("/k/{i}"));
    }
    let r = c.ask(get10("/k/last", false)).await;
    assert_eq!(r.json()["path"], "/k/last");
    r.expect_header("connection", "close");
    c.expect_closed().await;
}

/// An HTTP/1.1 client that says `Connection: close` gets a chunked upstream body either still
/// chunked (declared so) or decoded; either way the data must come out as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_to_a_client_sending_connection_close() {
    trace_init();
    let (_up, gw) = raw_behind_gateway(After::KeepAlive, wikipedia).await;
    let mut c = Wire::connect(gw.addr).await;
    expect_closing_wikipedia(&c.ask(get_close("/c")).await);
}

/// The same during a graceful drain: every keep-alive client is told `Connection: close`, and
/// a chunked body must still come out as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_during_a_drain_reaches_a_keep_alive_client_intact() {
    trace_init();
    // An upstream that holds its answer until the gateway is draining.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_tx, got_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let upstream = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        let mut w = Wire::new(io);
        let head = w.head().await.unwrap();
        let _ = got_tx.send(());
        let _ = go_rx.await;
        w.send(chunked_answer(&head, b"Wikipedia", 4)).await;
        w
    });
    let gw = raw_gateway(addr);
    let mut c = Wire::connect(gw.addr).await;
    c.send(get("/drain")).await;
    tokio::time::timeout(patience(), got_rx)
        .await
        .expect("the request reached the upstream")
        .unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The workers close their listeners once they have seen the shutdown.
    eventually("the listeners to close", || async {
        TcpStream::connect(gw.addr).await.is_err().then_some(())
    })
    .await;
    go_tx.send(()).unwrap();
    expect_closing_wikipedia(&c.response(false).await);
    upstream.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    trace_init();
    let (o, gw) = origin_behind_gateway().await;
    let mut c = Wire::connect(gw.addr).await;
    let all = [
        get("/p/1"),
        post("/upload", "hello"),
        get("/p/2"),
        post_chunked("/upload", "3\r\nabc\r\n0\r\n\r\n"),
        get_close("/p/3"),
    ];
    c.send(all.concat()).await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.json()["path"].clone()), (200, "/p/1".into()));
    let r = c.response(false).await;
    assert_eq!((r.status, r.text()), (200, "5".into()));
    let r = c.response(false).await;
    assert_eq!(r.json()["path"], "/p/2");
    let r = c.response(false).await;
    assert_eq!((r.status, r.text()), (200, "3".into()));
    let r = c.response(false).await;
    assert_eq!(r.json()["path"], "/p/3");
    assert_eq!(r.header("connection"), Some("close"));
    c.expect_closed().await;
    assert_eq!(o.hits(), 5);
}

/// HTTP/1.0 makes `Host` optional (`openssl s_time -www` and old probes send none): the request
/// is forwarded naming the address it was sent to. HTTP/1.1 requires it (RFC 9112 §3.2): 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_request_without_host_is_forwarded_with_the_address_it_was_sent_to() {
    trace_init();
    let (_o, gw) = origin_behind_gateway().await;
    let mut c = Wire::connect(gw.addr).await;
    let r = c.ask("GET /no-host HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.head.text);
    assert_eq!(r.json()["path"], "/no-host");
    assert_eq!(r.json()["headers"]["host"], gw.addr.to_string());
    let mut c = Wire::connect(gw.addr).await;
    let r = c.ask("GET /no-host HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, 400, "{}", r.head.text);
}
