//! `gwctl import openapi` end to end: the Swagger Petstore v3 fixture, a small OpenAPI 3.1
//! fixture (`type: [string, "null"]`, webhooks, `components.pathItems`), and GitHub's REST
//! description (npm `@octokit/openapi`, installed by tests/run.sh) are imported, the output
//! passes `gatewayd check`, a gateway running it routes one sample request per operation (path
//! parameters filled in) to the service — each to its own route, as the admin stats show — and
//! paths outside the description get 404.

use std::path::{Path, PathBuf};
use std::process::Command;

use futures_util::stream::{self, StreamExt as _};
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::gwctl::{run_raw, GwctlRun};
use meshgate_e2e::harness::{binary, patience, trace_init, Gateway, Origin};
use serde_json::Value;

use super::support::{client, origin_of, service};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/openapi")
        .join(name)
}

/// GitHub's description as tests/run.sh installs it (`MESHGATE_GITHUB_OPENAPI` overrides).
fn github_description() -> PathBuf {
    if let Ok(p) = std::env::var("MESHGATE_GITHUB_OPENAPI") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/openapi/node_modules/@octokit/openapi/generated/api.github.com.json");
    assert!(
        p.exists(),
        "{} is missing: tests/run.sh installs it (npm package @octokit/openapi)",
        p.display()
    );
    p
}

async fn import(spec: &Path, service: &str, extra: &[&str]) -> GwctlRun {
    let mut args = vec![
        "import".to_string(),
        "openapi".into(),
        spec.display().to_string(),
        "--service".into(),
        service.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // A debug build parses a 13 MB description on a loaded machine: give it room.
    run_raw(&args, patience() * 3).await
}

/// `gatewayd check` on preamble + `body`; panics with its stderr unless it passes.
fn check(body: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatewayd.toml");
    std::fs::write(&file, format!("{}{body}", preamble(2))).unwrap();
    let out = Command::new(binary("gatewayd"))
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gatewayd check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (route name, method, sample path) of every imported route, parameters filled in.
fn samples(toml: &str) -> Vec<(String, String, String)> {
    let v: toml::Value = toml::from_str(toml).unwrap();
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let path = r
                .get("path_template")
                .or_else(|| r.get("path"))
                .and_then(toml::Value::as_str)
                .unwrap();
            (
                r["name"].as_str().unwrap().to_string(),
                r["methods"][0].as_str().unwrap().to_string(),
                fill(path),
            )
        })
        .collect()
}

