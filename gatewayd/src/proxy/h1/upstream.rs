//! Upstream HTTP/1.1 connections driven by the downstream connection's own task: no connection
//! task, no channel, no second wake-up per request. One pool per worker (no lock shared between
//! workers), bounded per endpoint by the service's `max_idle_per_endpoint`.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::head::Framing;
use super::io::{write_all_vectored, READ_BUF};
use super::response::ResponseHead;
use super::upload::{Body, Upload};
use crate::config::StatusSet;
use crate::fxhash::FxHashMap;
use crate::proxy::error::{ProxyError, SendError};
use crate::proxy::transport::connect_tcp;

/// One upstream connection and its read buffer.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub io: TcpStream,
    /// Bytes read and not yet forwarded.
    pub buf: BytesMut,
    /// The last response head read on it.
    pub head: ResponseHead,
}

#[derive(Debug)]
struct Idle {
    conn: Box<Conn>,
    since: Instant,
    idle_timeout: Duration,
    max_idle: usize,
}

/// A worker's idle upstream HTTP/1.1 connections, by endpoint.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<FxHashMap<SocketAddr, Vec<Idle>>>,
}

impl Pool {
    /// The most recently used connection to `addr` within its idle timeout; with `probe`, only
    /// one the upstream has not closed (costs a system call).
    fn checkout(&self, addr: SocketAddr, probe: bool, now: Instant) -> Option<Box<Conn>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) <= c.idle_timeout
                && (!probe || is_open(&c.conn.io))
            {
                return Some(c.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request to `addr` (dropped, so closed, when the pool is full);
    /// `now` is about now (the idle timeout counts from it).
    pub fn give_back(
        &self,
        addr: SocketAddr,
        mut conn: Box<Conn>,
        max_idle: usize,
        idle_timeout: Duration,
        now: Instant,
    ) {
        conn.buf.clear();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < max_idle {
            list.push(Idle {
                conn,
                since: now,
                idle_timeout,
                max_idle,
            });
        }
    }

    /// Closes connections past their idle timeout or closed by the upstream.
    pub fn reap(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| {
                is_open(&c.conn.io) && now.saturating_duration_since(c.since) <= c.idle_timeout
            });
            list.truncate(list.first().map_or(0, |c| c.max_idle));
            !list.is_empty()
        });
    }

    /// Idle connections held now.
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// False when an idle connection is readable: end of stream, a reset or stray bytes, each of
/// which makes it unusable.
fn is_open(io: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The downstream side of a request body: what is buffered and the socket the rest comes from.
#[derive(Debug)]
pub struct Downstream<'a, C> {
    /// The client connection.
    pub io: &'a mut C,
    /// Bytes read from the client after the request head.
    pub buf: &'a mut BytesMut,
    /// Send `100 Continue` before reading the body from the socket.
    pub expect_continue: bool,
    /// Set while the exchange waits for the client's body (a timeout then is the client's).
    pub waiting: &'a AtomicBool,
}

/// One request ready for the upstream.
#[derive(Debug)]
pub struct Outgoing<'a, C> {
    /// The serialized request head.
    pub head: &'a [u8],
    /// How the request body is delimited.
    pub framing: Framing,
    /// Bytes of `down.buf` that are the whole body, when it is all there (so it can be sent
    /// again on another connection).
    pub buffered: Option<usize>,
    /// Where the body comes from.
    pub down: Downstream<'a, C>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// The request's start (saves a clock read for the pool's idle check).
    pub now: Instant,
    /// The method is idempotent (RFC 9110 §9.2.2), or the route lets any method be retried:
    /// it may be sent again.
    pub idempotent: bool,
    /// The route's `max_body` (checked here for chunked bodies; a declared length was checked
    /// before).
    pub max_body: Option<u64>,
    /// Answers given back for a retry ([`SendError::Status`]) when the request can be sent
    /// again (empty: none).
    pub retry_on: &'a StatusSet,
}

/// A response head received from the upstream, with the connection it came on (what an attempt
/// of the engine returns).
#[derive(Debug)]
pub struct Answered {
    /// The connection; `conn.head` is the parsed head, `conn.buf` starts with it. (Boxed, as in
    /// the pool: a request moves it a few times, and a pointer is cheaper to move.)
    pub conn: Box<Conn>,
    /// The endpoint it goes to.
    pub addr: SocketAddr,
    /// What became of the request body: all sent, still streaming (it goes on while the
    /// response is relayed), or abandoned by the upstream (the connection must then close).
    pub body: Body,
}

