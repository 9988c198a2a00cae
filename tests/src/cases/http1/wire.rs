//! Raw HTTP/1.x on a socket, for both sides of the gateway: message heads, chunk decoding,
//! responses read exactly as they arrive, and the request texts the cases send.

use std::net::SocketAddr;
use std::time::Duration;

use meshgate_e2e::harness::patience;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One side of a raw HTTP/1.x connection: the socket and the bytes read but not yet consumed.
pub(super) struct Wire {
    pub(super) io: TcpStream,
    pub(super) buf: Vec<u8>,
}

/// What one read brought.
pub(super) enum Got {
    Data,
    End,
    Idle,
}

/// A message head as received.
#[derive(Debug, Clone)]
pub(super) struct Head {
    /// Request or status line.
    pub(super) start: String,
    /// Fields in order, names lower-cased.
    pub(super) fields: Vec<(String, String)>,
    /// The whole head (for failure messages).
    pub(super) text: String,
}

/// A response as read off the wire.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) head: Head,
    /// The body, decoded.
    pub(super) body: Vec<u8>,
    /// The body as it was on the wire (chunk framing included).
    pub(super) wire: Vec<u8>,
}

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes `bytes` to the gateway and reads until it closes (both bounded); write errors are
/// ignored, since the gateway may refuse and close before reading everything.
pub(super) async fn send_and_read_to_close(addr: SocketAddr, bytes: Vec<u8>) -> Vec<u8> {
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    // The write half is handed back so it is not shut down before the reading ends.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(patience(), async {
        loop {
            out.reserve(16 * 1024);
            match rd.read_buf(&mut out).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "not closed; got {:?}", lossy(&out));
    let _ = writer.await;
    out
}

// === impl Head ===

impl Head {
    fn parse(raw: &[u8]) -> Self {
        let text = lossy(raw);
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or("").to_string();
        let fields = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Self {
            start,
            fields,
            text,
        }
    }

    /// The first value of field `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.values(name).first().copied()
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every value of field `name`, in order.
    pub(super) fn values(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The field names, in order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(n, _)| n.as_str())
    }

    /// The start line's second word: the status of a response, the target of a request.
    fn second(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or("")
    }

    fn status(&self) -> u16 {
        self.second().parse().unwrap_or(0)
    }

    pub(super) fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or("")
    }

    pub(super) fn target(&self) -> &str {
        self.second()
    }

    pub(super) fn chunked(&self) -> bool {
        // The final coding decides; empty list elements do not count (RFC 9110 §5.6.1).
        self.get("transfer-encoding").is_some_and(|v| {
            v.rsplit(',')
                .map(str::trim)
                .find(|c| !c.is_empty())
                .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
        })
    }

    pub(super) fn length(&self) -> Option<usize> {
        self.get("content-length").and_then(|v| v.parse().ok())
    }
}

// === impl Reply ===

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }

    /// Asserts that field `name` is `want`, showing the head otherwise.
    pub(super) fn expect_header(&self, name: &str, want: &str) {
        assert_eq!(self.header(name), Some(want), "{}", self.head.text);
    }

    pub(super) fn text(&self) -> String {
        lossy(&self.body)
    }

    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head.text, self.text()))
    }
}

// === impl Wire ===

impl Wire {
    pub(super) fn new(io: TcpStream) -> Self {
        let _ = io.set_nodelay(true);
        Self {
            io,
            buf: Vec::new(),
        }
    }

    pub(super) async fn connect(addr: SocketAddr) -> Self {
        Self::new(TcpStream::connect(addr).await.unwrap())
    }

