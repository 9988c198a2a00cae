#![allow(clippy::unwrap_used)]
//! Route matching: host, path, method and header conditions, the documented precedence, path
//! rewriting, and a property test against a brute-force reference.

use std::cmp::Reverse;
use std::time::Duration;

use http::{Method, Request};
use proptest::prelude::*;

use super::*;
use crate::config::{
    BackendConfig, HeaderMatch, HostMatch, OnEmptyBackend, PathMatch, RetryPolicy, Rewrite,
    RouteConfig,
};

// === Builders ===

/// A route named `name` matching every request: add conditions with the methods below.
fn route(name: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        host: None,
        path: PathMatch::Prefix("/".into()),
        methods: Vec::new(),
        headers: Vec::new(),
        rewrite: None,
        timeout: Duration::from_secs(15),
        latency_objective: None,
        retries: 1,
        retry: RetryPolicy::default(),
        policies: Vec::new(),
        body_idle_timeout: Duration::from_secs(60),
        max_in_flight: None,
        max_body: None,
        on_empty_backend: OnEmptyBackend::Failover,
        sticky: None,
        backends: vec![BackendConfig {
            name: "blue".into(),
            service: "blue".into(),
            weight: 1,
        }],
        cohorts: Vec::new(),
    }
}

trait RouteExt {
    fn host(self, h: &str) -> Self;
    fn prefix(self, p: &str) -> Self;
    fn exact(self, p: &str) -> Self;
    fn template(self, t: &str) -> Self;
    fn methods(self, m: &[Method]) -> Self;
    fn header(self, name: &'static str, value: Option<&str>) -> Self;
}

impl RouteExt for RouteConfig {
    /// `*.example.com` or `example.com`, as validation stores them.
    fn host(mut self, h: &str) -> Self {
        self.host = Some(match h.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.into()),
            None => HostMatch::Exact(h.into()),
        });
        self
    }
    fn prefix(mut self, p: &str) -> Self {
        self.path = PathMatch::Prefix(p.into());
        self
    }
    fn template(mut self, t: &str) -> Self {
        self.path = PathMatch::Template(crate::route::PathTemplate::parse(t).unwrap());
        self
    }
    fn exact(mut self, p: &str) -> Self {
        self.path = PathMatch::Exact(p.into());
        self
    }
    fn methods(mut self, m: &[Method]) -> Self {
        self.methods = m.to_vec();
        self
    }
    fn header(mut self, name: &'static str, value: Option<&str>) -> Self {
        self.headers.push(HeaderMatch {
            name: http::HeaderName::from_static(name),
            value: value.map(str::to_string),
        });
        self
    }
}

/// A request with an optional `Host` header and extra headers.
fn req(method: Method, uri: &str, host: Option<&str>, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(h) = host {
        b = b.header(http::header::HOST, h);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn get(uri: &str, host: Option<&str>) -> Request<()> {
    req(Method::GET, uri, host, &[])
}

/// Name of the route `routes` picks for `r`.
fn matched<'a>(routes: &'a [RouteConfig], r: &Request<()>) -> Option<&'a str> {
    let table = RouteTable::new(routes);
    assert_eq!(table.len(), routes.len());
    table.match_request(r).map(|i| routes[i].name.as_str())
}

// === Precedence ===

#[test]
fn exact_host_beats_suffix_beats_no_host() {
    // Declared least specific first, so declaration order cannot explain the result.
    let routes = [
        route("any"),
        route("wild").host("*.example.com"),
        route("api").host("api.example.com"),
    ];
    assert_eq!(
        matched(&routes, &get("/", Some("api.example.com"))),
        Some("api")
    );
    assert_eq!(
        matched(&routes, &get("/", Some("www.example.com"))),
        Some("wild")
    );
    assert_eq!(
        matched(&routes, &get("/", Some("a.b.example.com"))),
        Some("wild")
    );
    // `*.example.com` needs at least one more label.
    assert_eq!(
        matched(&routes, &get("/", Some("example.com"))),
        Some("any")
    );
    assert_eq!(
        matched(&routes, &get("/", Some("badexample.com"))),
        Some("any")
    );
    assert_eq!(matched(&routes, &get("/", Some("other.org"))), Some("any"));
    assert_eq!(matched(&routes, &get("/", None)), Some("any"));
}