/// Sends `out` to `addr` on a pooled connection (or a new one; always a new one without a pool)
/// and reads the response head, within `try_timeout` once the request is sent. A pooled
/// connection that the upstream had closed is replaced transparently when the request can be
/// sent again (an idempotent method with no body or all of it buffered); other requests only
/// take pooled connections that pass a liveness probe. A failed connect gives the request back,
/// and so do a per-try timeout and a close before the response head when it can be sent again.
///
/// A body that is not all buffered streams upstream while the response head is awaited: the
/// upstream may answer before it has the whole body, and that answer is returned at once with
/// the upload's state ([`Body::Streaming`]) for the relay to carry on with.
pub async fn exchange<'a, C: AsyncRead + AsyncWrite + Unpin>(
    pool: Option<&Pool>,
    addr: SocketAddr,
    out: Outgoing<'a, C>,
    try_timeout: Option<Duration>,
) -> Result<Answered, SendError<Outgoing<'a, C>, Answered>> {
    loop {
        // A request that cannot be sent twice (a streamed body, a non-idempotent method) only
        // takes a pooled connection that looks alive.
        let resendable = out.buffered.is_some() && out.idempotent;
        let probe = !resendable;
        let (mut conn, reused) = match pool.and_then(|p| p.checkout(addr, probe, out.now)) {
            Some(c) => (c, true),
            // Boxed, as the per-try timeout below: rare paths whose futures would make every
            // request's state larger (and every move of it longer).
            None => match Box::pin(connect(addr, out.connect_timeout)).await {
                Ok(c) => (c, false),
                Err(e) => return Err(SendError::NotSent(Box::new(out), e)),
            },
        };
        let Some(n) = out.buffered else {
            // Boxed: its state machine is large, and most requests are bodiless or buffered.
            return Box::pin(streamed(conn, addr, out, try_timeout)).await;
        };
        let parts = [IoSlice::new(out.head), IoSlice::new(&out.down.buf[..n])];
        let sent = write_all_vectored(&mut conn.io, parts).await;
        let got = match (sent, try_timeout) {
            (Ok(()), None) => read_head(&mut conn).await,
            (Ok(()), Some(t)) => Box::pin(tokio::time::timeout(t, read_head(&mut conn)))
                .await
                .unwrap_or(Err(HeadError::TimedOut(t))),
            (Err(e), _) => Err(HeadError::Nothing(e.to_string())),
        };
        // What failed before a response head: given back when the request can be sent again.
        let again = |out, e| match resendable {
            true => SendError::Replayable(Box::new(out), e),
            false => SendError::Failed(e),
        };
        match got {
            Ok(()) => {
                let answered = Answered {
                    conn,
                    addr,
                    body: Body::Sent,
                };
                if resendable && out.retry_on.contains(answered.conn.head.status) {
                    return Err(SendError::Status(Box::new(out), answered));
                }
                out.down.buf.advance(n);
                return Ok(answered);
            }
            // Closed while idle in the pool: the request never reached a live connection.
            Err(HeadError::Nothing(_)) if reused && resendable => continue,
            Err(e) => return Err(head_failed(e, addr, |e| again(out, e))),
        }
    }
}

/// The error for a response head that did not come; `again` decides whether the request
/// comes back for another attempt (it cannot after a malformed answer).
fn head_failed<Q, A>(
    e: HeadError,
    addr: SocketAddr,
    again: impl FnOnce(ProxyError) -> SendError<Q, A>,
) -> SendError<Q, A> {
    match e {
        HeadError::Nothing(reason) => again(ProxyError::UpstreamBroken {
            addr,
            reason: format!("connection closed before the response: {reason}"),
        }),
        HeadError::TimedOut(t) => again(ProxyError::UpstreamTimeout(t)),
        HeadError::Broken(reason) => SendError::Failed(ProxyError::UpstreamBroken {
            addr,
            reason: reason.into(),
        }),
    }
}

/// How the upload went while the response head was awaited.
enum Race {
    /// The head came first (the body may still be streaming).
    Head(Result<(), HeadError>),
    /// The whole body went out.
    Sent,
    /// The upstream stopped taking the body; it may have answered all the same.
    Refused(ProxyError),
}

