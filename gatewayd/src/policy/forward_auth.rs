//! `kind = "forward_auth"`: a subrequest to an auth service decides. The service is a
//! `[services.NAME]` (static or Consul-discovered), reached through the worker's own balancer
//! and pooled upstream client. The gateway builds `X-Forwarded-Method`, `-Uri`, `-Host`,
//! `-Proto` and `-For` itself and copies only the chosen client headers. A 2xx allows (chosen
//! answer headers go upstream), a 3xx/4xx goes back to the client as it came, and a 5xx, a
//! timeout or an unreachable service fails closed (503) unless `failure_mode_allow`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use dashmap::DashMap;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Limited};

use super::{Answer, RequestView, ResponseHeaders, UpstreamEdits};
use crate::config::{ForwardAuthConfig, UpstreamProtocol};
use crate::proxy::{RequestBody, Worker};
use crate::snapshot::Snapshot;

/// The header a request let through by `failure_mode_allow` carries upstream.
pub const FAILURE_MODE_ALLOWED: HeaderName =
    HeaderName::from_static("x-meshgate-auth-failure-mode-allowed");
/// An auth service's answer body larger than this is a failure.
const MAX_BODY: usize = 64 * 1024;
/// Upper bounds (seconds) of the auth latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// The outcomes counted, by index: the `outcome` label of `meshgate_policy_decisions_total`.
pub const OUTCOMES: [&str; 5] = [
    "allowed",
    "allowed_cached",
    "denied",
    "failed_closed",
    "failed_open",
];

/// Auth-service latency: cumulative bucket counts, sum and count (Prometheus histogram).
#[derive(Debug, Default)]
pub struct Latency {
    /// Counts per bucket of [`LATENCY_BUCKETS`] (not cumulative), then the `+Inf` one.
    pub buckets: [AtomicU64; 11],
    /// Sum of latencies, in microseconds.
    pub sum_micros: AtomicU64,
}

/// One forward-auth policy with its cache of allowing answers.
#[derive(Debug)]
pub struct ForwardAuth {
    name: String,
    cfg: ForwardAuthConfig,
    cache: DashMap<Box<[u8]>, Cached>,
    /// Decisions by [`OUTCOMES`] index.
    pub(super) decisions: [AtomicU64; 5],
    /// Recent decisions.
    pub(super) recent: super::Recent,
    /// Subrequest latency.
    pub latency: Latency,
    last_sweep: AtomicU64,
}