#[test]
fn a_host_bucket_that_does_not_match_falls_through() {
    let routes = [
        route("api-v1").host("api.example.com").prefix("/v1/"),
        route("wild").host("*.example.com").prefix("/v2/"),
        route("any"),
    ];
    let host = Some("api.example.com");
    assert_eq!(matched(&routes, &get("/v1/x", host)), Some("api-v1"));
    assert_eq!(matched(&routes, &get("/v2/x", host)), Some("wild"));
    assert_eq!(matched(&routes, &get("/v3/x", host)), Some("any"));
}

#[test]
fn longer_host_suffix_first() {
    let routes = [
        route("short").host("*.example.com"),
        route("long").host("*.api.example.com"),
    ];
    assert_eq!(
        matched(&routes, &get("/", Some("x.api.example.com"))),
        Some("long")
    );
    assert_eq!(
        matched(&routes, &get("/", Some("api.example.com"))),
        Some("short")
    );
}

#[test]
fn exact_path_beats_longer_prefix_beats_shorter_prefix() {
    let routes = [
        route("root").prefix("/"),
        route("ap").prefix("/ap"),
        route("api-prefix").prefix("/api"),
        route("api-exact").exact("/api"),
        route("api-v1").prefix("/api/v1/"),
    ];
    assert_eq!(matched(&routes, &get("/api", None)), Some("api-exact"));
    assert_eq!(matched(&routes, &get("/api/", None)), Some("api-prefix"));
    assert_eq!(
        matched(&routes, &get("/api/v1/users", None)),
        Some("api-v1")
    );
    assert_eq!(matched(&routes, &get("/api/v1", None)), Some("api-prefix"));
    assert_eq!(matched(&routes, &get("/apx", None)), Some("ap"));
    assert_eq!(matched(&routes, &get("/z", None)), Some("root"));
    // The query is not part of the path.
    assert_eq!(matched(&routes, &get("/api?x=1", None)), Some("api-exact"));
}

#[test]
fn literal_segment_beats_a_template_and_templates_are_exact() {
    let routes = [
        route("root").prefix("/"),
        route("apps").prefix("/applications/"),
        route("app").template("/applications/{id}"),
        route("me").template("/applications/@me"),
        route("app-cmds").template("/applications/{id}/commands"),
        route("call").template("/Calls/{Sid}.json"),
        route("call-any").template("/Calls/{Sid}"),
        route("call-exact").exact("/Calls/CA1.json"),
    ];
    let m = |p: &str| matched(&routes, &get(p, None));
    assert_eq!(m("/applications/@me"), Some("me"));
    assert_eq!(m("/applications/42"), Some("app"));
    assert_eq!(m("/applications/42/commands"), Some("app-cmds"));
    // A path no template describes falls to the prefix here; without one it gets no route.
    assert_eq!(m("/applications/42/other"), Some("apps"));
    assert_eq!(m("/Calls/CA2.json"), Some("call"));
    assert_eq!(m("/Calls/CA2.xml"), Some("call-any"));
    assert_eq!(m("/Calls/CA1.json"), Some("call-exact"));
    assert_eq!(m("/Calls/CA2.json?x=1"), Some("call"));
    let only_templates = [route("app").template("/applications/{id}")];
    assert_eq!(
        matched(&only_templates, &get("/applications/1/x", None)),
        None
    );
    assert_eq!(matched(&only_templates, &get("/applications/", None)), None);
    assert_eq!(matched(&only_templates, &get("/applications", None)), None);
}

#[test]
fn template_routes_with_methods_backtrack_to_a_less_specific_template() {
    let routes = [
        route("get-pet")
            .template("/pets/{id}")
            .methods(&[Method::GET]),
        route("del-pet")
            .template("/pets/{id}")
            .methods(&[Method::DELETE]),
        route("find")
            .template("/pets/findByStatus")
            .methods(&[Method::GET]),
        route("any")
            .template("/{kind}/{id}")
            .methods(&[Method::POST]),
    ];
    let m = |method: Method, p: &str| matched(&routes, &req(method, p, None, &[]));
    assert_eq!(m(Method::GET, "/pets/findByStatus"), Some("find"));
    assert_eq!(m(Method::DELETE, "/pets/findByStatus"), Some("del-pet"));
    assert_eq!(m(Method::POST, "/pets/findByStatus"), Some("any"));
    assert_eq!(m(Method::PUT, "/pets/1"), None);
}

