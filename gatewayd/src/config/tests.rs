#![allow(clippy::unwrap_used)]
//! Config parsing and validation: the docs example, defaults, one test per validation rule
//! (position, field and reason), and the fixture files under `tests/fixtures/config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const ORIGIN: &str = "test.toml";

/// The example shipped in the docs: parsed here so it cannot rot.
const DOCS_EXAMPLE: &str = include_str!("../../../docs/examples/gatewayd.toml");

fn parse(src: &str) -> Config {
    from_str(src, ORIGIN).unwrap_or_else(|e| panic!("config rejected:\n{e}\n---\n{src}"))
}

fn errors(src: &str) -> Vec<ConfigError> {
    match from_str(src, ORIGIN) {
        Ok(_) => panic!("config accepted but should not be:\n{src}"),
        Err(e) => e.0,
    }
}

/// The single error `src` produces.
fn only_error(src: &str) -> ConfigError {
    let mut e = errors(src);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e.remove(0)
}

/// Checks the error's fields and that its Display is `file:line:column: field: reason`.
#[track_caller]
fn assert_error(e: &ConfigError, line: usize, field: &str, reason_contains: &str) {
    assert_eq!(e.file, ORIGIN, "{e}");
    assert_eq!(e.line, line, "wrong line in: {e}");
    assert_eq!(e.field, field, "wrong field in: {e}");
    assert!(
        e.reason.contains(reason_contains),
        "reason {:?} lacks {reason_contains:?}",
        e.reason
    );
    assert!(e.column >= 1, "{e}");
    assert_eq!(
        e.to_string(),
        format!("{ORIGIN}:{line}:{}: {field}: {}", e.column, e.reason)
    );
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// === The docs example ===

#[test]
fn docs_example_parses_with_every_value() {
    let c = from_str(DOCS_EXAMPLE, "gatewayd.toml").unwrap();
    assert_eq!(c.origin, "gatewayd.toml");
    assert_eq!(&*c.source, DOCS_EXAMPLE);

    assert_eq!(c.gateway.workers, 2);
    assert_eq!(c.gateway.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.gateway.cluster, "default");
    // from_str has no base directory: relative paths stay as written.
    assert_eq!(
        c.gateway.state_file,
        Some(PathBuf::from("state/weights.json"))
    );
    assert!(c.gateway.request_id && c.gateway.forwarded_headers && c.gateway.latency_histograms);

    assert_eq!(
        c.listeners,
        vec![ListenerConfig {
            name: "public".into(),
            addr: addr("127.0.0.1:8080"),
            tls: None,
            redirect_https: false,
            proxy_protocol: false,
            max_connections: LISTENER_MAX_CONNECTIONS,
            timeouts: ClientTimeouts::default(),
        }]
    );
    assert_eq!(c.admin.addr, addr("127.0.0.1:9901"));
    assert_eq!(c.admin.token_file, Some(PathBuf::from("state/admin.token")));
    assert!(!c.admin.public_metrics);
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.access_log_sample, 0.0);
    assert_eq!(c.log.file, None);

    assert_eq!(c.services.keys().collect::<Vec<_>>(), ["blue", "green"]);
    let blue = &c.services["blue"];
    assert_eq!(
        blue.endpoints,
        vec![(addr("127.0.0.1:9001"), 1), (addr("127.0.0.1:9002"), 1)]
    );
    assert_eq!(blue.balance, BalancePolicy::P2cLeastRequest);
    let green = &c.services["green"];
    assert_eq!(green.endpoints, vec![(addr("127.0.0.1:9003"), 1)]);
    assert_eq!(green.balance, BalancePolicy::RoundRobin);

    let names: Vec<_> = c.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["web", "api"]);
    let web = &c.routes[0];
    assert_eq!(web.host, None);
    assert_eq!(web.path, PathMatch::Prefix("/".into()));
    assert_eq!(web.timeout, Duration::from_secs(15));
    assert_eq!(web.sticky, Some(RequestKey::Cookie("session".into())));
    assert_eq!(
        web.backends,
        vec![
            BackendConfig {
                name: "blue".into(),
                service: "blue".into(),
                weight: 100,
            },
            BackendConfig {
                name: "green".into(),
                service: "green".into(),
                weight: 0,
            },
        ]
    );
    let canary = http::HeaderName::from_static("x-canary");
    assert_eq!(
        web.cohorts,
        vec![
            CohortRule {
                key: RequestKey::Header(canary.clone()),
                value: "always".into(),
                backend: 1,
                action: CohortAction::Force,
            },
            CohortRule {
                key: RequestKey::Header(canary),
                value: "off".into(),
                backend: 1,
                action: CohortAction::Avoid,
            },
        ]
    );
    let api = &c.routes[1];
    assert_eq!(api.host, Some(HostMatch::Exact("api.example.com".into())));
    assert_eq!(api.path, PathMatch::Prefix("/api/".into()));
    assert_eq!(api.rewrite, Some(Rewrite::StripPrefix));
    assert_eq!(api.methods, vec![http::Method::GET, http::Method::POST]);
    assert_eq!(api.backends.len(), 1);
}

/// docs/configuration.md, whose "Complete annotated example" claims every key.
const CONFIGURATION_MD: &str = include_str!("../../../docs/configuration.md");

/// The TOML block of the "Complete annotated example" section.
fn annotated_example() -> &'static str {
    let section = &CONFIGURATION_MD[CONFIGURATION_MD
        .find("## Complete annotated example")
        .expect("the section exists")..];
    let open = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = section[open..].find("\n```").expect("the block ends");
    &section[open..open + len]
}

