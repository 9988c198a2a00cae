//! The fault-injection suite: real upstream processes and misbehaving endpoints on loopback,
//! bounded load, and the losses each scenario allows. Each load prints what it sent, what
//! succeeded, failed and was retried.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{patience, trace_init, Gateway, Origin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::client_faults::upstreams::{Nginx, Sink, SinkKind};
use super::client_faults::{endpoints, route, sample, strict_service};
use super::support::client;

/// What a bounded load saw.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn report(&self, scenario: &str, retried: f64) -> (u64, u64) {
        let (sent, ok, failed) = (
            self.sent.load(Relaxed),
            self.ok.load(Relaxed),
            self.failed.load(Relaxed),
        );
        println!("{scenario}: sent {sent}, succeeded {ok}, failed {failed}, retried {retried}");
        (ok, failed)
    }
}

/// `clients` concurrent keep-alive clients sending `per_client` GETs each; `midway` runs once
/// a quarter of the requests went out.
async fn load(gw: &Gateway, clients: usize, per_client: u64, midway: impl FnOnce()) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let url = gw.url("/");
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (t, url) = (tally.clone(), url.clone());
            tokio::spawn(async move {
                let http = client();
                for _ in 0..per_client {
                    t.sent.fetch_add(1, Relaxed);
                    let ok = match http.get(&url).send().await {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    match ok {
                        true => t.ok.fetch_add(1, Relaxed),
                        false => t.failed.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    let quarter = clients as u64 * per_client / 4;
    eventually("a quarter of the load sent", || async {
        (tally.sent.load(Relaxed) >= quarter).then_some(())
    })
    .await;
    midway();
    for t in tasks {
        t.await.unwrap();
    }
    tally
}

async fn retried(gw: &Gateway) -> f64 {
    let m = gw.admin_get_text(&client(), "/metrics").await;
    ["connect", "try_timeout", "reset", "status"]
        .iter()
        .map(|r| sample(&m, &format!("meshgate_retries_total{{reason=\"{r}\"}}")))
        .sum()
}

/// kill -9 of one of three upstream processes under steady load: no idempotent request fails,
/// and the dead endpoint is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_upstream_under_load_fails_no_request() {
    trace_init();
    let mut victim = Nginx::start_on(1).await;
    let others = [Nginx::start_on(1).await, Nginx::start_on(1).await];
    let addrs = [victim.addrs[0], others[0].addrs[0], others[1].addrs[0]];
    let cfg = format!(
        "{}{}",
        strict_service("svc", &addrs, 5),
        route("r", "/", "svc", "retries = 2\n"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let tally = load(&gw, 4, 150, || victim.kill9()).await;
    let (ok, failed) = tally.report("kill -9", retried(&gw).await);
    assert_eq!(failed, 0, "no client-visible error");
    assert_eq!(ok, 600);
    let eps = endpoints(&gw, &client(), "svc").await;
    let dead = eps
        .iter()
        .find(|e| e["addr"] == addrs[0].to_string())
        .unwrap();
    assert_eq!(dead["ejected"], true, "{eps:?}");
}

/// An upstream that closes its keep-alive connections right after answering: the next request
/// finds the pooled connection dead and is sent again, never failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_as_it_is_reused_fails_no_request() {
    trace_init();
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closer.local_addr().unwrap();
    let server = tokio::spawn(async move {
        while let Ok((mut io, _)) = closer.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                // Says keep-alive, then closes: the race a pool must survive.
                let _ = io
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let cfg = format!(
        "{}{}",
        strict_service("svc", &[addr], 5),
        route("r", "/", "svc", ""),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let tally = load(&gw, 2, 100, || {}).await;
    let (ok, failed) = tally.report("pooled connection closed", retried(&gw).await);
    server.abort();
    assert_eq!((ok, failed), (200, 0));
}

/// An upstream dying mid-response is never a complete-looking short answer: on HTTP/1.1 a
/// content-length body comes short with the connection closed, a chunked one never gets its
/// last chunk; on HTTP/2 the stream is reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_dying_mid_response_is_visible_to_the_client() {
    trace_init();
    let length = Sink::start(SinkKind::DieMidResponse { chunked: false }).await;
    let chunked = Sink::start(SinkKind::DieMidResponse { chunked: true }).await;
    let cfg = format!(
        "{}{}{}{}",
        strict_service("length", &[length.addr], 100),
        strict_service("chunked", &[chunked.addr], 100),
        route("length", "/length", "length", ""),
        route("chunked", "/chunked", "chunked", ""),
    );
    let gw = Gateway::start(&cfg).unwrap();
    // HTTP/1.1, content-length: fewer bytes than announced, then the close.
    let got = h1_to_close(&gw, "/length").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-length: 100000"));
    let body = got.len() - text.find("\r\n\r\n").unwrap() - 4;
    assert!(body < 100_000, "the body is visibly short: {body}");
    // HTTP/1.1, chunked: the chunks that came, never the last chunk.
    let got = h1_to_close(&gw, "/chunked").await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(!text.ends_with("0\r\n\r\n"), "no final chunk");
    // HTTP/2: the stream ends with an error, not a clean end.
    for path in ["/length", "/chunked"] {
        let (status, ended) = h2_body_end(&gw, path).await;
        assert_eq!(status, 200);
        assert!(
            ended.is_err(),
            "{path}: HTTP/2 stream reset, not ended cleanly"
        );
    }
}

/// The whole response as bytes, read until the gateway closes (bounded).
async fn h1_to_close(gw: &Gateway, path: &str) -> Vec<u8> {
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    io.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(patience(), io.read_to_end(&mut got))
        .await
        .expect("the gateway closed the connection")
        .unwrap_or(0);
    got
}

/// Status of an HTTP/2 GET, and how its body ended: Ok(bytes) when cleanly, Err otherwise.
pub(super) async fn h2_body_end(gw: &Gateway, path: &str) -> (u16, Result<usize, String>) {
    let io = TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get(format!("http://{}{path}", gw.addr))
        .body(())
        .unwrap();
    let (resp, _) = client.send_request(req, true).unwrap();
    let resp = tokio::time::timeout(patience(), resp)
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut n = 0;
    let ended = loop {
        match tokio::time::timeout(patience(), body.data()).await {
            Err(_) => break Err("no end in time".to_string()),
            Ok(None) => break Ok(n),
            Ok(Some(Err(e))) => break Err(e.to_string()),
            Ok(Some(Ok(chunk))) => {
                n += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
                let _: Bytes = chunk;
            }
        }
    };
    conn.abort();
    (status, ended)
}

/// 50 config reloads while requests flow: not one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_fail_no_request() {
    trace_init();
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let cfg = |timeout: u32| {
        format!(
            "{}{}",
            super::support::service("svc", &[&a, &b], "round_robin"),
            route("r", "/", "svc", &format!("timeout = \"{timeout}s\"\n")),
        )
    };
    let gw = Gateway::start(&cfg(10)).unwrap();
    let http = client();
    let reloads = async {
        for i in 0..50u32 {
            gw.write_config(&cfg(11 + i % 2)).unwrap();
            let r = gw
                .admin_req(&http, reqwest::Method::POST, "/v1/reload")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    let tally = Arc::new(Tally::default());
    let traffic = async {
        let mut handles = Vec::new();
        for _ in 0..4 {
            let (t, url) = (tally.clone(), gw.url("/"));
            handles.push(tokio::spawn(async move {
                let http = client();
                for _ in 0..100 {
                    t.sent.fetch_add(1, Relaxed);
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => t.ok.fetch_add(1, Relaxed),
                        _ => t.failed.fetch_add(1, Relaxed),
                    };
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    };
    tokio::join!(reloads, traffic);
    let (ok, failed) = tally.report("50 reloads", retried(&gw).await);
    assert_eq!((ok, failed), (400, 0));
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert!(
        sample(&m, "meshgate_config_reloads_total{result=\"ok\"}") >= 50.0,
        "{m}"
    );
}
