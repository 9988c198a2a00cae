//! The admin HTTP server.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::Control;

/// Body of admin responses.
pub type AdminBody = BoxBody<Bytes, Infallible>;

/// How long open admin connections (keep-alive, `/v1/events` streams) get to end once the
/// admin API stops.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long open admin connections may end by themselves before they are asked to.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// Serves the admin API on `listener` until `shutdown` turns true, then stops accepting (the
/// socket closes), lets requests being answered finish, closes idle connections and returns
/// (after [`CLOSE_PATIENCE`] at most).
pub async fn serve(
    listener: TcpListener,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = crate::proxy::stopped(&mut shutdown) => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let c = control.clone();
        let svc = service_fn(move |req| {
            let c = c.clone();
            async move { Ok::<_, Infallible>(super::handlers::route(req, &c, peer).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    // A connection accepted just before the stop may not have sent its request yet, and a
    // graceful shutdown closes such a connection unanswered: let the open ones end by
    // themselves for a moment first (a hand-over's successor serves every new one meanwhile).
    let settle = async {
        while graceful.count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::time::timeout(SETTLE, settle).await;
    let _ = tokio::time::timeout(CLOSE_PATIENCE, graceful.shutdown()).await;
}
