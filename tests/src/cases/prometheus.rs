//! The ecosystem's own tools on meshgate's metrics: `promtool` checks the exposition, the alert
//! rules and their unit tests; a real Prometheus scraping a gatewayd under known traffic answers
//! the request rate, the 5xx ratio and the p99 of each route as the test sent them, and every
//! expression of the Grafana dashboard and of the alert rules returns data there.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::prometheus::{free_port, promtool, value, Prometheus};
use meshgate_e2e::harness::{tls, trace_init, Gateway, Origin, OriginKind};
use reqwest::Method;
use serde_json::Value;

use super::support::client;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn alert_rules() -> Vec<serde_yaml::Value> {
    let text =
        std::fs::read_to_string(repo().join("deploy/prometheus/meshgate-alerts.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut rules = Vec::new();
    for g in doc["groups"].as_sequence().unwrap() {
        rules.extend(g["rules"].as_sequence().unwrap().iter().cloned());
    }
    assert!(!rules.is_empty());
    rules
}

/// GitHub's anchor of a markdown heading line.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn alert_rules_pass_promtool_their_unit_tests_and_link_runbooks() {
    let dir = repo().join("deploy/prometheus");
    let (ok, out) = promtool(&dir, &["check", "rules", "meshgate-alerts.yml"], None);
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = promtool(&dir, &["test", "rules", "meshgate-alerts.test.yml"], None);
    assert!(ok, "promtool test rules:\n{out}");
    let ops = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    let anchors: HashSet<String> = ops
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(anchor)
        .collect();
    let tests = std::fs::read_to_string(dir.join("meshgate-alerts.test.yml")).unwrap();
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or("");
        let section = url
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not docs/operations.md#…"));
        assert!(
            anchors.contains(section),
            "{name}: no heading in docs/operations.md has the anchor #{section}"
        );
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no promtool unit test"
        );
    }
}

/// What the test sent to one route: answers by status class (1xx..5xx).
type Sent = BTreeMap<&'static str, [u64; 5]>;

async fn send(http: &reqwest::Client, sent: &mut Sent, route: &'static str, url: String) {
    let status = http.get(url).send().await.unwrap().status().as_u16();
    sent.entry(route).or_default()[usize::from(status / 100 - 1)] += 1;
}

