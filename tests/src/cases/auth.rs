//! Authentication policies through the running gateway, on the HTTP/1.1 engine and the HTTP/2
//! path, with tokens minted by PyJWT (`tests/python/mint_jwt.py`, fresh keys every run):
//! valid, expired, not yet valid, wrong issuer and audience, `alg: none`, HMAC over the RSA
//! public key, a bad signature; an unknown `kid` after a key rotation fetched once and then
//! accepted; a JWKS server that goes down (last good keys kept) or never answers (503);
//! claims forwarded with spoofed copies removed; a rate limit keyed by a claim. Forward auth:
//! an auth service that allows, denies with a body and `WWW-Authenticate`, redirects, fails,
//! times out and is down (with and without `failure_mode_allow`), cached allows, and header
//! spoofing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway};
use serde_json::Value;

use super::support::{client, h2_once};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "orders";

/// Headers of one request a [`Server`] received, in order, names lower-case.
type Seen = Vec<(String, String)>;

/// What a [`Server`] answers: status, headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// A loopback HTTP/1.1 + h2c server whose answers a closure decides, recording every request's
/// path and headers (all of them, repeated names included) and counting connections. Dropping
/// it closes its connections too.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, Seen)>>>,
    conns: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start<F, Fut>(decide: F) -> Self
    where
        F: Fn(String, Seen) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = Reply> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(String, Seen)>>> = Arc::default();
        let conns: Arc<AtomicUsize> = Arc::default();
        let (log, accepted) = (seen.clone(), conns.clone());
        let task = tokio::spawn(async move {
            // Owned here: aborting the accept loop drops (and so aborts) every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Relaxed);
                while connections.try_join_next().is_some() {}
                let (log, decide) = (log.clone(), decide.clone());
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (log, decide) = (log.clone(), decide.clone());
                    async move {
                        let path = req
                            .uri()
                            .path_and_query()
                            .map_or("/".into(), |p| p.to_string());
                        let headers: Seen = req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                            })
                            .collect();
                        log.lock().unwrap().push((path.clone(), headers.clone()));
                        let (status, hs, body) = decide(path, headers).await;
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = StatusCode::from_u16(status).unwrap();
                        for (k, v) in hs {
                            r.headers_mut().append(k, v.parse().unwrap());
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                connections.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            conns,
            task,
        }
    }

    /// TCP connections accepted so far.
    fn connections(&self) -> usize {
        self.conns.load(Relaxed)
    }

    /// Requests received so far.
    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The headers of the last request.
    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap().1
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every value of `name` in `seen`.
fn values(seen: &Seen, name: &str) -> Vec<String> {
    seen.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

/// An upstream that echoes nothing and answers 200.
async fn upstream() -> Server {
    Server::start(|_, _| async { (200, vec![], "upstream".to_string()) }).await
}

/// Keys, key sets and tokens from PyJWT.
struct Minted {
    jwks_a: String,
    jwks_ab: String,
    tokens: Value,
}

impl Minted {
    fn token(&self, name: &str) -> String {
        self.tokens[name].as_str().unwrap().to_string()
    }
}

fn mint() -> Minted {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.parent().unwrap().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run tests/run.sh (it installs PyJWT)",
        python.display()
    );
    let out = std::process::Command::new(python)
        .arg(root.join("python/mint_jwt.py"))
        .args([ISSUER, AUDIENCE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mint_jwt.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Minted {
        jwks_a: v["jwks_a"].to_string(),
        jwks_ab: v["jwks_ab"].to_string(),
        tokens: v["tokens"].clone(),
    }
}

/// A JWKS server whose document (None: 500) can be changed while it runs.
async fn jwks_server(doc: Arc<Mutex<Option<String>>>) -> Server {
    Server::start(move |_, _| {
        let doc = doc.clone();
        async move {
            match doc.lock().unwrap().clone() {
                Some(d) => (200, vec![("content-type", "application/json".into())], d),
                None => (500, vec![], "down".into()),
            }
        }
    })
    .await
}

fn jwt_config(up: &Server, jwks_url: &str, refresh: &str, extra_policies: &str) -> String {
    format!(
        "[services.up]\nendpoints = [\"{}\"]\n\n[[routes]]\nname = \"api\"\npolicies = [\"api-jwt\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[[routes]]\nname = \"per-user\"\npath_prefix = \"/limited\"\npolicies = [\"per-sub\", \"api-jwt\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[policies.api-jwt]\nkind = \"jwt\"\njwks_url = \"{jwks_url}\"\njwks_refresh_interval = \"{refresh}\"\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\nleeway = \"5s\"\nalgorithms = [\"RS256\", \"RS384\", \"RS512\", \"PS256\", \"ES256\", \"ES384\", \"EdDSA\", \"HS256\"]\nforward_claims = {{ sub = \"X-User-Sub\", tenant = \"X-Tenant\" }}\nstrip_authorization = true\n\n[policies.per-sub]\nkind = \"rate_limit\"\nrate = \"2/m\"\nkey = \"claim:sub\"\n{extra_policies}",
        up.addr
    )
}

/// Waits until the gateway has read its key set.
async fn keys_loaded(gw: &Gateway, http: &reqwest::Client) {
    eventually("the JWKS is read", || async {
        let v = gw.admin_get_json(http, "/v1/config").await;
        (v["jwks"][0]["loaded"] == true).then_some(())
    })
    .await;
}

/// Waits until the gateway has read the key sets of all its `n` jwt policies.
async fn all_keys_loaded(gw: &Gateway, http: &reqwest::Client, n: usize) {
    eventually("every JWKS is read", || async {
        let v = gw.admin_get_json(http, "/v1/config").await;
        let sets = v["jwks"].as_array()?;
        (sets.len() == n && sets.iter().all(|s| s["loaded"] == true)).then_some(())
    })
    .await;
}

async fn get(
    http: &reqwest::Client,
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = http.get(gw.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_verified_and_claims_forwarded_on_both_engines() {
    trace_init();
    let m = mint();
    let doc = Arc::new(Mutex::new(Some(m.jwks_a.clone())));
    let jwks = jwks_server(doc.clone()).await;
    let up = upstream().await;
    let url = format!("http://{}/jwks.json", jwks.addr);
    let gw = Gateway::start(&jwt_config(&up, &url, "1h", "")).unwrap();
    let http = client();
    keys_loaded(&gw, &http).await;

    // A valid token of every algorithm the gateway verifies passes (RSA, RSA-PSS, two curves,
    // Ed25519, an HMAC secret, and a key that declares its algorithm); the claims go upstream
    // as headers, the client's own copies of those headers (in any spelling) and Authorization
    // do not.
    let one_per_algorithm = [
        "valid",
        "valid_rs384",
        "valid_rs512",
        "valid_ps256",
        "valid_es256",
        "valid_es384",
        "valid_eddsa",
        "valid_hs256",
        "valid_rs512_declared",
    ];
    for name in one_per_algorithm {
        let auth = bearer(&m.token(name));
        let r = get(
            &http,
            &gw,
            "/orders",
            &[
                ("authorization", &auth),
                ("x-user-sub", "mallory"),
                ("X_User_Sub", "mallory"),
                ("x-tenant", "evil"),
            ],
        )
        .await;
        assert_eq!(r.status(), 200, "{name}");
        let seen = up.last();
        assert_eq!(values(&seen, "x-user-sub"), ["alice"], "{name}: {seen:?}");
        assert_eq!(values(&seen, "x-tenant"), ["acme"]);
        assert!(values(&seen, "x_user_sub").is_empty(), "{seen:?}");
        assert!(values(&seen, "authorization").is_empty(), "stripped");
    }
    let passed = up.hits();

    // Every bad token: 401, RFC 6750 challenge, the gateway's JSON error; never upstream.
    for (name, reason) in [
        ("expired", "expired"),
        ("not_yet_valid", "not valid yet"),
        ("wrong_issuer", "issuer"),
        ("wrong_audience", "audience"),
        ("none", "algorithm"),
        ("hs_confusion", "algorithm"),
        ("rs256_on_rs512_key", "algorithm"),
        ("bad_signature", "signature"),
        ("hs256_wrong_secret", "signature"),
        ("unknown_kid", "key id"),
    ] {
        let auth = bearer(&m.token(name));
        let r = get(&http, &gw, "/orders", &[("authorization", &auth)]).await;
        assert_eq!(r.status(), 401, "{name}");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer realm=\"api-jwt\", error=\"invalid_token\"")
                && challenge.contains(reason),
            "{name}: {challenge}"
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "invalid_token", "{name}");
    }
    // No token: a challenge without an error code (RFC 6750 §3.1); a malformed header: 400.
    let r = get(&http, &gw, "/orders", &[]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"api-jwt\"");
    let r = get(&http, &gw, "/orders", &[("authorization", "Bearer")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_request\""));
    assert_eq!(up.hits(), passed, "no refused request reached the upstream");

    // The HTTP/2 path sees the same.
    let valid = bearer(&m.token("valid"));
    let expired = bearer(&m.token("expired"));
    let (status, _) = h2_once(
        &gw,
        "GET",
        "/orders",
        &[("authorization", &valid), ("x-user-sub", "mallory")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(values(&up.last(), "x-user-sub"), ["alice"]);
    let (status, headers) = h2_once(&gw, "GET", "/orders", &[("authorization", &expired)]).await;
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));

    let metrics = gw.admin_get_text(&http, "/metrics").await;
    for line in [
        format!(
            "meshgate_policy_decisions_total{{policy=\"api-jwt\",outcome=\"allowed\"}} {}",
            one_per_algorithm.len() + 1
        ),
        "meshgate_policy_decisions_total{policy=\"api-jwt\",outcome=\"expired\"} 2".into(),
        "meshgate_policy_decisions_total{policy=\"api-jwt\",outcome=\"bad_algorithm\"} 3".into(),
        "meshgate_policy_decisions_total{policy=\"api-jwt\",outcome=\"bad_signature\"} 2".into(),
        "meshgate_policy_decisions_total{policy=\"api-jwt\",outcome=\"missing_token\"} 1".into(),
        "meshgate_jwks_stale{policy=\"api-jwt\"} 0".into(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_once_for_its_unknown_kid_then_accepted() {
    trace_init();
    let m = mint();
    let doc = Arc::new(Mutex::new(Some(m.jwks_a.clone())));
    let jwks = jwks_server(doc.clone()).await;
    let up = upstream().await;
    let url = format!("http://{}/jwks.json", jwks.addr);
    // An hour between refreshes: only an unknown kid can make the gateway read the set again.
    let gw = Gateway::start(&jwt_config(&up, &url, "1h", "")).unwrap();
    let http = client();
    keys_loaded(&gw, &http).await;
    assert_eq!(jwks.hits(), 1);

    // The issuer rotates: key "b" is published, then tokens signed with it arrive.
    *doc.lock().unwrap() = Some(m.jwks_ab.clone());
    let rotated = bearer(&m.token("rotated"));
    let r = get(&http, &gw, "/orders", &[("authorization", &rotated)]).await;
    assert_eq!(
        r.status(),
        401,
        "the set does not hold b yet; the refetch is off the request path"
    );
    eventually("the rotated key is fetched and accepted", || async {
        let r = get(&http, &gw, "/orders", &[("authorization", &rotated)]).await;
        (r.status() == 200).then_some(())
    })
    .await;
    assert_eq!(jwks.hits(), 2, "one refetch for the unknown kid");
    // A flood of tokens naming another unknown kid causes no refetch within the interval.
    let stray = bearer(&m.token("unknown_kid"));
    for _ in 0..20 {
        let r = get(&http, &gw, "/orders", &[("authorization", &stray)]).await;
        assert_eq!(r.status(), 401);
    }
    // The flood's refetch requests, if any were made, would reach the server within moments:
    // the gateway's own counter says none was asked for.
    let v = gw.admin_get_json(&http, "/v1/config").await;
    assert_eq!(v["jwks"][0]["fetches"], 2, "{v}");
    assert_eq!(jwks.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_outage_keeps_the_last_good_keys_and_says_so() {
    trace_init();
    let m = mint();
    let doc = Arc::new(Mutex::new(Some(m.jwks_a.clone())));
    let jwks = jwks_server(doc.clone()).await;
    let up = upstream().await;
    let url = format!("http://{}/jwks.json", jwks.addr);
    let gw = Gateway::start(&jwt_config(&up, &url, "1s", "")).unwrap();
    let http = client();
    keys_loaded(&gw, &http).await;
    *doc.lock().unwrap() = None;
    let v = eventually("a failed refresh is reported", || async {
        let v = gw.admin_get_json(&http, "/v1/config").await;
        (v["jwks"][0]["stale"] == true).then_some(v)
    })
    .await;
    let status = &v["jwks"][0];
    assert_eq!(status["loaded"], true);
    assert!(
        status["last_error"].as_str().unwrap().contains("500"),
        "{status}"
    );
    let valid = bearer(&m.token("valid"));
    let r = get(&http, &gw, "/orders", &[("authorization", &valid)]).await;
    assert_eq!(r.status(), 200, "the last good keys still verify");
    let metrics = gw.admin_get_text(&http, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "meshgate_jwks_stale{policy=\"api-jwt\"} 1"),
        "{metrics}"
    );
    // Back up: the next refresh clears the flag.
    *doc.lock().unwrap() = Some(m.jwks_a.clone());
    eventually("the refresh succeeds again", || async {
        let v = gw.admin_get_json(&http, "/v1/config").await;
        (v["jwks"][0]["stale"] == false).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_never_reached_answers_503_with_retry_after() {
    trace_init();
    let m = mint();
    let up = upstream().await;
    let closed = super::client_faults::upstreams::closed_port();
    let url = format!("http://{closed}/jwks.json");
    let gw = Gateway::start(&jwt_config(&up, &url, "1s", "")).unwrap();
    let http = client();
    let valid = bearer(&m.token("valid"));
    let r = get(&http, &gw, "/orders", &[("authorization", &valid)]).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "jwks_unavailable");
    assert_eq!(up.hits(), 0);
    let v = gw.admin_get_json(&http, "/v1/config").await;
    assert_eq!(v["jwks"][0]["loaded"], false, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_keyed_by_a_claim_counts_each_subject() {
    trace_init();
    let m = mint();
    let doc = Arc::new(Mutex::new(Some(m.jwks_a.clone())));
    let jwks = jwks_server(doc).await;
    let up = upstream().await;
    let url = format!("http://{}/jwks.json", jwks.addr);
    let gw = Gateway::start(&jwt_config(&up, &url, "1h", "")).unwrap();
    let http = client();
    keys_loaded(&gw, &http).await;
    let alice = bearer(&m.token("valid"));
    let bob = bearer(&m.token("valid_bob"));
    for _ in 0..2 {
        let r = get(&http, &gw, "/limited", &[("authorization", &alice)]).await;
        assert_eq!(r.status(), 200);
    }
    let r = get(&http, &gw, "/limited", &[("authorization", &alice)]).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"per-sub\";r=0"));
    // Bob has his own bucket, over HTTP/2 too; a bad token is refused before any bucket.
    let (status, _) = h2_once(&gw, "GET", "/limited", &[("authorization", &bob)]).await;
    assert_eq!(status, 200);
    let expired = bearer(&m.token("expired"));
    let r = get(&http, &gw, "/limited", &[("authorization", &expired)]).await;
    assert_eq!(r.status(), 401);
}

/// Routes beside [`jwt_config`]'s: `/lenient` under a jwt policy with a leeway of an hour that
/// accepts RS256 only, and `/browser` under CORS, a per-address limit of 3 an hour and the
/// usual jwt policy, listed in the reverse of the order they run in.
fn chain_routes(jwks_url: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"lenient\"\npath_prefix = \"/lenient\"\npolicies = [\"lenient-jwt\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[[routes]]\nname = \"browser\"\npath_prefix = \"/browser\"\npolicies = [\"api-jwt\", \"per-ip\", \"web\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[policies.lenient-jwt]\nkind = \"jwt\"\njwks_url = \"{jwks_url}\"\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\nleeway = \"1h\"\nalgorithms = [\"RS256\"]\n\n[policies.per-ip]\nkind = \"rate_limit\"\nrate = \"3/h\"\nkey = \"client_ip\"\n\n[policies.web]\nkind = \"cors\"\nallow_origins = [\"https://app.example.com\"]\nallow_credentials = true\n"
    )
}

/// The sum of `meshgate_policy_decisions_total` of `policy`, over every outcome.
fn decisions(metrics: &str, policy: &str) -> u64 {
    let prefix = format!("meshgate_policy_decisions_total{{policy=\"{policy}\",");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leeway_accepts_a_token_expired_within_it_and_refuses_one_beyond() {
    trace_init();
    let m = mint();
    let doc = Arc::new(Mutex::new(Some(m.jwks_a.clone())));
    let jwks = jwks_server(doc).await;
    let up = upstream().await;
    let url = format!("http://{}/jwks.json", jwks.addr);
    let gw = Gateway::start(&jwt_config(&up, &url, "1h", &chain_routes(&url))).unwrap();
    let http = client();
    all_keys_loaded(&gw, &http, 2).await;
    // Half an hour past exp, or half an hour before nbf: within the hour's leeway. Two hours:
    // beyond it. The tokens' times are half an hour from the edges, so no clock matters.
    for (name, status, reason) in [
        ("expired_30m", 200, ""),
        ("nbf_in_30m", 200, ""),
        ("expired_2h", 401, "expired"),
        ("nbf_in_2h", 401, "not valid yet"),
        // The allow-list of this policy holds RS256 only.
        ("valid_es256", 401, "algorithm"),
    ] {
        let auth = bearer(&m.token(name));
        let r = get(&http, &gw, "/lenient", &[("authorization", &auth)]).await;
        assert_eq!(r.status(), status, "{name}");
        if status == 401 {
            let challenge = r.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.contains(reason), "{name}: {challenge}");
        }
    }
    assert_eq!(up.hits(), 2);
    // The same tokens under the policy with a leeway of 5 s: refused.
    for name in ["expired_30m", "nbf_in_30m"] {
        let auth = bearer(&m.token(name));
        let r = get(&http, &gw, "/orders", &[("authorization", &auth)]).await;
        assert_eq!(r.status(), 401, "{name} without the leeway");
    }
    assert_eq!(up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_carries_cors_and_ratelimit_headers_and_the_limit_runs_before_the_token_check() {
    trace_init();
    let m = mint();
    let doc = Arc::new(Mutex::new(Some(m.jwks_a.clone())));
    let jwks = jwks_server(doc).await;
    let up = upstream().await;
    let url = format!("http://{}/jwks.json", jwks.addr);
    let gw = Gateway::start(&jwt_config(&up, &url, "1h", &chain_routes(&url))).unwrap();
    let http = client();
    all_keys_loaded(&gw, &http, 2).await;
    let origin = ("origin", "https://app.example.com");

    // Three bad tokens within the limit: 401s a browser can read, with the limit's headers.
    for (left, name) in [(2, "expired"), (1, "bad_signature"), (0, "none")] {
        let auth = bearer(&m.token(name));
        let r = get(&http, &gw, "/browser", &[origin, ("authorization", &auth)]).await;
        assert_eq!(r.status(), 401, "{name}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert!(
            h.get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("Origin")),
            "{h:?}"
        );
        assert_eq!(h["ratelimit-policy"], "\"per-ip\";q=3;w=3600");
        assert_eq!(
            h["ratelimit"].to_str().unwrap(),
            format!("\"per-ip\";r={left};t={}", 1200 * (3 - left)),
            "{name}"
        );
        assert!(h["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\""));
    }
    let metrics = gw.admin_get_text(&http, "/metrics").await;
    assert_eq!(decisions(&metrics, "api-jwt"), 3, "{metrics}");

    // Over the limit, bad tokens and a good one alike get 429 (with the CORS headers): the
    // limit runs first, so none of these tokens is even parsed.
    let mut flood: Vec<String> = ["bad_signature", "hs_confusion", "unknown_kid", "expired"]
        .iter()
        .cycle()
        .take(20)
        .map(|n| bearer(&m.token(n)))
        .collect();
    flood.push(bearer(&m.token("valid")));
    for auth in &flood {
        let r = get(&http, &gw, "/browser", &[origin, ("authorization", auth)]).await;
        assert_eq!(r.status(), 429);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert!(h.contains_key("retry-after"));
        assert!(h["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"per-ip\";r=0;"));
        assert!(!h.contains_key("www-authenticate"), "{h:?}");
    }
    // HTTP/2 sees the same order.
    let (status, headers) = h2_once(
        &gw,
        "GET",
        "/browser",
        &[origin, ("authorization", flood[0].as_str())],
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    // A preflight comes before the limit: still answered.
    let r = http
        .request(reqwest::Method::OPTIONS, gw.url("/browser"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let metrics = gw.admin_get_text(&http, "/metrics").await;
    assert_eq!(
        decisions(&metrics, "api-jwt"),
        3,
        "no token over the limit was checked:\n{metrics}"
    );
    for line in [
        "meshgate_policy_decisions_total{policy=\"per-ip\",outcome=\"allowed\"} 3",
        "meshgate_policy_decisions_total{policy=\"per-ip\",outcome=\"limited\"} 22",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
}

/// An auth service: `Bearer allow` → 200 with `X-Auth-User: alice`; `Bearer deny` → 401 with
/// a body and `WWW-Authenticate`; `Bearer redirect` → 302 to a login page; `Bearer boom` →
/// 500; `Bearer slow` → answers after 3 s; `Bearer reader` → 200 for a `GET`, 403 otherwise.
async fn auth_service() -> Server {
    Server::start(|_, seen: Seen| async move {
        let auth = values(&seen, "authorization").join(",");
        let method = values(&seen, "x-forwarded-method").join(",");
        match auth.as_str() {
            "Bearer reader" if method == "GET" => (200, vec![], String::new()),
            "Bearer reader" => (403, vec![], "{\"title\":\"read only\"}".into()),
            "Bearer allow" | "Bearer other" => (
                200,
                vec![
                    ("x-auth-user", "alice".into()),
                    ("x-auth-secret-internal", "no".into()),
                ],
                String::new(),
            ),
            "Bearer redirect" => (
                302,
                vec![("location", "https://login.example/?next=/orders".into())],
                String::new(),
            ),
            "Bearer boom" => (500, vec![], "broken".into()),
            "Bearer slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                (200, vec![], String::new())
            }
            _ => (
                401,
                vec![
                    (
                        "www-authenticate",
                        "Bearer realm=\"auth\", error=\"invalid_token\"".into(),
                    ),
                    ("content-type", "application/problem+json".into()),
                ],
                "{\"title\":\"who are you\"}".into(),
            ),
        }
    })
    .await
}

fn forward_auth_config(up: &Server, auth: SocketAddr) -> String {
    let dead = super::client_faults::upstreams::closed_port();
    format!(
        "[services.up]\nendpoints = [\"{}\"]\n\n[services.auth]\nendpoints = [\"{auth}\"]\n\n[services.auth-dead]\nendpoints = [\"{dead}\"]\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/orders\"\npolicies = [\"fa\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[[routes]]\nname = \"cached\"\npath_prefix = \"/cached\"\npolicies = [\"fa-cached\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[[routes]]\nname = \"closed\"\npath_prefix = \"/closed\"\npolicies = [\"fa-dead\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\npolicies = [\"fa-dead-open\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[policies.fa]\nkind = \"forward_auth\"\nservice = \"auth\"\npath = \"/check\"\ntimeout = \"500ms\"\nrequest_headers = [\"authorization\"]\nresponse_headers = [\"x-auth-user\"]\n\n[policies.fa-cached]\nkind = \"forward_auth\"\nservice = \"auth\"\npath = \"/check\"\nresponse_headers = [\"x-auth-user\"]\ncache_ttl = \"1m\"\ncache_key = [\"authorization\"]\n\n[policies.fa-dead]\nkind = \"forward_auth\"\nservice = \"auth-dead\"\n\n[policies.fa-dead-open]\nkind = \"forward_auth\"\nservice = \"auth-dead\"\nfailure_mode_allow = true\n",
        up.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_allows_denies_redirects_and_fails_closed() {
    trace_init();
    let up = upstream().await;
    let auth = auth_service().await;
    let gw = Gateway::start(&forward_auth_config(&up, auth.addr)).unwrap();
    let http = client();

    // Allow: the auth service saw the gateway's X-Forwarded-* and only the chosen client
    // header; the upstream gets the auth service's X-Auth-User, never the client's.
    let r = get(
        &http,
        &gw,
        "/orders/7?full=1",
        &[
            ("authorization", "Bearer allow"),
            ("cookie", "session=secret"),
            ("X_Auth_User", "mallory"),
            ("x-auth-user", "eve"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-meshgate-auth-failure-mode-allowed", "true"),
        ],
    )
    .await;
    assert_eq!(r.status(), 200);
    let asked = auth.last();
    assert_eq!(values(&asked, "x-forwarded-method"), ["GET"]);
    assert_eq!(values(&asked, "x-forwarded-uri"), ["/orders/7?full=1"]);
    assert_eq!(values(&asked, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        values(&asked, "x-forwarded-for"),
        ["127.0.0.1"],
        "built by the gateway"
    );
    assert_eq!(values(&asked, "x-forwarded-host"), [gw.addr.to_string()]);
    assert_eq!(values(&asked, "authorization"), ["Bearer allow"]);
    assert!(values(&asked, "cookie").is_empty(), "{asked:?}");
    assert!(values(&asked, "x_auth_user").is_empty());
    let seen = up.last();
    assert_eq!(values(&seen, "x-auth-user"), ["alice"], "{seen:?}");
    assert!(values(&seen, "x_auth_user").is_empty(), "{seen:?}");
    assert!(
        values(&seen, "x-auth-secret-internal").is_empty(),
        "only chosen headers"
    );
    assert!(values(&seen, "x-meshgate-auth-failure-mode-allowed").is_empty());
    let upstream_hits = up.hits();

    // Deny: the auth service's status, headers and body go back; the upstream is not called.
    let r = get(&http, &gw, "/orders/7", &[("authorization", "Bearer nope")]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"auth\", error=\"invalid_token\""
    );
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.text().await.unwrap(), "{\"title\":\"who are you\"}");
    // A redirect goes back as it came.
    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = get(
        &no_follow,
        &gw,
        "/orders/7",
        &[("authorization", "Bearer redirect")],
    )
    .await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://login.example/?next=/orders"
    );
    // 5xx and timeout: 503, fail closed.
    for token in ["Bearer boom", "Bearer slow"] {
        let r = get(&http, &gw, "/orders/7", &[("authorization", token)]).await;
        assert_eq!(r.status(), 503, "{token}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "auth_unavailable");
    }
    // Down: 503; down with failure_mode_allow: on, marked.
    let r = get(&http, &gw, "/closed", &[("authorization", "Bearer allow")]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(
        up.hits(),
        upstream_hits,
        "nothing refused reached the upstream"
    );
    let r = get(
        &http,
        &gw,
        "/open",
        &[("x-meshgate-auth-failure-mode-allowed", "false")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        values(&up.last(), "x-meshgate-auth-failure-mode-allowed"),
        ["true"]
    );

    // HTTP/2: the same decisions.
    let (status, _) = h2_once(
        &gw,
        "GET",
        "/orders/1",
        &[("authorization", "Bearer allow"), ("x-auth-user", "eve")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(values(&up.last(), "x-auth-user"), ["alice"]);
    let (status, headers) =
        h2_once(&gw, "GET", "/orders/1", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));

    let metrics = gw.admin_get_text(&http, "/metrics").await;
    for line in [
        "meshgate_policy_decisions_total{policy=\"fa\",outcome=\"allowed\"} 2",
        "meshgate_policy_decisions_total{policy=\"fa\",outcome=\"denied\"} 3",
        "meshgate_policy_decisions_total{policy=\"fa\",outcome=\"failed_closed\"} 2",
        "meshgate_policy_decisions_total{policy=\"fa-dead-open\",outcome=\"failed_open\"} 1",
        "meshgate_forward_auth_duration_seconds_count{policy=\"fa\"} 7",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_caches_allows_by_the_chosen_headers_and_never_denials() {
    trace_init();
    let up = upstream().await;
    let auth = auth_service().await;
    let gw = Gateway::start(&forward_auth_config(&up, auth.addr)).unwrap();
    let http = client();
    for _ in 0..3 {
        let r = get(
            &http,
            &gw,
            "/cached/a",
            &[("authorization", "Bearer allow")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            values(&up.last(), "x-auth-user"),
            ["alice"],
            "cached headers applied"
        );
    }
    assert_eq!(auth.hits(), 1, "the allow was cached");
    let (status, _) = h2_once(
        &gw,
        "GET",
        "/cached/a",
        &[("authorization", "Bearer allow")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(auth.hits(), 1, "HTTP/2 shares the cache");
    // The key is the request as the auth service saw it (method, host, path and query) plus
    // the chosen headers: another path, query, key or method asks again.
    for (path, key) in [
        ("/cached/b", "Bearer allow"),
        ("/cached/a?page=2", "Bearer allow"),
        ("/cached/a", "Bearer other"),
    ] {
        let before = auth.hits();
        let r = get(&http, &gw, path, &[("authorization", key)]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(auth.hits(), before + 1, "{path} with {key} asks again");
    }
    let r = get(
        &http,
        &gw,
        "/cached/a",
        &[("authorization", "Bearer reader")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(auth.hits(), 5);
    // An allow for GET /cached/a never allows DELETE /cached/b, nor DELETE /cached/a.
    for path in ["/cached/b", "/cached/a", "/cached/a"] {
        let r = http
            .delete(gw.url(path))
            .header("authorization", "Bearer reader")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "DELETE {path}");
    }
    assert_eq!(auth.hits(), 8, "each DELETE asked; denials are not cached");
    let upstream_hits = up.hits();
    for _ in 0..2 {
        let r = get(&http, &gw, "/cached/a", &[("authorization", "Bearer nope")]).await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(auth.hits(), 10, "denials are not cached");
    assert_eq!(
        up.hits(),
        upstream_hits,
        "no denied request reached the upstream"
    );
    let metrics = gw.admin_get_text(&http, "/metrics").await;
    for line in [
        "meshgate_policy_decisions_total{policy=\"fa-cached\",outcome=\"allowed_cached\"} 3",
        "meshgate_forward_auth_cache_entries{policy=\"fa-cached\"} 5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_token_is_remembered_until_its_key_leaves_the_set() {
    trace_init();
    let m = mint();
    let doc = Arc::new(Mutex::new(Some(m.jwks_ab.clone())));
    let jwks = jwks_server(doc.clone()).await;
    let up = upstream().await;
    let url = format!("http://{}/jwks.json", jwks.addr);
    let gw = Gateway::start(&jwt_config(&up, &url, "1s", "")).unwrap();
    let http = client();
    keys_loaded(&gw, &http).await;

    // Key "b" signs the token. Its first request verifies it; the next two find it verified,
    // on both engines.
    let token = bearer(&m.token("rotated"));
    for _ in 0..2 {
        let r = get(&http, &gw, "/orders", &[("authorization", &token)]).await;
        assert_eq!(r.status(), 200);
    }
    let (status, _) = h2_once(&gw, "GET", "/orders", &[("authorization", &token)]).await;
    assert_eq!(status, 200);
    let v = gw.admin_get_json(&http, "/v1/config").await;
    assert_eq!(v["jwks"][0]["token_cache_hits"], 2, "{v}");
    assert_eq!(v["jwks"][0]["token_cache_entries"], 1, "{v}");
    let metrics = gw.admin_get_text(&http, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "meshgate_jwt_token_cache_hits_total{policy=\"api-jwt\"} 2"),
        "{metrics}"
    );

    // The issuer retires key "b": once the gateway has read the new set, the remembered token
    // is refused like any token of a key it does not hold.
    *doc.lock().unwrap() = Some(m.jwks_a.clone());
    let without_b = serde_json::from_str::<Value>(&m.jwks_a).unwrap()["keys"]
        .as_array()
        .unwrap()
        .len();
    eventually("the set without b is read", || async {
        let v = gw.admin_get_json(&http, "/v1/config").await;
        (v["jwks"][0]["keys"] == without_b).then_some(())
    })
    .await;
    let r = get(&http, &gw, "/orders", &[("authorization", &token)]).await;
    assert_eq!(
        r.status(),
        401,
        "a retired key's token is not served from the cache"
    );
    let v = gw.admin_get_json(&http, "/v1/config").await;
    assert_eq!(v["jwks"][0]["token_cache_hits"], 2, "{v}");
}

/// Forward auth to a Consul-discovered service of two instances, balanced round robin.
fn consul_auth_config(dc: &DevConsul, up: &Server) -> String {
    format!(
        "[consul]\naddress = \"{}\"\nwait = \"5s\"\nbackoff_max = \"1s\"\ncache_file = \"discovery.json\"\n\n[services.up]\nendpoints = [\"{}\"]\n\n[services.auth]\nconsul = {{ service = \"auth\" }}\nbalance = \"round_robin\"\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/orders\"\npolicies = [\"fa\"]\nbackends = [{{ name = \"up\", weight = 1 }}]\n\n[policies.fa]\nkind = \"forward_auth\"\nservice = \"auth\"\npath = \"/check\"\nrequest_headers = [\"authorization\"]\nresponse_headers = [\"x-auth-user\"]\n",
        dc.url(),
        up.addr
    )
}

/// Addresses of the endpoints the gateway holds for `service`.
async fn endpoint_addrs(gw: &Gateway, http: &reqwest::Client, service: &str) -> Vec<String> {
    let u: Value = gw.admin_get_json(http, "/v1/upstreams").await;
    let mut out: Vec<String> = u
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["service"] == service)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["addr"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_to_a_consul_service_is_balanced_pooled_and_outlives_an_instance() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let up = upstream().await;
    let (one, two) = (auth_service().await, auth_service().await);
    dc.register("auth-1", "auth", &[], one.addr).await.unwrap();
    dc.register("auth-2", "auth", &[], two.addr).await.unwrap();
    let gw = Gateway::start(&consul_auth_config(&dc, &up)).unwrap();
    let http = client();
    let mut both = vec![one.addr.to_string(), two.addr.to_string()];
    both.sort();
    eventually("the gateway holds both auth instances", || async {
        (endpoint_addrs(&gw, &http, "auth").await == both).then_some(())
    })
    .await;

    // Balanced: round robin alternates between the two (each worker's pick interleaves with
    // the other's, so they differ by the workers' count at most). Pooled: each worker keeps
    // one connection to each instance, far fewer than the requests.
    const N: usize = 40;
    for _ in 0..N {
        let r = get(
            &http,
            &gw,
            "/orders/1",
            &[("authorization", "Bearer allow")],
        )
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(values(&up.last(), "x-auth-user"), ["alice"]);
    }
    let (h1, h2) = (one.hits(), two.hits());
    assert_eq!(h1 + h2, N);
    assert!(h1.abs_diff(h2) <= 2, "balanced: {h1} and {h2}");
    let conns = one.connections() + two.connections();
    assert!(
        (2..=4).contains(&conns),
        "{conns} connections for {N} subrequests: pooled, one per worker and instance at most"
    );
    // A denial from either instance goes back as it came.
    for _ in 0..2 {
        let r = get(&http, &gw, "/orders/1", &[("authorization", "Bearer nope")]).await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.text().await.unwrap(), "{\"title\":\"who are you\"}");
    }
    assert_eq!(one.hits() + two.hits(), N + 2);

    // Instance one goes away: its process stops (its connections close) and its check fails.
    let gone = one.addr.to_string();
    drop(one);
    dc.check("auth-1", "fail").await.unwrap();
    eventually("the gateway drops the failed instance", || async {
        (endpoint_addrs(&gw, &http, "auth").await == [two.addr.to_string()]).then_some(())
    })
    .await;
    let (before, conns_before) = (two.hits(), two.connections());
    for _ in 0..N {
        let r = get(
            &http,
            &gw,
            "/orders/2",
            &[("authorization", "Bearer allow")],
        )
        .await;
        assert_eq!(r.status(), 200, "auth through the remaining instance");
    }
    assert_eq!(two.hits(), before + N, "all to the instance left");
    assert_eq!(
        two.connections(),
        conns_before,
        "its pooled connections still serve"
    );
    let metrics = gw.admin_get_text(&http, "/metrics").await;
    let sample = |outcome: &str| {
        super::client_faults::sample(
            &metrics,
            &format!("meshgate_policy_decisions_total{{policy=\"fa\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(sample("allowed"), (2 * N) as f64, "{metrics}");
    assert_eq!(
        sample("failed_closed"),
        0.0,
        "{gone} left without a failed request:\n{metrics}"
    );
}
