//! Certificates changing under a running gateway: a key renamed into place before its
//! certificate is refused (the old pair keeps serving, and `/v1/config`, the metric and the log
//! say why) until the certificate follows, picked up by itself within 2 s; connections open
//! across a swap (HTTP/1.1 keep-alive and HTTP/2) keep serving; a change the file poller cannot
//! see is picked up on SIGHUP and on `POST /v1/reload`; `gatewayd check` refuses an expired
//! certificate naming its file.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::tls::{run, Pki};
use meshgate_e2e::harness::{binary, patience};
use reqwest::Method;
use serde_json::Value;

use super::tls::{handshake, metrics, serial_becomes, setup, tls_addr, API};

/// Renames `dir/<stem>.new` over `dir/<stem>` after writing `content` to it.
fn rename_in(dir: &Path, stem: &str, content: &str) {
    let tmp = dir.join(format!("{stem}.new"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(tmp, dir.join(stem)).unwrap();
}

/// Unix time (seconds) of a log line's RFC 3339 `timestamp` (`2026-12-05T06:30:44.123456Z`).
fn log_time(line: &str) -> Option<f64> {
    let v: Value = serde_json::from_str(line).ok()?;
    let ts = v["timestamp"].as_str()?;
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn log_time_reads_rfc3339() {
    let line = r#"{"timestamp":"2026-12-05T06:30:44.5Z","message":"x"}"#;
    assert_eq!(log_time(line), Some(1_796_452_244.5));
    assert_eq!(
        log_time(r#"{"timestamp":"1970-01-01T00:00:00Z"}"#),
        Some(0.0)
    );
}

/// The key of a new pair renamed over the old key alone does not match the certificate on
/// disk: refused (the old pair keeps serving new handshakes, and `/v1/config`, the metric and
/// the log name the key file); once the certificate follows, the new pair serves by itself,
/// and the gateway logged it loaded within 2 s of the rename.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_renamed_alone_is_refused_until_its_certificate_follows() {
    let s = setup(&[("api", "api.example.com", 0x10)]).await;
    let gw = s.start(API, "");
    let addr = tls_addr(&gw);
    let http = reqwest::Client::new();
    serial_becomes(addr, "10").await;
    let (cert, key) = s.pki.leaf(&["api.example.com"], 0x20);
    rename_in(s.dir(), "api.key", &key);
    let config: Value = eventually("/v1/config to report the mismatched key", || async {
        let v = gw.admin_get_json(&http, "/v1/config").await;
        (v["tls"][0]["ok"] == false).then_some(v)
    })
    .await;
    let err = config["tls"][0]["error"].as_str().unwrap();
    assert!(
        err.contains("api.key") && err.contains("does not match"),
        "{err}"
    );
    assert_eq!(config["tls"][0]["certificates"][0]["serial"], "10");
    let m = metrics(&gw, &http).await;
    assert!(
        m.contains("meshgate_tls_certificates_ok{listener=\"tls\"} 0"),
        "{m}"
    );
    assert!(
        gw.logged("TLS certificates refused") && gw.logged("does not match"),
        "the refusal is logged"
    );
    // The old pair (its key in memory, no longer on disk) still serves new handshakes.
    let h = handshake(addr, Some("api.example.com")).await;
    assert!(h.ok, "{}", h.transcript);
    assert_eq!(h.serial.as_deref(), Some("10"), "{}", h.transcript);

    rename_in(s.dir(), "api.pem", &cert);
    let renamed = unix_now();
    serial_becomes(addr, "20").await;
    let ready = gw.admin_get_json(&http, "/readyz").await;
    assert_eq!(ready["tls_ok"], true, "{ready}");
    let m = metrics(&gw, &http).await;
    assert!(
        m.contains("meshgate_tls_certificates_ok{listener=\"tls\"} 1"),
        "{m}"
    );
    // When the gateway loaded it, by its own clock (the test's handshakes may be slower).
    let loaded = gw
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("TLS certificates loaded") && l.contains("\\\"20\\\""))
        .find_map(|l| log_time(l))
        .expect("a log line saying serial 20 was loaded");
    assert!(
        loaded - renamed < 2.0,
        "picked up {:.2} s after the certificate was renamed into place",
        loaded - renamed
    );
}

/// A TLS connection to the gateway's listener, handshaken with `alpn` (trusting `ca`, SNI
/// `api.example.com`), and the DER of the leaf certificate it got.
async fn connect(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[u8],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Vec<u8>,
) {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("api.example.com").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(alpn));
    let leaf = conn.peer_certificates().unwrap()[0].as_ref().to_vec();
    (tls, leaf)
}

/// The DER of the first certificate in a PEM file.
fn der_of(pem: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    let first = rustls::pki_types::CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    first.as_ref().to_vec()
}

/// One open client connection, HTTP/1.1 or HTTP/2 (hyper's, which never reconnects).
enum Open {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Open {
    /// `GET /` on this connection: the status, once the whole body came.
    async fn get(&mut self) -> Result<u16, String> {
        let e = |e: hyper::Error| e.to_string();
        let resp = match self {
            Self::H1(s) => {
                s.ready().await.map_err(e)?;
                let req = http::Request::get("/").header("host", "api.example.com");
                s.send_request(req.body(Empty::new()).unwrap()).await
            }
            Self::H2(s) => {
                s.ready().await.map_err(e)?;
                let req = http::Request::get("https://api.example.com/");
                s.send_request(req.body(Empty::new()).unwrap()).await
            }
        }
        .map_err(e)?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.map_err(e)?;
        Ok(status)
    }
}

/// Sends `GET /` on `open`, one after another until `stop` (bounded in count): successes and
/// failures. A failure ends the loop (the connection is gone: nothing reconnects).
fn keep_asking(
    mut open: Open,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (o, f) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        for _ in 0..100_000 {
            if stop.load(Relaxed) {
                break;
            }
            match tokio::time::timeout(patience(), open.get()).await {
                Ok(Ok(200)) => o.fetch_add(1, Relaxed),
                other => {
                    eprintln!("request on the open connection failed: {other:?}");
                    f.fetch_add(1, Relaxed);
                    break;
                }
            };
        }
    });
    (task, ok, failed)
}

