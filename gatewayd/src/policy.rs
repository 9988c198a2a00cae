//! Request policies (`[policies.NAME]`, listed by routes): compiled once per config into a
//! per-route chain in the snapshot. A route without policies has no chain and runs no policy
//! code. The chain runs in a fixed order whatever the list order:
//!
//! CORS (a preflight is answered here) → rate limits keyed by address, header or route →
//! JWT → rate limits keyed by a claim (they need the verified token) → forward auth (the
//! costliest, last) → the request goes on.
//!
//! Limits run before authentication so that a flood of bad tokens is limited before any
//! signature is checked or the auth service is asked. The headers they produce go on every
//! answer, the gateway's own errors included, so a browser can read a 401 or a 429.
//!
//! State that must outlive a snapshot (rate-limit buckets, JWKS key sets, auth caches) lives
//! in the [`PolicyRegistry`], keyed by policy name, and survives reloads that leave that
//! policy's config unchanged.

mod chain;
mod client;
mod cors;
mod forward_auth;
mod jwks;
mod jwt;
mod rate_limit;
mod recent;
mod response;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

pub use chain::{Answer, Decided, Gate, RoutePolicies};
pub use client::client_ip;
pub use cors::{Cors, Verdict};
pub use forward_auth::{ForwardAuth, FAILURE_MODE_ALLOWED, LATENCY_BUCKETS};
pub use jwks::JwksStatus;
pub use jwt::{Claims, Jwt};
pub use rate_limit::{fleet_share, Decision, RateLimit, RATELIMIT, RATELIMIT_POLICY};
pub use recent::{Recent, KEPT_REFUSALS, WINDOW_SECS};
pub use response::{add_to, cors_authority, is_cors, merge_vary};

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

/// The request as the policies see it, on either engine.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The target as received (path and query; authority for HTTP/2).
    pub uri: &'a Uri,
    /// The client's address: the peer's (after a PROXY header: the client it names), or behind
    /// trusted proxies the forwarded client's ([`client_ip`]).
    pub client: IpAddr,
    /// True when the client connection is TLS.
    pub tls: bool,
    /// The request's headers.
    pub headers: &'a (dyn Headers + Sync),
}

/// What the chain changes on the request it lets through.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpstreamEdits {
    /// Client fields removed, matched as servers might match them: ASCII case-insensitively
    /// and with `_` and `-` taken as one (`X_Auth_User` is `x-auth-user`).
    pub remove: Vec<HeaderName>,
    /// Fields added (after the removals).
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl UpstreamEdits {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// True when a client field named `name` (as received) is removed.
    pub fn removes(&self, name: &[u8]) -> bool {
        self.remove.iter().any(|r| {
            let r = r.as_str().as_bytes();
            r.len() == name.len()
                && r.iter().zip(name).all(|(&a, &b)| {
                    let b = b.to_ascii_lowercase();
                    a == b || matches!((a, b), (b'-', b'_') | (b'_', b'-'))
                })
        })
    }

    /// Applies the edits to a header map (the hyper path).
    pub fn apply(&self, map: &mut HeaderMap) {
        if !self.remove.is_empty() {
            let gone: Vec<HeaderName> = map
                .keys()
                .filter(|k| self.removes(k.as_str().as_bytes()))
                .cloned()
                .collect();
            for k in gone {
                map.remove(k);
            }
        }
        for (k, v) in &self.add {
            map.append(k.clone(), v.clone());
        }
    }
}

/// One compiled policy.
#[derive(Debug, Clone)]
enum Compiled {
    Cors(Arc<Cors>),
    RateLimit(Arc<RateLimit>),
    Jwt(Arc<Jwt>),
    ForwardAuth(Arc<ForwardAuth>),
}

// === impl Compiled ===

impl Compiled {
    /// Its recent decisions.
    fn recent(&self) -> &Recent {
        match self {
            Compiled::Cors(c) => &c.recent,
            Compiled::RateLimit(r) => &r.recent,
            Compiled::Jwt(j) => &j.recent,
            Compiled::ForwardAuth(f) => &f.recent,
        }
    }

    /// Decisions by outcome label, every outcome of the kind.
    fn outcomes(&self) -> Vec<(&'static str, u64)> {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
        match self {
            Compiled::Cors(c) => ["preflight_allowed", "preflight_refused"]
                .into_iter()
                .zip(c.preflights.iter().map(load))
                .collect(),
            Compiled::RateLimit(r) => ["allowed", "limited"]
                .into_iter()
                .zip(r.decisions.iter().map(load))
                .collect(),
            Compiled::Jwt(j) => jwt::Outcome::ALL
                .iter()
                .map(|o| o.label())
                .zip(j.decisions.iter().map(load))
                .collect(),
            Compiled::ForwardAuth(f) => forward_auth::OUTCOMES
                .into_iter()
                .zip(f.decisions.iter().map(load))
                .collect(),
        }
    }
}

