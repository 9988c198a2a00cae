//! Routing precedence, rewrites, weighted splits, stickiness and cohorts.

use std::collections::HashMap;

use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use serde_json::Value;

use super::support::{client, origin_of, service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_specific_route_wins_and_prefix_is_stripped() {
    trace_init();
    let (a, b, c, d) = (
        Origin::start("a").await,
        Origin::start("b").await,
        Origin::start("c").await,
        Origin::start("d").await,
    );
    let cfg = format!(
        "{}{}{}{}
[[routes]]
name = \"catch-all\"
path_prefix = \"/\"
backends = [{{ name = \"d\", weight = 1 }}]

[[routes]]
name = \"wild\"
host = \"*.example.com\"
backends = [{{ name = \"c\", weight = 1 }}]

[[routes]]
name = \"api-prefix\"
host = \"api.example.com\"
path_prefix = \"/v1/\"
strip_prefix = true
backends = [{{ name = \"b\", weight = 1 }}]

[[routes]]
name = \"api-exact\"
host = \"api.example.com\"
path = \"/v1/users\"
methods = [\"GET\"]
backends = [{{ name = \"a\", weight = 1 }}]
",
        service("a", &[&a], "round_robin"),
        service("b", &[&b], "round_robin"),
        service("c", &[&c], "round_robin"),
        service("d", &[&d], "round_robin"),
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let get =
        |host: &'static str, path: &'static str| http.get(gw.url(path)).header("host", host).send();
    assert_eq!(
        origin_of(get("api.example.com", "/v1/users").await.unwrap()).await,
        (200, "a".into())
    );
    // POST is not allowed by the exact route: the prefix route takes it.
    let r = http
        .post(gw.url("/v1/users"))
        .header("host", "API.example.com:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(origin_of(r).await, (200, "b".into()));
    let r = get("api.example.com", "/v1/orders?x=1").await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["origin"], "b");
    assert_eq!(v["path"], "/orders?x=1", "prefix stripped, query kept");
    assert_eq!(
        origin_of(get("www.example.com", "/v1/users").await.unwrap()).await,
        (200, "c".into())
    );
    assert_eq!(
        origin_of(get("example.org", "/anything").await.unwrap()).await,
        (200, "d".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_a_json_404() {
    trace_init();
    let a = Origin::start("a").await;
    let cfg = format!("{}[[routes]]\nname = \"only\"\nhost = \"a.example\"\nbackends = [{{ name = \"a\", weight = 1 }}]\n", service("a", &[&a], "round_robin"));
    let gw = Gateway::start(&cfg).unwrap();
    let r = client()
        .get(gw.url("/x"))
        .header("host", "b.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-meshgate-error"], "no_route");
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "no_route");
    assert_eq!(a.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_follows_weights() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let cfg = format!(
        "{}{}[[routes]]\nname = \"web\"\nbackends = [{{ name = \"blue\", weight = 90 }}, {{ name = \"green\", weight = 10 }}]\n",
        service("blue", &[&blue], "round_robin"),
        service("green", &[&green], "round_robin")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let n = 5000u64;
    for _ in 0..n {
        let r = http.get(gw.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // Binomial(n, 0.1): sigma = sqrt(n p (1-p)) ~ 21; allow 5 sigma.
    let g = green.hits() as f64;
    let sigma = (n as f64 * 0.1 * 0.9).sqrt();
    assert!(
        (g - n as f64 * 0.1).abs() < 5.0 * sigma,
        "green got {g} of {n}"
    );
    assert_eq!(blue.hits() + green.hits(), n);
    // One keep-alive client: the gateway reuses its pooled upstream connections.
    assert!(
        blue.connections() <= 4,
        "blue saw {} connections for {} requests",
        blue.connections(),
        blue.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_clients_stay_and_cohorts_override() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let cfg = format!(
        "{}{}[[routes]]
name = \"web\"
sticky = {{ cookie = \"session\" }}
backends = [{{ name = \"blue\", weight = 50 }}, {{ name = \"green\", weight = 50 }}]
cohorts = [
  {{ header = \"x-cohort\", value = \"internal\", backend = \"green\", action = \"force\" }},
  {{ header = \"x-cohort\", value = \"safe\", backend = \"green\", action = \"avoid\" }},
]
",
        service("blue", &[&blue], "round_robin"),
        service("green", &[&green], "round_robin")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let mut seen: HashMap<String, String> = HashMap::new();
    for i in 0..40 {
        for _ in 0..5 {
            let r = http
                .get(gw.url("/"))
                .header("cookie", format!("theme=dark; session=user-{i}"))
                .send()
                .await
                .unwrap();
            let (s, o) = origin_of(r).await;
            assert_eq!(s, 200);
            let prev = seen.entry(format!("user-{i}")).or_insert_with(|| o.clone());
            assert_eq!(*prev, o, "user-{i} moved between backends");
        }
    }
    let on_green = seen.values().filter(|o| *o == "green").count();
    assert!(
        (5..=35).contains(&on_green),
        "40 sticky users should spread over both sides, {on_green} on green"
    );
    for _ in 0..20 {
        let r = http
            .get(gw.url("/"))
            .header("x-cohort", "internal")
            .send()
            .await
            .unwrap();
        assert_eq!(origin_of(r).await.1, "green");
        let r = http
            .get(gw.url("/"))
            .header("x-cohort", "safe")
            .send()
            .await
            .unwrap();
        assert_eq!(origin_of(r).await.1, "blue");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_backend_fails_over_unless_route_says_fail() {
    trace_init();
    let green = Origin::start("green").await;
    let cfg = format!(
        "[services.blue]\nendpoints = []\n\n{}[[routes]]\nname = \"failover\"\npath_prefix = \"/f\"\nbackends = [{{ name = \"blue\", weight = 100 }}, {{ name = \"green\", weight = 0 }}]\n\n[[routes]]\nname = \"strict\"\npath_prefix = \"/s\"\non_empty_backend = \"fail\"\nbackends = [{{ name = \"blue\", weight = 100 }}, {{ name = \"green\", weight = 0 }}]\n",
        service("green", &[&green], "round_robin")
    );
    let gw = Gateway::start(&cfg).unwrap();
    let http = client();
    for _ in 0..10 {
        let r = http.get(gw.url("/f")).send().await.unwrap();
        assert_eq!(
            origin_of(r).await,
            (200, "green".into()),
            "blue is empty: its share goes to green"
        );
    }
    let r = http.get(gw.url("/s")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-meshgate-error"], "no_healthy_endpoints");
}
