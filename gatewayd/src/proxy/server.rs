//! Listeners and worker threads: thread-per-core, each worker a current-thread tokio runtime with
//! its own SO_REUSEPORT socket per listener, its own upstream pool and its own metrics shard.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

use super::client::Upstreams;
use super::error::{respond, ClientFault, ProxyError};
use super::h1::Rewind;
use super::h2guard::H2Guard;
use super::handle::handle;
use super::idle::{Activity, Tracked};
use super::worker::{stopped, ConnInfo, Worker};
use crate::config::ClientTimeouts;
use crate::tls::{Alpn, Terminator};

/// What a listener does with the connections it accepts.
#[derive(Debug, Clone)]
pub enum ListenerMode {
    /// Cleartext HTTP/1.1 (the own engine) and HTTP/2 with prior knowledge (hyper).
    Plain,
    /// TLS first (within the handshake timeout), then by ALPN: `h2` to hyper, `http/1.1` or
    /// none to the own engine.
    Tls(Terminator),
    /// Cleartext; every request is answered with a 308 to the same host and path on https.
    RedirectHttps,
    /// Cleartext after a PROXY protocol header naming the client (an L4 balancer in front).
    ProxyProtocol,
    /// A PROXY protocol header, then TLS: the header and the handshake together within the
    /// handshake timeout.
    ProxyProtocolTls(Terminator),
}

/// What a worker needs to serve one listener's sockets: what it speaks, its connection cap
/// (shared by every worker) and its clients' timeouts.
#[derive(Debug, Clone)]
pub struct Listening {
    /// What the listener does with a connection.
    pub mode: ListenerMode,
    /// Its open-connection cap, across every worker.
    pub cap: Arc<ConnCap>,
    /// Header and keep-alive timeouts, copied into each connection at accept.
    pub timeouts: ClientTimeouts,
}

/// Binds a listening socket with SO_REUSEADDR and SO_REUSEPORT, so every worker (and a new
/// process during an upgrade) can bind the same address.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The running worker threads.
#[derive(Debug)]
pub struct WorkerSet {
    /// One per worker.
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

impl WorkerSet {
    /// Waits for every worker to finish draining.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Runs one worker until `shutdown` turns true, then drains for at most `drain`.
pub fn run_worker(
    worker: Worker,
    listeners: Vec<(std::net::TcpListener, Listening)>,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let name = format!("worker-{}", worker.id);
    std::thread::Builder::new().name(name).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "cannot start worker runtime");
                return;
            }
        };
        rt.block_on(worker_main(worker, listeners, shutdown, drain));
    })
}

async fn worker_main(
    worker: Worker,
    listeners: Vec<(std::net::TcpListener, Listening)>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let worker = Arc::new(worker);
    let mut accept_tasks = Vec::new();
    for (l, spec) in listeners {
        let listener = match TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot register listener");
                continue;
            }
        };
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            spec,
            worker.clone(),
            shutdown.clone(),
            drain,
        )));
    }
    let reaper = tokio::spawn(reap_loop(worker.upstreams.clone()));
    stopped(&mut shutdown).await;
    for t in accept_tasks {
        let _ = t.await;
    }
    reaper.abort();
}

async fn reap_loop(upstreams: Upstreams) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        upstreams.reap();
    }
}

/// The open connections of one listener across every worker, against its `max_connections`.
#[derive(Debug)]
pub struct ConnCap {
    open: AtomicUsize,
    max: usize,
}

/// One connection's place under its listener's cap; given back when dropped.
struct CapSlot(Arc<ConnCap>);

impl ConnCap {
    /// A cap of `max` open connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    fn take(self: &Arc<Self>) -> Option<CapSlot> {
        let took = self
            .open
            .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
            .is_ok();
        took.then(|| CapSlot(self.clone()))
    }
}

impl Drop for CapSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// Live client connections of one listener, so a drain can wait for them.
#[derive(Debug, Default)]
struct Tracker {
    live: AtomicUsize,
    idle: Notify,
}

/// Held by a connection's task; the last one out wakes the drain. Also counts the connection
/// in `meshgate_connections_open` / `_accepted_total`.
struct Live(Arc<Tracker>, Arc<crate::metrics::Registry>);

