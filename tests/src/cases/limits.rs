//! Limits that keep a worker free: a request target over the listener's `max_request_target`
//! (default 8 KiB) gets 414 on HTTP/1.1 and HTTP/2; a body over the route's `max_body` gets
//! 413, before anything is read when its length is declared, at the limit when it is chunked
//! (HTTP/1.1, the connection then closed) or streamed (HTTP/2), and the upstream never gets
//! more than the limit. Each gateway-made answer is the JSON error and is counted.

use bytes::Bytes;
use meshgate_e2e::harness::{patience, trace_init, Gateway, Origin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::support::service;

fn config(o: &Origin) -> String {
    format!(
        "{}[[routes]]\nname = \"small\"\nmax_body = \"1KiB\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[o], "round_robin"),
    )
}

/// Sends `bytes` and reads what comes back until the gateway closes (bounded).
async fn exchange(gw: &Gateway, bytes: &[u8]) -> String {
    exchange_at(gw.addr, bytes).await.0
}

/// Sends `bytes` to `addr` without closing its sending side, and reads what comes back: the
/// text and whether the gateway closed the connection (false: still open after the patience).
async fn exchange_at(addr: std::net::SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut io = TcpStream::connect(addr).await.unwrap();
    // The gateway may answer and close before taking everything: write errors are fine.
    let _ = io.write_all(bytes).await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(patience(), io.read_to_end(&mut got))
        .await
        .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// The value of the sample `name_and_labels` (`meshgate_x{a="b"}`) in a Prometheus text, 0
/// when absent.
fn sample(metrics: &str, name_and_labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The `error` code of a gateway-made answer's JSON body (after the head, for HTTP/1.1).
fn error_code(answer: &str) -> String {
    let json = answer.split_once("\r\n\r\n").map_or(answer, |(_, b)| b);
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"));
    assert!(v["message"].is_string(), "{v}");
    v["error"].as_str().unwrap_or("").to_string()
}

/// The first bytes of `s` (a long answer in a message).
fn head_of(s: &str) -> &str {
    &s[..s.len().min(300)]
}

const UNMATCHED_4XX: &str = "meshgate_requests_total{route=\"\",backend=\"\",code_class=\"4xx\"}";
const MALFORMED: &str = "meshgate_client_errors_total{kind=\"malformed_request\"}";
const TOO_LARGE: &str = "meshgate_client_errors_total{kind=\"body_too_large\"}";
const SMALL_4XX: &str = "meshgate_requests_total{route=\"small\",backend=\"o\",code_class=\"4xx\"}";

/// A request target over the listener's `max_request_target` (default 8 KiB; 16 KiB on a
/// second listener) gets a 414 with the JSON error: HTTP/1.1 closes the connection, HTTP/2
/// answers on that stream and the connection goes on; each is counted. The same target is
/// proxied where the limit is higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_target_gets_414_per_listener_limit_on_both_protocols_and_is_counted() {
    trace_init();
    let o = Origin::start("o").await;
    let wide = "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"wide\"\nmax_request_target = \"16KiB\"\n\n";
    let gw = Gateway::start(&format!("{wide}{}", config(&o))).unwrap();
    let (default, wide) = (gw.listeners[0], gw.listeners[1]);
    let path = format!("/{}", "a".repeat(9000));
    let long = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    let (got, closed) = exchange_at(default, long.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 414"), "{got}");
    assert_eq!(error_code(&got), "uri_too_long");
    assert!(closed, "the connection is closed after the 414");
    let ok = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let (got, _) = exchange_at(wide, ok.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{}", head_of(&got));
    assert_eq!(o.hits(), 1);
    // HTTP/2: 414 on the stream, then a short path on the same connection is proxied.
    let answers = h2_paths(default, &[&path, "/short"]).await;
    assert_eq!(answers[0].0, 414, "{}", answers[0].1);
    assert_eq!(error_code(&answers[0].1), "uri_too_long");
    assert_eq!(
        answers[1].0, 200,
        "the connection goes on: {}",
        answers[1].1
    );
    let answers = h2_paths(wide, &[&path]).await;
    assert_eq!(answers[0].0, 200, "{}", head_of(&answers[0].1));
    assert_eq!(o.hits(), 3, "no refused target reached the upstream");
    let m = gw
        .admin_get_text(&super::support::client(), "/metrics")
        .await;
    assert_eq!(sample(&m, UNMATCHED_4XX), 2, "{m}");
    assert_eq!(sample(&m, MALFORMED), 2, "{m}");
}

/// HTTP/2 GETs of `paths`, one after the other on one connection to `addr`: (status, body).
async fn h2_paths(addr: std::net::SocketAddr, paths: &[&str]) -> Vec<(u16, String)> {
    let io = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut out = Vec::new();
    for path in paths {
        let mut client = client.clone().ready().await.unwrap();
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(patience(), resp)
            .await
            .expect("an answer in time")
            .unwrap();
        let (parts, mut body) = resp.into_parts();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        out.push((parts.status.as_u16(), text));
    }
    conn.abort();
    out
}

/// A body over the route's `max_body` gets 413 (the JSON error, counted): before anything is
/// read when its length is declared; at the limit when it is chunked, the connection then
/// closed; on HTTP/2 declared or streamed. The upstream never gets an over-limit body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_get_413_are_counted_and_a_chunked_one_closes_the_connection() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    // A declared length over the limit: refused before the body is read.
    let got = exchange(
        &gw,
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert_eq!(error_code(&got), "body_too_large");
    // Chunked: cut at the limit, and the connection closed though the client keeps its side
    // open and has a next request queued behind the body.
    let mut chunked =
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'x'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n");
    let (got, closed) = exchange_at(gw.addr, &chunked).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    assert_eq!(error_code(&got), "body_too_large");
    assert!(
        closed,
        "the gateway closes the connection after a chunked 413"
    );
    assert_eq!(
        got.matches("HTTP/1.1 ").count(),
        1,
        "nothing after the 413: {got}"
    );
    // Within the limit all is well, chunked and declared.
    let got = exchange(
        &gw,
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("16"),
        "{got}"
    );
    assert_eq!(o.hits(), 1, "no over-limit body reached the upstream");
    // HTTP/2: a declared length and a streamed body, both refused.
    assert_eq!(h2_post(&gw, Some(5000), 5000).await, 413);
    assert_eq!(h2_post(&gw, None, 4096).await, 413);
    assert_eq!(h2_post(&gw, None, 100).await, 200);
    let m = gw
        .admin_get_text(&super::support::client(), "/metrics")
        .await;
    assert_eq!(sample(&m, TOO_LARGE), 4, "{m}");
    assert_eq!(sample(&m, SMALL_4XX), 4, "{m}");
}

/// An HTTP/2 POST to `/upload` with `n` bytes of body (and a `content-length` when given).
async fn h2_post(gw: &Gateway, length: Option<u64>, n: usize) -> u16 {
    let io = TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::post(format!("http://{}/upload", gw.addr));
    if let Some(l) = length {
        req = req.header("content-length", l);
    }
    let (resp, mut body) = client.send_request(req.body(()).unwrap(), false).unwrap();
    // The gateway may refuse before taking it all: a failed send is fine.
    let _ = body.send_data(Bytes::from(vec![b'x'; n]), true);
    let status = tokio::time::timeout(patience(), resp)
        .await
        .expect("an answer in time")
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    conn.abort();
    status
}

/// A client trickling its request head (slowloris) is cut off with a 408 after the header
/// timeout (10 s), long before the keep-alive timeout (30 s), while other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_head_is_cut_off() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let trickle = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let started = tokio::time::Instant::now();
        // One byte every 2 s: each keeps the connection busy, none finishes the head.
        while started.elapsed() < std::time::Duration::from_secs(28) {
            tokio::select! {
                r = slow.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(std::time::Duration::from_secs(2)) => {
                    if slow.write_all(b"X").await.is_err() {
                        break;
                    }
                }
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let others = async {
        let http = super::support::client();
        for _ in 0..5 {
            let r = http.get(gw.url("/")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let (got, ()) = tokio::join!(trickle, others);
    assert!(
        got.starts_with("HTTP/1.1 408"),
        "cut off with a 408: {got:?}"
    );
    assert!(got.contains("request_timeout"));
    let m = gw
        .admin_get_text(&super::support::client(), "/metrics")
        .await;
    assert!(
        m.contains("meshgate_client_errors_total{kind=\"stalled_head\"} 1"),
        "{m}"
    );
}

/// A listener behind an L4 balancer (`proxy_protocol = true`): the client named by a PROXY v1
/// or v2 header is the one upstreams see in `X-Forwarded-For`; a connection without the header
/// is closed unanswered and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_headers_name_the_client() {
    trace_init();
    let o = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}{}",
        meshgate_e2e::harness::gateway::preamble(2).replace(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n",
            "[[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n"
        ),
        config(&o)
    );
    std::fs::write(dir.path().join("gatewayd.toml"), body).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    let request = b"GET /h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut v1 = b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n".to_vec();
    v1.extend_from_slice(request);
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 7, 10, 0, 0, 1, 0x9c, 0x40, 0, 80]);
    v2.extend_from_slice(request);
    for (bytes, client) in [(v1, "203.0.113.9"), (v2, "198.51.100.7")] {
        let got = exchange(&gw, &bytes).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        let body = got.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["headers"]["x-forwarded-for"], client, "{v}");
    }
    let got = exchange(&gw, request).await;
    assert_eq!(got, "", "no PROXY header: closed unanswered");
    let m = gw
        .admin_get_text(&super::support::client(), "/metrics")
        .await;
    assert!(
        m.contains("meshgate_client_errors_total{kind=\"protocol_error\"} 1"),
        "{m}"
    );
}

/// `max_connections` holds across every worker: with three connections open, a fourth is
/// closed at once and counted, the other listener is not affected, and a freed place is taken
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_closes_new_connections_at_once() {
    trace_init();
    let o = Origin::start("o").await;
    let capped =
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"capped\"\nmax_connections = 3\n\n";
    let gw = Gateway::start(&format!("{capped}{}", config(&o))).unwrap();
    let addr = gw.listeners[1];
    let ask = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n";
    // Reads one response head (bounded); empty when the gateway closed instead.
    async fn answer(io: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout(patience(), io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut io = TcpStream::connect(addr).await.unwrap();
        io.write_all(ask).await.unwrap();
        let got = answer(&mut io).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        held.push(io);
    }
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let _ = fourth.write_all(ask).await;
    assert_eq!(
        answer(&mut fourth).await,
        "",
        "the fourth connection is closed unanswered"
    );
    // The other listener serves as before.
    let http = super::support::client();
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 200);
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("meshgate_connections_refused_total ") && !l.ends_with(" 0")),
        "{m}"
    );
    // A freed place is taken again (the gateway notices the close when it reads).
    drop(held.pop());
    meshgate_e2e::harness::eventually::eventually("a freed place to be taken", || async {
        let mut io = TcpStream::connect(addr).await.ok()?;
        io.write_all(ask).await.ok()?;
        answer(&mut io)
            .await
            .starts_with("HTTP/1.1 200")
            .then_some(())
    })
    .await;
}
