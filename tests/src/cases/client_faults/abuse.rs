//! Clients that break the exchange on purpose: raw HTTP/1.1 sockets, the `h2` crate's client
//! (stream resets at chosen moments), and the independent HTTP/2 conformance suite.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use meshgate_e2e::harness::{patience, Gateway};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::upstreams::{reset, Sink};

const UPLOAD: &str = "POST /sink/up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n";

/// Reads until `needle` has arrived (bounded by patience); returns what was read.
async fn read_until(io: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + patience();
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout_at(deadline, io.read(&mut buf))
            .await
            .expect("gateway answered in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Reads until the gateway closes (bounded by patience).
async fn read_to_close(io: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(patience(), io.read_to_end(&mut got)).await;
    got
}

/// Starts an upload to the sink, waits until its first bytes reached the sink, then closes
/// (FIN) or resets (RST) the connection mid-body.
pub async fn h1_upload_then_close(gw: &Gateway, sink: &Sink, rst: bool) {
    let before = sink.body_bytes();
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(UPLOAD.as_bytes()).await.unwrap();
    io.write_all(&[b'x'; 64 * 1024]).await.unwrap();
    sink.wait_body(before).await;
    if rst {
        reset(io);
    } else {
        io.shutdown().await.unwrap();
        read_to_close(&mut io).await;
    }
}

/// A chunked upload whose framing breaks after its first chunk reached the sink.
pub async fn h1_broken_chunked_body(gw: &Gateway, sink: &Sink) {
    let before = sink.body_bytes();
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(
        b"POST /sink/c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n",
    )
    .await
    .unwrap();
    sink.wait_body(before).await;
    io.write_all(b"zz-not-a-chunk-size\r\n").await.unwrap();
    let got = read_to_close(&mut io).await;
    assert!(got.starts_with(b"HTTP/1.1 400"), "{:?}", lossy(&got));
}

/// Heads the gateway refuses itself.
pub async fn h1_garbage(gw: &Gateway) {
    for bytes in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /ok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let mut io = TcpStream::connect(gw.addr).await.unwrap();
        io.write_all(bytes).await.unwrap();
        let got = read_to_close(&mut io).await;
        assert!(got.starts_with(b"HTTP/1.1 4"), "{:?}", lossy(&got));
    }
}

/// Takes the head and a little of a large response, then resets the connection.
pub async fn h1_reset_mid_response(gw: &Gateway) {
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(b"GET /bytes/8000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let got = read_until(&mut io, b"\r\n\r\n").await;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", lossy(&got));
    reset(io);
}

/// Asks for a large response and never reads it; goes away once the response is under way.
pub async fn h1_stop_reading(gw: &Gateway) {
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(b"GET /bytes/32000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // The first bytes prove the gateway relays; the rest stays unread in the socket buffers.
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(patience(), io.read(&mut first))
        .await
        .expect("response started")
        .unwrap();
    assert_eq!(n, 1);
    drop(io);
}

/// Sends part of a declared body and stalls: the route's timeout answers 408.
pub async fn h1_stalled_upload(gw: &Gateway, sink: &Sink) {
    let before = sink.body_bytes();
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(UPLOAD.as_bytes()).await.unwrap();
    io.write_all(b"0123456789").await.unwrap();
    sink.wait_body(before).await;
    let got = read_until(&mut io, b"\r\n\r\n").await;
    assert!(got.starts_with(b"HTTP/1.1 408"), "{:?}", lossy(&got));
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An HTTP/2 (prior knowledge) connection to the gateway; the connection task is returned so
/// the caller decides when the socket goes away.
async fn h2_connect(gw: &Gateway) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let io = TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(io).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (client, task)
}

fn h2_request(gw: &Gateway, method: &str, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gw.addr))
        .body(())
        .unwrap()
}

/// One ordinary HTTP/2 GET on its own connection; the status.
pub async fn h2_get(gw: &Gateway, path: &str) -> u16 {
    let (client, conn) = h2_connect(gw).await;
    let mut client = client.ready().await.unwrap();
    let (resp, _) = client
        .send_request(h2_request(gw, "GET", path), true)
        .unwrap();
    let resp = tokio::time::timeout(patience(), resp)
        .await
        .expect("HTTP/2 answer in time")
        .unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    drop(client);
    conn.abort();
    status
}

/// An HTTP/2 upload to the sink whose first bytes (`first`, after a head carrying `headers`)
/// have reached it: the moment the cases below break it.
struct Upload {
    client: h2::client::SendRequest<Bytes>,
    conn: tokio::task::JoinHandle<()>,
    resp: h2::client::ResponseFuture,
    body: h2::SendStream<Bytes>,
}

async fn h2_upload(gw: &Gateway, sink: &Sink, path: &str, length: Option<&'static str>) -> Upload {
    let before = sink.body_bytes();
    let (client, conn) = h2_connect(gw).await;
    let mut client = client.ready().await.unwrap();
    let mut req = h2_request(gw, "POST", path);
    if let Some(n) = length {
        req.headers_mut()
            .insert("content-length", http::HeaderValue::from_static(n));
    }
    let (resp, mut body) = client.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(b"01234"), false).unwrap();
    sink.wait_body(before).await;
    Upload {
        client,
        conn,
        resp,
        body,
    }
}

