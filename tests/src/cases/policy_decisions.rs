//! What the route policies decide, seen from outside, on the HTTP/1.1 engine and the HTTP/2
//! path: a CORS policy makes the gateway the CORS authority (the upstream's own
//! `Access-Control-*` never reach the client, its `Vary` is merged); a `client_ip` rate limit
//! keys on the client the gateway believes (trusted proxies' `X-Forwarded-For`, a PROXY
//! header's source) and not on a forged `X-Forwarded-For`; the access log names the policy that
//! answered and why, refusals are logged, a fail-closed auth service is logged at error level;
//! gwctl shows a policy's recent decisions and refusals.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::gwctl::Gwctl;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::support::{client, h2_once, service};

/// An upstream with its own (permissive) CORS middleware: every answer is 200 with
/// `Access-Control-Allow-Origin: *`, credentials allowed, an exposed secret header, and
/// `Vary: Accept-Encoding`.
struct CorsUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CorsUpstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = h.clone();
                let svc = hyper::service::service_fn(move |_req| {
                    h.fetch_add(1, Relaxed);
                    async {
                        let resp = http::Response::builder()
                            .header("access-control-allow-origin", "*")
                            .header("access-control-allow-credentials", "true")
                            .header("access-control-expose-headers", "x-secret")
                            .header("vary", "Accept-Encoding")
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Self { addr, hits, task }
    }
}

impl Drop for CorsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every value of `name`, one per field.
fn all(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// The `Access-Control-*` fields of an answer.
fn access_control(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect()
}

/// One GET: HTTP/1.1 (reqwest, keep-alive) or HTTP/2 (prior knowledge).
async fn get(
    gw: &Gateway,
    http: &reqwest::Client,
    h2: bool,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap) {
    if h2 {
        return h2_once(gw, "GET", path, headers).await;
    }
    let mut req = http.get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.headers().clone())
}

/// On a route with a CORS policy the gateway alone speaks CORS: the upstream's own
/// `Access-Control-*` are replaced for an allowed origin and removed for a refused one (or no
/// origin), and its `Vary` is merged with the policy's into one field. A route with only a
/// rate limit passes the upstream's fields as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_route_never_passes_the_upstreams_own_access_control_fields() {
    trace_init();
    let up = CorsUpstream::start().await;
    let cfg = format!(
        "[services.app]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"cors\"\npath_prefix = \"/cors\"\npolicies = [\"web\"]\nbackends = [{{ name = \"app\", weight = 1 }}]\n\n[[routes]]\nname = \"limited\"\npath_prefix = \"/limited\"\npolicies = [\"lots\"]\nbackends = [{{ name = \"app\", weight = 1 }}]\n\n[policies.web]\nkind = \"cors\"\nallow_origins = [\"https://app.example.com\"]\nallow_credentials = true\n\n[policies.lots]\nkind = \"rate_limit\"\nrate = \"1000/s\"\n",
        up.addr
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let merged = vec!["Accept-Encoding, Origin".to_string()];
    for h2 in [false, true] {
        let allowed = [("origin", "https://app.example.com")];
        let (status, h) = get(&gw, &http, h2, "/cors/a", &allowed).await;
        assert_eq!(status, 200);
        assert_eq!(
            access_control(&h),
            [
                (
                    "access-control-allow-origin".to_string(),
                    "https://app.example.com".to_string()
                ),
                (
                    "access-control-allow-credentials".to_string(),
                    "true".to_string()
                ),
            ],
            "h2 {h2}: the policy's fields only, each once: {h:?}"
        );
        assert_eq!(all(&h, "vary"), merged, "h2 {h2}: {h:?}");
        for headers in [&[("origin", "https://evil.example")][..], &[]] {
            let (status, h) = get(&gw, &http, h2, "/cors/a", headers).await;
            assert_eq!(status, 200);
            assert_eq!(
                access_control(&h),
                [],
                "h2 {h2}, {headers:?}: no Access-Control-* at all: {h:?}"
            );
            assert_eq!(all(&h, "vary"), merged, "h2 {h2}: {h:?}");
        }
        // No CORS policy: the upstream's own fields are its business.
        let (status, h) = get(&gw, &http, h2, "/limited/a", &allowed).await;
        assert_eq!(status, 200);
        assert_eq!(all(&h, "access-control-allow-origin"), ["*"], "{h:?}");
        assert_eq!(all(&h, "vary"), ["Accept-Encoding"], "{h:?}");
    }
    assert_eq!(up.hits.load(Relaxed), 8, "every one reached the upstream");
}

/// `preamble(2)` with `gateway` added to `[gateway]`, `log` to `[log]` and `listeners` after
/// the first listener, then `body`: a gateway started in its own directory.
fn start_with(
    gateway: &str,
    log: &str,
    listeners: &str,
    body: &str,
) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let first = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";
    let pre = preamble(2)
        .replace("[gateway]\n", &format!("[gateway]\n{gateway}"))
        .replace("[log]\n", &format!("[log]\n{log}"))
        .replace(first, &format!("{first}\n{listeners}"));
    std::fs::write(dir.path().join("gatewayd.toml"), format!("{pre}{body}")).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    (gw, dir)
}

