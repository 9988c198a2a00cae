//! TLS termination with real clients (`openssl s_client`, curl): certificates by SNI (exact,
//! wildcard, default, strict), ALPN h2 and http/1.1 both proxied, TLS 1.0/1.1 refused (after
//! proving the probe reaches a server that offers them), certificates swapped on disk under
//! load with no failed request, a bad certificate refused while the old one keeps serving, the
//! handshake timeout, the https redirect listener, and `gatewayd check` on certificates.
//! Certificates are generated at test time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::tls::{
    curl_https, old_client, probe_reaches_old_server, run, s_client, Handshake, Pki, TlsOrigin,
};
use meshgate_e2e::harness::{binary, trace_init, Gateway, Origin};
use reqwest::Method;
use serde_json::Value;

/// Runs blocking client work off the runtime's threads (the origin lives on them).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A gateway in `dir` whose second listener terminates TLS with `tls` (the body of
/// `[listeners.tls]`), proxying everything to `origin`.
pub(crate) fn start(dir: &Path, origin: &Origin, tls: &str, extra_listeners: &str) -> Gateway {
    let body = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"tls\"\n[listeners.tls]\n{tls}\n\n{extra_listeners}\n[services.web]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"all\"\nbackends = [{{ name = \"web\", weight = 1 }}]\n",
        origin.addr
    );
    std::fs::write(dir.join("gatewayd.toml"), format!("{}{body}", preamble(2))).unwrap();
    Gateway::start_in(dir).unwrap()
}

/// A temporary directory with a test CA, leaves `(stem, name, serial)` written in it, and an
/// origin named `web`.
pub(crate) struct Setup {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) pki: Pki,
    pub(crate) origin: Origin,
}

pub(crate) async fn setup(leaves: &[(&str, &str, u64)]) -> Setup {
    trace_init();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    for (stem, name, serial) in leaves {
        pki.write_leaf(stem, &[name], *serial);
    }
    let origin = Origin::start("web").await;
    Setup { tmp, pki, origin }
}

impl Setup {
    pub(crate) fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub(crate) fn start(&self, tls: &str, extra_listeners: &str) -> Gateway {
        start(self.dir(), &self.origin, tls, extra_listeners)
    }
}

