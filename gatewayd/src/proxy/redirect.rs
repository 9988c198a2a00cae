//! `redirect_https = true`: a cleartext listener that proxies nothing and answers every request
//! with `308 Permanent Redirect` to the same host (its port dropped: https is on 443) and the same
//! path and query on `https://`. Off the fast path, so hyper's HTTP/1 server serves it.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::worker::{stopped, Worker};
use crate::config::ClientTimeouts;

/// The `Location` for `req`, or `None` when it names no usable host.
pub(crate) fn location<B>(req: &Request<B>) -> Option<String> {
    let host = match req.uri().authority() {
        Some(a) => a.host().to_string(),
        None => {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            h.parse::<http::uri::Authority>().ok()?.host().to_string()
        }
    };
    if host.is_empty() {
        return None;
    }
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let pq = if pq.starts_with('/') { pq } else { "/" };
    Some(format!("https://{host}{pq}"))
}

fn answer<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    match location(req).and_then(|l| http::HeaderValue::from_str(&l).ok()) {
        Some(l) => {
            *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(header::LOCATION, l);
        }
        None => *resp.status_mut() = StatusCode::BAD_REQUEST,
    }
    resp
}

/// Serves one connection of a redirect listener until the client leaves or the worker stops.
/// Each head, waiting for it included, must come within the listener's header timeout (its
/// clients make one request and move to https: an idle one is not kept).
pub(crate) async fn serve(
    stream: TcpStream,
    limits: ClientTimeouts,
    w: &Worker,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = w.metrics.clone();
    let id = w.id;
    let svc = service_fn(move |req: Request<Incoming>| {
        let resp = answer(&req);
        metrics
            .unmatched
            .shard(id)
            .record(resp.status().as_u16(), None);
        async move { Ok::<_, Infallible>(resp) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header.min(limits.keepalive))
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "redirect connection ended with error");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn loc(uri: &str, host: Option<&str>) -> Option<String> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        location(&b.body(()).unwrap())
    }

    #[test]
    fn same_host_and_path_on_https() {
        assert_eq!(
            loc("/a/b?x=1", Some("example.com:8080")).as_deref(),
            Some("https://example.com/a/b?x=1")
        );
        assert_eq!(
            loc("/", Some("[::1]:80")).as_deref(),
            Some("https://[::1]/")
        );
        assert_eq!(
            loc("http://api.test:81/p", None).as_deref(),
            Some("https://api.test/p")
        );
        assert_eq!(loc("/", None), None);
        assert_eq!(loc("/", Some("bad host")), None);
        assert_eq!(answer(&Request::new(())).status(), StatusCode::BAD_REQUEST);
    }
}
