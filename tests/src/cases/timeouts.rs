//! Client timeouts a listener configures (`header_timeout`, `keepalive_timeout`), with real
//! clients: a trickled head is cut off at the configured header timeout (not the default 10 s),
//! idle HTTP/1.1 and HTTP/2 connections are closed after the configured idle time (not the
//! default 30 s), while the other listener's clients are served. And connections that hyper
//! serves (HTTP/1.1 handed over for an h2c route) close at once on drain when idle, after their
//! response when busy.
//!
//! Bounds are "before X" with X far from the configured value and under the default, so a
//! loaded 2-core machine cannot fail them, and a timeout ignored would.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::support::{client, service};

/// Under the defaults (10 s header, 30 s keep-alive): a cut or close before this proves the
/// configured value applied.
const BEFORE: Duration = Duration::from_secs(8);

/// Reads one response (head, then a `content-length` or chunked body) from `io`: its head
/// (lower-cased) and body (as sent: chunk framing included).
async fn response(io: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf))
            .await
            .expect("a response head in time")
            .unwrap();
        assert!(n > 0, "closed before a response head: {got:?}");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let len: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let mut body = got.split_off(head_end);
    let done = |b: &[u8]| match len {
        Some(n) => b.len() >= n,
        None => b.ends_with(b"0\r\n\r\n"),
    };
    while !done(&body) {
        let n = tokio::time::timeout(Duration::from_secs(30), io.read(&mut buf))
            .await
            .expect("the body in time")
            .unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&buf[..n]);
    }
    (head, body)
}

/// How long until the gateway closes `io` (reading and dropping anything it sends), bounded.
async fn closed_after(io: &mut TcpStream, bound: Duration) -> Duration {
    let since = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(since + bound, io.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {bound:?}"),
        }
    }
}

/// One HTTP/2 (prior knowledge) GET on a new connection, then how long until the gateway
/// closes that connection.
async fn h2_idle_close(addr: SocketAddr) -> Duration {
    let io = TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/x"))
        .body(())
        .unwrap();
    let (resp, _) = h2.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    while let Some(d) = body.data().await {
        let d: Bytes = d.unwrap();
        let _ = body.flow_control().release_capacity(d.len());
    }
    let since = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(30), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is closed");
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_timeouts_cut_slow_heads_and_close_idle_connections() {
    trace_init();
    let o = Origin::start("o").await;
    let short = "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"short\"\nheader_timeout = \"1s\"\nkeepalive_timeout = \"2s\"\n\n";
    let routes = "[[routes]]\nname = \"all\"\nbackends = [{ name = \"o\", weight = 1 }]\n";
    let gw = Gateway::start(&format!(
        "{short}{}{routes}",
        service("o", &[&o], "round_robin")
    ))
    .unwrap();
    let addr = gw.listeners[1];
    // A head trickled one byte every 300 ms: each keeps the connection busy, none ends it.
    let slowloris = async {
        let mut io = TcpStream::connect(addr).await.unwrap();
        io.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        let since = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while since.elapsed() < Duration::from_secs(30) {
            tokio::select! {
                r = io.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(300)) => {
                    if io.write_all(b"X").await.is_err() {
                        break;
                    }
                }
            }
        }
        (since.elapsed(), String::from_utf8_lossy(&got).into_owned())
    };
    // A kept-alive connection left idle after one request.
    let idle_h1 = async {
        let mut io = TcpStream::connect(addr).await.unwrap();
        io.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let (head, _) = response(&mut io).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        closed_after(&mut io, Duration::from_secs(30)).await
    };
    // A connection that never sends a byte.
    let silent = async {
        let mut io = TcpStream::connect(addr).await.unwrap();
        closed_after(&mut io, Duration::from_secs(30)).await
    };
    // The other listener (default timeouts) serves meanwhile.
    let others = async {
        let http = client();
        for _ in 0..5 {
            assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
        }
    };
    let ((cut, got), idle, quiet, h2_idle, ()) =
        tokio::join!(slowloris, idle_h1, silent, h2_idle_close(addr), others);
    assert!(
        got.starts_with("HTTP/1.1 408"),
        "cut off with a 408: {got:?}"
    );
    assert!(cut < BEFORE, "cut after {cut:?}");
    for (what, d) in [("HTTP/1.1", idle), ("silent", quiet), ("HTTP/2", h2_idle)] {
        // Never before the 2 s configured (the client's clock starts after the gateway's),
        // and well before the default.
        assert!(d >= Duration::from_secs(1), "{what} closed after {d:?}");
        assert!(d < BEFORE, "{what} closed after {d:?}");
    }
}

/// An HTTP/1.1 connection hyper serves (handed over for an h2c route) on SIGTERM: idle, it is
/// closed at once; busy, its response ends whole, then it is closed; the process exits long
/// before its 60 s drain deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_served_http1_connections_close_on_drain() {
    trace_init();
    let o = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}[services.o2]\nendpoints = [\"{}\"]\nprotocol = \"h2c\"\n\n[[routes]]\nname = \"h2\"\npath_prefix = \"/h2\"\nstrip_prefix = true\nbackends = [{{ name = \"o2\", weight = 1 }}]\n",
        preamble(2).replace("drain_timeout = \"10s\"", "drain_timeout = \"60s\""),
        o.addr
    );
    std::fs::write(dir.path().join("gatewayd.toml"), body).unwrap();
    let mut gw = Gateway::start_in(dir.path()).unwrap();
    let ask = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(ask("/h2/a").as_bytes()).await.unwrap();
    let (head, body) = response(&mut idle).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("HTTP/2.0"),
        "h2c upstream"
    );
    // Busy: a 32 MiB answer the client has only started to read (its head).
    let big = 32 << 20;
    let mut busy = TcpStream::connect(gw.addr).await.unwrap();
    busy.write_all(ask("/h2/b").as_bytes()).await.unwrap();
    response(&mut busy).await;
    busy.write_all(ask(&format!("/h2/bytes/{big}")).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), busy.read(&mut byte))
            .await
            .expect("a response head in time")
            .unwrap();
        assert_eq!(n, 1, "closed before the head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    gw.signal("TERM");
    let idle_closed = closed_after(&mut idle, Duration::from_secs(40)).await;
    assert!(idle_closed < Duration::from_secs(20), "{idle_closed:?}");
    // The busy one: every byte of its answer, then the close.
    let mut rest = vec![0u8; 1 << 16];
    let mut n = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_secs(40), busy.read(&mut rest)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(k)) => n += k,
            Ok(Err(e)) => panic!("busy connection failed after {n} bytes: {e}"),
            Err(_) => panic!("busy connection still open after {n} bytes"),
        }
    }
    // The whole answer (with chunk framing when it is chunked), then the close.
    let chunked = !String::from_utf8_lossy(&head)
        .to_ascii_lowercase()
        .contains("content-length");
    assert!(n == big || (chunked && n > big), "{n} bytes of {big}");
    let status = gw.wait_exit().unwrap();
    assert!(status.success(), "{status:?}");
}
