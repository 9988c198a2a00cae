//! Exchanges whose shape is not one request and one response: `Expect: 100-continue`, HEAD
//! (a head that announces a body it does not carry) and interim responses from the upstream.

use std::process::Output;

use meshgate_e2e::harness::{patience, trace_init, Origin};

use super::request::{self, get, pattern};
use super::upstream::{echo, wikipedia, After, RawOrigin};
use super::wire::{lossy, Wire};
use super::{raw_and_origin, raw_behind_gateway};
use crate::cases::support::client;

/// curl posting `data` to `url` with `Expect: 100-continue` and a long expect timeout, so it
/// must wait for the 100 rather than give up and send anyway.
async fn curl_expecting_100(url: &str, data: &[u8]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    std::fs::write(&file, data).unwrap();
    tokio::time::timeout(
        patience(),
        tokio::process::Command::new("curl")
            .args(["-sS", "-v", "--noproxy", "*", "--expect100-timeout", "600"])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .args(["-H", "Expect: 100-continue"])
            .args(["-H", "Content-Type: application/octet-stream"])
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl finished")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_from_a_raw_client_and_from_curl() {
    trace_init();
    let (up, gw) = raw_behind_gateway(After::KeepAlive, echo).await;
    let mut c = Wire::connect(gw.addr).await;
    let r = c
        .ask("POST /e HTTP/1.1\r\nHost: app.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(r.status, 100, "{}", r.head.text);
    assert_eq!(r.head.start, "HTTP/1.1 100 Continue");
    let r = c.ask("hello world").await;
    assert_eq!((r.status, r.text()), (200, "hello world".into()));
    // A chunked body behind `Expect`, on the same connection.
    let r = c
        .ask("POST /e2 HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        .await;
    assert_eq!(r.status, 100, "{}", r.head.text);
    let r = c.ask("2\r\nok\r\n0\r\n\r\n").await;
    assert_eq!((r.status, r.text()), (200, "ok".into()));
    for s in up.seen() {
        assert!(!s.head.has("expect"), "Expect forwarded: {}", s.head.text);
    }
    let data = pattern(200 * 1024);
    let out = curl_expecting_100(&gw.url("/curl"), &data).await;
    let stderr = lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("< HTTP/1.1 100 Continue"), "{stderr}");
    let got = out.stdout.len();
    assert!(out.stdout == data, "curl got {got} bytes back");
    let last = up.seen().pop().unwrap();
    assert_eq!(last.head.target(), "/curl");
    assert!(last.body == data, "origin got {} bytes", last.body.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_responses_have_no_body_and_the_connection_stays_in_sync() {
    trace_init();
    let o = Origin::start("o").await;
    let up = RawOrigin::start(After::KeepAlive, wikipedia).await;
    let gw = raw_and_origin(&up, &o, "/o");
    let r = client().head(gw.url("/o/h")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-origin"], "o");
    assert!(r.bytes().await.unwrap().is_empty());
    let mut c = Wire::connect(gw.addr).await;
    let r = c.ask_head("/o/h").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-origin"), Some("o"));
    assert!(r.head.length().is_some_and(|n| n > 0), "{}", r.head.text);
    // A body after that head would be read here as the next response's head.
    let r = c.ask(get("/o/g")).await;
    assert_eq!((r.status, r.json()["method"].clone()), (200, "GET".into()));
    // A chunked upstream: HEAD then GET on one client and one upstream connection.
    assert_eq!(c.ask_head("/raw/x").await.status, 200);
    let r = c.ask(get("/raw/y")).await;
    assert_eq!((r.status, r.text()), (200, "Wikipedia".into()));
    // Pipelined: HEAD and GET in one write.
    c.send(request::head("/o/h2") + &get("/o/g2")).await;
    assert_eq!(c.response(true).await.status, 200);
    assert_eq!(c.response(false).await.json()["path"], "/o/g2");
    let seen = up.seen();
    let methods: Vec<&str> = seen.iter().map(|s| s.head.method()).collect();
    assert_eq!(methods, ["HEAD", "GET"]);
    // After a HEAD the upstream connection is closed, not pooled: a body the upstream might
    // still send would otherwise be read as the next request's answer.
    let fresh = "the GET after the HEAD went on a new upstream connection";
    assert_eq!(up.connections(), 2, "{fresh}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_from_the_upstream_do_not_break_the_exchange() {
    trace_init();
    let (up, gw) = raw_behind_gateway(After::KeepAlive, |s| {
        let body = s.head.target().as_bytes();
        let mut out = format!(
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    })
    .await;
    let mut c = Wire::connect(gw.addr).await;
    for i in 0..3 {
        let path = format!("/hints/{i}");
        c.send(get(&path)).await;
        let r = c.final_response(false).await;
        assert_eq!((r.status, r.text()), (200, path));
    }
    assert_eq!(up.connections(), 1);
    let r = client().get(gw.url("/hints/r")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "/hints/r");
}

/// A client that stops sending its body to an upstream waiting for all of it (`/upload`) is the
/// client's fault: 408 `request_timeout` when the route's timeout passes, and the endpoint is
/// not blamed (with `consecutive_failures = 1` one
/// blamed failure would eject the only endpoint and the next request would get a 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalling_its_body_gets_408_and_the_endpoint_is_not_blamed() {
    trace_init();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[services.o.outlier]\nconsecutive_failures = 1\n\n[[routes]]\nname = \"r\"\ntimeout = \"1s\"\nretries = 0\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        crate::cases::support::service("o", &[&o], "round_robin")
    );
    let gw = meshgate_e2e::harness::Gateway::start(&cfg).unwrap();
    let mut wire = Wire::connect(gw.addr).await;
    let stalled = wire
        .ask(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await;
    assert_eq!(stalled.status, 408, "{}", stalled.head.text);
    stalled.expect_header("x-meshgate-error", "request_timeout");
    stalled.expect_header("connection", "close");
    let next = Wire::connect(gw.addr).await.ask(get("/after")).await;
    assert_eq!(next.status, 200, "{}", next.head.text);
}

/// An upstream that answers 413 after the head and closes without reading the body: the client
/// gets the 413 (not a 502) and the gateway closes the client's connection after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_before_the_body_is_relayed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    trace_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut b = [0u8; 4096];
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "gateway closed before the head");
            head.extend_from_slice(&b[..n]);
        }
        s.write_all(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
        )
        .await
        .unwrap();
        // Dropped with the body unread: the gateway's next write fails.
    });
    let gw = super::raw_gateway(addr);
    let total = 8 * 1024 * 1024;
    let (rd, mut wr) = tokio::net::TcpStream::connect(gw.addr)
        .await
        .unwrap()
        .into_split();
    let sender = tokio::spawn(async move {
        let head = format!("PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n");
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..total / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        wr
    });
    // Read while the body is still being sent: the answer comes before the body is through.
    let mut rd = rd;
    let mut got = Vec::new();
    let read = tokio::time::timeout(patience(), async {
        while !got.windows(4).any(|w| w == b"big!") {
            let mut b = [0u8; 4096];
            match rd.read(&mut b).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&b[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer; got {:?}", lossy(&got));
    let text = lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nbig!"), "{text}");
    drop(rd);
    let _ = sender.await;
    upstream.await.unwrap();
}
