//! `[policies.NAME]` from the file to [`PolicyConfig`], every problem with file, line and field.

use std::num::NonZeroU32;
use std::ops::Range;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use toml::Spanned;

use std::collections::BTreeMap;

use super::super::file::PolicyFile;
use super::super::policies::*;
use super::super::types::ServiceConfig;
use super::{valid_name, Ctx};

/// Buckets a rate limit keeps by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Methods a CORS preflight may ask for when `allow_methods` is not given.
const DEFAULT_CORS_METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::POST];

pub(super) fn policy(
    cx: &mut Ctx<'_>,
    name: &Spanned<String>,
    p: &Spanned<PolicyFile>,
    services: &BTreeMap<String, ServiceConfig>,
    registers: bool,
) -> Option<PolicyConfig> {
    let before = cx.errors.len();
    let n = name.get_ref();
    let prefix = format!("policies.{n}");
    if !valid_name(n) {
        cx.err(
            name.span(),
            prefix.clone(),
            "policy names use letters, digits, '_', '-', '.'",
        );
    }
    let f = p.get_ref();
    let kind = f.kind.get_ref().as_str();
    if KINDS.contains(&kind) {
        // Keys of another kind are mistakes, not silently ignored settings.
        for (k, owner, span) in present_keys(f) {
            if owner != kind {
                cx.err(
                    span,
                    format!("{prefix}.{k}"),
                    format!("not a key of a {kind} policy (it belongs to {owner})"),
                );
            }
        }
    }
    let kind = match kind {
        "cors" => PolicyKind::Cors(cors(cx, f, &prefix)),
        "rate_limit" => PolicyKind::RateLimit(rate_limit(cx, f, &prefix, p.span(), registers)?),
        "jwt" => PolicyKind::Jwt(super::auth::jwt(cx, f, &prefix, p.span())?),
        "forward_auth" => PolicyKind::ForwardAuth(super::auth::forward_auth(
            cx,
            f,
            &prefix,
            p.span(),
            services,
        )?),
        other => {
            cx.err(
                f.kind.span(),
                format!("{prefix}.kind"),
                format!("'{other}' is not one of {}", KINDS.join(", ")),
            );
            return None;
        }
    };
    (cx.errors.len() == before).then(|| PolicyConfig {
        name: n.clone(),
        kind,
    })
}

/// The kinds of policy.
const KINDS: [&str; 4] = ["cors", "rate_limit", "jwt", "forward_auth"];

/// Every key present besides `kind`: (key, the kind it belongs to, span).
fn present_keys(f: &PolicyFile) -> Vec<(&'static str, &'static str, Range<usize>)> {
    let list =
        |v: &Option<Vec<Spanned<String>>>| v.as_ref().and_then(|l| l.first()).map(|s| s.span());
    let one = |v: Option<Range<usize>>| v;
    [
        ("allow_origins", "cors", list(&f.allow_origins)),
        ("allow_methods", "cors", list(&f.allow_methods)),
        ("allow_headers", "cors", list(&f.allow_headers)),
        ("expose_headers", "cors", list(&f.expose_headers)),
        (
            "allow_credentials",
            "cors",
            one(f.allow_credentials.as_ref().map(|v| v.span())),
        ),
        ("max_age", "cors", one(f.max_age.as_ref().map(|v| v.span()))),
        ("rate", "rate_limit", one(f.rate.as_ref().map(|v| v.span()))),
        (
            "burst",
            "rate_limit",
            one(f.burst.as_ref().map(|v| v.span())),
        ),
        ("key", "rate_limit", one(f.key.as_ref().map(|v| v.span()))),
        (
            "max_keys",
            "rate_limit",
            one(f.max_keys.as_ref().map(|v| v.span())),
        ),
        (
            "scope",
            "rate_limit",
            one(f.scope.as_ref().map(|v| v.span())),
        ),
        (
            "jwks_file",
            "jwt",
            one(f.jwks_file.as_ref().map(|v| v.span())),
        ),
        (
            "jwks_url",
            "jwt",
            one(f.jwks_url.as_ref().map(|v| v.span())),
        ),
        (
            "jwks_refresh_interval",
            "jwt",
            one(f.jwks_refresh_interval.as_ref().map(|v| v.span())),
        ),
        ("issuer", "jwt", one(f.issuer.as_ref().map(|v| v.span()))),
        ("audiences", "jwt", list(&f.audiences)),
        ("leeway", "jwt", one(f.leeway.as_ref().map(|v| v.span()))),
        ("algorithms", "jwt", list(&f.algorithms)),
        (
            "forward_claims",
            "jwt",
            f.forward_claims
                .as_ref()
                .and_then(|m| m.values().next())
                .map(|v| v.span()),
        ),
        (
            "strip_authorization",
            "jwt",
            one(f.strip_authorization.as_ref().map(|v| v.span())),
        ),
        (
            "token_cache_entries",
            "jwt",
            one(f.token_cache_entries.as_ref().map(|v| v.span())),
        ),
        (
            "service",
            "forward_auth",
            one(f.service.as_ref().map(|v| v.span())),
        ),
        (
            "path",
            "forward_auth",
            one(f.path.as_ref().map(|v| v.span())),
        ),
        (
            "timeout",
            "forward_auth",
            one(f.timeout.as_ref().map(|v| v.span())),
        ),
        ("request_headers", "forward_auth", list(&f.request_headers)),
        (
            "response_headers",
            "forward_auth",
            list(&f.response_headers),
        ),
        (
            "failure_mode_allow",
            "forward_auth",
            one(f.failure_mode_allow.as_ref().map(|v| v.span())),
        ),
        (
            "cache_ttl",
            "forward_auth",
            one(f.cache_ttl.as_ref().map(|v| v.span())),
        ),
        ("cache_key", "forward_auth", list(&f.cache_key)),
        (
            "cache_max_entries",
            "forward_auth",
            one(f.cache_max_entries.as_ref().map(|v| v.span())),
        ),
    ]
    .into_iter()
    .filter_map(|(k, owner, s)| Some((k, owner, s?)))
    .collect()
}