/// Streams part of an upload to the sink, then resets the stream.
pub async fn h2_reset_mid_upload(gw: &Gateway, sink: &Sink) {
    let mut u = h2_upload(gw, sink, "/sink/up", None).await;
    u.body.send_reset(h2::Reason::CANCEL);
    drop(u.client);
    u.conn.abort();
}

/// Declares a body length, sends part of it (which reaches the sink), then more than declared:
/// the gateway's HTTP/2 server refuses the stream and the upstream request is aborted.
pub async fn h2_body_longer_than_declared(gw: &Gateway, sink: &Sink) {
    let mut u = h2_upload(gw, sink, "/sink/cl", Some("10")).await;
    u.body
        .send_data(Bytes::from(vec![b'x'; 1024]), false)
        .unwrap();
    // The gateway answers the stream with a reset (or an error response); either way it ends.
    let _ = tokio::time::timeout(patience(), u.resp)
        .await
        .expect("the stream ended in time");
    drop(u.client);
    u.conn.abort();
}

/// Sends an upload's first bytes, then drops the whole connection (no RST_STREAM, no GOAWAY).
pub async fn h2_connection_dropped_mid_upload(gw: &Gateway, sink: &Sink) {
    let u = h2_upload(gw, sink, "/sink/drop", None).await;
    u.conn.abort();
    let _ = u.conn.await;
}

/// Asks an endpoint that never answers, then resets the stream once the request reached it.
pub async fn h2_reset_while_waiting(gw: &Gateway, silent: &Sink) {
    let before = silent.heads();
    let (client, conn) = h2_connect(gw).await;
    let mut client = client.ready().await.unwrap();
    let (_resp, mut stream) = client
        .send_request(h2_request(gw, "GET", "/silent/wait"), true)
        .unwrap();
    silent.wait_heads(before).await;
    stream.send_reset(h2::Reason::CANCEL);
    drop(client);
    conn.abort();
}

/// Receives the head and a little of a large response, then resets the stream.
pub async fn h2_reset_mid_response(gw: &Gateway) {
    let (client, conn) = h2_connect(gw).await;
    let mut client = client.ready().await.unwrap();
    let (resp, mut stream) = client
        .send_request(h2_request(gw, "GET", "/bytes/8000000"), true)
        .unwrap();
    let resp = tokio::time::timeout(patience(), resp)
        .await
        .expect("response head in time")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(patience(), body.data())
        .await
        .expect("body bytes in time");
    assert!(matches!(first, Some(Ok(_))));
    stream.send_reset(h2::Reason::CANCEL);
    drop(client);
    conn.abort();
}

/// Runs the HTTP/2 conformance suite (`httpwg`, from the crates.io package `httpwg-cli`, which
/// tests/run.sh installs) once against `addr`, bounded in time. Returns how many of its cases
/// passed and the names of those that did not (docs/request-path.md lists them with causes).
pub async fn httpwg(addr: SocketAddr) -> (usize, usize, Vec<String>) {
    let bin = httpwg_binary();
    let child = tokio::process::Command::new(&bin)
        .arg("-a")
        .arg(addr.to_string())
        // Its default 250 ms for each awaited frame fails cases at random on a loaded machine.
        .args(["--frame-timeout", "2000", "--connect-timeout", "5000"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo install httpwg-cli)", bin.display()));
    let limit = patience() * 6;
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("httpwg did not finish within {limit:?}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Colour codes, if it prints them all the same.
    let plain: String = {
        let mut s = String::with_capacity(text.len());
        let mut esc = false;
        for c in text.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => s.push(c),
            }
        }
        s
    };
    let failed: Vec<String> = plain
        .lines()
        .filter_map(|l| l.split("Test failed: ").nth(1))
        .map(str::to_string)
        .collect();
    let summary = plain
        .lines()
        .find_map(|l| l.split("Passed ").nth(1))
        .unwrap_or_else(|| panic!("no summary in httpwg's output:\n{plain}"));
    let (passed, total) = summary
        .split_whitespace()
        .next()
        .and_then(|s| s.split_once('/'))
        .and_then(|(p, t)| Some((p.parse().ok()?, t.parse().ok()?)))
        .unwrap_or_else(|| panic!("unreadable httpwg summary: {summary}"));
    (passed, total, failed)
}

/// `httpwg` on PATH, else in cargo's install directory.
fn httpwg_binary() -> std::path::PathBuf {
    let on_path = Command::new("httpwg")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if on_path {
        return "httpwg".into();
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")))
        .unwrap_or_default();
    home.join("bin").join("httpwg")
}

/// The admin event stream from its start, read until `done` holds for the text so far.
pub async fn events_until(
    gw: &Gateway,
    http: &reqwest::Client,
    done: impl Fn(&str) -> bool,
) -> String {
    let resp = gw
        .admin_req(http, reqwest::Method::GET, "/v1/events")
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + patience();
    while !done(&text) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(left.max(Duration::from_millis(1)), body.next()).await
        else {
            panic!("events ended or timed out; so far: {text}");
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}