/// An HTTP/1.1 keep-alive connection and an HTTP/2 connection, both opened before the
/// certificate is swapped on disk, keep sending requests across the swap and after it: every
/// request succeeds on the same connection (nothing reconnects), while new handshakes get the
/// new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_keep_going_across_a_certificate_swap() {
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let gw = s.start(API, "");
    let addr = tls_addr(&gw);
    let (ca, old) = (s.pki.ca(), der_of(&s.dir().join("api.pem")));
    let (h1, leaf1) = connect(addr, &ca, b"http/1.1").await;
    let (h2, leaf2) = connect(addr, &ca, b"h2").await;
    assert!(
        leaf1 == old && leaf2 == old,
        "both got the first certificate"
    );
    let (send1, conn1) = hyper::client::conn::http1::handshake(TokioIo::new(h1))
        .await
        .unwrap();
    let conn1 = tokio::spawn(conn1);
    let (send2, conn2) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(h2),
    )
    .await
    .unwrap();
    let conn2 = tokio::spawn(conn2);
    let stop = Arc::new(AtomicBool::new(false));
    let (t1, ok1, failed1) = keep_asking(Open::H1(send1), stop.clone());
    let (t2, ok2, failed2) = keep_asking(Open::H2(send2), stop.clone());
    let moving = |ok: &Arc<AtomicU64>, n: u64| {
        let ok = ok.clone();
        async move {
            eventually("requests to flow on the open connection", || {
                let ok = ok.clone();
                async move { (ok.load(Relaxed) >= n).then_some(()) }
            })
            .await
        }
    };
    moving(&ok1, 10).await;
    moving(&ok2, 10).await;

    let (cert, key) = s.pki.leaf(&["api.example.com"], 0x02);
    let (c, k) = (s.dir().join("api.pem.new"), s.dir().join("api.key.new"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    std::fs::rename(&c, s.dir().join("api.pem")).unwrap();
    std::fs::rename(&k, s.dir().join("api.key")).unwrap();
    serial_becomes(addr, "02").await;

    let (n1, n2) = (ok1.load(Relaxed), ok2.load(Relaxed));
    moving(&ok1, n1 + 10).await;
    moving(&ok2, n2 + 10).await;
    // Still the connections opened before the swap (hyper's never reconnect; dropping the
    // senders below ends them).
    assert!(
        !conn1.is_finished() && !conn2.is_finished(),
        "both connections are still open"
    );
    stop.store(true, Relaxed);
    t1.await.unwrap();
    t2.await.unwrap();
    assert_eq!(
        failed1.load(Relaxed),
        0,
        "HTTP/1.1 keep-alive requests failed"
    );
    assert_eq!(failed2.load(Relaxed), 0, "HTTP/2 requests failed");
    conn1.abort();
    conn2.abort();
}

/// Rewrites `path` in place with `content` padded to `len` bytes, keeping its inode, size and
/// modification time: the file poller (which compares those) sees no change.
fn rewrite_unseen(path: &Path, content: &str, len: usize) {
    use std::io::{Seek as _, Write as _};
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.len() as usize, len, "{}", path.display());
    assert!(content.len() <= len, "{} longer than {len}", content.len());
    let mut padded = content.as_bytes().to_vec();
    padded.resize(len, b'\n');
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.write_all(&padded).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
}