#[derive(Debug)]
struct Cached {
    /// Clock nanos after which the entry is dead.
    until: u64,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// What the auth service said.
enum Said {
    Allow(Vec<(HeaderName, HeaderValue)>),
    Deny(Answer),
    Failed(String),
}

impl ForwardAuth {
    /// A policy for `cfg`.
    pub fn new(name: &str, cfg: &ForwardAuthConfig) -> Self {
        Self {
            name: name.to_string(),
            cfg: cfg.clone(),
            cache: DashMap::new(),
            decisions: Default::default(),
            recent: super::Recent::new(name),
            latency: Latency::default(),
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Asks the auth service about `req`. On allow, `edits` receive the answer's chosen
    /// headers (client-sent ones of those names removed); otherwise the outcome (`denied`,
    /// `failed_closed`) and the answer to send.
    pub async fn check(
        &self,
        req: &RequestView<'_>,
        w: &Worker,
        snap: &Snapshot,
        edits: &mut UpstreamEdits,
    ) -> Result<(), (&'static str, Answer)> {
        // Client-sent copies of what the auth service may set never reach the upstream.
        edits
            .remove
            .extend(self.cfg.response_headers.iter().cloned());
        edits.remove.push(FAILURE_MODE_ALLOWED);
        let key = self
            .cfg
            .cache_ttl
            .map(|_| cache_key(req, &self.cfg.cache_key));
        let now = crate::balance::now_nanos();
        if let Some(hit) = key.as_ref().and_then(|k| self.cache.get(k)) {
            if hit.until > now {
                self.decisions[1].fetch_add(1, Relaxed);
                edits.add.extend(hit.headers.iter().cloned());
                return Ok(());
            }
        }
        let started = tokio::time::Instant::now();
        let said = match tokio::time::timeout(self.cfg.timeout, self.ask(req, w, snap)).await {
            Ok(s) => s,
            Err(_) => Said::Failed(format!("no answer within {:?}", self.cfg.timeout)),
        };
        self.observe(started.elapsed());
        match said {
            Said::Allow(headers) => {
                self.decisions[0].fetch_add(1, Relaxed);
                if let (Some(key), Some(ttl)) = (key, self.cfg.cache_ttl) {
                    self.remember(key, now, ttl, &headers);
                }
                edits.add.extend(headers);
                Ok(())
            }
            Said::Deny(answer) => {
                self.decisions[2].fetch_add(1, Relaxed);
                Err((OUTCOMES[2], answer))
            }
            Said::Failed(why) if self.cfg.failure_mode_allow => {
                self.decisions[4].fetch_add(1, Relaxed);
                tracing::warn!(policy = %self.name, service = %self.cfg.service, error = %why, "auth service failed; request let through (failure_mode_allow)");
                edits
                    .add
                    .push((FAILURE_MODE_ALLOWED, HeaderValue::from_static("true")));
                Ok(())
            }
            Said::Failed(why) => {
                self.decisions[3].fetch_add(1, Relaxed);
                tracing::error!(policy = %self.name, service = %self.cfg.service, error = %why, "auth service failed; request refused");
                let a = Answer {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: Some("auth_unavailable"),
                    headers: vec![(http::header::RETRY_AFTER, HeaderValue::from_static("1"))],
                    body: None,
                    by: None,
                };
                Err((OUTCOMES[3], a))
            }
        }
    }

    /// Entries in the cache.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// One subrequest to one endpoint of the service.
    async fn ask(&self, req: &RequestView<'_>, w: &Worker, snap: &Snapshot) -> Said {
        let Some(svc) = snap
            .service_index
            .get(&self.cfg.service)
            .map(|&i| &snap.services[i])
        else {
            return Said::Failed(format!("no service {}", self.cfg.service));
        };
        let now = crate::balance::now_nanos();
        let limit = svc.config.max_in_flight_per_endpoint;
        let picked = crate::proxy::with_rng(|rng| {
            svc.balancer
                .pick_within(&svc.endpoints, now, None, limit, rng)
        });
        let Some(ei) = picked else {
            return Said::Failed(format!("{} has no usable endpoint", self.cfg.service));
        };
        let ep = &svc.endpoints[ei];
        let sub = match self.subrequest(req, &ep.authority, svc.config.protocol) {
            Ok(r) => r,
            Err(why) => return Said::Failed(why),
        };
        ep.stats.requests.fetch_add(1, Relaxed);
        ep.stats.in_flight.fetch_add(1, Relaxed);
        let _done = Done(&ep.stats.in_flight);
        let sent = w
            .upstreams
            .send(ep.endpoint.addr, &svc.config, svc.tls.as_deref(), sub)
            .await;
        let (resp, ret) = match sent {
            Ok(x) => x,
            Err(
                crate::proxy::SendError::NotSent(_, e)
                | crate::proxy::SendError::Replayable(_, e)
                | crate::proxy::SendError::Failed(e),
            ) => return Said::Failed(e.to_string()),
        };
        let (parts, body) = resp.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Said::Failed(format!("answer body: {e}")),
        };
        if let Some(r) = ret {
            r.give_back();
        }
        let status = parts.status;
        if status.is_success() {
            let mut out = Vec::new();
            for name in &self.cfg.response_headers {
                for v in parts.headers.get_all(name) {
                    out.push((name.clone(), v.clone()));
                }
            }
            Said::Allow(out)
        } else if status.is_redirection() || status.is_client_error() {
            let mut headers = ResponseHeaders::new();
            for (k, v) in &parts.headers {
                if !is_framing(k) {
                    headers.push((k.clone(), v.clone()));
                }
            }
            Said::Deny(Answer {
                status,
                code: None,
                headers,
                body: Some(body),
                by: None,
            })
        } else {
            Said::Failed(format!("answered {status}"))
        }
    }

    /// The subrequest: `GET` the policy's path, the gateway's `X-Forwarded-*`, the chosen
    /// client headers and nothing else.
    fn subrequest(
        &self,
        req: &RequestView<'_>,
        authority: &http::uri::Authority,
        proto: UpstreamProtocol,
    ) -> Result<Request<RequestBody>, String> {
        let uri = match proto {
            UpstreamProtocol::Http1 => self.cfg.path.parse::<http::Uri>(),
            UpstreamProtocol::H2c => format!("http://{authority}{}", self.cfg.path).parse(),
        }
        .map_err(|e| e.to_string())?;
        let mut sub = Request::new(RequestBody::empty());
        *sub.uri_mut() = uri;
        let h = sub.headers_mut();
        if proto == UpstreamProtocol::H2c {
            *sub.version_mut() = http::Version::HTTP_2;
        } else {
            h.insert(
                http::header::HOST,
                HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            );
        }
        let h = sub.headers_mut();
        let value = |b: &[u8]| HeaderValue::from_bytes(b).ok();
        if let Some(v) = value(req.method.as_str().as_bytes()) {
            h.insert("x-forwarded-method", v);
        }
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Some(v) = value(target.as_bytes()) {
            h.insert("x-forwarded-uri", v);
        }
        let host = req
            .headers
            .get(&http::header::HOST)
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
        if let Some(v) = host.and_then(value) {
            h.insert("x-forwarded-host", v);
        }
        h.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if req.tls { "https" } else { "http" }),
        );
        if let Ok(v) = HeaderValue::from_str(&req.client.to_string()) {
            h.insert("x-forwarded-for", v);
        }
        for name in &self.cfg.request_headers {
            if let Some(v) = req.headers.get(name).and_then(value) {
                h.insert(name.clone(), v);
            }
        }
        Ok(sub)
    }

