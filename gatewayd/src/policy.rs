//! Request policies (`[policies.NAME]`, listed by routes): compiled once per config into a
//! per-route chain in the snapshot. A route without policies has no chain and runs no policy
//! code. The chain runs in a fixed order whatever the list order: CORS (a preflight is answered
//! here) → rate limits → the request goes on; the headers they produce go on every answer, the
//! gateway's own errors included, so a browser can read a 429.
//!
//! State that must outlive a snapshot (rate-limit buckets) lives in the [`PolicyRegistry`],
//! keyed by policy name, and survives reloads that leave that policy's config unchanged.

mod cors;
mod rate_limit;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

pub use cors::{Cors, Verdict};
pub use rate_limit::{Decision, RateLimit, RATELIMIT, RATELIMIT_POLICY};

use crate::config::{Config, PolicyConfig, PolicyKind};

/// Headers a policy puts on the answer.
pub type ResponseHeaders = Vec<(HeaderName, HeaderValue)>;

/// Request header lookup, by lower-case name: the HTTP/1.1 engine's head and hyper's map both
/// answer it without building anything.
pub trait Headers {
    /// The first value of `name`, as bytes.
    fn get(&self, name: &HeaderName) -> Option<&[u8]>;
}

impl Headers for HeaderMap {
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        HeaderMap::get(self, name).map(HeaderValue::as_bytes)
    }
}

/// A route's compiled policies.
#[derive(Debug, Default)]
pub struct RoutePolicies {
    cors: Option<Arc<Cors>>,
    limits: Vec<Arc<RateLimit>>,
}

/// What the chain decided.
#[derive(Debug)]
pub enum Gate {
    /// Go on; put these headers on the answer.
    Pass(ResponseHeaders),
    /// Answer here; the upstream never sees the request.
    Answer {
        /// 204 (preflight), 403 (refused preflight) or 429.
        status: StatusCode,
        /// Machine-readable code for the JSON body; None for an empty 204.
        code: Option<&'static str>,
        /// The answer's headers (`Retry-After`, `RateLimit*`, CORS).
        headers: ResponseHeaders,
    },
}

/// Puts a chain's headers on an answer's header map: the policy's `Access-Control-*` replace the
/// upstream's own (never two of them), other fields are appended (`Vary` merges by appending).
pub fn add_to(map: &mut HeaderMap, extra: &[(HeaderName, HeaderValue)]) {
    if extra.is_empty() {
        return;
    }
    if extra.iter().any(|(k, _)| is_cors(k)) {
        let theirs: Vec<HeaderName> = map.keys().filter(|k| is_cors(k)).cloned().collect();
        for k in theirs {
            map.remove(k);
        }
    }
    for (k, v) in extra {
        map.append(k.clone(), v.clone());
    }
}

/// An `Access-Control-*` response field.
pub fn is_cors(name: &HeaderName) -> bool {
    name.as_str().starts_with("access-control-")
}

impl RoutePolicies {
    /// Runs the chain for one request.
    pub fn apply(&self, method: &Method, client: IpAddr, headers: &dyn Headers) -> Gate {
        let mut out = ResponseHeaders::new();
        if let Some(c) = &self.cors {
            match c.judge(method, headers) {
                Verdict::Preflight(h) => {
                    return Gate::Answer {
                        status: StatusCode::NO_CONTENT,
                        code: None,
                        headers: h,
                    }
                }
                Verdict::Refused(h) => {
                    return Gate::Answer {
                        status: StatusCode::FORBIDDEN,
                        code: Some("cors_refused"),
                        headers: h,
                    }
                }
                Verdict::Actual(h) => out.extend(h),
            }
        }
        for l in &self.limits {
            match l.check(client, headers) {
                Decision::Allow(h) => out.extend(h),
                Decision::Deny {
                    retry_after,
                    headers,
                } => {
                    out.extend(headers);
                    out.push((http::header::RETRY_AFTER, HeaderValue::from(retry_after)));
                    return Gate::Answer {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        code: Some("rate_limited"),
                        headers: out,
                    };
                }
            }
        }
        Gate::Pass(out)
    }
}

/// One compiled policy.
#[derive(Debug, Clone)]
enum Compiled {
    Cors(Arc<Cors>),
    RateLimit(Arc<RateLimit>),
}

/// Compiled policies by name, kept across reloads while their config is unchanged (so
/// rate-limit buckets are not reset by an unrelated change).
#[derive(Debug, Default)]
pub struct PolicyRegistry {
    by_name: Mutex<HashMap<String, (PolicyConfig, Compiled)>>,
}

