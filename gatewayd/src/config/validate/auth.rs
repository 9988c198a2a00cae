//! `kind = "jwt"` and `kind = "forward_auth"` from the file, every problem with file, line and
//! field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use http::header::HeaderName;
use toml::Spanned;

use super::super::file::PolicyFile;
use super::super::policies::*;
use super::super::types::ServiceConfig;
use super::policies::header_list;
use super::Ctx;

/// How often a JWKS is read again by default.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// Clock skew allowed on `exp` / `nbf` by default.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
/// How long an auth service may take by default.
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Forward-auth cache entries kept by default.
pub const DEFAULT_AUTH_CACHE_ENTRIES: usize = 10_000;
/// Verified tokens a JWT policy remembers by default.
pub const DEFAULT_JWT_TOKEN_CACHE_ENTRIES: usize = 1_000;

/// Fields a policy may never set on the upstream request: framing, routing and hop-by-hop
/// fields belong to the gateway.
const RESERVED: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

pub(super) fn jwt(
    cx: &mut Ctx<'_>,
    f: &PolicyFile,
    prefix: &str,
    table: Range<usize>,
) -> Option<JwtConfig> {
    let jwks = match (&f.jwks_file, &f.jwks_url) {
        (Some(file), None) => JwksSource::File(cx.path(file.get_ref())),
        (None, Some(url)) => {
            let u = url.get_ref();
            let ok = ["http://", "https://"]
                .iter()
                .any(|s| u.len() > s.len() && u[..s.len()].eq_ignore_ascii_case(s))
                && u.parse::<http::Uri>().is_ok();
            if !ok {
                cx.err(
                    url.span(),
                    format!("{prefix}.jwks_url"),
                    format!("'{u}' is not an http:// or https:// URL"),
                );
            }
            JwksSource::Url(u.clone())
        }
        (Some(_), Some(url)) => {
            cx.err(
                url.span(),
                format!("{prefix}.jwks_url"),
                "give jwks_file or jwks_url, not both",
            );
            return None;
        }
        (None, None) => {
            cx.err(
                table,
                format!("{prefix}.jwks_file"),
                "a jwt policy needs jwks_file or jwks_url",
            );
            return None;
        }
    };
    let refresh_interval = cx.duration(
        &f.jwks_refresh_interval,
        &format!("{prefix}.jwks_refresh_interval"),
        DEFAULT_JWKS_REFRESH,
    );
    if refresh_interval < Duration::from_secs(1) {
        if let Some(v) = &f.jwks_refresh_interval {
            cx.err(
                v.span(),
                format!("{prefix}.jwks_refresh_interval"),
                "must be at least 1s (it also spaces refetches for unknown key ids)",
            );
        }
    }
    let leeway = match &f.leeway {
        None => DEFAULT_JWT_LEEWAY,
        Some(v) => match humantime::parse_duration(v.get_ref()) {
            Ok(d) if d <= Duration::from_secs(3600) => d,
            _ => {
                cx.err(
                    v.span(),
                    format!("{prefix}.leeway"),
                    format!(
                        "'{}' is not a duration of at most 1h (examples: '0s', '30s')",
                        v.get_ref()
                    ),
                );
                DEFAULT_JWT_LEEWAY
            }
        },
    };
    let mut algorithms = Vec::new();
    for a in f.algorithms.as_deref().unwrap_or_default() {
        let field = format!("{prefix}.algorithms");
        match JwtAlgorithm::from_str(a.get_ref()) {
            Ok(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
            Ok(_) => cx.err(a.span(), field, format!("'{}' is listed twice", a.get_ref())),
            Err(_) if a.get_ref().eq_ignore_ascii_case("none") => cx.err(
                a.span(),
                field,
                "'none' is never accepted: an unsigned token proves nothing",
            ),
            Err(_) => cx.err(
                a.span(),
                field,
                format!(
                    "'{}' is not one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA",
                    a.get_ref()
                ),
            ),
        }
    }
    if let Some(first) = f.algorithms.as_ref().and_then(|l| l.first()) {
        if f.algorithms.as_ref().is_some_and(|l| l.is_empty()) {
            cx.err(first.span(), format!("{prefix}.algorithms"), "empty list");
        }
    }
    let issuer = f.issuer.as_ref().map(|i| {
        if i.get_ref().is_empty() {
            cx.err(i.span(), format!("{prefix}.issuer"), "empty issuer");
        }
        i.get_ref().clone()
    });
    let mut audiences = Vec::new();
    for a in f.audiences.as_deref().unwrap_or_default() {
        if a.get_ref().is_empty() {
            cx.err(a.span(), format!("{prefix}.audiences"), "empty audience");
        }
        audiences.push(a.get_ref().clone());
    }
    let mut forward_claims: Vec<(String, HeaderName)> = Vec::new();
    for (claim, header) in f.forward_claims.iter().flatten() {
        let field = format!("{prefix}.forward_claims.{claim}");
        if claim.is_empty() {
            cx.err(header.span(), field, "empty claim name");
            continue;
        }
        let Some(h) = upstream_header(cx, header, &field) else {
            continue;
        };
        if forward_claims
            .iter()
            .any(|(_, other)| same_field(other, &h))
        {
            cx.err(
                header.span(),
                field,
                format!("'{}' already carries another claim", header.get_ref()),
            );
            continue;
        }
        forward_claims.push((claim.clone(), h));
    }
    let token_cache_entries = match &f.token_cache_entries {
        None => DEFAULT_JWT_TOKEN_CACHE_ENTRIES,
        Some(m) => cx.int(m, &format!("{prefix}.token_cache_entries"), 0, 10_000_000)?,
    };
    Some(JwtConfig {
        jwks,
        refresh_interval,
        issuer,
        audiences,
        leeway,
        algorithms,
        forward_claims,
        strip_authorization: f.strip_authorization.as_ref().is_some_and(|v| *v.get_ref()),
        token_cache_entries,
    })
}

pub(super) fn forward_auth(
    cx: &mut Ctx<'_>,
    f: &PolicyFile,
    prefix: &str,
    table: Range<usize>,
    services: &BTreeMap<String, ServiceConfig>,
) -> Option<ForwardAuthConfig> {
    let Some(service) = &f.service else {
        cx.err(
            table,
            format!("{prefix}.service"),
            "a forward_auth policy needs service, a [services.NAME] that answers it",
        );
        return None;
    };
    if !services.contains_key(service.get_ref()) {
        cx.err(
            service.span(),
            format!("{prefix}.service"),
            format!(
                "no service named '{}' ([services.{}])",
                service.get_ref(),
                service.get_ref()
            ),
        );
    }
    let path = match &f.path {
        None => "/".to_string(),
        Some(p) => {
            let v = p.get_ref();
            let ok = v.starts_with('/')
                && v.parse::<http::uri::PathAndQuery>().is_ok()
                && !v.contains('#');
            if !ok {
                cx.err(
                    p.span(),
                    format!("{prefix}.path"),
                    format!("'{v}' is not a path starting with '/'"),
                );
            }
            v.clone()
        }
    };
    let timeout = cx.duration(
        &f.timeout,
        &format!("{prefix}.timeout"),
        DEFAULT_AUTH_TIMEOUT,
    );
    let mut request_headers = Vec::new();
    match &f.request_headers {
        None => request_headers.push(http::header::AUTHORIZATION),
        Some(_) => {
            let field = format!("{prefix}.request_headers");
            if header_list(cx, &f.request_headers, &field, &mut request_headers) {
                star(cx, &f.request_headers, &field);
            }
            for spanned in f.request_headers.iter().flatten() {
                let lower = spanned.get_ref().to_ascii_lowercase();
                if RESERVED.contains(&lower.as_str()) || lower.starts_with("x-forwarded-") {
                    cx.err(
                        spanned.span(),
                        field.clone(),
                        format!(
                            "'{}' is set by the gateway on the subrequest, not copied",
                            spanned.get_ref()
                        ),
                    );
                }
            }
        }
    }
    let mut response_headers = Vec::new();
    for h in f.response_headers.iter().flatten() {
        if let Some(name) = upstream_header(cx, h, &format!("{prefix}.response_headers")) {
            response_headers.push(name);
        }
    }
    let cache_ttl = f
        .cache_ttl
        .is_some()
        .then(|| cx.duration(&f.cache_ttl, &format!("{prefix}.cache_ttl"), Duration::ZERO));
    let mut cache_key = Vec::new();
    let field = format!("{prefix}.cache_key");
    if header_list(cx, &f.cache_key, &field, &mut cache_key) {
        star(cx, &f.cache_key, &field);
    }
    if f.cache_key.is_none() {
        cache_key.push(http::header::AUTHORIZATION);
    }
    if cache_ttl.is_some() {
        // The answer may only depend on what the auth service saw: a key header it is not sent
        // would let one client's allow serve another.
        for spanned in f.cache_key.iter().flatten() {
            let known = HeaderName::from_bytes(spanned.get_ref().as_bytes())
                .is_ok_and(|h| request_headers.contains(&h));
            if !known && spanned.get_ref() != "*" {
                cx.err(
                    spanned.span(),
                    field.clone(),
                    format!(
                        "'{}' is not in request_headers: the auth service never sees it",
                        spanned.get_ref()
                    ),
                );
            }
        }
        if cache_key.is_empty() {
            if let Some(t) = &f.cache_ttl {
                cx.err(
                    t.span(),
                    field.clone(),
                    "a cache needs at least one cache_key header",
                );
            }
        }
    } else if let Some(first) = f.cache_key.as_ref().and_then(|l| l.first()) {
        cx.err(
            first.span(),
            field,
            "cache_key without cache_ttl caches nothing",
        );
    }
    let cache_max_entries = match &f.cache_max_entries {
        None => DEFAULT_AUTH_CACHE_ENTRIES,
        Some(m) => cx.int(m, &format!("{prefix}.cache_max_entries"), 1, 10_000_000)?,
    };
    Some(ForwardAuthConfig {
        service: service.get_ref().clone(),
        path,
        timeout,
        request_headers,
        response_headers,
        failure_mode_allow: f.failure_mode_allow.as_ref().is_some_and(|v| *v.get_ref()),
        cache_ttl,
        cache_key,
        cache_max_entries,
    })
}

/// `"*"` in a list that needs names.
fn star(cx: &mut Ctx<'_>, v: &Option<Vec<Spanned<String>>>, field: &str) {
    if let Some(s) = v.iter().flatten().find(|s| s.get_ref() == "*") {
        cx.err(
            s.span(),
            field,
            "'*' is not accepted here: list the headers",
        );
    }
}

/// A header a policy sets on the upstream request.
fn upstream_header(cx: &mut Ctx<'_>, h: &Spanned<String>, field: &str) -> Option<HeaderName> {
    let Ok(name) = HeaderName::from_bytes(h.get_ref().as_bytes()) else {
        cx.err(
            h.span(),
            field,
            format!("'{}' is not a header name", h.get_ref()),
        );
        return None;
    };
    if RESERVED.contains(&name.as_str()) {
        cx.err(
            h.span(),
            field,
            format!("'{}' belongs to the gateway and cannot be set", h.get_ref()),
        );
        return None;
    }
    Some(name)
}

/// Two field names that servers may take for one (`X_User` and `x-user`).
pub fn same_field(a: &HeaderName, b: &HeaderName) -> bool {
    let (a, b) = (a.as_str().as_bytes(), b.as_str().as_bytes());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || matches!((x, y), (b'_', b'-') | (b'-', b'_')))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use crate::config::{
        from_str, Config, ConfigError, JwksSource, JwtAlgorithm, PolicyKind, RateKey,
    };

    const HEAD: &str = "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[services.auth]\nendpoints = [\"127.0.0.1:9002\"]\n\n[[routes]]\nname = \"web\"\npolicies = [\"api\"]\nbackends = [{ name = \"blue\", weight = 1 }]\n\n";

    fn parse(policies: &str) -> Result<Config, Vec<ConfigError>> {
        from_str(&format!("{HEAD}{policies}"), "t.toml").map_err(|e| e.0)
    }

    /// The line (in the whole file) of the first line of `policies` holding `needle`; a
    /// needle not in `policies` is looked for in the routes above them.
    fn line_of(policies: &str, needle: &str) -> usize {
        match policies.lines().position(|l| l.contains(needle)) {
            Some(i) => HEAD.lines().count() + i + 1,
            None => HEAD.lines().position(|l| l.contains(needle)).unwrap() + 1,
        }
    }

    #[test]
    fn a_jwt_policy_parses_with_every_key() {
        let c = parse("[policies.api]\nkind = \"jwt\"\njwks_url = \"https://idp.example/.well-known/jwks.json\"\njwks_refresh_interval = \"10m\"\nissuer = \"https://idp.example\"\naudiences = [\"orders\", \"billing\"]\nleeway = \"0s\"\nalgorithms = [\"RS256\", \"EdDSA\"]\nforward_claims = { sub = \"X-User-Sub\", \"https://idp.example/tenant\" = \"X-Tenant\" }\nstrip_authorization = true\n").unwrap();
        let PolicyKind::Jwt(j) = &c.policies["api"].kind else {
            panic!("jwt")
        };
        assert_eq!(
            j.jwks,
            JwksSource::Url("https://idp.example/.well-known/jwks.json".into())
        );
        assert_eq!(j.refresh_interval, Duration::from_secs(600));
        assert_eq!(j.leeway, Duration::ZERO);
        assert_eq!(j.algorithms, [JwtAlgorithm::RS256, JwtAlgorithm::EdDSA]);
        assert_eq!(j.forward_claims.len(), 2);
        assert!(j.strip_authorization);
    }

    #[test]
    fn a_forward_auth_policy_parses_with_defaults() {
        let c = parse(
            "[policies.api]\nkind = \"forward_auth\"\nservice = \"auth\"\ncache_ttl = \"30s\"\n",
        )
        .unwrap();
        let PolicyKind::ForwardAuth(f) = &c.policies["api"].kind else {
            panic!("forward_auth")
        };
        assert_eq!((f.path.as_str(), f.timeout), ("/", Duration::from_secs(1)));
        assert_eq!(f.request_headers, [http::header::AUTHORIZATION]);
        assert_eq!(f.cache_key, [http::header::AUTHORIZATION]);
        assert_eq!(f.cache_ttl, Some(Duration::from_secs(30)));
        assert!(!f.failure_mode_allow);
    }

    #[test]
    fn every_mistake_is_named_by_file_line_and_field() {
        let cases: [(&str, &str, &str, &str); 15] = [
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\ntoken_cache_entries = -1\n",
                "token_cache_entries",
                "policies.api.token_cache_entries",
                "out of range",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\njwks_url = \"https://a/\"\n",
                "jwks_url",
                "policies.api.jwks_url",
                "not both",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_url = \"ftp://a/\"\n",
                "jwks_url",
                "policies.api.jwks_url",
                "not an http:// or https:// URL",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\nalgorithms = [\"RS256\", \"none\"]\n",
                "algorithms",
                "policies.api.algorithms",
                "'none' is never accepted",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\nalgorithms = [\"RS257\"]\n",
                "algorithms",
                "policies.api.algorithms",
                "is not one of",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\nleeway = \"soon\"\n",
                "leeway",
                "policies.api.leeway",
                "not a duration",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\nforward_claims = { sub = \"Host\" }\n",
                "forward_claims",
                "policies.api.forward_claims.sub",
                "belongs to the gateway",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\nforward_claims = { sub = \"X-User\", name = \"x_user\" }\n",
                "forward_claims",
                "policies.api.forward_claims.sub",
                "already carries another claim",
            ),
            (
                "[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\nservice = \"auth\"\n",
                "service",
                "policies.api.service",
                "not a key of a jwt policy (it belongs to forward_auth)",
            ),
            (
                "[policies.api]\nkind = \"forward_auth\"\nservice = \"nowhere\"\n",
                "service",
                "policies.api.service",
                "no service named 'nowhere'",
            ),
            (
                "[policies.api]\nkind = \"forward_auth\"\nservice = \"auth\"\npath = \"check\"\n",
                "path",
                "policies.api.path",
                "not a path starting with '/'",
            ),
            (
                "[policies.api]\nkind = \"forward_auth\"\nservice = \"auth\"\nrequest_headers = [\"X-Forwarded-For\"]\n",
                "request_headers",
                "policies.api.request_headers",
                "set by the gateway",
            ),
            (
                "[policies.api]\nkind = \"forward_auth\"\nservice = \"auth\"\ncache_ttl = \"1m\"\ncache_key = [\"cookie\"]\n",
                "cache_key",
                "policies.api.cache_key",
                "not in request_headers",
            ),
            (
                "[policies.api]\nkind = \"forward_auth\"\nservice = \"auth\"\ntimeout = \"0s\"\n",
                "timeout",
                "policies.api.timeout",
                "longer than zero",
            ),
            (
                "[policies.api]\nkind = \"rate_limit\"\nrate = \"5/s\"\nkey = \"claim:sub\"\n",
                "policies = [",
                "routes.web.policies",
                "needs a jwt policy on the route",
            ),
        ];
        for (src, line_has, field, reason) in cases {
            let errs = parse(src).unwrap_err();
            let want_line = line_of(src, line_has);
            assert!(
                errs.iter().any(|e| e.file == "t.toml"
                    && e.line == want_line
                    && e.field == field
                    && e.reason.contains(reason)),
                "{src}\n→ {errs:?}"
            );
        }
    }

    #[test]
    fn a_claim_key_with_a_jwt_on_the_route_is_accepted() {
        let src = HEAD.replace("policies = [\"api\"]", "policies = [\"per-user\", \"api\"]");
        let c = from_str(&format!("{src}[policies.api]\nkind = \"jwt\"\njwks_file = \"k.json\"\n\n[policies.per-user]\nkind = \"rate_limit\"\nrate = \"5/s\"\nkey = \"claim:sub\"\n"), "t.toml").unwrap();
        let PolicyKind::RateLimit(r) = &c.policies["per-user"].kind else {
            panic!("rate limit")
        };
        assert_eq!(r.key, RateKey::Claim("sub".into()));
    }
}