#[test]
fn the_annotated_example_is_valid_and_sets_every_documented_key() {
    let c = parse(annotated_example());
    assert_eq!(c.listeners.len(), 3);
    assert_eq!(c.routes.len(), 2);
    assert_eq!(c.policies.len(), 4);
    assert!(c.consul.is_some());

    // Every key a table of the reference documents (first column, before the route-precedence
    // notes) is set somewhere in the example, as `key =` or as a `[….key]` table.
    let reference = &CONFIGURATION_MD[..CONFIGURATION_MD
        .find("### Route precedence")
        .expect("the section exists")];
    let example = annotated_example();
    let keys: Vec<&str> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(key, _)| key))
        .filter(|k| k.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter(|k| {
            k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    assert!(keys.len() > 100, "the key tables were not found: {keys:?}");
    // `key =` at a word start (so `ttl =` is not found inside `register_ttl =`).
    let sets = |k: &str| {
        example.match_indices(&format!("{k} =")).any(|(i, _)| {
            !example[..i]
                .bytes()
                .next_back()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
    };
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|k| !sets(k) && !example.contains(&format!(".{k}]")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys documented but not in the annotated example: {missing:?}"
    );
}

#[test]
fn load_resolves_relative_paths_against_the_file_directory() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/gatewayd.toml");
    let c = load(&path).unwrap();
    let dir = path.parent().unwrap();
    assert_eq!(c.gateway.state_file, Some(dir.join("state/weights.json")));
    assert_eq!(c.admin.token_file, Some(dir.join("state/admin.token")));
    assert_eq!(c.origin, path.display().to_string());
}

#[test]
fn load_of_a_missing_file_is_one_error_naming_it() {
    let path = Path::new("/nonexistent/meshgate/gatewayd.toml");
    let e = load(path).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].file, "/nonexistent/meshgate/gatewayd.toml");
    assert!(e.0[0].reason.starts_with("cannot read file"), "{e}");
}

// === Defaults ===

const MINIMAL: &str = r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
backends = [{ name = "blue", weight = 1 }]
"#;

#[test]
fn defaults_are_applied_to_a_minimal_file() {
    let c = parse(MINIMAL);
    assert_eq!(c.gateway.workers, default_workers());
    assert!(c.gateway.workers >= 1);
    assert_eq!(c.gateway.drain_timeout, DRAIN_TIMEOUT);
    assert_eq!(c.gateway.cluster, CLUSTER);
    assert_eq!(c.gateway.state_file, None);
    assert!(c.gateway.request_id);
    assert!(c.gateway.forwarded_headers);
    assert!(c.gateway.latency_histograms);
    assert_eq!(
        c.listeners,
        vec![ListenerConfig {
            name: "listener-0".into(),
            addr: addr(LISTENER),
            tls: None,
            redirect_https: false,
            proxy_protocol: false,
            max_connections: LISTENER_MAX_CONNECTIONS,
            timeouts: ClientTimeouts::default(),
        }]
    );
    assert_eq!(c.admin.addr, addr(ADMIN));
    assert_eq!(c.admin.token_file, None);
    assert!(!c.admin.public_metrics);
    assert_eq!(c.log.level, LOG_LEVEL);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.file, None);
    assert_eq!(c.log.access_log_sample, 0.0);

    let s = &c.services["blue"];
    assert_eq!(s.name, "blue");
    assert_eq!(s.endpoints, vec![(addr("127.0.0.1:9001"), 1)]);
    assert_eq!(s.balance, BalancePolicy::P2cLeastRequest);
    assert_eq!(s.protocol, UpstreamProtocol::Http1);
    assert_eq!(s.connect_timeout, CONNECT_TIMEOUT);
    assert_eq!(s.idle_timeout, IDLE_TIMEOUT);
    assert_eq!(s.max_idle_per_endpoint, MAX_IDLE_PER_ENDPOINT);
    assert_eq!(
        s.outlier,
        OutlierConfig {
            consecutive_failures: OUTLIER_CONSECUTIVE_FAILURES,
            consecutive_5xx: OUTLIER_CONSECUTIVE_5XX,
            base_ejection: OUTLIER_BASE_EJECTION,
            max_ejection: OUTLIER_MAX_EJECTION,
            max_ejected_percent: OUTLIER_MAX_EJECTED_PERCENT,
            consecutive_gateway_errors: OUTLIER_CONSECUTIVE_GATEWAY_ERRORS,
            panic_threshold: OUTLIER_PANIC_THRESHOLD,
        }
    );

    let r = &c.routes[0];
    assert_eq!(r.host, None);
    assert_eq!(r.path, PathMatch::Prefix("/".into()));
    assert!(r.methods.is_empty() && r.headers.is_empty() && r.cohorts.is_empty());
    assert_eq!(r.rewrite, None);
    assert_eq!(r.timeout, ROUTE_TIMEOUT);
    assert_eq!(r.retries, RETRIES);
    assert_eq!(r.on_empty_backend, OnEmptyBackend::Failover);
    assert_eq!(r.sticky, None);
    // A backend without `service` is served by the service of the same name.
    assert_eq!(r.backends[0].service, "blue");
}

#[test]
fn documented_default_values_hold() {
    // docs/configuration.md names these; a change here is a user-visible change.
    assert_eq!(ROUTE_TIMEOUT, Duration::from_secs(15));
    assert_eq!(LISTENER, "127.0.0.1:8080");
    assert_eq!(ADMIN, "127.0.0.1:9901");
    assert_eq!(DRAIN_TIMEOUT, Duration::from_secs(30));
    assert_eq!(RETRIES, 1);
    assert_eq!(CONNECT_TIMEOUT, Duration::from_secs(2));
    assert_eq!(HEADER_TIMEOUT, Duration::from_secs(10));
    assert_eq!(KEEPALIVE_TIMEOUT, Duration::from_secs(30));
    assert_eq!(TLS_HANDSHAKE_TIMEOUT, Duration::from_secs(10));
    assert_eq!(
        (REQUEST_ID, FORWARDED_HEADERS, LATENCY_HISTOGRAMS),
        (true, true, true)
    );
}