/// A route `api` to origin `o` with a `client_ip` rate limit of 2 a minute, `per-client`.
fn per_client(o: &Origin) -> String {
    format!(
        "{}[[routes]]\nname = \"api\"\npolicies = [\"per-client\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[policies.per-client]\nkind = \"rate_limit\"\nrate = \"2/m\"\nkey = \"client_ip\"\n",
        service("o", &[o], "round_robin")
    )
}

/// Statuses of GETs of `/a`, each with `X-Forwarded-For: xff`, over HTTP/1.1 or HTTP/2.
async fn statuses(gw: &Gateway, http: &reqwest::Client, h2: bool, xffs: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    for xff in xffs {
        out.push(get(gw, http, h2, "/a", &[("x-forwarded-for", xff)]).await.0);
    }
    out
}

/// Behind a trusted proxy (the test client, on 127.0.0.0/8), `client_ip` buckets are the
/// forwarded clients': two clients behind the proxy have one bucket each, a trusted hop on the
/// right is skipped, and a forged entry left of the real client changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_limits_key_on_the_client_behind_trusted_proxies() {
    trace_init();
    let o = Origin::start("o").await;
    let trusted = "trusted_proxies = [\"127.0.0.0/8\", \"::1\"]\n";
    let (gw, _dir) = start_with(trusted, "", "", &per_client(&o));
    let http = client();
    let one = "203.0.113.1";
    assert_eq!(
        statuses(&gw, &http, false, &[one, one, one]).await,
        [200, 200, 429]
    );
    // Another client behind the same proxy: its own bucket, on either engine.
    let two = ["203.0.113.2", "203.0.113.2, 127.0.0.9"];
    assert_eq!(statuses(&gw, &http, false, &two).await, [200, 200]);
    assert_eq!(statuses(&gw, &http, true, &["203.0.113.2"]).await, [429]);
    assert_eq!(statuses(&gw, &http, true, &["203.0.113.4"]).await, [200]);
    // A forged hop left of the client the proxy saw is not a new client.
    let forged = [
        "203.0.113.3",
        "198.51.100.7, 203.0.113.3",
        "10.1.1.1, 203.0.113.3",
    ];
    assert_eq!(statuses(&gw, &http, false, &forged).await, [200, 200, 429]);
    assert_eq!(o.hits(), 7);
    // The refusals name the forwarded client.
    let v = gw.admin_get_json(&http, "/v1/routes/api").await;
    let refusals = &v["policies"][0]["recent"]["refusals"];
    let clients: Vec<&str> = refusals
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["client"].as_str().unwrap())
        .collect();
    assert_eq!(
        clients,
        ["203.0.113.3", "203.0.113.2", "203.0.113.1"],
        "{v}"
    );
}