impl PolicyRegistry {
    /// Compiles the policies of `config` (reusing unchanged ones, dropping removed ones) and
    /// returns each route's chain, in route order; None for a route without policies.
    pub fn routes(&self, config: &Config) -> Vec<Option<Arc<RoutePolicies>>> {
        let mut by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        by_name.retain(|name, (cfg, _)| config.policies.get(name) == Some(cfg));
        for (name, cfg) in &config.policies {
            by_name.entry(name.clone()).or_insert_with(|| {
                let compiled = match &cfg.kind {
                    PolicyKind::Cors(c) => Compiled::Cors(Arc::new(Cors::new(c))),
                    PolicyKind::RateLimit(r) => {
                        Compiled::RateLimit(Arc::new(RateLimit::new(name, r)))
                    }
                };
                (cfg.clone(), compiled)
            });
        }
        config
            .routes
            .iter()
            .map(|r| {
                if r.policies.is_empty() {
                    return None;
                }
                let mut chain = RoutePolicies::default();
                for name in &r.policies {
                    match by_name.get(name).map(|(_, c)| c) {
                        Some(Compiled::Cors(c)) => chain.cors = Some(c.clone()),
                        Some(Compiled::RateLimit(l)) => chain.limits.push(l.clone()),
                        None => {}
                    }
                }
                Some(Arc::new(chain))
            })
            .collect()
    }

    /// Decisions so far, by policy and outcome, sorted: (policy, outcome, count). Outcomes:
    /// `preflight_allowed` / `preflight_refused` (cors), `allowed` / `limited` (rate_limit).
    pub fn decisions(&self) -> Vec<(String, &'static str, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut v = Vec::new();
        for (n, (_, c)) in by_name.iter() {
            let (labels, counts) = match c {
                Compiled::Cors(c) => (["preflight_allowed", "preflight_refused"], &c.preflights),
                Compiled::RateLimit(l) => (["allowed", "limited"], &l.decisions),
            };
            for (label, count) in labels.into_iter().zip(counts) {
                v.push((n.clone(), label, count.load(Relaxed)));
            }
        }
        v.sort();
        v
    }

    /// Rate-limit buckets in use, by policy name.
    pub fn keys_in_use(&self) -> Vec<(String, usize)> {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = by_name
            .iter()
            .filter_map(|(n, (_, c))| match c {
                Compiled::RateLimit(l) => Some((n.clone(), l.keys())),
                Compiled::Cors(_) => None,
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SRC: &str = "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\npolicies = [\"limit\", \"cors\"]\nbackends = [{ name = \"blue\", weight = 1 }]\n\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nbackends = [{ name = \"blue\", weight = 1 }]\n\n[policies.cors]\nkind = \"cors\"\nallow_origins = [\"https://app.example.com\"]\n\n[policies.limit]\nkind = \"rate_limit\"\nrate = \"2/m\"\n";

    fn config(src: &str) -> Config {
        crate::config::from_str(src, "t.toml").unwrap()
    }

    fn origin() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "origin",
            HeaderValue::from_static("https://app.example.com"),
        );
        h
    }

    #[test]
    fn the_chain_runs_cors_then_limits_and_headers_go_on_every_answer() {
        let reg = PolicyRegistry::default();
        let routes = reg.routes(&config(SRC));
        assert!(routes[1].is_none(), "a route without policies has no chain");
        let chain = routes[0].as_ref().unwrap();
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..2 {
            let Gate::Pass(h) = chain.apply(&Method::GET, ip, &origin()) else {
                panic!("within the limit")
            };
            let names: Vec<_> = h.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                names,
                [
                    "vary",
                    "access-control-allow-origin",
                    "ratelimit-policy",
                    "ratelimit"
                ]
            );
        }
        let Gate::Answer {
            status,
            code,
            headers,
        } = chain.apply(&Method::GET, ip, &origin())
        else {
            panic!("over the limit")
        };
        assert_eq!(
            (status, code),
            (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
        );
        // The browser can read the 429: CORS headers are on it.
        assert!(headers
            .iter()
            .any(|(k, _)| k == http::header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(headers.iter().any(|(k, _)| k == http::header::RETRY_AFTER));
    }

    #[test]
    fn buckets_survive_a_reload_that_leaves_their_policy_unchanged() {
        let reg = PolicyRegistry::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let exhaust = |routes: &[Option<Arc<RoutePolicies>>]| {
            let chain = routes[0].as_ref().unwrap();
            (0..3)
                .filter(|_| {
                    matches!(
                        chain.apply(&Method::GET, ip, &HeaderMap::new()),
                        Gate::Pass(_)
                    )
                })
                .count()
        };
        assert_eq!(exhaust(&reg.routes(&config(SRC))), 2);
        // Another route's change: the limit's buckets stay.
        let other = SRC.replace("path_prefix = \"/plain\"", "path_prefix = \"/other\"");
        assert_eq!(exhaust(&reg.routes(&config(&other))), 0);
        // The limit's own change: new buckets.
        let changed = SRC.replace("rate = \"2/m\"", "rate = \"3/m\"");
        assert_eq!(exhaust(&reg.routes(&config(&changed))), 3);
        assert_eq!(reg.keys_in_use(), [("limit".to_string(), 1)]);
    }
}
