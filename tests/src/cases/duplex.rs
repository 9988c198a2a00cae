//! Full-duplex HTTP/1.1: the request body streams upstream while the answer streams back. A
//! 32 MiB POST to an origin that echoes each chunk as it arrives passes with curl, declared and
//! chunked, over cleartext and TLS (a gateway that sent the whole body before reading the
//! answer stalls on it until the route's timeout); an early answer reaches a client that is
//! still sending; the client's connection is kept only when the rest of its body was read;
//! a chunked body passing `max_body` mid-answer closes the connection and blames no endpoint.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::tls::{run, Pki};
use meshgate_e2e::harness::{patience, trace_init, Gateway, Origin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::client_faults::{endpoints, sample};
use super::support::{client, service};

/// 32 MiB of varied bytes (a body that is all one byte would hide reordering).
fn big_body(path: &Path) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    let body: Vec<u8> = (0..32 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(path, &body).unwrap();
    body
}

/// curl POSTs the file at `body` to `url` (chunked when asked) and returns the status and what
/// came back.
fn curl_echo(url: &str, body: &Path, chunked: bool, extra: &[&str]) -> (u16, Vec<u8>) {
    let out = body.with_extension("out");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--max-time", "60", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code}", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .args(["-H", "Content-Type: application/octet-stream"]);
    if chunked {
        cmd.args(["-H", "Transfer-Encoding: chunked"]);
    }
    let got = run(cmd.args(extra).arg(url));
    let status = String::from_utf8_lossy(&got.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let echoed = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    (status, echoed)
}

/// Both framings of the 32 MiB echo through `url`, each byte back in order.
async fn echo_both_framings(dir: &Path, url: String, extra: Vec<String>) {
    let file = dir.join("body.bin");
    let body = big_body(&file);
    for chunked in [false, true] {
        let (url, file, extra) = (url.clone(), file.clone(), extra.clone());
        let (status, echoed) = tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            curl_echo(&url, &file, chunked, &extra)
        })
        .await
        .unwrap();
        assert_eq!(status, 200, "chunked={chunked}: echoed through the gateway");
        assert_eq!(
            echoed.len(),
            body.len(),
            "chunked={chunked}: every byte back"
        );
        assert!(
            echoed == body,
            "chunked={chunked}: the same bytes, in order"
        );
    }
}