/// From a peer that is not a trusted proxy, `X-Forwarded-For` is not believed: every forged
/// value shares the peer's bucket. Behind a PROXY protocol listener the header's source is the
/// client, whatever `X-Forwarded-For` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_for_gets_no_fresh_bucket_and_proxy_headers_name_the_client() {
    trace_init();
    let o = Origin::start("o").await;
    let elsewhere = "trusted_proxies = [\"192.0.2.0/24\"]\n";
    let pp = "[[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n\n";
    let (gw, _dir) = start_with(elsewhere, "", pp, &per_client(&o));
    let http = client();
    let forged = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
    assert_eq!(statuses(&gw, &http, false, &forged).await, [200, 200, 429]);
    assert_eq!(statuses(&gw, &http, true, &["203.0.113.4"]).await, [429]);
    // Through the PROXY listener: the source it names has its own bucket.
    let pp_addr = gw.listeners[1];
    let mut got = Vec::new();
    for xff in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let req = format!(
            "PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\nGET /a HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"
        );
        got.push(raw_status(pp_addr, req.as_bytes()).await);
    }
    assert_eq!(got, [200, 200, 429]);
    assert_eq!(o.hits(), 4);
}

/// Sends `bytes` on a new connection and reads to the end: the answer's status.
async fn raw_status(addr: SocketAddr, bytes: &[u8]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    tokio::time::timeout(meshgate_e2e::harness::patience(), read)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"))
}

/// A JWKS file with one HS256 key, `k1`.
const JWKS: &str = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0","kid":"k1","alg":"HS256"}]}"#;

fn logged_config(o: &Origin) -> String {
    format!(
        "{}[services.auth]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npolicies = [\"api-jwt\", \"per-key\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[[routes]]\nname = \"guarded\"\npath_prefix = \"/guarded\"\npolicies = [\"auth\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[policies.api-jwt]\nkind = \"jwt\"\njwks_file = \"jwks.json\"\n\n[policies.per-key]\nkind = \"rate_limit\"\nrate = \"2/m\"\nkey = \"header:x-key\"\n\n[policies.auth]\nkind = \"forward_auth\"\nservice = \"auth\"\ntimeout = \"2s\"\n",
        service("o", &[o], "round_robin"),
        super::client_faults::upstreams::closed_port(),
    )
}

/// The access log names the policy that answered a request and why; the plain route's lines
/// carry no policy field. JWT and rate-limit refusals are logged at debug, an auth service that
/// fails closed at error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_policy_that_refused_and_why() {
    trace_init();
    let o = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), JWKS).unwrap();
    let pre = preamble(2).replace("[log]\n", "[log]\naccess_log = true\n");
    let body = format!("{pre}{}", logged_config(&o));
    std::fs::write(dir.path().join("gatewayd.toml"), body).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    let http = client();
    let send = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let mut req = http.get(gw.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("/plain/1", &[]).await, 200);
    assert_eq!(send("/api/2", &[("x-key", "k")]).await, 401);
    let bad = &[("x-key", "k"), ("authorization", "Bearer not.a.jwt")];
    assert_eq!(send("/api/3", bad).await, 401);
    assert_eq!(send("/api/4", &[("x-key", "k")]).await, 429);
    assert_eq!(send("/guarded/5", &[]).await, 503);
    assert_eq!(o.hits(), 1);
    let access = eventually("five access lines", || async {
        let lines: Vec<Value> = gw
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["log.logger"] == "access")
            .collect();
        (lines.len() >= 5).then_some(lines)
    })
    .await;
    let by_path = |p: &str| -> &Value {
        access
            .iter()
            .find(|v| v["url.path"] == p)
            .unwrap_or_else(|| panic!("no access line for {p}: {access:?}"))
    };
    let plain = by_path("/plain/1");
    assert!(
        plain.get("meshgate.policy").is_none() && plain.get("meshgate.policy_reason").is_none(),
        "{plain}"
    );
    for (path, policy, reason, status) in [
        ("/api/2", "api-jwt", "missing_token", 401),
        ("/api/3", "api-jwt", "malformed", 401),
        ("/api/4", "per-key", "limited", 429),
        ("/guarded/5", "auth", "failed_closed", 503),
    ] {
        let v = by_path(path);
        assert_eq!(
            (
                v["meshgate.policy"].as_str(),
                v["meshgate.policy_reason"].as_str(),
                v["http.response.status_code"].as_u64()
            ),
            (Some(policy), Some(reason), Some(status)),
            "{v}"
        );
    }
    let lines: Vec<Value> = gw
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    for (policy, reason) in [
        ("api-jwt", "missing_token"),
        ("api-jwt", "malformed"),
        ("per-key", "limited"),
    ] {
        assert!(
            lines
                .iter()
                .any(|v| v["message"] == "request refused by policy"
                    && v["level"] == "DEBUG"
                    && v["policy"] == policy
                    && v["reason"] == reason
                    && v["client"] == "127.0.0.1"),
            "a debug line for {policy} {reason}"
        );
    }
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|v| v["message"] == "auth service failed; request refused")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (failed[0]["level"].as_str(), failed[0]["policy"].as_str()),
        (Some("ERROR"), Some("auth")),
        "{}",
        failed[0]
    );
    assert!(failed[0]["service"] == "auth", "{}", failed[0]);
}