#[test]
fn methods_and_headers_make_a_route_more_specific() {
    let routes = [
        route("plain").prefix("/api"),
        route("one-header").prefix("/api").header("x-beta", None),
        route("two-headers")
            .prefix("/api")
            .header("x-beta", None)
            .header("x-env", Some("staging")),
        route("post").prefix("/api").methods(&[Method::POST]),
    ];
    let beta = [("x-beta", "1")];
    let both = [("x-beta", "1"), ("x-env", "staging")];
    assert_eq!(
        matched(&routes, &req(Method::GET, "/api", None, &[])),
        Some("plain")
    );
    assert_eq!(
        matched(&routes, &req(Method::GET, "/api", None, &beta)),
        Some("one-header")
    );
    assert_eq!(
        matched(&routes, &req(Method::GET, "/api", None, &both)),
        Some("two-headers")
    );
    // The rank compares methods before the header count.
    assert_eq!(
        matched(&routes, &req(Method::POST, "/api", None, &both)),
        Some("post")
    );
    assert_eq!(
        matched(&routes, &req(Method::POST, "/api", None, &[])),
        Some("post")
    );
}

#[test]
fn path_length_outranks_methods() {
    let routes = [
        route("short-get").prefix("/api").methods(&[Method::GET]),
        route("long").prefix("/api/v1"),
    ];
    assert_eq!(matched(&routes, &get("/api/v1/x", None)), Some("long"));
    assert_eq!(matched(&routes, &get("/api/v2", None)), Some("short-get"));
}

#[test]
fn ties_go_to_declaration_order() {
    let routes = [
        route("first").prefix("/a"),
        route("second").prefix("/a"),
        route("third").prefix("/b").header("x-b", None),
        route("fourth").prefix("/b").header("x-c", None),
    ];
    assert_eq!(matched(&routes, &get("/a", None)), Some("first"));
    let bc = [("x-b", "1"), ("x-c", "1")];
    assert_eq!(
        matched(&routes, &req(Method::GET, "/b", None, &bc)),
        Some("third")
    );
    assert_eq!(
        matched(&routes, &req(Method::GET, "/b", None, &[("x-c", "1")])),
        Some("fourth")
    );
    // Same inside a host bucket.
    let routes = [
        route("h1").host("a.example.com"),
        route("h2").host("a.example.com"),
    ];
    assert_eq!(
        matched(&routes, &get("/", Some("a.example.com"))),
        Some("h1")
    );
}

// === Host extraction ===

#[test]
fn host_header_port_and_case_are_ignored() {
    let routes = [route("api").host("api.example.com"), route("any")];
    for h in [
        "api.example.com",
        "API.Example.COM",
        "api.example.com:8443",
        "Api.Example.Com:80",
    ] {
        assert_eq!(
            matched(&routes, &get("/", Some(h))),
            Some("api"),
            "Host: {h}"
        );
    }
    assert_eq!(
        host_of(&get("/", Some("API.example.com:8443"))).as_deref(),
        Some("api.example.com")
    );
    // Not a port: kept as part of the host.
    assert_eq!(
        host_of(&get("/", Some("example.com:http"))).as_deref(),
        Some("example.com:http")
    );
}

#[test]
fn ipv6_host_literal() {
    let routes = [route("v6").host("[::1]"), route("any")];
    for h in ["[::1]:8080", "[::1]"] {
        assert_eq!(
            host_of(&get("/", Some(h))).as_deref(),
            Some("[::1]"),
            "Host: {h}"
        );
        assert_eq!(
            matched(&routes, &get("/", Some(h))),
            Some("v6"),
            "Host: {h}"
        );
    }
    // The URI authority form gives the same host as the header form.
    let r = get("http://[::1]:8080/x", None);
    assert_eq!(host_of(&r).as_deref(), Some("[::1]"));
    assert_eq!(matched(&routes, &r), Some("v6"));
    assert_eq!(
        host_of(&get("/", Some("[2001:DB8::1]:443"))).as_deref(),
        Some("[2001:db8::1]")
    );
}