    pub(super) async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.io.write_all(bytes.as_ref()).await.unwrap();
    }

    /// Sends `request` and reads one response to it (not to a HEAD).
    pub(super) async fn ask(&mut self, request: impl AsRef<[u8]>) -> Reply {
        self.send(request).await;
        self.response(false).await
    }

    /// Sends `HEAD path` and reads the bodiless response.
    pub(super) async fn ask_head(&mut self, path: &str) -> Reply {
        self.send(super::request::head(path)).await;
        self.response(true).await
    }

    pub(super) async fn read_within(&mut self, wait: Duration) -> Got {
        self.buf.reserve(64 * 1024);
        match tokio::time::timeout(wait, self.io.read_buf(&mut self.buf)).await {
            Err(_) => Got::Idle,
            Ok(Ok(0) | Err(_)) => Got::End,
            Ok(Ok(_)) => Got::Data,
        }
    }

    /// Reads more; false at the end of the stream (a reset counts as one). Panics when nothing
    /// arrives within the patience.
    async fn fill(&mut self) -> bool {
        match self.read_within(patience()).await {
            Got::Data => true,
            Got::End => false,
            Got::Idle => panic!(
                "nothing more within {:?}; unconsumed: {:?}",
                patience(),
                lossy(&self.buf)
            ),
        }
    }

    /// The next message head; `None` when the stream ends before its first byte.
    pub(super) async fn head(&mut self) -> Option<Head> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..i + 4).collect();
                return Some(Head::parse(&raw[..i]));
            }
            if !self.fill().await {
                assert!(
                    self.buf.is_empty(),
                    "stream ended inside a head: {:?}",
                    lossy(&self.buf)
                );
                return None;
            }
        }
    }

    pub(super) async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(
                self.fill().await,
                "stream ended {} bytes short of {n}",
                n - self.buf.len()
            );
        }
        self.buf.drain(..n).collect()
    }

    /// One line, CRLF included.
    async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                return self.buf.drain(..i + 2).collect();
            }
            assert!(self.fill().await, "stream ended inside a chunked body");
        }
    }

    /// A chunked body: (data, bytes as on the wire).
    pub(super) async fn chunked(&mut self) -> (Vec<u8>, Vec<u8>) {
        let (mut data, mut wire) = (Vec::new(), Vec::new());
        loop {
            let line = self.line().await;
            wire.extend_from_slice(&line);
            let text = lossy(&line[..line.len() - 2]);
            let hex = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {text:?}"));
            if size == 0 {
                break;
            }
            let chunk = self.take(size + 2).await;
            assert!(chunk.ends_with(b"\r\n"), "chunk data without its CRLF");
            data.extend_from_slice(&chunk[..size]);
            wire.extend_from_slice(&chunk);
        }
        loop {
            let line = self.line().await;
            wire.extend_from_slice(&line);
            if line == b"\r\n" {
                return (data, wire);
            }
        }
    }

    /// Everything until the peer closes.
    async fn until_close(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// Asserts that the peer closes without sending anything more.
    pub(super) async fn expect_closed(&mut self) {
        let more = self.fill().await;
        assert!(
            !more && self.buf.is_empty(),
            "expected the connection to be closed; got {:?}",
            lossy(&self.buf)
        );
    }

    /// Reads one response (`head_request`: the answer to a HEAD, so no body).
    pub(super) async fn response(&mut self, head_request: bool) -> Reply {
        let head = self
            .head()
            .await
            .expect("a response, not the end of the stream");
        let status = head.status();
        let bodiless = head_request || (100..200).contains(&status) || matches!(status, 204 | 304);
        let (body, wire) = if bodiless {
            (Vec::new(), Vec::new())
        } else if head.chunked() {
            self.chunked().await
        } else if let Some(n) = head.length() {
            let b = self.take(n).await;
            (b.clone(), b)
        } else {
            let b = self.until_close().await;
            (b.clone(), b)
        };
        Reply {
            status,
            head,
            body,
            wire,
        }
    }

    /// The final response, past any interim (1xx) ones.
    pub(super) async fn final_response(&mut self, head_request: bool) -> Reply {
        for _ in 0..10 {
            let r = self.response(head_request).await;
            if r.status >= 200 {
                return r;
            }
        }
        panic!("more than 10 interim responses");
    }
}
