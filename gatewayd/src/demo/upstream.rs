//! The demo's upstream instances: tiny HTTP/1.1 servers on `127.0.0.1:0` that answer every
//! request with their color and name (`blue (blue-2)`, HTML for browsers) and the header
//! `x-demo-instance`, after 1–5 ms so latency percentiles have something to show.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use rand::Rng as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Instances per color.
pub(super) const PER_COLOR: usize = 3;

/// Which version of the demo service an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Color {
    /// The version serving at start (weight 100).
    Blue,
    /// The new version (weight 0 until flipped).
    Green,
}

/// A running instance.
#[derive(Debug)]
pub(super) struct Upstream {
    /// `blue-1` … `green-3`: the Consul service id too.
    pub(super) id: String,
    /// Its version.
    pub(super) color: Color,
    /// Where it listens.
    pub(super) addr: SocketAddr,
    task: JoinHandle<()>,
}

// === impl Color ===

impl Color {
    /// Both colors, blue first.
    pub(super) const ALL: [Color; 2] = [Color::Blue, Color::Green];

    /// `blue` or `green`: the Consul tag and the gateway backend name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    fn css(self) -> &'static str {
        match self {
            Color::Blue => "#1f5fbf",
            Color::Green => "#1f8f4f",
        }
    }
}

/// Starts `blue-1..3` and `green-1..3`. They stop accepting when `stop` is cancelled and close
/// their connections once in-flight requests are answered.
pub(super) async fn start_all(stop: CancellationToken) -> std::io::Result<Vec<Upstream>> {
    let mut all = Vec::new();
    for color in Color::ALL {
        for n in 1..=PER_COLOR {
            all.push(start(format!("{}-{n}", color.name()), color, stop.clone()).await?);
        }
    }
    Ok(all)
}

/// Waits (at most 2 s) for every instance to finish after `stop` was cancelled.
pub(super) async fn stop_all(upstreams: Vec<Upstream>) {
    let tasks = upstreams.into_iter().map(|u| u.task);
    let all = futures_util::future::join_all(tasks);
    let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
}

async fn start(id: String, color: Color, stop: CancellationToken) -> std::io::Result<Upstream> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let header = HeaderValue::from_str(&id)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let name = id.clone();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::debug!(instance = %name, error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let (name, header) = (name.clone(), header.clone());
            let svc = service_fn(move |req| answer(req, color, name.clone(), header.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            let watched = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = watched.await;
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    });
    Ok(Upstream {
        id,
        color,
        addr,
        task,
    })
}

async fn answer(
    req: Request<Incoming>,
    color: Color,
    id: String,
    header: HeaderValue,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let delay = rand::thread_rng().gen_range(1..=5);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let html = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let c = color.name();
    let (body, kind) = if html {
        (
            format!(
                "<!doctype html><title>{c} ({id})</title>\
                 <body style=\"background:{};color:#fff;font:2em sans-serif;padding:2em\">\
                 <p>{c} ({id})</p><p style=\"font-size:50%\">served through meshgate</p>\n",
                color.css()
            ),
            "text/html; charset=utf-8",
        )
    } else {
        (format!("{c} ({id})\n"), "text/plain; charset=utf-8")
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    resp.headers_mut().insert("x-demo-instance", header);
    Ok(resp)
}