fn cors(cx: &mut Ctx<'_>, f: &PolicyFile, prefix: &str) -> CorsConfig {
    let mut out = CorsConfig {
        allow_origins: Vec::new(),
        any_origin: false,
        allow_methods: DEFAULT_CORS_METHODS.to_vec(),
        allow_headers: Vec::new(),
        any_header: false,
        allow_credentials: f.allow_credentials.as_ref().is_some_and(|v| *v.get_ref()),
        max_age: None,
        expose_headers: Vec::new(),
    };
    let field = format!("{prefix}.allow_origins");
    let origins = f.allow_origins.as_deref().unwrap_or_default();
    if origins.is_empty() {
        cx.err(
            f.kind.span(),
            field.clone(),
            "a cors policy needs allow_origins",
        );
    }
    for o in origins {
        if o.get_ref() == "*" {
            out.any_origin = true;
            if out.allow_credentials {
                cx.err(
                    o.span(),
                    field.clone(),
                    "'*' cannot be used with allow_credentials = true: browsers refuse it; list the origins",
                );
            }
            continue;
        }
        match origin_pattern(o.get_ref()) {
            Ok(p) => out.allow_origins.push(p),
            Err(why) => cx.err(o.span(), field.clone(), format!("'{}': {why}", o.get_ref())),
        }
    }
    if let Some(ms) = &f.allow_methods {
        out.allow_methods.clear();
        for m in ms {
            match Method::from_bytes(m.get_ref().as_bytes()) {
                Ok(method) => out.allow_methods.push(method),
                Err(_) => cx.err(
                    m.span(),
                    format!("{prefix}.allow_methods"),
                    format!("'{}' is not a method", m.get_ref()),
                ),
            }
        }
    }
    out.any_header = header_list(
        cx,
        &f.allow_headers,
        &format!("{prefix}.allow_headers"),
        &mut out.allow_headers,
    );
    if header_list(
        cx,
        &f.expose_headers,
        &format!("{prefix}.expose_headers"),
        &mut out.expose_headers,
    ) {
        if let Some(first) = f.expose_headers.as_ref().and_then(|l| l.first()) {
            cx.err(
                first.span(),
                format!("{prefix}.expose_headers"),
                "'*' is not accepted here: list the headers",
            );
        }
    }
    if f.max_age.is_some() {
        out.max_age = Some(cx.duration(&f.max_age, &format!("{prefix}.max_age"), Duration::ZERO));
    }
    out
}

/// Parses header names into `out`; true when the list holds `"*"`.
pub(super) fn header_list(
    cx: &mut Ctx<'_>,
    v: &Option<Vec<Spanned<String>>>,
    field: &str,
    out: &mut Vec<HeaderName>,
) -> bool {
    let mut any = false;
    for h in v.as_deref().unwrap_or_default() {
        if h.get_ref() == "*" {
            any = true;
            continue;
        }
        match HeaderName::from_bytes(h.get_ref().as_bytes()) {
            Ok(n) => out.push(n),
            Err(_) => cx.err(
                h.span(),
                field,
                format!("'{}' is not a header name", h.get_ref()),
            ),
        }
    }
    any
}