    /// Caches an allow; a full cache drops its expired entries first (at most once a second)
    /// and, still full, does not cache.
    fn remember(
        &self,
        key: Box<[u8]>,
        now: u64,
        ttl: Duration,
        headers: &[(HeaderName, HeaderValue)],
    ) {
        if self.cache.len() >= self.cfg.cache_max_entries {
            let second = now / 1_000_000_000;
            let last = self.last_sweep.load(Relaxed);
            if second != last
                && self
                    .last_sweep
                    .compare_exchange(last, second, Relaxed, Relaxed)
                    .is_ok()
            {
                self.cache.retain(|_, e| e.until > now);
            }
            if self.cache.len() >= self.cfg.cache_max_entries {
                return;
            }
        }
        let until = now.saturating_add(ttl.as_nanos() as u64);
        self.cache.insert(
            key,
            Cached {
                until,
                headers: headers.to_vec(),
            },
        );
    }

    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency.buckets[i].fetch_add(1, Relaxed);
        self.latency
            .sum_micros
            .fetch_add(took.as_micros() as u64, Relaxed);
    }
}

/// The cache key of an allow: what the subrequest tells the auth service about the request
/// (method, scheme, host, path and query) and each `cache_key` header's value, every part
/// length-prefixed (absent and empty differ). So an allow for `GET /a` never answers for
/// `DELETE /b`, nor for another host, whatever the headers. The client's address is not part
/// of it (docs/configuration.md says so).
fn cache_key(req: &RequestView<'_>, headers: &[HeaderName]) -> Box<[u8]> {
    fn part(k: &mut Vec<u8>, v: Option<&[u8]>) {
        match v {
            None => k.push(0),
            Some(v) => {
                k.push(1);
                k.extend_from_slice(&(v.len() as u32).to_le_bytes());
                k.extend_from_slice(v);
            }
        }
    }
    let mut k = Vec::with_capacity(64);
    part(&mut k, Some(req.method.as_str().as_bytes()));
    part(&mut k, Some(if req.tls { &b"https"[..] } else { b"http" }));
    let host = req
        .headers
        .get(&http::header::HOST)
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
    part(&mut k, host);
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    part(&mut k, Some(target.as_bytes()));
    for name in headers {
        part(&mut k, req.headers.get(name));
    }
    k.into_boxed_slice()
}

/// Lowers an endpoint's in-flight count when the subrequest ends, however it ends.
struct Done<'a>(&'a std::sync::atomic::AtomicU32);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Fields of the auth service's own message that the gateway's answer frames anew.
fn is_framing(name: &HeaderName) -> bool {
    use http::header::*;
    [
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        CONNECTION,
        TE,
        TRAILER,
        UPGRADE,
    ]
    .contains(name)
        || name == "keep-alive"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;

    use http::{HeaderMap, Method, Uri};

    use super::*;

    fn key(method: Method, uri: &str, host: &str, auth: Option<&str>, tls: bool) -> Box<[u8]> {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(a) = auth {
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(a).unwrap(),
            );
        }
        let uri: Uri = uri.parse().unwrap();
        let req = RequestView {
            method: &method,
            uri: &uri,
            client: IpAddr::from([127, 0, 0, 1]),
            tls,
            headers: &h,
        };
        cache_key(&req, &[http::header::AUTHORIZATION])
    }

    #[test]
    fn the_cache_key_is_the_request_the_auth_service_saw_plus_the_chosen_headers() {
        let base = key(Method::GET, "/a", "api.example", Some("Bearer t"), false);
        assert_eq!(
            base,
            key(Method::GET, "/a", "api.example", Some("Bearer t"), false)
        );
        for other in [
            key(Method::DELETE, "/b", "api.example", Some("Bearer t"), false),
            key(Method::DELETE, "/a", "api.example", Some("Bearer t"), false),
            key(Method::GET, "/b", "api.example", Some("Bearer t"), false),
            key(
                Method::GET,
                "/a?x=1",
                "api.example",
                Some("Bearer t"),
                false,
            ),
            key(Method::GET, "/a", "admin.example", Some("Bearer t"), false),
            key(Method::GET, "/a", "api.example", Some("Bearer t"), true),
            key(Method::GET, "/a", "api.example", Some("Bearer u"), false),
            key(Method::GET, "/a", "api.example", Some(""), false),
            key(Method::GET, "/a", "api.example", None, false),
        ] {
            assert_ne!(base, other);
        }
        // Parts are length-prefixed: moving bytes between parts changes the key.
        assert_ne!(
            key(Method::GET, "/ab", "h", None, false),
            key(Method::GET, "/a", "bh", None, false)
        );
    }
}