#[test]
fn gateway_policy_switches_parse_false_each_on_its_own() {
    let all_off = parse(&format!(
        "[gateway]\nrequest_id = false\nforwarded_headers = false\nlatency_histograms = false\n{MINIMAL}"
    ));
    let g = &all_off.gateway;
    assert!(!g.request_id && !g.forwarded_headers && !g.latency_histograms);

    // Each key sets only its own switch.
    let one = |key: &str| parse(&format!("[gateway]\n{key} = false\n{MINIMAL}")).gateway;
    let g = one("request_id");
    assert_eq!(
        (g.request_id, g.forwarded_headers, g.latency_histograms),
        (false, true, true)
    );
    let g = one("forwarded_headers");
    assert_eq!(
        (g.request_id, g.forwarded_headers, g.latency_histograms),
        (true, false, true)
    );
    let g = one("latency_histograms");
    assert_eq!(
        (g.request_id, g.forwarded_headers, g.latency_histograms),
        (true, true, false)
    );

    let explicit_on = parse(&format!("[gateway]\nrequest_id = true\n{MINIMAL}"));
    assert!(explicit_on.gateway.request_id);
}

#[test]
fn values_are_normalised() {
    let c = parse(
        r#"[log]
access_log = true

[services.blue]
endpoints = [{ address = "[::1]:9001", weight = 3 }, "10.0.0.1:80"]
balance = "p2c_ewma"
protocol = "h2c"

[[routes]]
name = "api"
host = "API.Example.COM"
path = "/health"
methods = ["get", "Post"]
headers = [{ name = "X-Env", value = "Canary" }, { name = "X-Beta" }]
sticky = { header = "X-User" }
on_empty_backend = "fail"
retries = 0
backends = [{ name = "blue", weight = 1 }]

[[routes]]
name = "wild"
host = "*.Example.com"
path_prefix = "/v1/"
rewrite_prefix = "/"
backends = [{ name = "blue", weight = 1 }]
"#,
    );
    assert_eq!(c.log.access_log_sample, 1.0);
    let s = &c.services["blue"];
    assert_eq!(
        s.endpoints,
        vec![(addr("[::1]:9001"), 3), (addr("10.0.0.1:80"), 1)]
    );
    assert_eq!(s.balance, BalancePolicy::P2cEwma);
    assert_eq!(s.protocol, UpstreamProtocol::H2c);
    let api = &c.routes[0];
    assert_eq!(api.host, Some(HostMatch::Exact("api.example.com".into())));
    assert_eq!(api.path, PathMatch::Exact("/health".into()));
    assert_eq!(api.methods, vec![http::Method::GET, http::Method::POST]);
    assert_eq!(
        api.headers,
        vec![
            HeaderMatch {
                name: http::HeaderName::from_static("x-env"),
                value: Some("Canary".into()),
            },
            HeaderMatch {
                name: http::HeaderName::from_static("x-beta"),
                value: None,
            },
        ]
    );
    assert_eq!(
        api.sticky,
        Some(RequestKey::Header(http::HeaderName::from_static("x-user")))
    );
    assert_eq!(api.on_empty_backend, OnEmptyBackend::Fail);
    assert_eq!(api.retries, 0);
    let wild = &c.routes[1];
    assert_eq!(wild.host, Some(HostMatch::Suffix(".example.com".into())));
    assert_eq!(wild.rewrite, Some(Rewrite::ReplacePrefix("/".into())));
}

// === One test per validation rule ===

#[test]
fn unknown_field_is_a_serde_error_with_its_dotted_path() {
    let e = only_error(
        r#"[services.web]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
timout = "5s"
backends = [{ name = "web", weight = 1 }]
"#,
    );
    assert_error(&e, 6, "routes.web.timout", "unknown field `timout`");
    assert_eq!(e.column, 1);
}

#[test]
fn unknown_top_level_and_section_fields() {
    let e = only_error("[gateway]\nworkers = 2\nwrokers = 3\n");
    assert_error(&e, 3, "gateway.wrokers", "unknown field `wrokers`");
    let e = only_error("listen = \"127.0.0.1:1\"\n");
    assert_error(&e, 1, "listen", "unknown field `listen`");
}

#[test]
fn gateway_policy_switches_must_be_booleans() {
    let e = only_error("[gateway]\nworkers = 2\nrequest_id = \"off\"\n");
    assert_error(&e, 3, "gateway.request_id", "expected a boolean");
    let e = only_error("[gateway]\nforwarded_headers = 0\n");
    assert_error(&e, 2, "gateway.forwarded_headers", "expected a boolean");
    let e = only_error("[gateway]\nlatency_histograms = \"false\"\n");
    assert_error(&e, 2, "gateway.latency_histograms", "expected a boolean");
}

#[test]
fn toml_syntax_error_is_placed() {
    let e = only_error("[gateway]\nworkers = 2\ndrain_timeout = \"10s\n");
    assert_eq!(e.line, 3, "{e}");
    assert_eq!(e.field, "gateway.drain_timeout", "{e}");
}

#[test]
fn duplicate_route_name() {
    let e = only_error(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
backends = [{ name = "blue", weight = 1 }]

[[routes]]
name = "web"
path_prefix = "/v2/"
backends = [{ name = "blue", weight = 1 }]
"#,
    );
    assert_error(&e, 9, "routes.web.name", "duplicate route name 'web'");
    assert_eq!(e.column, 8, "points at the value");
}

