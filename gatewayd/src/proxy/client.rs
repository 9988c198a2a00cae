//! The hyper upstream client, used by the hyper path (HTTP/2 clients, and HTTP/1 connections
//! handed over because a request went to an h2c service): one pool per worker thread (no lock
//! shared between workers), keep-alive HTTP/1.1 connections per endpoint, one multiplexed HTTP/2
//! connection per endpoint for h2c. HTTP/1.1 clients to HTTP/1.1 upstreams use the engine's own
//! pool (`h1::upstream`), which this type also owns and reaps.
//!
//! The connection is established *before* the request is handed over, and a pooled connection
//! that turns out dead gives the request back (`try_send_request`), so a request is only ever
//! lost to an error after it was really sent: those failures are the only non-retryable ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt as _;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::error::{ProxyError, SendError};
use super::request_body::RequestBody;
use super::transport::connect_tcp;
use crate::config::{ServiceConfig, UpstreamProtocol};
use crate::tls::UpstreamTlsRuntime;

/// A failed send of a hyper-path request (which comes back when it can be sent again).
type Failed = SendError<Request<RequestBody>>;

/// Idle HTTP/1.1 connections are pooled by endpoint and by the TLS settings they were made with
/// (`UpstreamTlsRuntime::id`, 0 for cleartext): a service never gets a connection that was
/// verified against another service's CA or name, nor a cleartext one for a TLS service.
type PoolKey = (SocketAddr, u64);

/// A worker's upstream connections.
#[derive(Debug, Clone, Default)]
pub struct Upstreams {
    inner: Arc<PoolInner>,
}

#[derive(Debug, Default)]
struct PoolInner {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<RequestBody>>>,
    /// HTTP/1.1 connections driven by the client connection's task (`h1`).
    raw: super::h1::Pool,
}

#[derive(Debug)]
struct Idle {
    tx: http1::SendRequest<RequestBody>,
    since: Instant,
    max_idle: usize,
    idle_timeout: Duration,
}

/// Returns an HTTP/1.1 connection to its pool when the response body has been read to the end.
#[derive(Debug)]
pub struct PoolReturn {
    pool: Arc<PoolInner>,
    key: PoolKey,
    tx: http1::SendRequest<RequestBody>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl PoolReturn {
    /// Puts the connection back (dropped instead when the pool for that endpoint is full).
    pub fn give_back(self) {
        if self.tx.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(self.key).or_default();
        if list.len() < self.max_idle {
            list.push(Idle {
                tx: self.tx,
                since: Instant::now(),
                max_idle: self.max_idle,
                idle_timeout: self.idle_timeout,
            });
        }
    }
}

impl Upstreams {
    /// Sends `req` (URI and headers already prepared) to `addr`.
    pub async fn send(
        &self,
        addr: SocketAddr,
        svc: &ServiceConfig,
        tls: Option<&UpstreamTlsRuntime>,
        req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<PoolReturn>), Failed> {
        match svc.protocol {
            UpstreamProtocol::Http1 => self.send_h1(addr, svc, tls, req).await,
            UpstreamProtocol::H2c => self.send_h2(addr, svc, req).await.map(|r| (r, None)),
        }
    }