/// `GET /metrics` as text.
pub(crate) async fn metrics(gw: &Gateway, http: &reqwest::Client) -> String {
    gw.admin_req(http, Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub(crate) const API: &str = "certificates = [{ cert = \"api.pem\", key = \"api.key\" }]";

pub(crate) fn tls_addr(gw: &Gateway) -> SocketAddr {
    gw.listeners[1]
}

pub(crate) async fn handshake(addr: SocketAddr, sni: Option<&'static str>) -> Handshake {
    blocking(move || s_client(addr, sni, &[])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_both_alpn_protocols_are_proxied() {
    let s = setup(&[
        ("api", "api.example.com", 0x11),
        ("wild", "*.example.com", 0x22),
        ("other", "other.test", 0x33),
    ])
    .await;
    let gw = s.start(
        "certificates = [{ cert = \"api.pem\", key = \"api.key\" }, { cert = \"wild.pem\", key = \"wild.key\" }, { cert = \"other.pem\", key = \"other.key\" }]\ndefault_certificate = \"other.pem\"",
        "",
    );
    let addr = tls_addr(&gw);
    for (sni, serial) in [
        (Some("api.example.com"), "11"),
        (Some("www.example.com"), "22"),
        (Some("a.b.example.com"), "33"),
        (Some("unknown.test"), "33"),
        (None, "33"),
    ] {
        let h = handshake(addr, sni).await;
        assert!(h.ok, "{sni:?}: {}", h.transcript);
        assert_eq!(
            h.serial.as_deref(),
            Some(serial),
            "{sni:?}: {}",
            h.transcript
        );
    }
    let ca = s.pki.ca();
    for (name, flag, version) in [
        ("api.example.com", "--http2", "2"),
        ("www.example.com", "--http1.1", "1.1"),
        ("api.example.com", "--http1.1", "1.1"),
        ("www.example.com", "--http2", "2"),
    ] {
        let ca = ca.clone();
        let (status, v, body) =
            blocking(move || curl_https(addr, name, "/hello?x=1", &ca, &[flag])).await;
        assert_eq!(
            (status, v.as_str()),
            (200, version),
            "{name} {flag}: {body}"
        );
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["origin"], "web");
        assert_eq!(json["path"], "/hello?x=1");
        assert_eq!(
            json["headers"]["x-forwarded-proto"], "https",
            "{name} {flag}: {body}"
        );
    }
    // The cleartext listener still says http.
    let plain: Value = reqwest::get(gw.url("/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["headers"]["x-forwarded-proto"], "http");
    // The expiry metric names every name served.
    let http = reqwest::Client::new();
    let metrics = metrics(&gw, &http).await;
    for name in ["api.example.com", "*.example.com", "other.test"] {
        assert!(
            metrics.contains(&format!(
                "meshgate_tls_certificate_expiry_seconds{{listener=\"tls\",name=\"{name}\""
            )),
            "{metrics}"
        );
    }
    assert!(metrics.contains("meshgate_tls_certificates_ok{listener=\"tls\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sni_refuses_unknown_names_and_clients_without_sni() {
    let s = setup(&[("api", "api.example.com", 0x11)]).await;
    let gw = s.start(
        "certificates = [{ cert = \"api.pem\", key = \"api.key\" }]\nstrict_sni = true",
        "",
    );
    let addr = tls_addr(&gw);
    let ok = handshake(addr, Some("api.example.com")).await;
    assert!(
        ok.ok && ok.serial.as_deref() == Some("11"),
        "{}",
        ok.transcript
    );
    for sni in [Some("unknown.test"), None] {
        let h = handshake(addr, sni).await;
        assert!(!h.ok && h.serial.is_none(), "{sni:?}: {}", h.transcript);
    }
    let ca = s.pki.ca();
    let (status, _, _) =
        blocking(move || curl_https(addr, "unknown.test", "/", &ca, &["--http1.1"])).await;
    assert_eq!(status, 0, "curl to an unknown name fails the handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_are_refused_and_min_version_1_3_refuses_1_2() {
    // An RSA-free ECDSA leaf still works with TLS 1.0/1.1 ciphers (ECDHE-ECDSA-AES-CBC).
    let s = setup(&[("localhost", "localhost", 0x11)]).await;
    let gw = s.start(
        "certificates = [{ cert = \"localhost.pem\", key = \"localhost.key\" }]",
        "",
    );
    let addr = tls_addr(&gw);
    let (cert, key) = (s.dir().join("localhost.pem"), s.dir().join("localhost.key"));
    for flag in ["-tls1", "-tls1_1"] {
        let (c, k) = (cert.clone(), key.clone());
        let reachable = blocking(move || probe_reaches_old_server(flag, &c, &k)).await;
        assert!(
            reachable,
            "the probe ({flag}, SECLEVEL=0) must complete a handshake with a server offering it, \
             or the gateway's refusal below would prove nothing"
        );
        let h = blocking(move || old_client(addr, flag)).await;
        assert!(!h.ok, "{flag} accepted by the gateway: {}", h.transcript);
    }
    let h = blocking(move || s_client(addr, Some("localhost"), &["-tls1_2"])).await;
    assert!(
        h.ok && h.protocol.as_deref() == Some("TLSv1.2"),
        "{}",
        h.transcript
    );
    let h = blocking(move || s_client(addr, Some("localhost"), &["-tls1_3"])).await;
    assert!(
        h.ok && h.protocol.as_deref() == Some("TLSv1.3"),
        "{}",
        h.transcript
    );
    drop(gw);

    let dir13 = tempfile::tempdir().unwrap();
    let pki13 = Pki::new(dir13.path());
    pki13.write_leaf("localhost", &["localhost"], 0x12);
    let gw13 = start(
        dir13.path(),
        &s.origin,
        "certificates = [{ cert = \"localhost.pem\", key = \"localhost.key\" }]\nmin_version = \"1.3\"",
        "",
    );
    let addr = tls_addr(&gw13);
    let h = blocking(move || s_client(addr, Some("localhost"), &["-tls1_2"])).await;
    assert!(
        !h.ok,
        "TLS 1.2 accepted with min_version 1.3: {}",
        h.transcript
    );
    let h = blocking(move || s_client(addr, Some("localhost"), &["-tls1_3"])).await;
    assert!(h.ok, "{}", h.transcript);
}

/// Steady bounded load of new TLS connections (one request each) until `stop`; counts
/// successes and failures.
fn load(
    addr: SocketAddr,
    ca: &Path,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (o, f) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        // No pooling: every request is a new connection and a new handshake.
        let http = reqwest::Client::builder()
            .add_root_certificate(ca)
            .resolve("api.example.com", addr)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = format!("https://api.example.com:{}/", addr.port());
        // Bounded in count as well as by `stop`.
        for _ in 0..100_000 {
            if stop.load(Relaxed) {
                break;
            }
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => o.fetch_add(1, Relaxed),
                Ok(r) => {
                    eprintln!("load: status {}", r.status());
                    f.fetch_add(1, Relaxed)
                }
                Err(e) => {
                    eprintln!("load: {e:?}");
                    f.fetch_add(1, Relaxed)
                }
            };
        }
    });
    (task, ok, failed)
}

pub(crate) async fn serial_becomes(addr: SocketAddr, want: &'static str) {
    eventually(
        &format!("new handshakes to get serial {want}"),
        || async move {
            let h = handshake(addr, Some("api.example.com")).await;
            (h.serial.as_deref() == Some(want)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_swap_on_disk_under_load_without_a_failed_request() {
    // `live` is a symlink to a version directory (the Kubernetes secret layout); `api.pem` and
    // `api.key` at the top are replaced by rename.
    let s = setup(&[
        ("v1/api", "api.example.com", 0x01),
        ("api", "api.example.com", 0x10),
    ])
    .await;
    std::os::unix::fs::symlink("v1", s.dir().join("live")).unwrap();
    let gw = s.start(
        "certificates = [{ cert = \"live/api.pem\", key = \"live/api.key\" }]",
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"tls-renamed\"\n[listeners.tls]\ncertificates = [{ cert = \"api.pem\", key = \"api.key\" }]\n",
    );
    let (sym, ren) = (gw.listeners[1], gw.listeners[2]);
    serial_becomes(sym, "01").await;
    serial_becomes(ren, "10").await;
    let stop = Arc::new(AtomicBool::new(false));
    let (t1, ok1, failed1) = load(sym, &s.pki.ca(), stop.clone());
    let (t2, ok2, failed2) = load(ren, &s.pki.ca(), stop.clone());
    let moving = |ok: &Arc<AtomicU64>, n: u64| {
        let ok = ok.clone();
        async move {
            eventually("requests to flow", || {
                let ok = ok.clone();
                async move { (ok.load(Relaxed) >= n).then_some(()) }
            })
            .await
        }
    };
    moving(&ok1, 20).await;
    moving(&ok2, 20).await;

    // Symlink swap: v2 written beside, then `live` atomically repointed (rename of a new link).
    s.pki.write_leaf("v2/api", &["api.example.com"], 0x02);
    std::os::unix::fs::symlink("v2", s.dir().join("live.new")).unwrap();
    std::fs::rename(s.dir().join("live.new"), s.dir().join("live")).unwrap();
    serial_becomes(sym, "02").await;

    // Rename over, key first: for a moment the key is not the certificate's (refused, the old
    // pair keeps serving), then the certificate follows and the pair is picked up by itself.
    let (cert, key) = s.pki.leaf(&["api.example.com"], 0x20);
    std::fs::write(s.dir().join("api.key.new"), key).unwrap();
    std::fs::write(s.dir().join("api.pem.new"), cert).unwrap();
    std::fs::rename(s.dir().join("api.key.new"), s.dir().join("api.key")).unwrap();
    std::fs::rename(s.dir().join("api.pem.new"), s.dir().join("api.pem")).unwrap();
    serial_becomes(ren, "20").await;

    let (n1, n2) = (ok1.load(Relaxed), ok2.load(Relaxed));
    moving(&ok1, n1 + 20).await;
    moving(&ok2, n2 + 20).await;
    stop.store(true, Relaxed);
    t1.await.unwrap();
    t2.await.unwrap();
    assert_eq!(
        failed1.load(Relaxed),
        0,
        "failed requests during the symlink swap"
    );
    assert_eq!(
        failed2.load(Relaxed),
        0,
        "failed requests during the rename swap"
    );
    let http = reqwest::Client::new();
    let ready = gw.admin_get_json(&http, "/readyz").await;
    assert_eq!(ready["tls_ok"], true, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_is_refused_and_the_old_one_keeps_serving() {
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let gw = s.start(API, "");
    let addr = tls_addr(&gw);
    let http = reqwest::Client::new();
    std::fs::write(
        s.dir().join("api.pem.new"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::rename(s.dir().join("api.pem.new"), s.dir().join("api.pem")).unwrap();
    let ready: Value = eventually("/readyz to report the refused certificate", || async {
        let v = gw.admin_get_json(&http, "/readyz").await;
        (v["tls_ok"] == false).then_some(v)
    })
    .await;
    assert_eq!(ready["ready"], true, "{ready}");
    let err = ready["tls_errors"][0].as_str().unwrap();
    assert!(err.contains("api.pem"), "{err}");
    let config = gw.admin_get_json(&http, "/v1/config").await;
    assert_eq!(config["tls"][0]["ok"], false, "{config}");
    assert!(config["tls"][0]["error"]
        .as_str()
        .unwrap()
        .contains("api.pem"));
    assert_eq!(config["tls"][0]["certificates"][0]["serial"], "01");
    let metrics = metrics(&gw, &http).await;
    assert!(
        metrics.contains("meshgate_tls_certificates_ok{listener=\"tls\"} 0"),
        "{metrics}"
    );
    // The old certificate keeps serving new handshakes and requests.
    let h = handshake(addr, Some("api.example.com")).await;
    assert_eq!(h.serial.as_deref(), Some("01"), "{}", h.transcript);
    let ca = s.pki.ca();
    let (status, _, _) =
        blocking(move || curl_https(addr, "api.example.com", "/", &ca, &["--http1.1"])).await;
    assert_eq!(status, 200);
    // An explicit reload says so too.
    let r = gw
        .admin_req(&http, Method::POST, "/v1/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["tls"][0]["error"]
            .as_str()
            .unwrap()
            .contains("api.pem"),
        "{body}"
    );
    // Repaired: picked up by itself.
    s.pki.write_leaf("api", &["api.example.com"], 0x03);
    serial_becomes(addr, "03").await;
    let ready = gw.admin_get_json(&http, "/readyz").await;
    assert_eq!(ready["tls_ok"], true, "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt as _;
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let gw = s.start(
        "certificates = [{ cert = \"api.pem\", key = \"api.key\" }]\nhandshake_timeout = \"1s\"",
        "",
    );
    let mut s = tokio::net::TcpStream::connect(tls_addr(&gw)).await.unwrap();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(meshgate_e2e::harness::patience(), s.read(&mut b))
        .await
        .expect("the gateway closes a connection that never starts its handshake");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_listener_answers_308_to_https() {
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let gw = s.start(
        API,
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"redirect\"\nredirect_https = true\n",
    );
    let addr = gw.listeners[2];
    let out = blocking(move || {
        run(Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(["-H", "Host: api.example.com:8080"])
            .arg(format!("http://{addr}/a/b?x=1")))
    })
    .await;
    let got = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(got, "308 https://api.example.com/a/b?x=1");
    assert_eq!(s.origin.hits(), 0, "a redirect listener proxies nothing");
}

#[test]
fn check_names_a_bad_certificate_file_and_exits_64() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    pki.write_leaf("good", &["api.example.com"], 0x01);
    pki.write_leaf("other", &["other.test"], 0x02);
    let cfg = |cert: &str, key: &str| {
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncertificates = [{{ cert = \"{cert}\", key = \"{key}\" }}]\n\n[services.web]\nendpoints = [\"127.0.0.1:9\"]\n\n[[routes]]\nname = \"all\"\nbackends = [{{ name = \"web\", weight = 1 }}]\n"
        )
    };
    std::fs::write(tmp.path().join("broken.pem"), "not a certificate").unwrap();
    for (name, cert, key, needle) in [
        ("good", "good.pem", "good.key", None),
        ("mismatch", "good.pem", "other.key", Some("other.key")),
        ("garbage", "broken.pem", "good.key", Some("broken.pem")),
        ("missing", "absent.pem", "good.key", Some("absent.pem")),
    ] {
        let file = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&file, cfg(cert, key)).unwrap();
        let out = Command::new(binary("gatewayd"))
            .arg("check")
            .arg("--config")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match needle {
            None => assert!(out.status.success(), "{name}: {stderr}"),
            Some(n) => {
                assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
                assert!(stderr.contains(n), "{name}: {stderr}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verifies_the_name_and_presents_the_client_certificate() {
    let s = setup(&[
        ("api", "api.example.com", 0x01),
        ("client", "gateway.client", 0x51),
    ])
    .await;
    let plain = TlsOrigin::start(&s.pki, "tls-origin", &["origin.test"], false).await;
    let mtls = TlsOrigin::start(&s.pki, "mtls-origin", &["origin.test"], true).await;
    let svc = |name: &str, addr: SocketAddr, tls: &str| {
        format!("[services.{name}]\nendpoints = [\"{addr}\"]\ntls = {{ {tls} }}\n\n[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}/\"\nbackends = [{{ name = \"{name}\", weight = 1 }}]\n\n")
    };
    let body = [
        svc("good", plain.addr, "ca_file = \"ca.pem\", server_name = \"origin.test\""),
        svc("wrong", plain.addr, "ca_file = \"ca.pem\", server_name = \"wrong.test\""),
        svc("untrusted", plain.addr, "server_name = \"origin.test\""),
        svc("mtlswith", mtls.addr, "ca_file = \"ca.pem\", server_name = \"origin.test\", client_cert = \"client.pem\", client_key = \"client.key\""),
        svc("mtlswithout", mtls.addr, "ca_file = \"ca.pem\", server_name = \"origin.test\""),
    ]
    .concat();
    let gw = s.start(API, &body);
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), gw.url(path));
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // HTTP/1.1 clients over cleartext, twice each (the second on a pooled TLS connection).
    for _ in 0..2 {
        let (status, body) = get("/good/x").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"origin\":\"tls-origin\""), "{body}");
        let (status, body) = get("/mtlswith/x").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"client_cert\":true"), "{body}");
    }
    for path in ["/wrong/x", "/untrusted/x"] {
        let (status, body) = get(path).await;
        assert_eq!(status, 502, "{path}: {body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["message"].as_str().unwrap().contains("TLS"),
            "{path}: {body}"
        );
    }
    let (status, body) = get("/mtlswithout/x").await;
    assert_eq!(
        status, 502,
        "an upstream demanding a client certificate: {body}"
    );
    // An HTTP/2 client over TLS to a TLS upstream.
    let (addr, ca) = (tls_addr(&gw), s.pki.ca());
    let (status, version, body) =
        blocking(move || curl_https(addr, "api.example.com", "/good/y", &ca, &["--http2"])).await;
    assert_eq!((status, version.as_str()), (200, "2"), "{body}");
    assert!(body.contains("tls-origin"), "{body}");
}

/// HAProxy (a real L4 balancer, `send-proxy-v2`) in front of a `proxy_protocol` TLS listener,
/// curl as the client from its own loopback address: the PROXY header comes first, then the
/// TLS handshake, and the upstream sees the client's address (not HAProxy's) in
/// `X-Forwarded-For`. A client without the header is closed and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_behind_an_l4_balancer_reads_the_proxy_header_first() {
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let body = format!(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\nname = \"tls\"\nproxy_protocol = true\n[listeners.tls]\n{API}\nhandshake_timeout = \"5s\"\n\n[services.web]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"all\"\nbackends = [{{ name = \"web\", weight = 1 }}]\n",
        s.origin.addr
    );
    std::fs::write(
        s.dir().join("gatewayd.toml"),
        format!("{}{body}", preamble(2)),
    )
    .unwrap();
    let gw = Gateway::start_in(s.dir()).unwrap();
    let backend = tls_addr(&gw);
    // An ephemeral port for HAProxy's frontend (released just before HAProxy binds it).
    let front: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = format!(
        "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind {front}\n  default_backend be\nbackend be\n  server gw {backend} send-proxy-v2\n"
    );
    let cfg_file = s.dir().join("haproxy.cfg");
    std::fs::write(&cfg_file, cfg).unwrap();
    let exe = match Path::new("/usr/sbin/haproxy").exists() {
        true => "/usr/sbin/haproxy",
        false => "haproxy",
    };
    let haproxy = Command::new(exe)
        .arg("-db")
        .arg("-f")
        .arg(&cfg_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("haproxy (tests/run.sh installs it)");
    // Killed by its PID however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _haproxy = Kill(haproxy);
    eventually("HAProxy to listen", || async {
        tokio::net::TcpStream::connect(front).await.ok()
    })
    .await;
    let ca = s.pki.ca();
    let (status, _, body) = blocking(move || {
        curl_https(
            front,
            "api.example.com",
            "/pp",
            &ca,
            &["--interface", "127.0.0.7"],
        )
    })
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.7", "{v}");
    assert_eq!(v["headers"]["x-forwarded-proto"], "https", "{v}");
    // Straight to the listener, no PROXY header: closed before any handshake, and counted.
    let h = handshake(backend, Some("api.example.com")).await;
    assert!(!h.ok, "{}", h.transcript);
    let http = reqwest::Client::new();
    let m = metrics(&gw, &http).await;
    assert!(
        m.contains("meshgate_client_errors_total{kind=\"protocol_error\"} 1"),
        "{m}"
    );
}