#[test]
fn unknown_service_in_a_backend() {
    let e = only_error(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "api"
backends = [
  { name = "blue", service = "blue", weight = 90 },
  { name = "green", service = "gren", weight = 10 },
]
"#,
    );
    assert_error(
        &e,
        8,
        "routes.api.backends.green.service",
        "unknown service 'gren' (known: 'blue')",
    );
}

#[test]
fn backend_without_service_names_an_unknown_service() {
    let e = only_error(
        r#"[[routes]]
name = "api"
backends = [{ name = "blue", weight = 1 }]
"#,
    );
    assert_error(
        &e,
        3,
        "routes.api.backends.blue.service",
        "unknown service 'blue' (none are defined)",
    );
}

#[test]
fn all_zero_weights() {
    let e = only_error(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]
[services.green]
endpoints = ["127.0.0.1:9002"]

[[routes]]
name = "web"
backends = [
  { name = "blue", weight = 0 },
  { name = "green", weight = 0 },
]
"#,
    );
    assert_error(&e, 6, "routes.web.backends", "all weights are 0");
}

#[test]
fn weight_out_of_range() {
    let src = |w: i64| {
        format!(
            "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\n\
             backends = [{{ name = \"blue\", weight = 1 }}, {{ name = \"canary\", service = \"blue\", weight = {w} }}]\n"
        )
    };
    let e = only_error(&src(10_001));
    assert_error(
        &e,
        6,
        "routes.web.backends.canary.weight",
        "10001 is out of range 0..=10000",
    );
    let e = only_error(&src(-1));
    assert_error(
        &e,
        6,
        "routes.web.backends.canary.weight",
        "-1 is out of range 0..=10000",
    );
    // The bounds themselves are valid.
    assert_eq!(parse(&src(10_000)).routes[0].backends[1].weight, 10_000);
    assert_eq!(parse(&src(0)).routes[0].backends[1].weight, 0);
}

/// A single out-of-range weight on a route's only backend is read as 0 by `validate.rs`
/// (`.unwrap_or(0)`), which then also reports "all weights are 0": two errors, the second false.
#[test]
fn out_of_range_weight_alone_is_one_error() {
    let e = only_error(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
backends = [{ name = "blue", weight = 20000 }]
"#,
    );
    assert_error(
        &e,
        6,
        "routes.web.backends.blue.weight",
        "20000 is out of range",
    );
}

#[test]
fn bad_duration() {
    let e = only_error(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "api"
timeout = "fast"
backends = [{ name = "blue", weight = 1 }]
"#,
    );
    assert_error(&e, 6, "routes.api.timeout", "'fast' is not a duration");
    assert_eq!(e.column, 11);
    assert!(
        e.to_string()
            .starts_with("test.toml:6:11: routes.api.timeout: 'fast' is not a duration"),
        "{e}"
    );

    let e = only_error(
        "[services.blue]\nendpoints = []\n[[routes]]\nname = \"api\"\nlatency_objective = \"soon\"\nbackends = [{ name = \"blue\", weight = 1 }]\n",
    );
    assert_error(
        &e,
        5,
        "routes.api.latency_objective",
        "'soon' is not a duration",
    );

    let e = only_error("[gateway]\ndrain_timeout = \"0s\"\n");
    assert_error(&e, 2, "gateway.drain_timeout", "must be longer than zero");

    let e = only_error("[services.blue]\nendpoints = []\nconnect_timeout = \"2 parsecs\"\n");
    assert_error(
        &e,
        3,
        "services.blue.connect_timeout",
        "'2 parsecs' is not a duration",
    );
}

#[test]
fn path_must_start_with_a_slash() {
    let base = "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\n";
    let e = only_error(&format!(
        "{base}path_prefix = \"api\"\nbackends = [{{ name = \"blue\", weight = 1 }}]\n"
    ));
    assert_error(&e, 6, "routes.web.path_prefix", "'api' must start with '/'");
    let e = only_error(&format!(
        "{base}path = \"health\"\nbackends = [{{ name = \"blue\", weight = 1 }}]\n"
    ));
    assert_error(&e, 6, "routes.web.path", "'health' must start with '/'");
}

#[test]
fn path_and_path_prefix_together() {
    let e = only_error(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
path_prefix = "/api/"
path = "/api/health"
backends = [{ name = "blue", weight = 1 }]
"#,
    );
    assert_error(&e, 7, "routes.web.path", "give one of");
}

#[test]
fn bad_host_patterns() {
    for bad in [
        "*.",
        "*.*.example.com",
        "a*.example.com",
        "*example.com",
        "example.com/api",
        "exa mple.com",
        "",
    ] {
        let src = format!(
            "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\n\
             host = \"{bad}\"\nbackends = [{{ name = \"blue\", weight = 1 }}]\n"
        );
        let e = only_error(&src);
        assert_error(
            &e,
            6,
            "routes.web.host",
            "is not a host or '*.suffix' pattern",
        );
    }
}

#[test]
fn bad_endpoint_address() {
    let e = only_error(
        r#"[services.blue]
endpoints = [
  "127.0.0.1:9001",
  "localhost:9002",
]
"#,
    );
    assert_error(
        &e,
        4,
        "services.blue.endpoints[1]",
        "'localhost:9002' is not an IP:port address",
    );
    let e = only_error("[services.blue]\nendpoints = [{ address = \"10.0.0.1\", weight = 2 }]\n");
    assert_error(
        &e,
        2,
        "services.blue.endpoints[0]",
        "'10.0.0.1' is not an IP:port address",
    );
    let e =
        only_error("[services.blue]\nendpoints = [{ address = \"10.0.0.1:80\", weight = 0 }]\n");
    assert_error(
        &e,
        2,
        "services.blue.endpoints[0].weight",
        "0 is out of range",
    );
}

