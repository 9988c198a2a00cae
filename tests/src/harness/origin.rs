//! In-process origin servers on loopback: real HTTP/1.1 + h2c servers (hyper) that answer with
//! their name, and offer the behaviours tests need (delays, status codes, upload counting,
//! WebSocket echo).
//!
//! Paths: `/slow/<ms>` waits then answers; `/status/<code>` answers that code; `/upload` reads
//! the whole body and answers its length; `/echo` answers at once with the request's body,
//! streamed back chunk by chunk as it arrives (same framing: a declared length is echoed with
//! that length, a chunked body chunked); `/bytes/<n>` answers `n` bytes; `/ws` upgrades to a
//! WebSocket echo; anything else answers 200 with a JSON body `{"origin", "method", "path",
//! "headers"}`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

/// What the origin does for ordinary paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKind {
    /// Answers at once.
    Fast,
    /// Waits this long before every ordinary answer.
    Slow(Duration),
    /// Answers 500 to every n-th ordinary request (n = the value), 200 otherwise.
    FailEvery(u64),
}

/// A running origin. Stops when dropped.
pub struct Origin {
    /// Name it answers with.
    pub name: String,
    /// Bound address.
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    /// Starts a fast origin named `name` on 127.0.0.1:0.
    pub async fn start(name: &str) -> Self {
        Self::start_kind(name, OriginKind::Fast).await
    }

    /// Starts an origin with a behaviour.
    pub async fn start_kind(name: &str, kind: OriginKind) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind origin: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("origin addr: {e}"));
        let hits = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, c, n) = (hits.clone(), connections.clone(), name.to_string());
        let task = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Relaxed);
                let (h, n) = (h.clone(), n.clone());
                let svc = service_fn(move |req| {
                    let (h, n) = (h.clone(), n.clone());
                    async move { Ok::<_, Infallible>(answer(req, &n, &h, kind).await) }
                });
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self {
            name: name.to_string(),
            addr,
            hits,
            connections,
            task,
        }
    }

    /// Ordinary requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, s: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(s.into())
            .map_err(|n: Infallible| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r
}

async fn answer(
    mut req: Request<Incoming>,
    name: &str,
    hits: &AtomicU64,
    kind: OriginKind,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/ws" {
        return websocket(&mut req);
    }
    if path == "/echo" {
        hits.fetch_add(1, Relaxed);
        return Response::new(req.into_body().boxed());
    }
    if path == "/upload" {
        let mut n: u64 = 0;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("body error: {e}")),
            }
        }
        hits.fetch_add(1, Relaxed);
        return text(StatusCode::OK, n.to_string());
    }
    if let Some(n) = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        hits.fetch_add(1, Relaxed);
        return text(StatusCode::OK, vec![b'b'; n]);
    }
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        hits.fetch_add(1, Relaxed);
        return text(
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            name.to_string(),
        );
    }
    let n = hits.fetch_add(1, Relaxed) + 1;
    let status = match kind {
        OriginKind::Fast => StatusCode::OK,
        OriginKind::Slow(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        OriginKind::FailEvery(k) if k > 0 && n.is_multiple_of(k) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        OriginKind::FailEvery(_) => StatusCode::OK,
    };
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = serde_json::json!({
        "origin": name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let mut r = text(status, body.to_string());
    r.headers_mut().insert(
        "x-origin",
        http::HeaderValue::from_str(name).unwrap_or(http::HeaderValue::from_static("?")),
    );
    r
}

fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| derive_accept_key(k.as_bytes()))
    else {
        return text(StatusCode::BAD_REQUEST, "not a websocket request");
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        use futures_util::{SinkExt as _, StreamExt as _};
        let (mut tx, mut rx) = ws.split();
        while let Some(Ok(msg)) = rx.next().await {
            if msg.is_close() {
                break;
            }
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = text(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = r.headers_mut();
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&key) {
        h.insert("sec-websocket-accept", v);
    }
    r
}