impl Live {
    fn new(t: &Arc<Tracker>, metrics: &Arc<crate::metrics::Registry>) -> Self {
        t.live.fetch_add(1, SeqCst);
        metrics.connections_open.fetch_add(1, Relaxed);
        metrics.connections_accepted.fetch_add(1, Relaxed);
        Self(t.clone(), metrics.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.1.connections_open.fetch_sub(1, Relaxed);
        if self.0.live.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Tracker {
    async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.live.load(SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Accepts until shutdown, then closes the socket and drains this listener's connections.
async fn accept_loop(
    listener: TcpListener,
    Listening {
        mode,
        cap,
        timeouts,
    }: Listening,
    worker: Arc<Worker>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let tracker = Arc::new(Tracker::default());
    // The address clients connect to (asked per connection only for a wildcard bind).
    let bound = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(slot) = cap.take() else {
            // Over the listener's max_connections: closed at once, before any byte is read,
            // so the connections it holds keep their worker.
            worker.metrics.connections_refused.fetch_add(1, Relaxed);
            tracing::debug!(%peer, max = cap.max, "listener full: connection closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = match bound {
            Some(a) if !a.ip().is_unspecified() => a,
            _ => stream.local_addr().unwrap_or(peer),
        };
        let w = worker.clone();
        let mut shutdown = shutdown.clone();
        let live = (Live::new(&tracker, &worker.metrics), slot);
        // The cleartext arm stays first and monomorphic: plain TCP pays nothing for TLS.
        match &mode {
            ListenerMode::Plain => {
                tokio::spawn(async move {
                    let info = ConnInfo {
                        peer,
                        local,
                        tls: false,
                    };
                    if let Some((io, pre)) =
                        super::h1::serve(stream, (&info, timeouts), &w, &mut shutdown).await
                    {
                        serve_hyper(Rewind::new(pre, io), (info, timeouts), w, shutdown).await;
                    }
                    drop(live);
                });
            }
            ListenerMode::Tls(t) => {
                let t = t.clone();
                tokio::spawn(async move {
                    let since = tokio::time::Instant::now();
                    let info = ConnInfo {
                        peer,
                        local,
                        tls: true,
                    };
                    serve_tls(&t, stream, since, (info, timeouts), w, shutdown).await;
                    drop(live);
                });
            }
            ListenerMode::RedirectHttps => {
                tokio::spawn(async move {
                    super::redirect::serve(stream, timeouts, &w, shutdown).await;
                    drop(live);
                });
            }
            ListenerMode::ProxyProtocol => {
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + timeouts.header;
                    let conn = (peer, local, false);
                    if let Some((io, info)) = proxy_header(stream, conn, deadline, &w).await {
                        if let Some((io, pre)) =
                            super::h1::serve(io, (&info, timeouts), &w, &mut shutdown).await
                        {
                            serve_hyper(Rewind::new(pre, io), (info, timeouts), w, shutdown).await;
                        }
                    }
                    drop(live);
                });
            }
            ListenerMode::ProxyProtocolTls(t) => {
                let t = t.clone();
                tokio::spawn(async move {
                    // The balancer's header counts against the handshake timeout: a connection
                    // that sends nothing is dropped as a stalled handshake is.
                    let since = tokio::time::Instant::now();
                    let deadline = since + t.handshake_timeout();
                    let conn = (peer, local, true);
                    if let Some((io, info)) = proxy_header(stream, conn, deadline, &w).await {
                        serve_tls(&t, io, since, (info, timeouts), w, shutdown).await;
                    }
                    drop(live);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(drain, tracker.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            worker = worker.id,
            "drain deadline reached; closing remaining connections"
        );
    }
}

/// The TLS handshake (begun at `since`, bounded by the handshake timeout from then), then the
/// connection by ALPN: `h2` to hyper, `http/1.1` (or none) to the own engine.
async fn serve_tls<I>(
    t: &Terminator,
    io: I,
    since: tokio::time::Instant,
    (info, limits): (ConnInfo, ClientTimeouts),
    w: Arc<Worker>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Not cut short by a stop: a client whose connection was accepted just before it gets its
    // answer (the handshake has its own deadline).
    match t.accept(io, info.peer, since).await {
        Some((io, Alpn::H2)) => serve_hyper(io, (info, limits), w, shutdown).await,
        Some((io, Alpn::Http1)) => {
            if let Some((io, pre)) = super::h1::serve(io, (&info, limits), &w, &mut shutdown).await
            {
                serve_hyper(Rewind::new(pre, io), (info, limits), w, shutdown).await;
            }
        }
        None => {}
    }
}

/// Serves a connection with hyper (HTTP/2 clients, HTTP/1 requests for HTTP/2 upstreams), with
/// a graceful shutdown when the worker stops or the connection has been idle (no request open)
/// for the keep-alive timeout.
async fn serve_hyper<I>(
    io: I,
    (info, limits): (ConnInfo, ClientTimeouts),
    w: Arc<Worker>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header timer runs from the moment it waits for a head, idle time
    // included: it bounds both, so it is the keep-alive timeout here.
    builder
        .http1()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.keepalive);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        // Each stream can become an upstream connection (HTTP/1.1 upstreams): 1,024 streams let
        // one client open 1,024 upstream connections at once, which makes endpoints refuse
        // and get ejected for a client's doing. 100 is RFC 9113's recommended floor and what
        // nginx (128) and HAProxy (100) allow.
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let metrics = w.metrics.clone();
    let activity = Activity::new();
    let requests = activity.clone();
    let max_target = limits.max_target;
    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let w = w.clone();
        let busy = requests.busy();
        async move {
            if let Some(why) = malformed_h2(&req) {
                // RFC 9113 §8.1.1: a malformed request is a stream error of type PROTOCOL_ERROR
                // (hyper resets the stream with the reason it finds in the error), and an
                // intermediary never forwards it.
                tracing::debug!(why, "malformed HTTP/2 request: stream reset");
                w.metrics.count_client_fault(ClientFault::Malformed);
                return Err(h2::Error::from(h2::Reason::PROTOCOL_ERROR));
            }
            if let Some(e) = target_too_long(&req, max_target) {
                // As the engine answers an HTTP/1.1 head: the JSON error on this stream (the
                // connection's other streams go on), counted as a request that reached no
                // route and as the client's malformed request.
                tracing::debug!(error = %e, client = %info.peer, "request target too long");
                w.metrics.count_error(&e);
                w.metrics
                    .unmatched
                    .shard(w.id)
                    .record(e.status().as_u16(), None);
                let resp = respond(&e, None, None).map(super::body::ResponseBody::full);
                return Ok(resp.map(|body| Tracked::new(body, busy)));
            }
            Ok(handle(req, &w, &info)
                .await
                .map(|body| Tracked::new(body, busy)))
        }
    });
    let violated = Arc::new(AtomicBool::new(false));
    let io = H2Guard::new(io, violated.clone());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let r = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = activity.idle_for(limits.keepalive) => {
            tracing::debug!(client = %info.peer, "idle connection closed");
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = stopped(&mut shutdown) => conn.await,
            }
        }
    };
    if let Err(e) = &r {
        // Upstream failures end requests, not this connection: an error here is the client's
        // (a protocol violation, a reset, a connection dropped mid-frame).
        tracing::debug!(error = %e, "connection ended with error");
    }
    if r.is_err() || violated.load(Ordering::Relaxed) {
        metrics.count_client_fault(ClientFault::Protocol);
    }
}

/// Reads the PROXY protocol header a connection (to `local` from `peer`, TLS next or not)
/// starts with: the client it names (the peer for `LOCAL` / `UNKNOWN`) and the stream with what
/// followed the header put back. A connection without a valid header by `deadline` is closed
/// and counted as the client's protocol error.
async fn proxy_header(
    mut stream: tokio::net::TcpStream,
    (peer, local, tls): (SocketAddr, SocketAddr, bool),
    deadline: tokio::time::Instant,
    w: &Worker,
) -> Option<(Rewind<tokio::net::TcpStream>, ConnInfo)> {
    use super::proxy_protocol::{parse, Source};
    use tokio::io::AsyncReadExt as _;
    let mut buf = bytes::BytesMut::with_capacity(256);
    let read = async {
        loop {
            match parse(&buf) {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("closed before a PROXY header".to_string()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let found = tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or_else(|_| Err("no PROXY header in time".to_string()));
    match found {
        Ok((source, len)) => {
            let client = match source {
                Source::Client(a) => a,
                Source::Local => peer,
            };
            let rest = buf.split_off(len).freeze();
            let info = ConnInfo {
                peer: client,
                local,
                tls,
            };
            Some((Rewind::new(rest, stream), info))
        }
        Err(why) => {
            tracing::debug!(%peer, error = %why, "connection without a PROXY header closed");
            w.metrics.count_client_fault(ClientFault::Protocol);
            None
        }
    }
}

/// Why an HTTP/2 request is malformed in a way the `h2` crate lets through (RFC 9113 §8.1.1):
/// a field value with leading or trailing whitespace (§8.2.1), a `host` naming another
/// authority than `:authority` (§8.3.1), CONNECT without `:authority` (§8.5).
fn malformed_h2<B>(req: &hyper::Request<B>) -> Option<&'static str> {
    if req.version() != http::Version::HTTP_2 {
        return None;
    }
    let padded = |v: &[u8]| matches!(v.first().zip(v.last()), Some((a, b)) if matches!(a, b' ' | b'\t') || matches!(b, b' ' | b'\t'));
    if req.headers().values().any(|v| padded(v.as_bytes())) {
        return Some("field value with leading or trailing whitespace");
    }
    let authority = req.uri().authority();
    if let (Some(a), Some(host)) = (authority, req.headers().get(http::header::HOST)) {
        if !a.as_str().as_bytes().eq_ignore_ascii_case(host.as_bytes()) {
            return Some("host differs from :authority");
        }
    }
    if req.method() == http::Method::CONNECT && authority.is_none() {
        return Some("CONNECT without :authority");
    }
    None
}

/// `414 uri_too_long` when the request's target (HTTP/2: `:path`; an HTTP/1.x request handed
/// to hyper: its path and query) is longer than the listener's `max_request_target`.
fn target_too_long<B>(req: &hyper::Request<B>, max: usize) -> Option<ProxyError> {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    (len > max).then_some(ProxyError::UriTooLong(max))
}

/// Streams an HTTP/2 client may have open at once on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 100;