#[test]
fn bad_listener_and_admin_addresses() {
    let e = only_error("[[listeners]]\naddress = \"0.0.0.0\"\n");
    assert_error(&e, 2, "listeners[0].address", "'0.0.0.0' is not an IP:port");
    let e = only_error("[admin]\naddress = \"localhost:9901\"\n");
    assert_error(&e, 2, "admin.address", "'localhost:9901' is not an IP:port");
    let e = only_error(
        "[[listeners]]\naddress = \"127.0.0.1:8080\"\n[[listeners]]\naddress = \"127.0.0.1:8080\"\n",
    );
    assert_error(&e, 4, "listeners[1].address", "listed twice");
}

#[test]
fn sticky_needs_exactly_one_of_cookie_or_header() {
    let src = |sticky: &str| {
        format!(
            "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\n\
             sticky = {sticky}\nbackends = [{{ name = \"blue\", weight = 1 }}]\n"
        )
    };
    for bad in [
        r#"{ cookie = "session", header = "x-user" }"#,
        "{}",
        r#"{ cookie = "" }"#,
    ] {
        let e = only_error(&src(bad));
        assert_error(
            &e,
            6,
            "routes.web.sticky",
            "give exactly one of 'cookie' or 'header'",
        );
    }
    let e = only_error(&src(r#"{ header = "x user" }"#));
    assert_error(&e, 6, "routes.web.sticky", "'x user' is not a header name");
}

#[test]
fn cohort_naming_an_unknown_backend() {
    let e = only_error(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
backends = [{ name = "blue", weight = 1 }]
cohorts = [
  { header = "x-canary", value = "always", backend = "canary" },
]
"#,
    );
    assert_error(
        &e,
        8,
        "routes.web.cohorts.backend",
        "unknown backend 'canary' in this route",
    );
}

#[test]
fn bad_choices_list_the_options() {
    let e = only_error("[services.blue]\nendpoints = []\nbalance = \"random\"\n");
    assert_error(
        &e,
        3,
        "services.blue.balance",
        "'random' is not one of 'round_robin', 'weighted_round_robin', 'p2c_least_request', 'p2c_ewma'",
    );
    let e = only_error("[log]\nformat = \"xml\"\n");
    assert_error(&e, 2, "log.format", "'xml' is not one of 'json', 'text'");
}

#[test]
fn multiple_errors_are_collected_in_one_pass_sorted_by_line() {
    let errs = errors(
        r#"[gateway]
drain_timeout = "soon"

[services.blue]
endpoints = ["not-an-address"]

[[routes]]
name = "web"
timeout = "fast"
path_prefix = "api"
backends = [{ name = "blue", weight = 1 }, { name = "canary", weight = 5 }]
"#,
    );
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "gateway.drain_timeout"),
            (5, "services.blue.endpoints[0]"),
            (9, "routes.web.timeout"),
            (10, "routes.web.path_prefix"),
            (11, "routes.web.backends.canary.service"),
        ]
    );
    let shown = ConfigErrors(errs.clone()).to_string();
    assert_eq!(shown.lines().count(), errs.len());
    assert!(
        shown.lines().all(|l| l.starts_with("test.toml:")),
        "{shown}"
    );
}

#[test]
fn errors_on_one_line_are_sorted_by_column() {
    let errs = errors(
        r#"[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
backends = [{ name = "a", weight = 1 }, { name = "b", weight = 99999 }]
"#,
    );
    let got: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (6, "routes.web.backends.a.service"),
            (6, "routes.web.backends.b.service"),
            (6, "routes.web.backends.b.weight"),
        ]
    );
    assert!(
        errs.windows(2).all(|w| w[0].column < w[1].column),
        "{errs:#?}"
    );
}

// === Fixtures ===

fn fixture_dir(kind: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/config"
    ))
    .join(kind)
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Each invalid fixture starts with `# expect: FIELD` and `# line: N`; loading it yields exactly
/// that one error, naming the file. Each valid fixture loads.
#[test]
fn config_fixtures() {
    let invalid = toml_files(&fixture_dir("invalid"));
    assert!(invalid.len() >= 8, "invalid fixtures: {invalid:?}");
    for path in &invalid {
        let src = std::fs::read_to_string(path).unwrap();
        let mut head = src.lines();
        let field = head
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .unwrap_or_else(|| panic!("{}: first line must be '# expect: FIELD'", path.display()))
            .trim();
        let line: usize = head
            .next()
            .and_then(|l| l.strip_prefix("# line:"))
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: second line must be '# line: N'", path.display()));
        let errs = load(path)
            .map(|_| panic!("{} loaded but is invalid", path.display()))
            .unwrap_err();
        assert_eq!(
            errs.0.len(),
            1,
            "{}: one mistake per file: {errs}",
            path.display()
        );
        let e = &errs.0[0];
        let file = path.display().to_string();
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            (file.as_str(), line, field),
            "{e}"
        );
        assert!(e.to_string().starts_with(&format!("{file}:{line}:")), "{e}");
    }

    let valid = toml_files(&fixture_dir("valid"));
    assert!(valid.len() >= 2, "valid fixtures: {valid:?}");
    for path in &valid {
        let c = load(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!c.routes.is_empty(), "{}", path.display());
    }
}

/// `[consul]` addresses and `ca_file`.
mod consul_tests {
    use super::{from_str, load};