#[test]
fn absolute_uri_authority_wins_over_the_host_header() {
    let routes = [route("api").host("api.example.com"), route("any")];
    // HTTP/2 requests carry `:authority` as the URI's authority.
    let r = get("https://API.example.com:443/path", Some("other.org"));
    assert_eq!(host_of(&r).as_deref(), Some("api.example.com"));
    assert_eq!(matched(&routes, &r), Some("api"));
    let r = get("https://other.org/path", Some("api.example.com"));
    assert_eq!(matched(&routes, &r), Some("any"));
}

#[test]
fn no_host_or_a_non_text_host() {
    assert_eq!(host_of(&get("/", None)), None);
    let mut r = get("/", None);
    r.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_bytes(b"caf\xe9.example").unwrap(),
    );
    assert_eq!(host_of(&r), None);
    // Such a request only matches host-less routes.
    let routes = [route("h").host("cafe.example"), route("any")];
    assert_eq!(matched(&routes, &r), Some("any"));
}

/// A `Host` header of `[` or `[::1` (no `]`) must not panic the request path.
#[test]
fn unterminated_ipv6_host_does_not_panic() {
    for h in ["[", "[::1", "[::1:8080"] {
        let r = get("/", Some(h));
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            host_of(&r).map(|h| h.into_owned())
        }));
        assert!(got.is_ok(), "host_of panicked on Host: {h}");
    }
}

// === Headers and methods ===

#[test]
fn header_presence_versus_value() {
    let present = [route("present").header("x-env", None)];
    let valued = [route("valued").header("x-env", Some("canary"))];
    let with = |v: &str| req(Method::GET, "/", None, &[("x-env", v)]);

    for v in ["canary", "prod", ""] {
        assert_eq!(matched(&present, &with(v)), Some("present"), "x-env: {v:?}");
    }
    assert_eq!(matched(&present, &get("/", None)), None);

    assert_eq!(matched(&valued, &with("canary")), Some("valued"));
    assert_eq!(
        matched(&valued, &with("Canary")),
        None,
        "values compare exactly"
    );
    assert_eq!(matched(&valued, &with("canary2")), None);
    assert_eq!(matched(&valued, &get("/", None)), None);
    // Header names are case-insensitive on the wire.
    assert_eq!(
        matched(
            &valued,
            &req(Method::GET, "/", None, &[("X-Env", "canary")])
        ),
        Some("valued")
    );
}

#[test]
fn method_filtering() {
    let routes = [route("rw").methods(&[Method::GET, Method::POST])];
    for m in [Method::GET, Method::POST] {
        assert_eq!(
            matched(&routes, &req(m.clone(), "/", None, &[])),
            Some("rw"),
            "{m}"
        );
    }
    for m in [Method::HEAD, Method::DELETE, Method::PUT, Method::OPTIONS] {
        assert_eq!(
            matched(&routes, &req(m.clone(), "/", None, &[])),
            None,
            "{m}"
        );
    }
    // No methods listed: any method.
    let any = [route("any")];
    assert_eq!(
        matched(&any, &req(Method::PATCH, "/", None, &[])),
        Some("any")
    );
}

#[test]
fn no_match_is_none() {
    assert_eq!(RouteTable::new(&[]).match_request(&get("/", None)), None);
    assert!(RouteTable::new(&[]).is_empty());
    let routes = [
        route("api").prefix("/api"),
        route("h").host("a.example.com").exact("/"),
    ];
    assert_eq!(matched(&routes, &get("/ap", None)), None);
    assert_eq!(matched(&routes, &get("/", Some("b.example.com"))), None);
    // Prefixes are byte-wise: no case folding of the path.
    assert_eq!(matched(&routes, &get("/API", None)), None);
}

// === Rewrites ===

#[test]
fn strip_prefix() {
    let s = Rewrite::StripPrefix;
    assert_eq!(rewrite_path(&s, "/api/", "/api/users"), "/users");
    assert_eq!(rewrite_path(&s, "/api/", "/api/"), "/");
    assert_eq!(rewrite_path(&s, "/api", "/api/users"), "/users");
    assert_eq!(rewrite_path(&s, "/api", "/api"), "/");
    assert_eq!(rewrite_path(&s, "/api", "/apix"), "/x");
    assert_eq!(rewrite_path(&s, "/", "/a/b"), "/a/b");
}