/// A certificate for `expiring.test` that expires in a day, by the real `openssl`.
fn expiring_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("expiring.pem"), dir.join("expiring.key"));
    let out = tls::run(
        std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=expiring.test"])
            .args(["-addext", "subjectAltName=DNS:expiring.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// The `le` buckets of `meshgate_request_duration_seconds` per route from an exposition text,
/// summed over backends.
fn buckets_by_route(metrics: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("meshgate_request_duration_seconds_bucket{") else {
            continue;
        };
        let (labels, n) = rest.split_once("} ").unwrap();
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap()
        };
        *out.entry(label("route"))
            .or_default()
            .entry(label("le"))
            .or_default() += n.parse::<f64>().unwrap();
    }
    out
}

/// `histogram_quantile(q, …)` of cumulative buckets as Prometheus documents it: linear
/// interpolation inside the bucket holding the rank, the lowest bucket starting at 0.
fn quantile(q: f64, buckets: &BTreeMap<String, f64>) -> f64 {
    let mut b: Vec<(f64, f64)> = buckets
        .iter()
        .map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), *n))
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = b.last().unwrap().1;
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, cum) in b {
        if cum >= rank {
            if le.is_infinite() {
                return lower;
            }
            return lower + (le - lower) * (rank - below) / (cum - below);
        }
        (lower, below) = (le, cum);
    }
    f64::NAN
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_the_traffic_sent_and_every_dashboard_and_alert_expression() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let blue = Origin::start("blue").await;
    let green = Origin::start("green").await;
    let slow = Origin::start_kind("slow", OriginKind::Slow(Duration::from_millis(60))).await;
    let flaky = Origin::start("flaky").await;
    dc.register("green-1", "api", &["green"], green.addr)
        .await
        .unwrap();
    let (gone, dead_target) = (free_port().unwrap(), free_port().unwrap());
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = expiring_certificate(certs.path());
    let body = format!(
        r#"[[listeners]]
address = "127.0.0.1:0"
name = "tls"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[consul]
address = "{consul}"
wait = "5s"
backoff_max = "1s"

[policies.rl]
kind = "rate_limit"
rate = "1/m"
burst = 1

[services.blue]
endpoints = ["{blue}"]
[services.green]
consul = {{ service = "api", tags = ["green"] }}
[services.slow]
endpoints = ["{slow}"]
[services.flaky]
endpoints = ["{flaky}"]
[services.gone]
endpoints = ["{gone}"]
[services.gone.outlier]
consecutive_failures = 1
base_ejection = "300s"

[[routes]]
name = "web"
path_prefix = "/web"
backends = [{{ name = "blue", weight = 80 }}, {{ name = "green", weight = 20 }}]
[[routes]]
name = "slow"
path_prefix = "/slow"
latency_objective = "10ms"
backends = [{{ name = "slow", weight = 1 }}]
[[routes]]
name = "flaky"
path_prefix = "/flaky"
strip_prefix = true
backends = [{{ name = "flaky", weight = 1 }}]
[[routes]]
name = "limited"
path_prefix = "/limited"
policies = ["rl"]
backends = [{{ name = "blue", weight = 1 }}]
[[routes]]
name = "dead"
path_prefix = "/dead"
backends = [{{ name = "gone", weight = 1 }}]
"#,
        cert = cert.display(),
        key = key.display(),
        consul = dc.url(),
        blue = blue.addr,
        slow = slow.addr,
        flaky = flaky.addr,
    );
    let gw = Gateway::start(&body).unwrap();
    let prom = Prometheus::start(&format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "{rules}"
scrape_configs:
  - job_name: meshgate
    authorization:
      credentials_file: "{token}"
    static_configs:
      - targets: ["{admin}", "{dead_target}"]
"#,
        rules = repo()
            .join("deploy/prometheus/meshgate-alerts.yml")
            .display(),
        token = gw.dir.join("admin.token").display(),
        admin = gw.admin,
    ))
    .await
    .unwrap();
    // The first scrape sees every (route, backend) series at zero, before any traffic.
    eventually("the first scrape of the gateway", || async {
        let r = prom
            .query(
                r#"meshgate_requests_total{route="slow",code_class="2xx"}"#,
                None,
            )
            .await
            .ok()?;
        (r.len() == 1 && value(&r[0]) == 0.0).then_some(())
    })
    .await;

    // Known traffic, counted by the client.
    let http = client();
    let mut sent = Sent::new();
    for _ in 0..40 {
        send(&http, &mut sent, "web", gw.url("/web/x")).await;
    }
    for i in 0..60 {
        let path = if i % 4 == 0 {
            "/flaky/status/500"
        } else {
            "/flaky/ok"
        };
        send(&http, &mut sent, "flaky", gw.url(path)).await;
    }
    for _ in 0..8 {
        send(&http, &mut sent, "slow", gw.url("/slow/x")).await;
    }
    for _ in 0..3 {
        send(&http, &mut sent, "limited", gw.url("/limited")).await;
    }
    for _ in 0..4 {
        send(&http, &mut sent, "dead", gw.url("/dead")).await;
    }
    assert_eq!(sent["web"][1], 40, "{sent:?}");
    assert_eq!((sent["flaky"][1], sent["flaky"][4]), (45, 15));
    assert_eq!((sent["limited"][1], sent["limited"][3]), (1, 2));
    assert_eq!(sent["dead"][4], 4);

    // The exposition itself: clean under promtool, and no refused request left a request
    // "in flight" (a policy answer comes after the backend is chosen, before it is called).
    let metrics = gw.admin_get_text(&http, "/metrics").await;
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("metrics.txt"), &metrics).unwrap();
    let (ok, out) = promtool(
        scratch.path(),
        &["check", "metrics"],
        Some(&scratch.path().join("metrics.txt")),
    );
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}"
    );
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("meshgate_requests_in_flight{"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }

    // What on-call dashboards and alerts watch for: a flip, Consul gone, a rejected config, a
    // refused certificate.
    let r = gw
        .admin_req(&http, Method::POST, "/v1/routes/web/flip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut dc = dc;
    dc.kill();
    std::fs::write(&cert, "not a certificate\n").unwrap();
    gw.write_config(&format!("{body}timeout = \"nope\"\n"))
        .unwrap();

    // Prometheus has scraped all of it.
    let want: BTreeMap<String, f64> = sent
        .iter()
        .map(|(r, c)| (r.to_string(), c.iter().sum::<u64>() as f64))
        .collect();
    eventually(
        "Prometheus to scrape the traffic and the events",
        || async {
            let totals = prom
                .query("sum by (route) (meshgate_requests_total)", None)
                .await
                .ok()?;
            let got: BTreeMap<String, f64> = totals
                .iter()
                .filter(|v| v["metric"]["route"] != "")
                .map(|v| (v["metric"]["route"].as_str().unwrap().to_string(), value(v)))
                .collect();
            for q in [
                r#"meshgate_discovery_stale{service="green"} == 1"#,
                "meshgate_config_last_reload_successful == 0",
                "meshgate_tls_certificates_ok == 0",
                r#"meshgate_route_weight{route="web",backend="green"} == 80"#,
                r#"meshgate_upstream_endpoints{service="gone",state="ejected"} == 1"#,
                // Consul gone: the KV weights go stale once a read has failed (the alert
                // rules below need this scraped too).
                "meshgate_weights_stale == 1",
            ] {
                prom.query(q, None).await.ok()?.first()?;
            }
            (got == want).then_some(())
        },
    )
    .await;

    // The latest scrape's time T, and a window reaching back just past the first scrape: every
    // series there started at 0 and its last sample is at T, so rate() and increase() are exact
    // (no extrapolation): rate = sent / window.
    let ts = prom
        .query(
            r#"timestamp(meshgate_requests_total{route="slow",backend="slow",code_class="2xx"})"#,
            None,
        )
        .await
        .unwrap();
    let t = value(&ts[0]);
    let first = prom
        .query(
            r#"meshgate_requests_total{route="slow",backend="slow",code_class="2xx"}[10m]"#,
            Some(t),
        )
        .await
        .unwrap();
    let samples = first[0]["values"].as_array().unwrap();
    assert_eq!(samples[0][1], "0", "the first scrape saw no traffic");
    let t0 = samples[0][0].as_f64().unwrap();
    let window_ms = ((t - t0) * 1000.0).round() as u64 + 500;
    let window = window_ms as f64 / 1000.0;
    let routes = r#"route=~"web|flaky|slow|limited""#;
    let by_route = |rows: Vec<Value>| -> BTreeMap<String, f64> {
        rows.iter()
            .map(|v| (v["metric"]["route"].as_str().unwrap().to_string(), value(v)))
            .collect()
    };
    let rate = by_route(
        prom.query(
            &format!("sum by (route) (rate(meshgate_requests_total{{{routes}}}[{window_ms}ms]))"),
            Some(t),
        )
        .await
        .unwrap(),
    );
    let ratio = by_route(
        prom.query(
            &format!(
                "sum by (route) (increase(meshgate_requests_total{{{routes},code_class=\"5xx\"}}[{window_ms}ms])) / sum by (route) (increase(meshgate_requests_total{{{routes}}}[{window_ms}ms]))"
            ),
            Some(t),
        )
        .await
        .unwrap(),
    );
    let p99 = by_route(
        prom.query(
            &format!(
                "histogram_quantile(0.99, sum by (route, le) (rate(meshgate_request_duration_seconds_bucket{{{routes}}}[{window_ms}ms])))"
            ),
            Some(t),
        )
        .await
        .unwrap(),
    );
    let buckets = buckets_by_route(&metrics);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    for route in ["web", "flaky", "slow", "limited"] {
        let n = want[route];
        assert!(
            close(rate[route], n / window),
            "{route}: rate {} != {n} requests / {window} s",
            rate[route]
        );
        let errors = sent[route][4] as f64;
        assert!(
            close(ratio[route], errors / n),
            "{route}: 5xx ratio {} != {errors} / {n}",
            ratio[route]
        );
        let expected = quantile(0.99, &buckets[route]);
        assert!(
            (p99[route] - expected).abs() <= 1e-6,
            "{route}: p99 {} != {expected} from the gateway's buckets",
            p99[route]
        );
    }
    assert!(
        p99["slow"] >= 0.05,
        "every slow request took 60 ms or more: p99 {}",
        p99["slow"]
    );

    // Every expression of the dashboard has data.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/meshgate-dashboard.json")).unwrap(),
    )
    .unwrap();
    let grafana = |e: &str| {
        e.replace("$__rate_interval", "1m")
            .replace("$job", "meshgate")
            .replace("$instance", ".+")
            .replace("$route", ".+")
    };
    let mut exprs: Vec<(String, String)> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            exprs.push((
                format!("panel {title:?}"),
                t["expr"].as_str().unwrap().into(),
            ));
        }
    }
    for a in dash["annotations"]["list"].as_array().unwrap() {
        if let Some(e) = a["expr"].as_str() {
            exprs.push((format!("annotation {:?}", a["name"]), e.into()));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(q) = v["query"]["query"].as_str() else {
            continue;
        };
        // label_values(SELECTOR, LABEL): the selector has series carrying the label.
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {q}", v["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        exprs.push((
            format!("variable {}", v["name"]),
            format!("count by ({}) ({})", label.trim(), selector),
        ));
    }
    assert!(exprs.len() > 20, "{} expressions", exprs.len());
    for (what, expr) in &exprs {
        let e = grafana(expr);
        let r = prom
            .query(&e, None)
            .await
            .unwrap_or_else(|err| panic!("{what}: {e}: {err}"));
        assert!(!r.is_empty(), "{what} has no data: {e}");
    }

    // Every alert holds under this scenario (the `for:` durations aside), and Prometheus
    // evaluates every rule without error.
    for rule in alert_rules() {
        let name = rule["alert"].as_str().unwrap();
        let expr = rule["expr"].as_str().unwrap();
        let r = prom
            .query(expr, None)
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(!r.is_empty(), "alert {name} does not hold: {expr}");
    }
    eventually("every rule evaluated without error", || async {
        let data = prom.api("rules", &[]).await.ok()?;
        let mut health = Vec::new();
        for g in data["groups"].as_array()? {
            for r in g["rules"].as_array()? {
                health.push((r["name"].clone(), r["health"].clone(), r["state"].clone()));
            }
        }
        let all = alert_rules().len();
        (health.len() == all
            && health
                .iter()
                .all(|(_, h, s)| h == "ok" && (s == "pending" || s == "firing")))
        .then_some(())
    })
    .await;
}