    const CONSUL: &str = r#"[consul]
address = "ADDRESS"
ca_file = "certs/consul-ca.pem"

[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "web"
backends = [{ name = "blue", weight = 1 }]
"#;

    #[test]
    fn https_address_and_ca_file_are_accepted() {
        let src = CONSUL.replace("ADDRESS", "https://consul.internal:8501");
        let c = from_str(&src, "test.toml").unwrap();
        let consul = c.consul.unwrap();
        assert_eq!(consul.address.scheme_str(), Some("https"));
        assert_eq!(
            consul.ca_file.as_deref(),
            Some(std::path::Path::new("certs/consul-ca.pem"))
        );
    }

    #[test]
    fn other_schemes_are_refused_naming_both_forms() {
        let src = CONSUL.replace("ADDRESS", "ftp://consul:8500");
        let e = from_str(&src, "test.toml").unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].field, "consul.address");
        assert_eq!(e.0[0].line, 2);
        assert!(e.0[0].reason.contains("https://host:port"), "{e}");
    }

    #[test]
    fn ca_file_is_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatewayd.toml");
        std::fs::write(&path, CONSUL.replace("ADDRESS", "https://127.0.0.1:8501")).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(
            c.consul.unwrap().ca_file,
            Some(dir.path().join("certs/consul-ca.pem"))
        );
    }
}

#[test]
fn retry_settings_parse_and_default() {
    let r = &parse(MINIMAL).routes[0];
    assert_eq!(r.retry, RetryPolicy::default());
    assert_eq!(r.retry.try_timeout, None);
    assert_eq!(
        (r.retry.budget_percent, r.retry.budget_min_per_second),
        (RETRY_BUDGET_PERCENT, RETRY_BUDGET_MIN_PER_SECOND)
    );
    assert_eq!(
        (RETRY_BUDGET_PERCENT, RETRY_BUDGET_MIN_PER_SECOND),
        (20, 10)
    );
    let src = MINIMAL.replace(
        "[[routes]]\n",
        "[[routes]]\ntry_timeout = \"250ms\"\nretry_non_idempotent = true\nretry_budget_percent = 50\nretry_budget_min_per_second = 0\n",
    );
    let r = &parse(&src).routes[0];
    assert_eq!(
        r.retry,
        RetryPolicy {
            try_timeout: Some(Duration::from_millis(250)),
            non_idempotent: true,
            budget_percent: 50,
            budget_min_per_second: 0,
            ..RetryPolicy::default()
        }
    );
    let bad = MINIMAL.replace("[[routes]]\n", "[[routes]]\nretry_budget_percent = 101\n");
    let e = errors(&bad);
    assert_eq!(e[0].field, "routes.web.retry_budget_percent", "{e:?}");
    let bad = MINIMAL.replace("[[routes]]\n", "[[routes]]\ntry_timeout = \"soon\"\n");
    assert!(errors(&bad)[0].field.ends_with(".try_timeout"));
}

#[test]
fn the_recommended_resilient_settings_parse() {
    let c = parse(include_str!("../../../tests/bench/gatewayd-resilient.toml"));
    let r = &c.routes[0];
    assert_eq!(r.retry.try_timeout, Some(Duration::from_secs(1)));
    assert_eq!(r.retries, 2);
    let o = &c.services["api"].outlier;
    assert_eq!((o.consecutive_failures, o.consecutive_5xx), (3, 5));
    assert_eq!(o.consecutive_gateway_errors, 3);
    assert_eq!(r.body_idle_timeout, Duration::from_secs(30));
    assert_eq!(c.gateway.max_in_flight, Some(2000));
    assert_eq!(c.services["api"].max_in_flight_per_endpoint, Some(256));
}

#[test]
fn trusted_proxies_are_address_blocks() {
    let c = parse(&format!(
        "[gateway]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n{MINIMAL}"
    ));
    let g = &c.gateway;
    for (ip, trusted) in [
        ("10.200.1.2", true),
        ("11.0.0.1", false),
        ("192.0.2.7", true),
        ("192.0.2.8", false),
        ("2001:db8:1::5", true),
        ("2001:db9::1", false),
        ("::ffff:10.1.1.1", true),
    ] {
        assert_eq!(g.trusts(ip.parse().unwrap()), trusted, "{ip}");
    }
    assert!(!parse(MINIMAL).gateway.trusts("127.0.0.1".parse().unwrap()));
    let e = errors(&format!(
        "[gateway]\ntrusted_proxies = [\"10.0.0.0/33\"]\n{MINIMAL}"
    ));
    assert_eq!(e[0].field, "gateway.trusted_proxies");
    assert_eq!(
        Cidr::parse("0.0.0.0/0").map(|c| c.contains("8.8.8.8".parse().unwrap())),
        Some(true)
    );
}

#[test]
fn max_body_takes_sizes() {
    for (v, n) in [
        ("\"1000\"", 1000),
        ("\"64KiB\"", 65_536),
        ("\"10MiB\"", 10 << 20),
        ("\"2MB\"", 2_000_000),
    ] {
        let src = MINIMAL.replace("[[routes]]\n", &format!("[[routes]]\nmax_body = {v}\n"));
        assert_eq!(parse(&src).routes[0].max_body, Some(n), "{v}");
    }
    let bad = MINIMAL.replace("[[routes]]\n", "[[routes]]\nmax_body = \"ten megs\"\n");
    assert_eq!(errors(&bad)[0].field, "routes.web.max_body");
}

