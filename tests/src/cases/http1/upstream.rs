//! Raw-TCP upstreams: HTTP/1.1 spoken by hand, so a case decides every byte the gateway gets
//! back (chunk extensions, trailers, interim responses, closes without `Connection: close`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

use super::wire::{Got, Head, Wire};

/// What the raw origin does with a connection after each answer.
#[derive(Debug, Clone, Copy)]
pub(super) enum After {
    /// Waits for the next request.
    KeepAlive,
    /// Closes at once, without having said `Connection: close`.
    Close,
    /// Closes once no request came for this long.
    CloseIdle(Duration),
}

/// A request as the raw origin read it.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) head: Head,
    /// The body, decoded.
    pub(super) body: Vec<u8>,
    /// Which accepted connection it came on (0, 1, …).
    pub(super) conn: usize,
}

/// An upstream on 127.0.0.1:0 that speaks HTTP/1.1 by hand and answers with `answer`'s bytes,
/// as they are. Stops (with every connection) when dropped.
pub(super) struct RawOrigin {
    pub(super) addr: SocketAddr,
    state: Arc<OriginState>,
    task: tokio::task::JoinHandle<()>,
}

type Answer = Arc<dyn Fn(&Seen) -> Vec<u8> + Send + Sync>;

#[derive(Debug, Default)]
struct OriginState {
    seen: Mutex<Vec<Seen>>,
    heads: AtomicUsize,
    connections: AtomicUsize,
    idle_closed: AtomicUsize,
}

/// Answers 200 with the request's body, and its method and target in `x-echo`.
pub(super) fn echo(s: &Seen) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nx-echo: {} {}\r\nContent-Length: {}\r\n\r\n",
        s.head.method(),
        s.head.target(),
        s.body.len()
    )
    .into_bytes();
    out.extend_from_slice(&s.body);
    out
}

/// A 200 with `body` in the chunked coding, `size` bytes a chunk, a chunk extension and a
/// trailer; only the head for a HEAD.
pub(super) fn chunked_answer(head: &Head, body: &[u8], size: usize) -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    if head.method() == "HEAD" {
        return out;
    }
    for (i, c) in body.chunks(size).enumerate() {
        let ext = if i == 0 { ";ext=1" } else { "" };
        out.extend_from_slice(format!("{:x}{ext}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nx-checksum: 1\r\n\r\n");
    out
}

/// `Wikipedia` in chunks of four bytes (the RFC's own example, near enough).
pub(super) fn wikipedia(s: &Seen) -> Vec<u8> {
    chunked_answer(&s.head, b"Wikipedia", 4)
}

// === impl RawOrigin ===

impl RawOrigin {
    pub(super) async fn start(
        after: After,
        answer: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(OriginState::default());
        let answer: Answer = Arc::new(answer);
        let st = state.clone();
        let task = tokio::spawn(async move {
            // Dropped with the task, which aborts every connection.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((io, _)) = listener.accept().await else {
                    continue;
                };
                let n = st.connections.fetch_add(1, SeqCst);
                conns.spawn(serve_raw(
                    Wire::new(io),
                    n,
                    after,
                    answer.clone(),
                    st.clone(),
                ));
                while conns.try_join_next().is_some() {}
            }
        });
        Self { addr, state, task }
    }

    pub(super) fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Request heads read so far (counted before their bodies are read).
    pub(super) fn heads(&self) -> usize {
        self.state.heads.load(SeqCst)
    }

    pub(super) fn connections(&self) -> usize {
        self.state.connections.load(SeqCst)
    }

    /// Connections closed for being idle.
    pub(super) fn idle_closed(&self) -> usize {
        self.state.idle_closed.load(SeqCst)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_raw(mut w: Wire, conn: usize, after: After, answer: Answer, st: Arc<OriginState>) {
    loop {
        if w.buf.is_empty() {
            let wait = match after {
                After::CloseIdle(d) => d,
                _ => Duration::from_secs(3600),
            };
            match w.read_within(wait).await {
                Got::Data => {}
                Got::End => return,
                Got::Idle => {
                    drop(w);
                    st.idle_closed.fetch_add(1, SeqCst);
                    return;
                }
            }
        }
        let Some(head) = w.head().await else {
            return;
        };
        st.heads.fetch_add(1, SeqCst);
        let body = if head.chunked() {
            w.chunked().await.0
        } else if let Some(n) = head.length() {
            w.take(n).await
        } else {
            Vec::new()
        };
        let seen = Seen { head, body, conn };
        let reply = answer(&seen);
        // Recorded before answering: once the client has the answer, the test can look.
        st.seen.lock().unwrap().push(seen);
        if w.io.write_all(&reply).await.is_err() {
            return;
        }
        if matches!(after, After::Close) {
            let _ = w.io.shutdown().await;
            return;
        }
    }
}