/// `/repos/{owner}/{repo}` → `/repos/p0/p1`.
fn fill(template: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push_str(&format!("p{n}"));
        n += 1;
        let close = rest[open..].find('}').unwrap() + open;
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// Starts a gateway on the imported routes, sends every sample and checks that each reached the
/// origin with its method and path, that each route counted exactly one request, and that paths
/// outside the description get 404.
async fn routes_every_operation(toml: &str, svc: &str, extra: &str, outside: &[&str]) -> Gateway {
    let origin = Origin::start(svc).await;
    let body = format!("{}{extra}{toml}", service(svc, &[&origin], "round_robin"));
    check(&body);
    let gw = Gateway::start(&body).unwrap();
    let http = client();
    let samples = samples(toml);
    let results: Vec<_> = stream::iter(samples.iter().cloned())
        .map(|(name, method, path)| {
            let req = http.request(method.parse().unwrap(), gw.url(&path));
            async move {
                let resp = req.send().await.unwrap();
                (name, method, path, origin_of(resp).await)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (name, method, path, got) in &results {
        assert_eq!(*got, (200, svc.to_string()), "{name}: {method} {path}");
    }
    assert_eq!(origin.hits(), samples.len() as u64);
    for p in outside {
        let resp = http.get(gw.url(p)).send().await.unwrap();
        assert_eq!(
            resp.status().as_u16(),
            404,
            "{p} is outside the description"
        );
    }
    // The admin API shows templates as written.
    let routes = gw.admin_get_json(&http, "/v1/routes").await;
    let templates: Vec<&Value> = routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().contains('{'))
        .collect();
    assert!(!templates.is_empty());
    assert!(
        templates.iter().all(|r| r["path_kind"] == "template"),
        "{routes}"
    );
    // Each request went to the route of its own operation.
    let stats: Value = eventually("every route counted its request", || async {
        let s = gw.admin_get_json(&http, "/v1/stats").await;
        let total: u64 = s["routes"]
            .as_array()?
            .iter()
            .flat_map(|r| r["backends"].as_array().into_iter().flatten())
            .filter_map(|b| b["requests"].as_u64())
            .sum();
        (total == samples.len() as u64).then_some(s)
    })
    .await;
    for r in stats["routes"].as_array().unwrap() {
        let n: u64 = r["backends"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["requests"].as_u64())
            .sum();
        assert_eq!(n, 1, "route {} counted {n} requests", r["route"]);
    }
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn petstore_import_checks_and_routes_every_operation() {
    trace_init();
    let run = import(&fixture("petstore-v3.yaml"), "petstore", &[]).await;
    run.expect_code(0);
    // What cannot be mapped is reported operation by operation, never dropped silently; named
    // policies are the config's to define.
    for line in [
        "not mapped: POST /store/order: x-meshgate-rate-limit: refused by validation",
        "note: routes use policy 'api-jwt' (first: GET /pet/{petId})",
    ] {
        assert!(run.stderr.contains(line), "stderr lacks {line:?}:\n{run}");
    }
    assert_eq!(run.stdout.matches("[[routes]]").count(), 19);
    let json = import(&fixture("petstore-v3.json"), "petstore", &[]).await;
    same_routes(&json.stdout, &run.stdout);
    let gw = routes_every_operation(
        &run.stdout,
        "petstore",
        "[policies.api-jwt]\nkind = \"rate_limit\"\nrate = \"1000/s\"\nkey = \"route\"\n\n",
        &["/api/v3/pet/1/other", "/api/v3/pets", "/api/v3/", "/pet/1"],
    )
    .await;
    // The extensions became policies: the path item's CORS on GET /pet/{petId} …
    let http = client();
    let resp = http
        .get(gw.url("/api/v3/pet/7"))
        .header("origin", "https://shop.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    // … and POST /pet's rate limit (10 an hour, burst 10): the sample request above spent one,
    // nine more pass with the remaining quota counting down, the next gets a 429 (an hour's
    // window: no refill while the test runs, however slow the machine).
    for left in (0..9).rev() {
        let r = http.post(gw.url("/api/v3/pet")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["ratelimit-policy"],
            "\"addPet-rate-limit\";q=10;w=3600"
        );
        let now = r.headers()["ratelimit"].to_str().unwrap().to_string();
        assert!(
            now.starts_with(&format!("\"addPet-rate-limit\";r={left};")),
            "{now}"
        );
    }
    let r = http.post(gw.url("/api/v3/pet")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"), "{r:?}");

    // --strict: the same output, exit 6 because of the extensions.
    let strict = import(&fixture("petstore-v3.yaml"), "petstore", &["--strict"]).await;
    strict.expect_code(6);
    assert_eq!(strict.stdout, run.stdout);
    // --prefix.
    let v1 = import(
        &fixture("petstore-v3.yaml"),
        "petstore",
        &["--prefix", "/v1"],
    )
    .await;
    v1.expect_code(0);
    assert!(v1
        .stdout
        .contains("path_template = \"/v1/api/v3/pet/{petId}\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openapi_3_1_description_imports_checks_and_routes_every_operation() {
    trace_init();
    let run = import(&fixture("shop-v3.1.yaml"), "shop", &[]).await;
    run.expect_code(0);
    // Webhooks are reported; the `$ref` to `components/pathItems` is followed.
    assert!(
        run.stderr
            .contains("not mapped: webhooks: webhooks are calls the API makes"),
        "{run}"
    );
    assert!(!run.stderr.contains("$ref"), "{run}");
    for path in [
        "path = \"/shop/v2/items\"",
        "path_template = \"/shop/v2/items/{itemId}\"",
        "path_template = \"/shop/v2/items/{itemId}/photos/{name}.png\"",
        "path_template = \"/shop/v2/reports/{reportId}\"",
    ] {
        assert!(run.stdout.contains(path), "{path} in:\n{run}");
    }
    assert_eq!(run.stdout.matches("[[routes]]").count(), 6, "{run}");
    // The same description as JSON gives the same routes.
    let v: Value =
        serde_yaml::from_str(&std::fs::read_to_string(fixture("shop-v3.1.yaml")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("shop-v3.1.json");
    std::fs::write(&json, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let from_json = import(&json, "shop", &[]).await;
    from_json.expect_code(0);
    same_routes(&from_json.stdout, &run.stdout);

    let gw = routes_every_operation(
        &run.stdout,
        "shop",
        "",
        &[
            "/shop/v2/items/a/b",
            "/shop/v2/items/a/photos/b.jpg",
            "/shop/v2/reports",
            "/shop/v2/",
            "/items",
        ],
    )
    .await;
    // POST /items' inline rate limit (5 an hour): the sample spent one, four more pass.
    let http = client();
    for left in (0..4).rev() {
        let r = http.post(gw.url("/shop/v2/items")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let now = r.headers()["ratelimit"].to_str().unwrap().to_string();
        assert!(
            now.starts_with(&format!("\"createItem-rate-limit\";r={left};")),
            "{now}"
        );
    }
    let r = http.post(gw.url("/shop/v2/items")).send().await.unwrap();
    assert_eq!(r.status(), 429);
    // Only that operation is limited.
    let r = http
        .get(gw.url("/shop/v2/items?cursor=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("ratelimit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn petstore_diff_against_an_existing_config() {
    trace_init();
    let run = import(&fixture("petstore-v3.yaml"), "petstore", &[]).await;
    run.expect_code(0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gatewayd.toml");
    let svc = "[services.petstore]\nendpoints = [\"127.0.0.1:1\"]\n[policies.api-jwt]\nkind = \"rate_limit\"\nrate = \"9/s\"\n";
    // The import itself: nothing would change.
    std::fs::write(&cfg, format!("{svc}{}", run.stdout)).unwrap();
    let same = import(
        &fixture("petstore-v3.yaml"),
        "petstore",
        &["--diff", cfg.to_str().unwrap()],
    )
    .await;
    same.expect_code(0);
    assert!(same.stdout.contains("no changes"), "{same}");
    // Edit it: one route removed, one changed, one that the spec does not have.
    let edited = run
        .stdout
        .replace("name = \"deleteUser\"", "name = \"removeUser\"")
        .replace(
            "/api/v3/store/order/{orderId}\"\nmethods = [\"GET\"]",
            "/api/v3/store/order/{id}\"\nmethods = [\"GET\"]",
        );
    std::fs::write(&cfg, format!("{svc}{edited}")).unwrap();
    let diff = import(
        &fixture("petstore-v3.yaml"),
        "petstore",
        &["--diff", cfg.to_str().unwrap(), "--json"],
    )
    .await;
    diff.expect_code(5);
    let changes = diff.json();
    let has = |change: &str, route: &str| {
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["change"] == change && c["route"] == route)
    };
    assert!(has("added", "deleteUser"), "{diff}");
    assert!(has("removed", "removeUser"), "{diff}");
    assert!(has("changed", "getOrderById"), "{diff}");
    assert_eq!(changes.as_array().unwrap().len(), 3, "{diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_unreadable_descriptions_have_their_exit_codes() {
    trace_init();
    let dir = tempfile::tempdir().unwrap();
    let swagger2 = dir.path().join("swagger.yaml");
    std::fs::write(&swagger2, "swagger: '2.0'\npaths: {}\n").unwrap();
    let r = import(&swagger2, "s", &[]).await;
    r.expect_code(1);
    assert!(
        r.stderr.contains("not an OpenAPI 3.0 or 3.1 description"),
        "{r}"
    );
    import(&dir.path().join("missing.yaml"), "s", &[])
        .await
        .expect_code(1);
    import(&fixture("petstore-v3.yaml"), "bad name!", &[])
        .await
        .expect_code(2);
    import(&fixture("petstore-v3.yaml"), "s", &["--prefix", "v1"])
        .await
        .expect_code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_rest_description_imports_checks_and_routes_every_operation() {
    trace_init();
    let spec = github_description();
    let started = tokio::time::Instant::now();
    let run = import(&spec, "github", &[]).await;
    let took = started.elapsed();
    run.expect_code(0);
    let n = run.stdout.matches("[[routes]]").count();
    assert!(
        n >= 900,
        "only {n} routes from GitHub's description:\n{}",
        run.stderr
    );
    eprintln!("github description: {n} routes imported in {took:?} (gwctl, JSON)");
    // The same description as YAML gives the same routes.
    let text = std::fs::read_to_string(&spec).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("api.github.com.yaml");
    std::fs::write(&yaml, serde_yaml::to_string(&v).unwrap()).unwrap();
    let started = tokio::time::Instant::now();
    let from_yaml = import(&yaml, "github", &[]).await;
    eprintln!(
        "github description: imported in {:?} (gwctl, YAML)",
        started.elapsed()
    );
    from_yaml.expect_code(0);
    same_routes(&from_yaml.stdout, &run.stdout);
    routes_every_operation(
        &run.stdout,
        "github",
        "",
        &[
            "/repos/p0/p1/not-an-endpoint",
            "/repos/p0",
            "/nothing-here",
            "/user/p0/p1/p2/p3",
        ],
    )
    .await;
}

/// Two imports of one description (YAML, JSON) wrote the same routes: the output but its first
/// line, which names the file.
fn same_routes(a: &str, b: &str) {
    let strip = |s: &str| {
        s.split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_string())
    };
    assert_eq!(strip(a), strip(b), "YAML and JSON imports differ");
}
