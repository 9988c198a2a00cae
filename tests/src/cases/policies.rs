//! Route policies through the running gateway, on the HTTP/1.1 engine and the HTTP/2 path: rate
//! limits answer 429 with `Retry-After` and the IETF `RateLimit` headers (checked with a
//! Structured Fields parser) while another key keeps its rate; CORS preflights are answered at
//! the gateway and refused ones never reach the upstream; the CORS headers are on the gateway's
//! own errors too.

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use serde_json::Value;

use super::support::{client, h2_once, service};

const POLICIES: &str = "[policies.per-key]\nkind = \"rate_limit\"\nrate = \"3/m\"\nkey = \"header:x-api-key\"\n\n[policies.web]\nkind = \"cors\"\nallow_origins = [\"https://app.example.com\", \"https://*.shop.example\"]\nallow_methods = [\"GET\", \"PUT\"]\nallow_headers = [\"content-type\"]\nallow_credentials = true\nmax_age = \"10m\"\nexpose_headers = [\"x-request-id\"]\n";

fn config(o: &Origin) -> String {
    format!(
        "{}[[routes]]\nname = \"api\"\npolicies = [\"per-key\", \"web\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[[routes]]\nname = \"down\"\npath_prefix = \"/down\"\npolicies = [\"web\"]\nbackends = [{{ name = \"dead\", weight = 1 }}]\n\n[services.dead]\nendpoints = [\"{}\"]\n\n{POLICIES}",
        service("o", &[o], "round_robin"),
        super::client_faults::upstreams::closed_port(),
    )
}