#[test]
fn replace_prefix_with_and_without_trailing_slash() {
    let slash = Rewrite::ReplacePrefix("/v2/".into());
    assert_eq!(rewrite_path(&slash, "/api/", "/api/users"), "/v2/users");
    assert_eq!(
        rewrite_path(&slash, "/api", "/api/users"),
        "/v2/users",
        "no '//'"
    );
    assert_eq!(rewrite_path(&slash, "/api", "/api"), "/v2/");
    let bare = Rewrite::ReplacePrefix("/v2".into());
    assert_eq!(rewrite_path(&bare, "/api", "/api/users"), "/v2/users");
    assert_eq!(rewrite_path(&bare, "/api", "/api"), "/v2");
    // A literal replacement, as Envoy's `prefix_rewrite`: the slash of the match is gone.
    assert_eq!(rewrite_path(&bare, "/api/", "/api/users"), "/v2users");
    let root = Rewrite::ReplacePrefix("/".into());
    assert_eq!(rewrite_path(&root, "/static", "/static/app.js"), "/app.js");
    assert_eq!(rewrite_path(&root, "/static/", "/static/app.js"), "/app.js");
}

// === Property: the table agrees with a brute-force reference ===

const HOSTS: [&str; 5] = [
    "a.example.com",
    "b.example.com",
    "example.com",
    "*.example.com",
    "*.a.example.com",
];
const PATHS: [&str; 6] = ["/", "/a", "/a/", "/a/b", "/ab", "/b"];
const REQ_HOSTS: [&str; 7] = [
    "a.example.com",
    "A.Example.com:8080",
    "b.example.com",
    "x.a.example.com",
    "example.com",
    "EXAMPLE.COM:1",
    "other.org",
];
const TEMPLATES: [&str; 9] = [
    "/{x}",
    "/a/{x}",
    "/{x}/b",
    "/a/{x}.j",
    "/a/{x}.{y}",
    "/{x}b",
    "/a/b",
    "/{x}/{y}",
    "/a/{x}/",
];
const REQ_PATHS: [&str; 14] = [
    "/", "/a", "/a/", "/a/b", "/ab", "/abc", "/b", "/c", "/a/b.j", "/a/x.j", "/x/b", "/a/.j",
    "/a/x/", "/a/x.y.j",
];

/// Whole-path match of a template, written independently of `PathTemplate`: `{name}` takes one
/// or more bytes other than `/`, everything else matches itself.
fn template_matches(t: &str, p: &str) -> bool {
    match t.strip_prefix('{') {
        Some(rest) => {
            let rest = &rest[rest.find('}').unwrap() + 1..];
            (1..=p.len())
                .take_while(|&n| !p[..n].contains('/'))
                .any(|n| template_matches(rest, &p[n..]))
        }
        None => match (t.chars().next(), p.chars().next()) {
            (None, None) => true,
            (Some(a), Some(b)) if a == b => template_matches(&t[1..], &p[1..]),
            _ => false,
        },
    }
}

/// Per segment: literal (0), partial with more literal bytes first (1), whole `{name}` (2); the
/// shape with names removed breaks ties.
fn template_rank(t: &str) -> Vec<(u8, Reverse<usize>, String)> {
    t[1..]
        .split('/')
        .map(|seg| {
            if !seg.contains('{') {
                return (0, Reverse(seg.len()), seg.to_string());
            }
            let mut shape = String::new();
            let mut in_name = false;
            for c in seg.chars() {
                match c {
                    '{' => {
                        in_name = true;
                        shape.push_str("{}");
                    }
                    '}' => in_name = false,
                    c if !in_name => shape.push(c),
                    _ => {}
                }
            }
            let literal = shape.len() - 2 * seg.matches('{').count();
            (if literal == 0 { 2 } else { 1 }, Reverse(literal), shape)
        })
        .collect()
}

fn arb_route() -> impl Strategy<Value = RouteConfig> {
    (
        proptest::option::of(prop::sample::select(&HOSTS[..])),
        0..3u8,
        prop::sample::select(&PATHS[..]),
        prop::sample::select(&TEMPLATES[..]),
        prop::sample::subsequence(vec![Method::GET, Method::POST], 0..=2),
        prop::sample::subsequence(
            vec![("x-a", None), ("x-a", Some("1")), ("x-b", None)],
            0..=2,
        ),
    )
        .prop_map(|(host, kind, path, template, methods, headers)| {
            let mut r = route("r").methods(&methods);
            r = match kind {
                0 => r.exact(path),
                1 => r.prefix(path),
                _ => r.template(template),
            };
            if let Some(h) = host {
                r = r.host(h);
            }
            for (n, v) in headers {
                r = r.header(n, v);
            }
            r
        })
}