/// Compiled policies by name, kept across reloads while their config is unchanged (so
/// rate-limit buckets, key sets and auth caches are not reset by an unrelated change).
#[derive(Debug, Default)]
pub struct PolicyRegistry {
    by_name: Mutex<HashMap<String, (PolicyConfig, Compiled)>>,
    /// Gateways alive in the fleet, as Consul last told (0: not known yet).
    fleet: AtomicU32,
}

impl PolicyRegistry {
    /// Compiles the policies of `config` (reusing unchanged ones, dropping removed ones) and
    /// returns each route's chain, in route order; None for a route without policies. A JWT
    /// policy's key set is read (file) or its fetch started (URL, on the current runtime).
    pub fn routes(&self, config: &Config) -> Vec<Option<Arc<RoutePolicies>>> {
        let mut by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        by_name.retain(|name, (cfg, _)| config.policies.get(name) == Some(cfg));
        for (name, cfg) in &config.policies {
            by_name.entry(name.clone()).or_insert_with(|| {
                let compiled = match &cfg.kind {
                    PolicyKind::Cors(c) => Compiled::Cors(Arc::new(Cors::new(name, c))),
                    PolicyKind::RateLimit(r) => {
                        let fleet = self.fleet.load(Relaxed);
                        Compiled::RateLimit(Arc::new(RateLimit::new(name, r, fleet)))
                    }
                    PolicyKind::Jwt(j) => Compiled::Jwt(Arc::new(Jwt::new(name, j))),
                    PolicyKind::ForwardAuth(f) => {
                        Compiled::ForwardAuth(Arc::new(ForwardAuth::new(name, f)))
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
                        Some(Compiled::RateLimit(l)) if l.by_claim() => {
                            chain.claim_limits.push(l.clone())
                        }
                        Some(Compiled::RateLimit(l)) => chain.limits.push(l.clone()),
                        Some(Compiled::Jwt(j)) => chain.jwt = Some(j.clone()),
                        Some(Compiled::ForwardAuth(f)) => chain.forward_auth = Some(f.clone()),
                        None => {}
                    }
                }
                Some(Arc::new(chain))
            })
            .collect()
    }

    /// Decisions so far, by policy and outcome, sorted: (policy, outcome, count). Outcomes:
    /// `preflight_allowed` / `preflight_refused` (cors), `allowed` / `limited` (rate_limit),
    /// `allowed` or the refusal's reason (jwt: `expired`, `unknown_kid`, ...), `allowed`,
    /// `allowed_cached`, `denied`, `failed_closed`, `failed_open` (forward_auth).
    pub fn decisions(&self) -> Vec<(String, &'static str, u64)> {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = by_name
            .iter()
            .flat_map(|(n, (_, c))| {
                c.outcomes()
                    .into_iter()
                    .map(move |(o, count)| (n.clone(), o, count))
            })
            .collect();
        v.sort();
        v
    }

    /// Policy `name` for the admin API: kind, summary and decisions; None when unknown.
    pub fn describe(&self, name: &str) -> Option<crate::admin::model::PolicyInfo> {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let (cfg, c) = by_name.get(name)?;
        let (kind, summary) = match (&cfg.kind, c) {
            (PolicyKind::Cors(c), _) => ("cors", format!("{} origin(s)", c.allow_origins.len())),
            (PolicyKind::RateLimit(r), Compiled::RateLimit(l)) => {
                let unit = match r.per.as_secs() {
                    1 => "s",
                    60 => "m",
                    3600 => "h",
                    _ => "d",
                };
                let mut s = format!("{}/{unit} burst {}", r.count, r.burst);
                if r.fleet {
                    let (count, burst) = l.share();
                    s.push_str(&format!(
                        ", fleet of {}: {count}/{unit} burst {burst} here",
                        l.gateways()
                    ));
                }
                ("rate_limit", s)
            }
            (PolicyKind::RateLimit(_), _) => ("rate_limit", String::new()),
            (PolicyKind::Jwt(_), Compiled::Jwt(j)) => {
                let st = j.jwks().status();
                let fresh = if st.loaded && !st.stale {
                    "fresh"
                } else {
                    "stale"
                };
                ("jwt", format!("{} key(s), {fresh}", st.keys))
            }
            (PolicyKind::Jwt(_), _) => ("jwt", String::new()),
            (PolicyKind::ForwardAuth(f), _) => ("forward_auth", format!("service {}", f.service)),
        };
        let outcomes = c.outcomes();
        let now = crate::metrics::unix_secs(std::time::SystemTime::now());
        Some(crate::admin::model::PolicyInfo {
            name: name.to_string(),
            kind: kind.to_string(),
            summary,
            decisions: outcomes.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
            recent: c.recent().view(now, &outcomes),
        })
    }

    /// Samples every policy's cumulative decisions at unix second `now` (once a second, on the
    /// control runtime): the baseline of the recent counts the admin API shows.
    pub fn sample(&self, now: u64) {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        for (_, c) in by_name.values() {
            let counts = c.outcomes().into_iter().map(|(_, n)| n).collect();
            c.recent().sample(now, counts);
        }
    }

    /// Sets the number of gateways alive (from Consul's `meshgate` service): every
    /// `scope = "fleet"` limit re-divides among them, keeping its buckets.
    pub fn set_fleet_size(&self, gateways: u32) {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        if self.fleet.swap(gateways, Relaxed) != gateways {
            tracing::info!(
                gateways,
                "fleet size changed; fleet-wide rate limits re-divided"
            );
        }
        for (_, c) in by_name.values() {
            if let Compiled::RateLimit(l) = c {
                l.set_fleet(gateways);
            }
        }
    }

    /// True when a compiled policy is a fleet-wide rate limit (the fleet's size is then
    /// followed in Consul).
    pub fn wants_fleet(config: &Config) -> bool {
        config
            .policies
            .values()
            .any(|p| matches!(&p.kind, PolicyKind::RateLimit(r) if r.fleet))
    }

    /// Fleet-wide rate limits: (policy, gateways divided among, share per period, share burst).
    pub fn fleet_shares(&self) -> Vec<(String, u32, u32, u32)> {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = by_name
            .iter()
            .filter_map(|(n, (cfg, c))| match (c, &cfg.kind) {
                (Compiled::RateLimit(l), PolicyKind::RateLimit(r)) if r.fleet => {
                    let (count, burst) = l.share();
                    Some((n.clone(), l.gateways(), count, burst))
                }
                _ => None,
            })
            .collect();
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
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// The state of every JWT policy's key set, by policy name.
    pub fn jwks(&self) -> Vec<JwksStatus> {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = by_name
            .values()
            .filter_map(|(_, c)| match c {
                Compiled::Jwt(j) => Some(j.status()),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.policy.cmp(&b.policy));
        v
    }

    /// Forward-auth policies: name, latency histogram, cache entries.
    pub fn forward_auths(&self) -> Vec<(String, Arc<ForwardAuth>)> {
        let by_name = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = by_name
            .iter()
            .filter_map(|(n, (_, c))| match c {
                Compiled::ForwardAuth(f) => Some((n.clone(), f.clone())),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::StatusCode;

    use super::*;

    const SRC: &str = "[services.blue]\nendpoints = [\"127.0.0.1:9001\"]\n\n[[routes]]\nname = \"web\"\npolicies = [\"limit\", \"cors\"]\nbackends = [{ name = \"blue\", weight = 1 }]\n\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nbackends = [{ name = \"blue\", weight = 1 }]\n\n[policies.cors]\nkind = \"cors\"\nallow_origins = [\"https://app.example.com\"]\n\n[policies.limit]\nkind = \"rate_limit\"\nrate = \"2/m\"\n";

    fn config(src: &str) -> Config {
        crate::config::from_str(src, "t.toml").unwrap()
    }

    fn view<'a>(h: &'a HeaderMap, uri: &'a Uri) -> RequestView<'a> {
        RequestView {
            method: &Method::GET,
            uri,
            client: IpAddr::from([127, 0, 0, 1]),
            tls: false,
            headers: h,
        }
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
        let (o, uri) = (origin(), Uri::from_static("/"));
        for _ in 0..2 {
            let Gate::Pass(h, _) = chain.check(&view(&o, &uri)) else {
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
        let Gate::Answer(Answer {
            status,
            code,
            headers,
            ..
        }) = chain.check(&view(&o, &uri))
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
        let (none, uri) = (HeaderMap::new(), Uri::from_static("/"));
        let exhaust = |routes: &[Option<Arc<RoutePolicies>>]| {
            let chain = routes[0].as_ref().unwrap();
            (0..3)
                .filter(|_| matches!(chain.check(&view(&none, &uri)), Gate::Pass(..)))
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