/// The `RateLimit` field's string and its `r` and `t` parameters, parsed as a Structured Field
/// List of one member.
fn ratelimit(v: &str) -> (String, i64, i64) {
    let mut p = sfparse::Parser::new(v.as_bytes());
    let Ok(Some(sfparse::Value::String { range, .. })) = p.parse_list() else {
        panic!("not a Structured Fields list of a string: {v}")
    };
    let name = v[range].to_string();
    let (mut r, mut t) = (-1, -1);
    while let Ok(Some((k, value))) = p.parse_param() {
        match (k, value) {
            ("r", sfparse::Value::Integer(n)) => r = n,
            ("t", sfparse::Value::Integer(n)) => t = n,
            ("q" | "w", sfparse::Value::Integer(_)) => {}
            other => panic!("unexpected parameter {other:?} in {v}"),
        }
    }
    (name, r, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_answers_429_with_its_headers_while_another_key_keeps_its_rate() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    let http = client();
    for left in [2, 1, 0] {
        let r = http
            .get(gw.url("/a"))
            .header("x-api-key", "alice")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (name, remaining, _) = ratelimit(r.headers()["ratelimit"].to_str().unwrap());
        assert_eq!((name.as_str(), remaining), ("per-key", left));
        assert_eq!(r.headers()["ratelimit-policy"], "\"per-key\";q=3;w=60");
    }
    let r = http
        .get(gw.url("/a"))
        .header("x-api-key", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    let (_, remaining, reset) = ratelimit(r.headers()["ratelimit"].to_str().unwrap());
    assert_eq!(remaining, 0);
    assert!(reset >= 1);
    assert_eq!(r.headers()["x-meshgate-error"], "rate_limited");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "rate_limited");
    assert_eq!(
        o.hits(),
        3,
        "the limited request never reached the upstream"
    );
    // Another key keeps its full rate, over HTTP/2 as well.
    for _ in 0..3 {
        let (status, headers) = h2_once(&gw, "GET", "/a", &[("x-api-key", "bob")]).await;
        assert_eq!(status, 200);
        assert!(headers.contains_key("ratelimit"));
    }
    let (status, _) = h2_once(&gw, "GET", "/a", &[("x-api-key", "bob")]).await;
    assert_eq!(status, 429);
    let m = gw.admin_get_text(&http, "/metrics").await;
    for line in [
        "meshgate_policy_decisions_total{policy=\"per-key\",outcome=\"allowed\"} 6",
        "meshgate_policy_decisions_total{policy=\"per-key\",outcome=\"limited\"} 2",
        "meshgate_ratelimit_keys{policy=\"per-key\"} 2",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_at_the_gateway() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    let http = client();
    let preflight = |origin: &'static str, method: &'static str| {
        http.request(reqwest::Method::OPTIONS, gw.url("/a"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let r = preflight("https://app.example.com", "PUT").await.unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(h["access-control-allow-headers"], "content-type");
    assert_eq!(h["access-control-max-age"], "600");
    let r = preflight("https://a.shop.example", "GET").await.unwrap();
    assert_eq!(r.status(), 204);
    for (origin, method) in [
        ("https://evil.net", "PUT"),
        ("https://app.example.com.evil.net", "GET"),
        ("https://app.example.com", "DELETE"),
    ] {
        let r = preflight(origin, method).await.unwrap();
        assert_eq!(r.status(), 403, "{origin} {method}");
        assert!(
            r.headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-allow")),
            "{:?}",
            r.headers()
        );
    }
    assert_eq!(o.hits(), 0, "no preflight reached the upstream");
    // Over HTTP/2 too.
    let (status, headers) = h2_once(
        &gw,
        "OPTIONS",
        "/a",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "PUT"),
        ],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let m = gw.admin_get_text(&http, "/metrics").await;
    for line in [
        "meshgate_policy_decisions_total{policy=\"web\",outcome=\"preflight_allowed\"} 3",
        "meshgate_policy_decisions_total{policy=\"web\",outcome=\"preflight_refused\"} 3",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} in:\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_go_on_answers_and_on_the_gateways_own_errors() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    let http = client();
    let r = http
        .get(gw.url("/a"))
        .header("origin", "https://app.example.com")
        .header("x-api-key", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["access-control-expose-headers"], "x-request-id");
    assert!(r.headers()["vary"].to_str().unwrap().contains("Origin"));
    // A refused origin gets no Access-Control-Allow-*, but the answer all the same.
    let r = http
        .get(gw.url("/a"))
        .header("origin", "https://evil.net")
        .header("x-api-key", "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // The gateway's own 502 carries them, so a browser can read it.
    for over_h2 in [false, true] {
        let headers = if over_h2 {
            h2_once(
                &gw,
                "GET",
                "/down",
                &[("origin", "https://app.example.com")],
            )
            .await
            .1
        } else {
            let r = http
                .get(gw.url("/down"))
                .header("origin", "https://app.example.com")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 502);
            r.headers().clone()
        };
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(headers["x-meshgate-error"], "upstream_connect_failed");
    }
}

/// True when a line of `out` contains every one of `words`.
fn line_in(out: &str, words: &[&str]) -> bool {
    out.lines().any(|l| words.iter().all(|w| l.contains(w)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gwctl_shows_a_routes_policies_and_their_decisions() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    let http = client();
    for _ in 0..5 {
        http.get(gw.url("/a"))
            .header("x-api-key", "carol")
            .send()
            .await
            .unwrap();
    }
    let refused = http
        .request(reqwest::Method::OPTIONS, gw.url("/a"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let gwctl = meshgate_e2e::harness::gwctl::Gwctl::new(&gw);

    let run = gwctl.run(&["routes", "api", "--json"]).await;
    let v = run.expect_code(0).json();
    assert_eq!(v["route"]["name"], "api", "{v}");
    let p = v["policies"].as_array().unwrap();
    assert_eq!(p.len(), 2, "{v}");
    assert_eq!(
        (p[0]["name"].as_str(), p[0]["kind"].as_str()),
        (Some("per-key"), Some("rate_limit"))
    );
    assert_eq!(p[0]["summary"], "3/m burst 3");
    assert_eq!(
        p[0]["decisions"],
        serde_json::json!({"allowed": 3, "limited": 2})
    );
    assert_eq!(
        (p[1]["name"].as_str(), p[1]["kind"].as_str()),
        (Some("web"), Some("cors"))
    );
    assert_eq!(
        p[1]["decisions"],
        serde_json::json!({"preflight_allowed": 0, "preflight_refused": 1})
    );

    let text = gwctl.run(&["routes", "api"]).await;
    let out = &text.expect_code(0).stdout;
    let line = |words: &[&str]| line_in(out, words);
    assert!(line(&["POLICY", "KIND", "SETTINGS", "DECISIONS"]), "{out}");
    assert!(
        line(&[
            "per-key",
            "rate_limit",
            "3/m burst 3",
            "allowed 3 · limited 2"
        ]),
        "{out}"
    );
    assert!(line(&["web", "cors", "preflight_refused 1"]), "{out}");
    // Another route lists only its own; an unknown one fails naming it.
    let down = gwctl.run(&["routes", "down"]).await;
    let out = &down.expect_code(0).stdout;
    assert!(
        line_in(out, &["web", "cors"]) && !out.contains("per-key"),
        "{out}"
    );
    let missing = gwctl.run(&["routes", "nope"]).await;
    missing.expect_code(1);
    assert!(missing.stderr.contains("nope"), "{missing}");
}

/// The 1-based line of the gateway's config file that contains `needle`.
fn line_of(gw: &Gateway, needle: &str) -> usize {
    let text = std::fs::read_to_string(gw.dir.join("gatewayd.toml")).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in:\n{text}"))
        + 1
}

/// One request with a key and an origin: status, `RateLimit-Policy`, `RateLimit` and
/// `Access-Control-Allow-Origin` (empty when absent).
async fn answer(
    http: &reqwest::Client,
    gw: &Gateway,
    key: &str,
    origin: &str,
) -> (u16, String, String, String) {
    let r = http
        .get(gw.url("/a"))
        .header("x-api-key", key)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .map_or(String::new(), |v| v.to_str().unwrap().to_string())
    };
    (
        r.status().as_u16(),
        h("ratelimit-policy"),
        h("ratelimit"),
        h("access-control-allow-origin"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_bad_policies_is_refused_naming_file_line_and_field_and_the_old_ones_serve() {
    trace_init();
    let o = Origin::start("o").await;
    let gw = Gateway::start(&config(&o)).unwrap();
    let http = client();
    let app = "https://app.example.com";
    let (status, policy, _, allowed) = answer(&http, &gw, "dave", app).await;
    assert_eq!((status, policy.as_str()), (200, "\"per-key\";q=3;w=60"));
    assert_eq!(allowed, app);

    // The new file changes both policies, each in a way validation refuses: a rate with no
    // unit, and any origin together with credentials.
    let bad = config(&o)
        .replace("rate = \"3/m\"", "rate = \"30/fortnight\"")
        .replace(
            "allow_origins = [\"https://app.example.com\", \"https://*.shop.example\"]",
            "allow_origins = [\"*\"]",
        );
    assert_ne!(bad, config(&o));
    gw.write_config(&bad).unwrap();
    let status: Value = eventually("the bad policies to be reported", || async {
        let v = gw.admin_get_json(&http, "/v1/config").await;
        (v["last_reload"]["ok"] == false).then_some(v)
    })
    .await;
    let errors: Vec<&str> = status["last_reload"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    let rate_line = line_of(&gw, "rate = \"30/fortnight\"");
    let origins_line = line_of(&gw, "allow_origins = [\"*\"]");
    for (line, field, reason) in [
        (
            rate_line,
            "policies.per-key.rate",
            "is not COUNT/s, /m, /h or /d",
        ),
        (
            origins_line,
            "policies.web.allow_origins",
            "cannot be used with allow_credentials",
        ),
    ] {
        // FILE:LINE:COLUMN: FIELD: REASON
        let (at, named) = (format!("gatewayd.toml:{line}:"), format!(": {field}: "));
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&at) && e.contains(&named) && e.contains(reason)),
            "{at}…{named}…{reason} not in {errors:?}"
        );
    }
    assert!(gw.logged("config rejected; keeping previous"));

    // The old policies keep answering as before, with the same buckets: dave's second and
    // third requests, then his 429; an origin the new file would have allowed is still refused.
    for left in [1, 0] {
        let (status, policy, now, allowed) = answer(&http, &gw, "dave", app).await;
        assert_eq!((status, policy.as_str()), (200, "\"per-key\";q=3;w=60"));
        assert!(now.starts_with(&format!("\"per-key\";r={left};")), "{now}");
        assert_eq!(allowed, app);
    }
    let (status, _, now, _) = answer(&http, &gw, "dave", app).await;
    assert_eq!(status, 429);
    assert!(now.starts_with("\"per-key\";r=0;"), "{now}");
    let (status, _, _, allowed) = answer(&http, &gw, "erin", "https://evil.net").await;
    assert_eq!(status, 200);
    assert_eq!(allowed, "", "the old CORS rules still refuse this origin");
    assert_eq!(o.hits(), 4);
}