#[test]
fn tls_listener_defaults_and_paths() {
    let src = r#"
[[listeners]]
address = "127.0.0.1:8443"
[listeners.tls]
certificates = [{ cert = "certs/api.pem", key = "certs/api.key" }, { cert = "certs/wild.pem", key = "certs/wild.key" }]
default_certificate = "certs/wild.pem"

[[listeners]]
address = "127.0.0.1:8080"
redirect_https = true

[services.blue]
endpoints = ["127.0.0.1:9001"]
tls = { ca_file = "ca.pem", server_name = "blue.internal", client_cert = "c.pem", client_key = "c.key" }

[[routes]]
name = "api"
backends = [{ name = "blue", weight = 1 }]
"#;
    let c = from_str(src, "t.toml").unwrap();
    let t = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(t.certificates.len(), 2);
    assert_eq!(t.certificates[1].key, PathBuf::from("certs/wild.key"));
    assert_eq!(t.default_certificate, 1);
    assert!(!t.strict_sni);
    assert_eq!(t.min_version, TlsVersion::Tls12);
    assert_eq!(t.handshake_timeout, TLS_HANDSHAKE_TIMEOUT);
    assert!(c.listeners[1].redirect_https && c.listeners[1].tls.is_none());
    let u = c.services["blue"].tls.as_ref().unwrap();
    assert_eq!(u.server_name.as_deref(), Some("blue.internal"));
    assert_eq!(u.ca_file, Some(PathBuf::from("ca.pem")));
    assert!(!u.insecure_skip_verify);
}