#[derive(Debug, Clone)]
struct Req {
    host: Option<(&'static str, bool)>,
    path: &'static str,
    method: Method,
    headers: Vec<(&'static str, &'static str)>,
}

fn arb_req() -> impl Strategy<Value = Req> {
    (
        proptest::option::of((prop::sample::select(&REQ_HOSTS[..]), any::<bool>())),
        prop::sample::select(&REQ_PATHS[..]),
        prop::sample::select(vec![Method::GET, Method::POST, Method::PUT]),
        prop::sample::select(vec![None, Some("1"), Some("2")]),
        any::<bool>(),
    )
        .prop_map(|(host, path, method, xa, xb)| {
            let mut headers = Vec::new();
            if let Some(v) = xa {
                headers.push(("x-a", v));
            }
            if xb {
                headers.push(("x-b", "1"));
            }
            Req {
                host,
                path,
                method,
                headers,
            }
        })
}

impl Req {
    /// As a request: the host in the `Host` header or as an absolute URI's authority.
    fn build(&self) -> Request<()> {
        match self.host {
            Some((h, true)) => req(
                self.method.clone(),
                &format!("http://{h}{}", self.path),
                None,
                &self.headers,
            ),
            Some((h, false)) => req(self.method.clone(), self.path, Some(h), &self.headers),
            None => req(self.method.clone(), self.path, None, &self.headers),
        }
    }

    /// Lower-case host without port, computed independently of `host_of`.
    fn host(&self) -> Option<String> {
        self.host
            .map(|(h, _)| h.split(':').next().unwrap().to_ascii_lowercase())
    }
}

/// Filters every route that matches, then takes the minimum of the documented precedence:
/// host class (exact, longest suffix, none), exact path / template / prefix, longer path,
/// template segments (literal, partial, whole), has methods, more headers, declaration order.
fn reference(routes: &[RouteConfig], r: &Req) -> Option<usize> {
    let host = r.host();
    let matches = |rt: &RouteConfig| {
        let host_ok = match (&rt.host, &host) {
            (None, _) => true,
            (Some(HostMatch::Exact(e)), Some(h)) => e == h,
            (Some(HostMatch::Suffix(s)), Some(h)) => h.len() > s.len() && h.ends_with(s.as_str()),
            (Some(_), None) => false,
        };
        let path_ok = match &rt.path {
            PathMatch::Exact(p) => p == r.path,
            PathMatch::Prefix(p) => r.path.starts_with(p.as_str()),
            PathMatch::Template(t) => template_matches(t.as_str(), r.path),
        };
        let method_ok = rt.methods.is_empty() || rt.methods.contains(&r.method);
        let headers_ok = rt.headers.iter().all(|h| {
            r.headers.iter().any(|(n, v)| {
                *n == h.name.as_str()
                    && match h.value.as_deref() {
                        None => true,
                        Some(want) => want == *v,
                    }
            })
        });
        host_ok && path_ok && method_ok && headers_ok
    };
    let rank = |i: usize| {
        let rt = &routes[i];
        let host = match &rt.host {
            Some(HostMatch::Exact(_)) => (0, Reverse(0)),
            Some(HostMatch::Suffix(s)) => (1, Reverse(s.len())),
            None => (2, Reverse(0)),
        };
        let (kind, len, segments) = match &rt.path {
            PathMatch::Exact(p) => (0, p.len(), Vec::new()),
            PathMatch::Template(t) => (1, 0, template_rank(t.as_str())),
            PathMatch::Prefix(p) => (2, p.len(), Vec::new()),
        };
        (
            host,
            kind,
            Reverse(len),
            segments,
            rt.methods.is_empty(),
            Reverse(rt.headers.len()),
            i,
        )
    };
    (0..routes.len())
        .filter(|&i| matches(&routes[i]))
        .min_by_key(|&i| rank(i))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_agrees_with_brute_force(
        routes in prop::collection::vec(arb_route(), 0..12),
        reqs in prop::collection::vec(arb_req(), 1..16),
    ) {
        let table = RouteTable::new(&routes);
        for r in &reqs {
            prop_assert_eq!(table.match_request(&r.build()), reference(&routes, r), "{:?}", r);
        }
    }
}