    async fn send_h1(
        &self,
        addr: SocketAddr,
        svc: &ServiceConfig,
        tls: Option<&UpstreamTlsRuntime>,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<PoolReturn>), Failed> {
        let key = (addr, tls.map_or(0, |t| t.id));
        while let Some(mut tx) = self.checkout(key) {
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, Some(self.ret(key, svc, tx)))),
                Err(mut e) => match e.take_message() {
                    // The pooled connection was dead before the request left: try another.
                    Some(r) => req = r,
                    None => return Err(SendError::Failed(broken(addr, e.error()))),
                },
            }
        }
        let mut tx = match open_h1(addr, svc, tls, false).await {
            Ok(tx) => tx,
            Err(e) => return Err(SendError::NotSent(Box::new(req), e)),
        };
        match tx.try_send_request(req).await {
            Ok(resp) => Ok((resp, Some(self.ret(key, svc, tx)))),
            Err(mut e) => match e.take_message() {
                Some(r) => Err(SendError::NotSent(
                    Box::new(r),
                    connect_err(addr, e.error()),
                )),
                None => Err(SendError::Failed(broken(addr, e.error()))),
            },
        }
    }

    async fn send_h2(
        &self,
        addr: SocketAddr,
        svc: &ServiceConfig,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, Failed> {
        let existing = {
            let mut h2 = self.inner.h2.lock().unwrap_or_else(|e| e.into_inner());
            match h2.get(&addr) {
                Some(tx) if !tx.is_closed() => Some(tx.clone()),
                Some(_) => {
                    h2.remove(&addr);
                    None
                }
                None => None,
            }
        };
        let mut tx = match existing {
            Some(tx) => tx,
            None => {
                let io = match connect(addr, svc.connect_timeout).await {
                    Ok(io) => io,
                    Err(e) => return Err(SendError::NotSent(Box::new(req), e)),
                };
                let (tx, conn) = match http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                {
                    Ok(x) => x,
                    Err(e) => return Err(SendError::NotSent(Box::new(req), connect_err(addr, &e))),
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                self.inner
                    .h2
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(addr, tx.clone());
                tx
            }
        };
        if tx.ready().await.is_err() {
            self.inner
                .h2
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&addr);
            return Err(SendError::NotSent(
                Box::new(req),
                ProxyError::UpstreamConnect {
                    addr,
                    reason: "HTTP/2 connection closed".into(),
                },
            ));
        }
        match tx.try_send_request(req).await {
            Ok(r) => Ok(r),
            Err(mut e) => match e.take_message() {
                Some(r) => Err(SendError::NotSent(
                    Box::new(r),
                    connect_err(addr, e.error()),
                )),
                None => Err(SendError::Failed(broken(addr, e.error()))),
            },
        }
    }

    /// Sends an `Upgrade` request on a fresh, unpooled HTTP/1.1 connection that supports
    /// protocol switching (WebSocket and friends).
    pub async fn send_upgrade(
        &self,
        addr: SocketAddr,
        svc: &ServiceConfig,
        tls: Option<&UpstreamTlsRuntime>,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let mut tx = open_h1(addr, svc, tls, true).await?;
        tx.send_request(req).await.map_err(|e| broken(addr, &e))
    }

    fn checkout(&self, key: PoolKey) -> Option<http1::SendRequest<RequestBody>> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&key)?;
        let now = Instant::now();
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(mut c) = list.pop() {
            if c.tx.is_closed() || now.duration_since(c.since) > c.idle_timeout {
                continue;
            }
            match c.tx.ready().now_or_never() {
                Some(Ok(())) => {
                    found = Some(c.tx);
                    break;
                }
                Some(Err(_)) => {}
                // Still finishing its previous response: leave it for later.
                None => busy.push(c),
            }
        }
        list.extend(busy);
        found
    }

    fn ret(
        &self,
        key: PoolKey,
        svc: &ServiceConfig,
        tx: http1::SendRequest<RequestBody>,
    ) -> PoolReturn {
        PoolReturn {
            pool: self.inner.clone(),
            key,
            tx,
            max_idle: svc.max_idle_per_endpoint,
            idle_timeout: svc.idle_timeout,
        }
    }

    /// The pool of the HTTP/1.1 engine.
    pub(crate) fn raw(&self) -> &super::h1::Pool {
        &self.inner.raw
    }

    /// Closes idle connections past their idle timeout (called periodically by each worker).
    pub fn reap(&self) {
        self.inner.raw.reap();
        let now = Instant::now();
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| !c.tx.is_closed() && now.duration_since(c.since) <= c.idle_timeout);
            list.truncate(list.first().map_or(0, |c| c.max_idle));
            !list.is_empty()
        });
        self.inner
            .h2
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, tx| !tx.is_closed());
    }

    /// Idle HTTP/1.1 connections held now (all endpoints).
    pub fn idle_count(&self) -> usize {
        self.inner
            .idle
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
            + self.inner.raw.idle_count()
    }
}

/// A new HTTP/1.1 connection to `addr`: TCP, then TLS when the service has it (the handshake
/// bounded by the connect timeout too), then hyper's handshake; its driver task is spawned.
async fn open_h1(
    addr: SocketAddr,
    svc: &ServiceConfig,
    tls: Option<&UpstreamTlsRuntime>,
    upgrades: bool,
) -> Result<http1::SendRequest<RequestBody>, ProxyError> {
    let tcp = connect_tcp(addr, svc.connect_timeout).await?;
    match tls {
        None => h1_handshake(addr, TokioIo::new(tcp), upgrades).await,
        Some(t) => {
            let io = tokio::time::timeout(svc.connect_timeout, t.connect(addr, tcp))
                .await
                .map_err(|_| ProxyError::UpstreamConnect {
                    addr,
                    reason: format!("TLS handshake timed out after {:?}", svc.connect_timeout),
                })??;
            h1_handshake(addr, TokioIo::new(io), upgrades).await
        }
    }
}

async fn h1_handshake<I>(
    addr: SocketAddr,
    io: I,
    upgrades: bool,
) -> Result<http1::SendRequest<RequestBody>, ProxyError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (tx, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| connect_err(addr, &e))?;
    tokio::spawn(async move {
        let _ = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
    });
    Ok(tx)
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TokioIo<TcpStream>, ProxyError> {
    connect_tcp(addr, timeout).await.map(TokioIo::new)
}

fn connect_err(addr: SocketAddr, e: &hyper::Error) -> ProxyError {
    ProxyError::UpstreamConnect {
        addr,
        reason: with_causes(e),
    }
}

fn broken(addr: SocketAddr, e: &hyper::Error) -> ProxyError {
    ProxyError::UpstreamBroken {
        addr,
        reason: with_causes(e),
    }
}

/// "operation was canceled: connection closed": hyper's own text says little without its causes.
fn with_causes(e: &hyper::Error) -> String {
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