#[test]
fn listener_timeouts_and_proxy_protocol_before_tls() {
    let src = r#"
[[listeners]]
address = "127.0.0.1:8443"
proxy_protocol = true
header_timeout = "2s"
keepalive_timeout = "1m"
max_request_target = "16KiB"
[listeners.tls]
certificates = [{ cert = "api.pem", key = "api.key" }]
handshake_timeout = "3s"

[[listeners]]
address = "127.0.0.1:8080"

[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "api"
backends = [{ name = "blue", weight = 1 }]
"#;
    let c = parse(src);
    let l = &c.listeners[0];
    assert!(l.proxy_protocol && l.tls.is_some());
    assert_eq!(
        l.timeouts,
        ClientTimeouts {
            header: Duration::from_secs(2),
            keepalive: Duration::from_secs(60),
            max_target: 16 * 1024,
        }
    );
    assert_eq!(
        l.tls.as_ref().unwrap().handshake_timeout,
        Duration::from_secs(3)
    );
    assert_eq!(c.listeners[1].timeouts, ClientTimeouts::default());
    let bad = src.replace("\"1m\"", "\"never\"");
    assert_error(
        &only_error(&bad),
        6,
        "listeners[0].keepalive_timeout",
        "is not a duration",
    );
    for (v, reason) in [
        ("\"long\"", "is not a size"),
        ("\"0\"", "out of range"),
        ("\"65KiB\"", "out of range"),
    ] {
        let bad = src.replace("\"16KiB\"", v);
        assert_error(
            &only_error(&bad),
            7,
            "listeners[0].max_request_target",
            reason,
        );
    }
}

#[test]
fn tls_min_version_13_and_no_upstream_tls_by_default() {
    let src = r#"
[[listeners]]
address = "127.0.0.1:8443"
[listeners.tls]
certificates = [{ cert = "a.pem", key = "a.key" }]
min_version = "1.3"
strict_sni = true
handshake_timeout = "3s"

[services.blue]
endpoints = ["127.0.0.1:9001"]

[[routes]]
name = "api"
backends = [{ name = "blue", weight = 1 }]
"#;
    let c = from_str(src, "t.toml").unwrap();
    let t = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(t.min_version, TlsVersion::Tls13);
    assert!(t.strict_sni);
    assert_eq!(t.handshake_timeout, std::time::Duration::from_secs(3));
    assert!(c.services["blue"].tls.is_none());
}

#[test]
fn path_templates_parse_and_bad_ones_are_placed() {
    let route = |path: &str| {
        format!(
            "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"api\"\n{path}\nbackends = [{{ name = \"blue\", weight = 1 }}]\n"
        )
    };
    let c = parse(&route("path_template = \"/pets/{id}\""));
    match &c.routes[0].path {
        PathMatch::Template(t) => assert_eq!(t.as_str(), "/pets/{id}"),
        other => panic!("expected a template, got {other:?}"),
    }
    for (line, reason) in [
        ("path_template = \"/pets/{id\"", "without a closing"),
        ("path_template = \"/pets/{}\"", "empty '{}'"),
        ("path_template = \"/a/{id}/b/{id}\"", "'id' appears twice"),
        ("path_template = \"/f/{a}{b}\"", "adjacent"),
        ("path_template = \"/f/a}\"", "without an opening"),
        ("path_template = \"f/{a}\"", "must start with '/'"),
    ] {
        assert_error(
            &only_error(&route(line)),
            6,
            "routes.api.path_template",
            reason,
        );
    }
    assert_error(
        &only_error(&route("path = \"/a\"\npath_template = \"/a/{b}\"")),
        7,
        "routes.api.path_template",
        "give one of",
    );
    assert_error(
        &only_error(&route("path_template = \"/a/{b}\"\nstrip_prefix = true")),
        4,
        "routes.api.strip_prefix",
        "needs 'path_prefix'",
    );
}

#[test]
fn latency_objective_is_optional() {
    let src = "[services.blue]\nendpoints = []\n[[routes]]\nname = \"a\"\nlatency_objective = \"250ms\"\nbackends = [{ name = \"blue\", weight = 1 }]\n[[routes]]\nname = \"b\"\nbackends = [{ name = \"blue\", weight = 1 }]\n";
    let c = parse(src);
    assert_eq!(
        c.routes[0].latency_objective,
        Some(Duration::from_millis(250))
    );
    assert_eq!(c.routes[1].latency_objective, None);
}

/// A deep install prefix is fine for the hand-over socket (it is reached through its
/// directory); only a file name too long for that detour is refused.
#[test]
fn handover_socket_takes_a_deep_path_but_not_a_long_file_name() {
    let deep = format!("/{}/handover.sock", "d".repeat(150));
    let c = parse(&format!(
        "[gateway]\nhandover_socket = \"{deep}\"\n\n[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\nbackends = [{{ name = \"blue\", weight = 100 }}]\n"
    ));
    assert_eq!(
        c.gateway.handover_socket.as_deref(),
        Some(std::path::Path::new(&deep))
    );
    let e = only_error(&format!(
        "[gateway]\nhandover_socket = \"/run/{}.sock\"\n\n[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\nbackends = [{{ name = \"blue\", weight = 100 }}]\n",
        "n".repeat(70)
    ));
    assert_error(
        &e,
        2,
        "gateway.handover_socket",
        "file name of 1 to 64 bytes",
    );
}

// === [tracing] ===

const ONE_ROUTE: &str = "[services.s]\nendpoints = [\"127.0.0.1:1\"]\n\n[[routes]]\nname = \"r\"\nbackends = [{ name = \"s\", weight = 1 }]\n";

#[test]
fn tracing_is_off_without_its_table_and_defaults_with_it() {
    assert_eq!(parse(ONE_ROUTE).tracing, None);
    let c = parse(&format!("[tracing]\n{ONE_ROUTE}"));
    let t = c.tracing.unwrap();
    assert_eq!(t.sample_ratio, TRACE_SAMPLE_RATIO);
    assert_eq!(t.otlp, None, "no endpoint: trace context only");
    let c = parse(&format!(
        "[tracing]\nsample_ratio = 0.25\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n{ONE_ROUTE}"
    ));
    let t = c.tracing.unwrap();
    assert_eq!(t.sample_ratio, 0.25);
    let o = t.otlp.unwrap();
    assert_eq!(o.endpoint.to_string(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(o.service_name, TRACE_SERVICE_NAME);
    assert_eq!(o.batch_size, TRACE_BATCH_SIZE);
    assert_eq!(o.batch_interval, TRACE_BATCH_INTERVAL);
    assert_eq!(o.queue_size, TRACE_QUEUE_SIZE);
    assert_eq!(o.export_timeout, TRACE_EXPORT_TIMEOUT);
}

#[test]
fn tracing_mistakes_name_their_key() {
    let e = only_error(&format!("[tracing]\nsample_ratio = 1.5\n{ONE_ROUTE}"));
    assert_error(&e, 2, "tracing.sample_ratio", "1.5 is not a fraction");
    let e = only_error(&format!(
        "[tracing]\notlp_endpoint = \"127.0.0.1:4318\"\n{ONE_ROUTE}"
    ));
    assert_error(
        &e,
        2,
        "tracing.otlp_endpoint",
        "not an http:// or https:// URL",
    );
    let e = only_error(&format!("[tracing]\nbatch_size = 100\n{ONE_ROUTE}"));
    assert_error(&e, 2, "tracing", "need tracing.otlp_endpoint");
    let e = only_error(&format!(
        "[tracing]\notlp_endpoint = \"http://c:4318/v1/traces\"\nbatch_size = 64\nqueue_size = 8\n{ONE_ROUTE}"
    ));
    assert_error(&e, 4, "tracing.queue_size", "smaller than batch_size");
    let e = only_error(&format!(
        "[tracing]\notlp_endpoint = \"http://c:4318/v1/traces\"\nbatch_interval = \"soon\"\n{ONE_ROUTE}"
    ));
    assert_error(&e, 3, "tracing.batch_interval", "not a duration");
}

#[test]
fn resilience_keys_parse_with_their_defaults_and_ranges() {
    let c = parse(MINIMAL);
    let r = &c.routes[0];
    for s in RETRY_ON {
        assert!(r.retry.on_status.contains(s), "{s} retried by default");
    }
    assert!(!r.retry.on_status.contains(500));
    assert_eq!(r.retry.body_max, RETRY_BODY_MAX);
    assert_eq!(r.body_idle_timeout, BODY_IDLE_TIMEOUT);
    assert_eq!(c.gateway.max_in_flight, None);
    let src = format!(
        "[gateway]\nmax_in_flight = 500\n\n{}",
        MINIMAL
            .replace(
                "[[routes]]\n",
                "[[routes]]\nretry_on = [429, 503]\nretry_body_max = \"8KiB\"\nbody_idle_timeout = \"5s\"\n",
            )
            .replace(
                "endpoints = [\"127.0.0.1:9001\"]\n",
                "endpoints = [\"127.0.0.1:9001\"]\n[services.blue.outlier]\nconsecutive_gateway_errors = 3\npanic_threshold = 50\n",
            ),
    );
    let c = parse(&src);
    let r = &c.routes[0];
    assert!(r.retry.on_status.contains(429) && r.retry.on_status.contains(503));
    assert!(!r.retry.on_status.contains(502));
    assert_eq!(r.retry.body_max, 8 * 1024);
    assert_eq!(r.body_idle_timeout, Duration::from_secs(5));
    assert_eq!(c.gateway.max_in_flight, Some(500));
    let o = &c.services["blue"].outlier;
    assert_eq!((o.consecutive_gateway_errors, o.panic_threshold), (3, 50));
    let off = MINIMAL.replace("[[routes]]\n", "[[routes]]\nretry_on = []\n");
    assert!(parse(&off).routes[0].retry.on_status.is_empty());
    for (bad, field) in [
        ("retry_on = [200]", "routes.web.retry_on"),
        ("retry_body_max = \"lots\"", "routes.web.retry_body_max"),
        (
            "body_idle_timeout = \"soon\"",
            "routes.web.body_idle_timeout",
        ),
    ] {
        let e = errors(&MINIMAL.replace("[[routes]]\n", &format!("[[routes]]\n{bad}\n")));
        assert_eq!(e[0].field, field, "{e:?}");
    }
    let e = errors(&format!("[gateway]\nmax_in_flight = 0\n\n{MINIMAL}"));
    assert_eq!(e[0].field, "gateway.max_in_flight", "{e:?}");
}
