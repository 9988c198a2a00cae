//! Upstream quirks whose framing the engine could get wrong (found in an adversarial review),
//! each with a scripted raw upstream (one task per connection, every byte decided here).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use meshgate_e2e::harness::{patience, trace_init};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::raw_gateway;
use super::request::{get, post};
use super::wire::{Got, Wire};

/// A scripted upstream: every accepted connection runs `script(connection index, wire)`.
/// Aborted (with its connections) when dropped.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Scripted {
    async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(usize, Wire) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((io, _)) = listener.accept().await else {
                    continue;
                };
                let n = count.fetch_add(1, SeqCst);
                conns.spawn(script(n, Wire::new(io)));
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits (without the patience panic of `Wire::head`) for the next request head; `None` when
/// the gateway closes the connection.
async fn next_head(w: &mut Wire) -> Option<super::wire::Head> {
    if w.buf.is_empty() {
        match w.read_within(Duration::from_secs(3600)).await {
            Got::Data => {}
            Got::End | Got::Idle => return None,
        }
    }
    w.head().await
}

/// RFC 9110 §15.2.2: a server must not switch protocols unless the request asked to. A `101`
/// to a request without `Upgrade` leaves the upstream connection in an unknown protocol:
/// relayed, the client would wait for a final response that never comes, and the connection
/// would go back to the pool. Expected: a gateway error (502), never a 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_101_to_a_plain_request_is_not_relayed() {
    trace_init();
    let up = Scripted::start(|_, mut w| async move {
        while let Some(_h) = next_head(&mut w).await {
            let _ = w
                .io
                .write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                )
                .await;
        }
    })
    .await;
    let gw = raw_gateway(up.addr);
    let mut c = Wire::connect(gw.addr).await;
    let r = c.ask(get("/plain")).await;
    assert_ne!(
        r.status, 101,
        "a 101 relayed for a request that asked for no upgrade: {}",
        r.head.text
    );
    assert_eq!(r.status, 502, "{}", r.head.text);
}

/// A naive upstream that writes a body for a HEAD request, in a write of its own after the
/// head (so it is not in the gateway's buffer when the head is forwarded). Pooled after the
/// head, the connection would hand those stray bytes to the next GET (idempotent, so checked
/// out without the liveness probe) as its response: here a whole response, so another request
/// gets the wrong answer (response queue poisoning). Expected: the GET gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_body_after_a_head_response_does_not_poison_the_pool() {
    trace_init();
    let (go_tx, go_rx) = mpsc::channel::<()>(1);
    let (written_tx, mut written_rx) = mpsc::channel::<()>(1);
    let go_rx = Arc::new(tokio::sync::Mutex::new(go_rx));
    let stray = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned".to_vec();
    let up = Scripted::start(move |_, mut w| {
        let go_rx = go_rx.clone();
        let written_tx = written_tx.clone();
        let stray = stray.clone();
        async move {
            while let Some(h) = next_head(&mut w).await {
                if h.method() == "HEAD" {
                    let head =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", stray.len());
                    w.io.write_all(head.as_bytes()).await.unwrap();
                    // The body follows once the client has the head.
                    go_rx.lock().await.recv().await;
                    w.io.write_all(&stray).await.unwrap();
                    written_tx.send(()).await.unwrap();
                } else {
                    let body = format!("own answer to {}", h.target());
                    let r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    w.io.write_all(r.as_bytes()).await.unwrap();
                }
            }
        }
    })
    .await;
    let gw = raw_gateway(up.addr);
    let mut c = Wire::connect(gw.addr).await;
    let r = c.ask_head("/h").await;
    assert_eq!(r.status, 200, "{}", r.head.text);
    go_tx.send(()).await.unwrap();
    tokio::time::timeout(patience(), written_rx.recv())
        .await
        .expect("the upstream wrote its late body");
    let r = c.ask(get("/next")).await;
    assert_eq!(
        (r.status, r.text()),
        (200, "own answer to /next".to_string()),
        "upstream connections: {}; head: {}",
        up.connections.load(SeqCst),
        r.head.text
    );
}

/// RFC 9110 §5.6.1: empty list elements are ignored, so `Transfer-Encoding: chunked,` is
/// chunked. Taken as close-delimited, the client would be told `connection: close`, get the
/// field as received (so it reads chunked), and the gateway would wait for an upstream close
/// that a keep-alive upstream never sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_with_an_empty_list_element_is_chunked() {
    trace_init();
    let up = Scripted::start(|_, mut w| async move {
        while let Some(_h) = next_head(&mut w).await {
            let _ =
                w.io.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                )
                .await;
        }
    })
    .await;
    let gw = raw_gateway(up.addr);
    let mut c = Wire::connect(gw.addr).await;
    c.send(get("/te")).await;
    let head = c.head().await.expect("a response head");
    assert!(head.start.starts_with("HTTP/1.1 200"), "{}", head.text);
    assert_eq!(
        head.get("connection"),
        None,
        "a chunked response to a keep-alive request closes: {}",
        head.text
    );
    let (data, _) = c.chunked().await;
    assert_eq!(data, b"ok");
    let r = c.ask(get("/te2")).await;
    assert_eq!(r.status, 200, "{}", r.head.text);
}

/// Checked and found correct: a pipelined POST behind a HEAD whose upstream sent the body in
/// the same write as the head (the engine drops that connection instead of pooling it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_with_body_in_the_same_write_is_not_pooled() {
    trace_init();
    let up = Scripted::start(|_, mut w| async move {
        while let Some(h) = next_head(&mut w).await {
            let body = format!("answer to {} {}", h.method(), h.target());
            let n = h.length().unwrap_or(0);
            let _ = w.take(n).await;
            let r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = w.io.write_all(r.as_bytes()).await;
        }
    })
    .await;
    let gw = raw_gateway(up.addr);
    let mut c = Wire::connect(gw.addr).await;
    let r = c.ask_head("/h").await;
    assert_eq!(r.status, 200);
    let r = c.ask(post("/p", "abc")).await;
    assert_eq!(r.text(), "answer to POST /p");
    assert_eq!(up.connections.load(SeqCst), 2);
}

/// A status line without a reason phrase (`HTTP/1.1 200`, allowed by RFC 9112 §4 and common
/// among small servers) makes httparse hand back a `'static` `""` rather than a slice of the
/// buffer; an offset computed from its address would panic the connection task. Expected: the
/// 200 relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_line_without_reason_phrase_is_relayed() {
    trace_init();
    let up = Scripted::start(|_, mut w| async move {
        while let Some(_h) = next_head(&mut w).await {
            let _ =
                w.io.write_all(b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok")
                    .await;
        }
    })
    .await;
    let gw = raw_gateway(up.addr);
    let mut c = Wire::connect(gw.addr).await;
    c.send(get("/no-reason")).await;
    let head = c.head().await;
    assert!(
        head.is_some(),
        "the gateway closed the connection without a response"
    );
    let r = c.ask(get("/again")).await;
    assert_eq!((r.status, r.text()), (200, "ok".to_string()));
}