/// `gwctl routes NAME --json` carries each policy's decisions of the last minute and its last
/// refusals, newest first, a refusal made just before included; the text form lists them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gwctl_shows_a_refusal_just_made() {
    trace_init();
    let o = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), JWKS).unwrap();
    let body = format!("{}{}", preamble(2), logged_config(&o));
    std::fs::write(dir.path().join("gatewayd.toml"), body).unwrap();
    let gw = Gateway::start_in(dir.path()).unwrap();
    let http = client();
    let gwctl = Gwctl::new(&gw);
    let before = gwctl.run(&["routes", "api", "--json"]).await;
    let v = before.expect_code(0).json();
    assert_eq!(v["policies"][0]["name"], "api-jwt", "{v}");
    assert_eq!(
        v["policies"][0]["recent"]["refusals"],
        serde_json::json!([])
    );
    for key in ["a", "a", "a"] {
        http.get(gw.url("/api/x"))
            .header("x-key", key)
            .send()
            .await
            .unwrap();
    }
    let run = gwctl.run(&["routes", "api", "--json"]).await;
    let v = run.expect_code(0).json();
    let (jwt, limit) = (&v["policies"][0]["recent"], &v["policies"][1]["recent"]);
    assert_eq!(
        jwt["decisions"],
        serde_json::json!({"missing_token": 2}),
        "{v}"
    );
    assert_eq!(
        limit["decisions"],
        serde_json::json!({"allowed": 2, "limited": 1}),
        "{v}"
    );
    let w = limit["window_seconds"].as_u64().unwrap();
    assert!(w <= 60, "{v}");
    let r = &limit["refusals"];
    assert_eq!(r.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        (r[0]["outcome"].as_str(), r[0]["client"].as_str()),
        (Some("limited"), Some("127.0.0.1"))
    );
    let at = r[0]["at"].as_str().unwrap();
    assert!(at.starts_with("20") && at.ends_with('Z'), "{at}");
    assert_eq!(jwt["refusals"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(jwt["refusals"][0]["outcome"], "missing_token", "{v}");
    let text = gwctl.run(&["routes", "api"]).await;
    let out = &text.expect_code(0).stdout;
    let line = |words: &[&str]| out.lines().any(|l| words.iter().all(|w| l.contains(w)));
    assert!(
        line(&["POLICY", "KIND", "SETTINGS", "DECISIONS", "LAST MINUTE"]),
        "{out}"
    );
    assert!(
        line(&["per-key", "rate_limit", "allowed 2 · limited 1"]),
        "{out}"
    );
    assert!(line(&["REFUSED AT", "POLICY", "REASON", "CLIENT"]), "{out}");
    assert!(
        line(&[&at[..19], "per-key", "limited", "127.0.0.1"]),
        "{out}"
    );
}
