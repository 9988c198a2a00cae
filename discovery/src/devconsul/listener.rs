//! Accept loop: one HTTP/1.1 connection task per client (after a TLS handshake when serving
//! https), with Consul's per-IP connection cap.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::tls::Tls;
use super::Shared;

/// How long a client may take to finish the TLS handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running accept loop; stopping it closes the socket and every connection.
#[derive(Debug)]
pub(crate) struct Listener {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and starts accepting; with `tls`, every connection is TLS.
    pub(crate) async fn bind(
        shared: Arc<Shared>,
        addr: SocketAddr,
        tls: Option<Tls>,
    ) -> std::io::Result<(SocketAddr, Self)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, shared, tls, cancel.clone()));
        Ok((local, Self { cancel, task }))
    }

    /// Stops accepting, closes every connection and waits until the socket is closed.
    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Stops without waiting (from `Drop`).
    pub(crate) fn cancel(self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Tls>,
    cancel: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(serve(stream, peer, shared.clone(), tls.clone(), cancel.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and similar: pause briefly instead of spinning.
                    tracing::warn!(error = %e, "devconsul accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Counts a connection against its client IP until dropped (also when the task is aborted).
struct ConnGuard {
    shared: Arc<Shared>,
    peer: SocketAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.close_conn(self.peer.ip());
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<Tls>,
    cancel: CancellationToken,
) {
    let over_cap = shared.open_conn(peer.ip());
    let _guard = ConnGuard {
        shared: shared.clone(),
        peer,
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return serve_http(stream, peer, shared, over_cap, cancel).await;
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream));
    let stream = tokio::select! {
        res = handshake => match res {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %peer, "devconsul TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "devconsul TLS handshake timed out");
                return;
            }
        },
        _ = cancel.cancelled() => return,
    };
    serve_http(stream, peer, shared, over_cap, cancel).await;
}

/// Serves HTTP/1.1 on an established (plain or TLS) connection until it ends or `cancel`.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    shared: Arc<Shared>,
    over_cap: bool,
    cancel: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_shared = shared.clone();
    let service = service_fn(move |req| {
        let shared = svc_shared.clone();
        async move {
            let resp = if over_cap {
                super::http::too_many_connections()
            } else {
                super::http::handle(&shared, req, peer).await
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        res = conn => {
            if let Err(e) = res {
                tracing::debug!(error = %e, %peer, "devconsul connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {}
    }
}