/// Writes a padded pair (fixed sizes, so a later one can replace it in place).
const CERT_LEN: usize = 4096;
const KEY_LEN: usize = 1024;

fn write_padded(dir: &Path, pki: &Pki, serial: u64) {
    let (cert, key) = pki.leaf(&["api.example.com"], serial);
    for (file, content, len) in [("api.pem", cert, CERT_LEN), ("api.key", key, KEY_LEN)] {
        let mut padded = content.into_bytes();
        padded.resize(len, b'\n');
        std::fs::write(dir.join(file), padded).unwrap();
    }
}

fn replace_unseen(dir: &Path, pki: &Pki, serial: u64) {
    let (cert, key) = pki.leaf(&["api.example.com"], serial);
    rewrite_unseen(&dir.join("api.pem"), &cert, CERT_LEN);
    rewrite_unseen(&dir.join("api.key"), &key, KEY_LEN);
}

/// A certificate replaced in a way the file poller does not notice (same inode, size and
/// modification time) keeps the old one serving until SIGHUP, then until `POST /v1/reload`,
/// which each load the new pair (the reload answers 200 with the new serial).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_post_reload_load_a_certificate_the_poller_cannot_see() {
    let s = setup(&[]).await;
    write_padded(s.dir(), &s.pki, 0x01);
    let gw = s.start(API, "");
    let addr = tls_addr(&gw);
    let http = reqwest::Client::new();
    serial_becomes(addr, "01").await;

    replace_unseen(s.dir(), &s.pki, 0x02);
    // Several poll intervals (500 ms) pass: the poller saw nothing, the old pair serves.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h = handshake(addr, Some("api.example.com")).await;
    assert_eq!(
        h.serial.as_deref(),
        Some("01"),
        "the poller must not see an in-place rewrite, or this test proves nothing: {}",
        h.transcript
    );
    gw.hangup();
    serial_becomes(addr, "02").await;
    assert!(gw.logged("reload on SIGHUP"));

    replace_unseen(s.dir(), &s.pki, 0x03);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let h = handshake(addr, Some("api.example.com")).await;
    assert_eq!(h.serial.as_deref(), Some("02"), "{}", h.transcript);
    let r = gw
        .admin_req(&http, Method::POST, "/v1/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["tls"][0]["ok"], true, "{body}");
    assert_eq!(body["tls"][0]["certificates"][0]["serial"], "03", "{body}");
    // The reload has swapped the resolver before answering: the next handshake gets it.
    let h = handshake(addr, Some("api.example.com")).await;
    assert_eq!(h.serial.as_deref(), Some("03"), "{}", h.transcript);
}

/// `gatewayd check` on a listener whose certificate has expired: exit 64, the message names
/// the file and says it expired; the daemon does not start on it either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_an_expired_certificate_naming_the_file() {
    let s = setup(&[]).await;
    let (cert, key) = s.pki.expired_leaf(&["api.example.com"], 0x0e);
    std::fs::write(s.dir().join("old.pem"), cert).unwrap();
    std::fs::write(s.dir().join("old.key"), key).unwrap();
    let file = s.dir().join("gatewayd.toml");
    std::fs::write(
        &file,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncertificates = [{{ cert = \"old.pem\", key = \"old.key\" }}]\n\n[services.web]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"all\"\nbackends = [{{ name = \"web\", weight = 1 }}]\n",
            s.origin.addr
        ),
    )
    .unwrap();
    let out = Command::new(binary("gatewayd"))
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("old.pem") && stderr.contains("expired"),
        "{stderr}"
    );
    // The daemon refuses to start on it too (exits by itself, naming the file).
    let out = run(Command::new(binary("gatewayd")).arg("--config").arg(&file));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("old.pem") && all.contains("expired"), "{all}");
}