fn config(o: &Origin) -> String {
    format!(
        "{}[[routes]]\nname = \"all\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[o], "round_robin"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_echo_streams_both_ways_over_cleartext() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    echo_both_framings(dir.path(), gw.url("/echo"), vec![]).await;
    assert_eq!(o.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mib_echo_streams_both_ways_over_tls() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    pki.write_leaf("api", &["api.example.com"], 7);
    let o = Origin::start("o").await;
    let body = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"tls\"\n[listeners.tls]\ncertificates = [{{ cert = \"api.pem\", key = \"api.key\" }}]\n\n{}",
        config(&o)
    );
    std::fs::write(
        dir.path().join("gatewayd.toml"),
        format!("{}{body}", preamble(2)),
    )
    .unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    let addr = gw.listeners[1];
    let url = format!("https://api.example.com:{}/echo", addr.port());
    let extra = vec![
        "--resolve".to_string(),
        format!("api.example.com:{}:{}", addr.port(), addr.ip()),
        "--cacert".to_string(),
        pki.ca().display().to_string(),
    ];
    echo_both_framings(dir.path(), url, extra).await;
    assert_eq!(o.hits(), 2);
}

/// An upstream that answers `200 early` as soon as it has a request head, then reads (and
/// drops) whatever else comes until the gateway closes.
async fn early_answerer() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut io, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly";
                if io.write_all(answer).await.is_err() {
                    return;
                }
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// Reads from `io` until `want` has arrived (bounded by the patience); returns all read.
async fn read_until(io: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let reading = async {
        while !got.windows(want.len()).any(|w| w == want) {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(patience(), reading).await;
    got
}

/// True when the gateway closes `io` (end of stream or reset) within the patience, whatever it
/// still sends before.
async fn closed(io: &mut TcpStream) -> bool {
    let mut buf = [0u8; 8192];
    let reading = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(patience(), reading)
        .await
        .unwrap_or(false)
}

/// The decision documented in docs/request-path.md: an answer that ends before the client's
/// body did is relayed at once, and the connection then closes (what follows on it is body,
/// not a request head).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_client_still_sending_and_the_connection_closes() {
    trace_init();
    let (up, task) = early_answerer().await;
    let cfg = format!(
        "[services.up]\nendpoints = [\"{up}\"]\n\n[[routes]]\nname = \"up\"\nbackends = [{{ name = \"up\", weight = 1 }}]\n"
    );
    let gw = Gateway::start(&cfg).unwrap();
    for framing in ["Content-Length: 1000000", "Transfer-Encoding: chunked"] {
        let mut io = TcpStream::connect(gw.addr).await.unwrap();
        let part: &[u8] = if framing.starts_with("Content") {
            b"0123456789"
        } else {
            b"a\r\n0123456789\r\n"
        };
        let head = format!("POST /up HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
        io.write_all(head.as_bytes()).await.unwrap();
        io.write_all(part).await.unwrap();
        // The rest of the body never comes: the answer must not wait for it.
        let got = read_until(&mut io, b"early").await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("HTTP/1.1 200"), "{framing}: {got}");
        assert!(got.ends_with("early"), "{framing}: {got}");
        assert!(closed(&mut io).await, "{framing}: the connection closes");
    }
    task.abort();
}

/// A body whose rest arrives before the answer ends keeps the client's connection for the next
/// request; the first half's echo arrives before the second half is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_read_to_its_end_keeps_the_connection() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\nabcd")
        .await
        .unwrap();
    let first = read_until(&mut io, b"abcd").await;
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.to_ascii_lowercase().contains("content-length: 8"),
        "{first}"
    );
    io.write_all(b"efgh").await.unwrap();
    let rest = read_until(&mut io, b"efgh").await;
    assert!(
        rest.ends_with(b"efgh"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    io.write_all(b"GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let next = read_until(&mut io, b"\r\n\r\n").await;
    let next = String::from_utf8_lossy(&next);
    assert!(next.starts_with("HTTP/1.1 204"), "same connection: {next}");
}

/// A chunked body passing `max_body` after the answer began: the connection is closed before
/// the answer ends (no chunked terminator), counted as the client's, and the endpoint is not
/// blamed; before any answer it is a 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_passed_mid_answer_closes_the_connection() {
    trace_init();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[[routes]]\nname = \"small\"\nmax_body = \"1KiB\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[&o], "round_robin"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let mut io = TcpStream::connect(gw.addr).await.unwrap();
    io.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let half = [b'x'; 512];
    io.write_all(b"200\r\n").await.unwrap();
    io.write_all(&half).await.unwrap();
    io.write_all(b"\r\n").await.unwrap();
    let got = read_until(&mut io, &half).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    for _ in 0..2 {
        io.write_all(b"200\r\n").await.unwrap();
        io.write_all(&half).await.unwrap();
        let _ = io.write_all(b"\r\n").await;
    }
    let _ = io.write_all(b"0\r\n\r\n").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(patience(), io.read_to_end(&mut rest)).await;
    let all = [got, rest].concat();
    assert!(
        !all.ends_with(b"0\r\n\r\n"),
        "the answer was cut, not ended: {}",
        String::from_utf8_lossy(&all)
    );
    let http = client();
    let m = gw.admin_get_text(&http, "/metrics").await;
    let too_large = sample(&m, "meshgate_client_errors_total{kind=\"body_too_large\"}");
    assert_eq!(too_large, 1.0, "{m}");
    for e in endpoints(&gw, &http, "o").await {
        assert_eq!(e["in_flight"], 0, "{e}");
        assert_eq!(e["failures"], 0, "endpoint not blamed: {e}");
    }
}