/// `https://app.example.com`, `http://localhost:3000` or `https://*.example.com`.
fn origin_pattern(s: &str) -> Result<OriginPattern, &'static str> {
    let lower = s.to_ascii_lowercase();
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or("an origin is scheme://host[:port]")?;
    if scheme != "http" && scheme != "https" {
        return Err("the scheme is http or https");
    }
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err("an origin has no path, query or fragment");
    }
    match rest.strip_prefix("*.") {
        Some(suffix) if !suffix.is_empty() && !suffix.contains('*') && !suffix.starts_with('.') => {
            Ok(OriginPattern::Wildcard {
                prefix: format!("{scheme}://"),
                suffix: format!(".{suffix}"),
            })
        }
        Some(_) => Err("a wildcard origin is scheme://*.domain"),
        None if rest.contains('*') => Err("'*' may only stand for the first label"),
        None => Ok(OriginPattern::Exact(lower)),
    }
}

fn rate_limit(
    cx: &mut Ctx<'_>,
    f: &PolicyFile,
    prefix: &str,
    table: Range<usize>,
    registers: bool,
) -> Option<RateLimitConfig> {
    let Some(rate) = &f.rate else {
        cx.err(
            table,
            format!("{prefix}.rate"),
            "a rate_limit policy needs rate, e.g. \"5/s\"",
        );
        return None;
    };
    let parsed = rate.get_ref().split_once('/').and_then(|(n, unit)| {
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return None,
        };
        Some((n.trim().parse::<NonZeroU32>().ok()?, per))
    });
    let Some((count, per)) = parsed else {
        cx.err(
            rate.span(),
            format!("{prefix}.rate"),
            format!("'{}' is not COUNT/s, /m, /h or /d", rate.get_ref()),
        );
        return None;
    };
    let burst = match &f.burst {
        None => count,
        Some(b) => NonZeroU32::new(cx.int(b, &format!("{prefix}.burst"), 1, 1_000_000_000)?)?,
    };
    let key = match f.key.as_ref().map(|k| (k, k.get_ref().as_str())) {
        None | Some((_, "client_ip")) => RateKey::ClientIp,
        Some((_, "route")) => RateKey::Route,
        Some((k, v)) => match v.split_once(':') {
            Some(("header", name)) => match HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => RateKey::Header(h),
                Err(_) => {
                    cx.err(
                        k.span(),
                        format!("{prefix}.key"),
                        format!("'{name}' is not a header name"),
                    );
                    return None;
                }
            },
            Some(("claim", claim)) if !claim.is_empty() => RateKey::Claim(claim.to_string()),
            _ => {
                cx.err(
                    k.span(),
                    format!("{prefix}.key"),
                    format!("'{v}' is not client_ip, route, header:NAME or claim:NAME"),
                );
                return None;
            }
        },
    };
    let max_keys = match &f.max_keys {
        None => DEFAULT_MAX_KEYS,
        Some(m) => cx.int(m, &format!("{prefix}.max_keys"), 1, 10_000_000)?,
    };
    let mut fleet = false;
    if let Some(s) = &f.scope {
        match s.get_ref().as_str() {
            "local" => {}
            // A fleet needs the gateways to find each other: each counts the passing
            // instances of service `meshgate`, its own registration among them.
            "fleet" if !registers => cx.err(
                s.span(),
                format!("{prefix}.scope"),
                "scope = \"fleet\" divides the limit among the gateways registered in Consul: it needs [consul] with register = true",
            ),
            "fleet" => fleet = true,
            other => {
                cx.err(
                    s.span(),
                    format!("{prefix}.scope"),
                    format!("'{other}' is not local or fleet"),
                );
                return None;
            }
        }
    }
    Some(RateLimitConfig {
        count,
        per,
        burst,
        key,
        max_keys,
        fleet,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::{from_str, Config, ConfigError, OriginPattern, PolicyKind, RateKey};

    const ROUTES: &str = "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\npolicies = [\"web-cors\", \"per-client\"]\nbackends = [{ name = \"blue\", weight = 1 }]\n";

    fn parse(policies: &str) -> Result<Config, Vec<ConfigError>> {
        from_str(&format!("{ROUTES}\n{policies}"), "t.toml").map_err(|e| e.0)
    }

    fn errors(policies: &str) -> Vec<(String, String)> {
        parse(policies)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.reason))
            .collect()
    }

    const GOOD: &str = "[policies.web-cors]\nkind = \"cors\"\nallow_origins = [\"https://app.example.com\", \"https://*.example.com\"]\nallow_methods = [\"GET\", \"PUT\"]\nallow_headers = [\"content-type\"]\nallow_credentials = true\nmax_age = \"10m\"\nexpose_headers = [\"x-request-id\"]\n\n[policies.per-client]\nkind = \"rate_limit\"\nrate = \"5/s\"\nburst = 10\nkey = \"header:x-api-key\"\nmax_keys = 1000\n";

    #[test]
    fn a_cors_and_a_rate_limit_policy_parse_and_routes_name_them() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.routes[0].policies, ["web-cors", "per-client"]);
        let PolicyKind::Cors(cors) = &c.policies["web-cors"].kind else {
            panic!("cors")
        };
        assert_eq!(cors.allow_origins.len(), 2);
        assert!(cors.allow_credentials && !cors.any_origin);
        assert_eq!(cors.max_age, Some(std::time::Duration::from_secs(600)));
        let PolicyKind::RateLimit(rl) = &c.policies["per-client"].kind else {
            panic!("rate limit")
        };
        assert_eq!((rl.count.get(), rl.burst.get(), rl.max_keys), (5, 10, 1000));
        assert_eq!(rl.key, RateKey::Header("x-api-key".parse().unwrap()));
    }

    #[test]
    fn origin_patterns_match_whole_origins_only() {
        let exact = OriginPattern::Exact("https://app.example.com".into());
        assert!(exact.matches("https://APP.example.com"));
        assert!(!exact.matches("https://app.example.com.evil.net"));
        let wild = OriginPattern::Wildcard {
            prefix: "https://".into(),
            suffix: ".example.com".into(),
        };
        assert!(wild.matches("https://shop.example.com"));
        for refused in [
            "https://example.com",
            "http://shop.example.com",
            "https://a.b.example.com",
            "https://shop.example.com.evil.net",
            "https://evilexample.com",
            "https://.example.com",
            "https://shop.example.com:8443",
        ] {
            assert!(!wild.matches(refused), "{refused}");
        }
    }

    #[test]
    fn every_mistake_is_named_by_field() {
        let cases: [(&str, &str, &str); 9] = [
            (
                "[policies.web-cors]\nkind = \"cors\"\nallow_origins = [\"*\"]\nallow_credentials = true\n",
                "policies.web-cors.allow_origins",
                "cannot be used with allow_credentials",
            ),
            (
                "[policies.web-cors]\nkind = \"cors\"\nallow_origins = [\"https://a.example.com/path\"]\n",
                "policies.web-cors.allow_origins",
                "no path",
            ),
            (
                "[policies.web-cors]\nkind = \"cors\"\nallow_origins = [\"https://a.*.example.com\"]\n",
                "policies.web-cors.allow_origins",
                "first label",
            ),
            (
                "[policies.web-cors]\nkind = \"cors\"\nallow_origins = [\"https://a.example.com\"]\nrate = \"1/s\"\n",
                "policies.web-cors.rate",
                "not a key of a cors policy",
            ),
            (
                "[policies.per-client]\nkind = \"rate_limit\"\nrate = \"5 per second\"\n",
                "policies.per-client.rate",
                "is not COUNT/s",
            ),
            (
                "[policies.per-client]\nkind = \"rate_limit\"\nrate = \"5/s\"\nkey = \"cookie:x\"\n",
                "policies.per-client.key",
                "is not client_ip",
            ),
            (
                "[policies.per-client]\nkind = \"rate_limit\"\nrate = \"5/s\"\nscope = \"fleet\"\n",
                "policies.per-client.scope",
                "needs [consul] with register = true",
            ),
            (
                "[policies.per-client]\nkind = \"jwt\"\n",
                "policies.per-client.jwks_file",
                "needs jwks_file or jwks_url",
            ),
            (
                "[policies.per-client]\nkind = \"rate_limit\"\nrate = \"5/s\"\n",
                "routes.web.policies",
                "no policy named 'web-cors'",
            ),
        ];
        for (src, field, reason) in cases {
            let errs = errors(src);
            assert!(
                errs.iter().any(|(f, r)| f == field && r.contains(reason)),
                "{src}\n→ {errs:?}"
            );
        }
    }
}