/// Writes the head and streams the body from the client while reading the response head (full
/// duplex): an upstream answering before it has read the whole body is answered at once.
async fn streamed<'a, C: AsyncRead + AsyncWrite + Unpin>(
    mut conn: Box<Conn>,
    addr: SocketAddr,
    out: Outgoing<'a, C>,
    try_timeout: Option<Duration>,
) -> Result<Answered, SendError<Outgoing<'a, C>, Answered>> {
    let Outgoing { head, down, .. } = out;
    let mut upload = Upload::new(out.framing, out.max_body, down.expect_continue, addr);
    let got = {
        let Conn {
            io,
            buf,
            head: parsed,
        } = &mut *conn;
        let (mut rd, mut wr) = io.split();
        let mut reading = std::pin::pin!(read_head_from(&mut rd, buf, parsed));
        let race = {
            let pump = upload.pump(head, down.io, down.buf, &mut wr, Some(down.waiting));
            let mut pump = std::pin::pin!(pump);
            tokio::select! {
                biased;
                h = &mut reading => Race::Head(h),
                r = &mut pump => match r {
                    Ok(()) => Race::Sent,
                    Err(e @ ProxyError::UpstreamBroken { .. }) => Race::Refused(e),
                    // The client's fault: the upstream request is abandoned, the endpoint not
                    // blamed.
                    Err(e) => return Err(SendError::Failed(e)),
                },
            }
        };
        match (race, try_timeout) {
            (Race::Head(h), _) => h.map(|()| Body::Streaming(Box::new(upload))),
            (Race::Sent, None) => reading.await.map(|()| Body::Sent),
            (Race::Sent, Some(t)) => tokio::time::timeout(t, reading)
                .await
                .unwrap_or(Err(HeadError::TimedOut(t)))
                .map(|()| Body::Sent),
            // The upstream stopped taking the body: it may have answered already (a 413 and a
            // close). That answer is the client's, not a 502.
            (Race::Refused(e), _) => match reading.await {
                Ok(()) => Ok(Body::Abandoned),
                Err(_) => return Err(SendError::Failed(e)),
            },
        }
    };
    match got {
        Ok(body) => Ok(Answered { conn, addr, body }),
        Err(e) => Err(head_failed(e, addr, SendError::Failed)),
    }
}

/// Sends the upstream, after it switched protocols, what the client sent behind its request head
/// (the new protocol's first bytes).
pub async fn write_after_switch(io: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    io.write_all(bytes).await
}

/// Opens a connection to `addr`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Box<Conn>, ProxyError> {
    let io = connect_tcp(addr, timeout).await?;
    Ok(Box::new(Conn {
        io,
        buf: BytesMut::with_capacity(READ_BUF),
        head: ResponseHead::default(),
    }))
}

enum HeadError {
    /// Not one byte of a response arrived.
    Nothing(String),
    /// No complete head within the per-try timeout.
    TimedOut(Duration),
    /// A partial or malformed response.
    Broken(&'static str),
}

/// Reads the response head into `conn.head`, skipping interim (1xx) responses but `101`.
async fn read_head(conn: &mut Conn) -> Result<(), HeadError> {
    read_head_from(&mut conn.io, &mut conn.buf, &mut conn.head).await
}

/// [`read_head`] from a connection's read side, its buffer and head.
async fn read_head_from<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    head: &mut ResponseHead,
) -> Result<(), HeadError> {
    let mut got_any = false;
    loop {
        if !buf.is_empty() {
            got_any = true;
            match head.parse(buf) {
                Ok(true) => {
                    let s = head.status;
                    if (100..200).contains(&s) && s != 101 {
                        buf.advance(head.len);
                        continue;
                    }
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => return Err(HeadError::Broken(e)),
            }
        }
        if buf.capacity() - buf.len() < READ_BUF / 4 {
            buf.reserve(READ_BUF);
        }
        match io.read_buf(buf).await {
            Ok(0) if got_any => return Err(HeadError::Broken("response head cut short")),
            Ok(0) => return Err(HeadError::Nothing("end of stream".into())),
            Ok(_) => {}
            Err(e) if got_any => {
                let _ = e;
                return Err(HeadError::Broken("connection failed mid-head"));
            }
            Err(e) => return Err(HeadError::Nothing(e.to_string())),
        }
    }
}
