//! The HTTP surface: pre-flight hooks (latency, injected faults, ACL), routing with 405s, the
//! read options and headers every query shares, and plain-text errors.

use std::net::SocketAddr;
use std::sync::Arc;

use ::http::{HeaderValue, Method, Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::blocking::BlockingParams;
use super::Shared;
use crate::go_duration;

mod agent;
mod catalog;
mod decode;
mod health;
mod kv;
mod params;
mod response;

use self::params::Params;
pub(crate) use self::response::{
    decode_failed, empty_ok, json, no_leader, text, too_many_connections,
};
use self::response::{fault_response, method_not_allowed};

/// Every response body is fully buffered.
pub(crate) type Resp = Response<Full<Bytes>>;

/// Consul's `kv_max_value_size` default (512 KiB).
pub(crate) const KV_MAX_VALUE_SIZE: usize = 512 * 1024;
/// Upper bound on any other request body.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// One parsed request.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) method: Method,
    pub(crate) params: Params,
    pub(crate) body: Bytes,
}

/// Options of a read (query) endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadOpts {
    pub(crate) blocking: BlockingParams,
    stale: bool,
    consistent: bool,
}

/// The endpoints, recognised from method-independent paths.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    StatusLeader,
    StatusPeers,
    AgentSelf,
    AgentMembers,
    AgentServices,
    AgentService(String),
    AgentChecks,
    AgentServiceRegister,
    AgentServiceDeregister(String),
    AgentCheckRegister,
    AgentCheckDeregister(String),
    AgentCheckTtl(&'static str, String),
    AgentCheckUpdate(String),
    CatalogRegister,
    CatalogDeregister,
    CatalogDatacenters,
    CatalogNodes,
    CatalogServices,
    CatalogService(String),
    HealthService(String),
    HealthChecks(String),
    HealthNode(String),
    HealthState(String),
    Kv(String),
}

/// Answers one request.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    _peer: SocketAddr,
) -> Resp {
    let latency = shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = req.uri().path().to_owned();
    if let Some(fault) = shared.take_fault(&path) {
        return fault_response(&fault);
    }
    let params = Params::parse(req.uri().query());
    if !path.starts_with("/v1/status/") {
        if let Some(denied) = check_acl(shared, &params, req.headers()) {
            return denied;
        }
    }
    let Some(endpoint) = Endpoint::parse(&path) else {
        return text(StatusCode::NOT_FOUND, "404 page not found");
    };
    let allowed = endpoint.methods();
    if !allowed.contains(req.method()) {
        return method_not_allowed(req.method(), allowed);
    }
    let (parts, body) = req.into_parts();
    let limit = if matches!(endpoint, Endpoint::Kv(_)) {
        KV_MAX_VALUE_SIZE
    } else {
        MAX_BODY
    };
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let len = parts
                .headers
                .get(::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unknown")
                .to_owned();
            return kv::too_large(&len);
        }
    };
    let ctx = Ctx {
        shared,
        method: parts.method,
        params,
        body,
    };
    dispatch(&ctx, endpoint).await
}

async fn dispatch(ctx: &Ctx<'_>, endpoint: Endpoint) -> Resp {
    match endpoint {
        Endpoint::StatusLeader => {
            let leader = ctx.shared.read(|st| st.leader_lost_at.is_none());
            json(StatusCode::OK, &if leader { "127.0.0.1:8300" } else { "" })
        }
        Endpoint::StatusPeers => json(StatusCode::OK, &["127.0.0.1:8300"]),
        Endpoint::AgentSelf => agent::agent_self(ctx),
        Endpoint::AgentMembers => agent::members(ctx),
        Endpoint::AgentServices => agent::services(ctx),
        Endpoint::AgentService(id) => agent::service(ctx, &id),
        Endpoint::AgentChecks => agent::checks(ctx),
        Endpoint::AgentServiceRegister => agent::register(ctx),
        Endpoint::AgentServiceDeregister(id) => agent::deregister(ctx, &id),
        Endpoint::AgentCheckRegister => agent::register_check(ctx),
        Endpoint::AgentCheckDeregister(id) => agent::deregister_check(ctx, &id),
        Endpoint::AgentCheckTtl(status, id) => agent::ttl(ctx, status, &id),
        Endpoint::AgentCheckUpdate(id) => agent::update(ctx, &id),
        Endpoint::CatalogRegister => catalog::register(ctx),
        Endpoint::CatalogDeregister => catalog::deregister(ctx),
        Endpoint::CatalogDatacenters => {
            json(StatusCode::OK, &[ctx.shared.settings.datacenter.as_str()])
        }
        Endpoint::CatalogNodes => catalog::nodes(ctx).await,
        Endpoint::CatalogServices => catalog::services(ctx).await,
        Endpoint::CatalogService(name) => catalog::service(ctx, &name).await,
        Endpoint::HealthService(name) => health::health_service(ctx, &name).await,
        Endpoint::HealthChecks(name) => health::health_checks(ctx, &name).await,
        Endpoint::HealthNode(node) => health::health_node(ctx, &node).await,
        Endpoint::HealthState(state) => health::health_state(ctx, &state).await,
        Endpoint::Kv(key) => kv::handle(ctx, &key).await,
    }
}

// === impl Endpoint ===

impl Endpoint {
    fn parse(path: &str) -> Option<Self> {
        let decode = |s: &str| params::percent_decode(s, false);
        if let Some(key) = path.strip_prefix("/v1/kv/") {
            return Some(Self::Kv(decode(key)));
        }
        if path == "/v1/kv" {
            return Some(Self::Kv(String::new()));
        }
        let tail = |prefix: &str| path.strip_prefix(prefix).map(decode);
        let ep = match path {
            "/v1/status/leader" => Self::StatusLeader,
            "/v1/status/peers" => Self::StatusPeers,
            "/v1/agent/self" => Self::AgentSelf,
            "/v1/agent/members" => Self::AgentMembers,
            "/v1/agent/services" => Self::AgentServices,
            "/v1/agent/checks" => Self::AgentChecks,
            "/v1/agent/service/register" => Self::AgentServiceRegister,
            "/v1/agent/check/register" => Self::AgentCheckRegister,
            "/v1/catalog/register" => Self::CatalogRegister,
            "/v1/catalog/deregister" => Self::CatalogDeregister,
            "/v1/catalog/datacenters" => Self::CatalogDatacenters,
            "/v1/catalog/nodes" => Self::CatalogNodes,
            "/v1/catalog/services" => Self::CatalogServices,
            _ => {
                if let Some(id) = tail("/v1/agent/service/deregister/") {
                    Self::AgentServiceDeregister(id)
                } else if let Some(id) = tail("/v1/agent/service/") {
                    Self::AgentService(id)
                } else if let Some(id) = tail("/v1/agent/check/deregister/") {
                    Self::AgentCheckDeregister(id)
                } else if let Some(id) = tail("/v1/agent/check/pass/") {
                    Self::AgentCheckTtl("passing", id)
                } else if let Some(id) = tail("/v1/agent/check/warn/") {
                    Self::AgentCheckTtl("warning", id)
                } else if let Some(id) = tail("/v1/agent/check/fail/") {
                    Self::AgentCheckTtl("critical", id)
                } else if let Some(id) = tail("/v1/agent/check/update/") {
                    Self::AgentCheckUpdate(id)
                } else if let Some(name) = tail("/v1/catalog/service/") {
                    Self::CatalogService(name)
                } else if let Some(name) = tail("/v1/health/service/") {
                    Self::HealthService(name)
                } else if let Some(name) = tail("/v1/health/checks/") {
                    Self::HealthChecks(name)
                } else if let Some(node) = tail("/v1/health/node/") {
                    Self::HealthNode(node)
                } else if let Some(state) = tail("/v1/health/state/") {
                    Self::HealthState(state)
                } else {
                    return None;
                }
            }
        };
        Some(ep)
    }

    fn methods(&self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const PUT: &[Method] = &[Method::PUT];
        const KV: &[Method] = &[Method::GET, Method::PUT, Method::DELETE];
        match self {
            Self::Kv(_) => KV,
            Self::AgentServiceRegister
            | Self::AgentServiceDeregister(_)
            | Self::AgentCheckRegister
            | Self::AgentCheckDeregister(_)
            | Self::AgentCheckTtl(..)
            | Self::AgentCheckUpdate(_)
            | Self::CatalogRegister
            | Self::CatalogDeregister => PUT,
            _ => GET,
        }
    }
}

// === read options and headers ===

impl ReadOpts {
    /// Parses `?dc`, `?stale`/`?consistent`, `?wait`, `?index` in Consul's order; `Err` is the
    /// 400/500 answer.
    pub(crate) fn parse(ctx: &Ctx<'_>) -> Result<Self, Resp> {
        let p = &ctx.params;
        if let Some(dc) = p.get("dc").filter(|dc| !dc.is_empty()) {
            if dc != ctx.shared.settings.datacenter {
                return Err(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "No path to datacenter",
                ));
            }
        }
        let stale = p.has("stale") || p.has("max_stale");
        let consistent = p.has("consistent");
        if p.has("stale") && consistent {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "Cannot specify ?stale with ?consistent, conflicting semantics.",
            ));
        }
        let mut blocking = BlockingParams::default();
        if let Some(wait) = p.get("wait").filter(|w| !w.is_empty()) {
            let parsed = go_duration::parse(wait)
                .map_err(|_| text(StatusCode::BAD_REQUEST, "Invalid wait time"))?;
            blocking.wait = parsed.positive();
        }
        if let Some(index) = p.get("index").filter(|i| !i.is_empty()) {
            blocking.index = index
                .parse::<u64>()
                .map_err(|_| text(StatusCode::BAD_REQUEST, "Invalid index"))?;
        }
        Ok(Self {
            blocking,
            stale,
            consistent,
        })
    }

    /// Parses and refuses non-stale reads while the leader is lost.
    pub(crate) fn parse_read(ctx: &Ctx<'_>) -> Result<Self, Resp> {
        let opts = Self::parse(ctx)?;
        if !opts.stale && ctx.shared.read(|st| st.leader_lost_at.is_some()) {
            return Err(no_leader());
        }
        Ok(opts)
    }

    /// Adds the query-meta headers to `resp`.
    pub(crate) fn meta(&self, ctx: &Ctx<'_>, index: u64, mut resp: Resp) -> Resp {
        let lost = ctx.shared.read(|st| st.leader_lost_at);
        let last_contact = lost.map_or(0, |since| Instant::now().duration_since(since).as_millis());
        let consistency = if self.consistent {
            "consistent"
        } else if self.stale {
            "stale"
        } else {
            "leader"
        };
        let acl = if ctx.shared.settings.token.is_some() {
            "deny"
        } else {
            "allow"
        };
        let h = resp.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        set("x-consul-index", index.max(1).to_string());
        set("x-consul-knownleader", lost.is_none().to_string());
        set("x-consul-lastcontact", last_contact.to_string());
        set("x-consul-effective-consistency", consistency.to_owned());
        set("x-consul-default-acl-policy", acl.to_owned());
        set("x-consul-query-backend", "blocking-query".to_owned());
        if ctx.params.has("cached") {
            set("x-cache", "MISS".to_owned());
        }
        resp
    }
}

fn check_acl(shared: &Shared, params: &Params, headers: &::http::HeaderMap) -> Option<Resp> {
    let required = shared.settings.token.as_deref()?;
    match params::token(params, headers) {
        None => Some(text(StatusCode::FORBIDDEN, "Permission denied")),
        Some(t) if t != required => Some(text(StatusCode::FORBIDDEN, "ACL not found")),
        Some(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ::http::header::ALLOW;

    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Endpoint::parse("/v1/kv/a%2Fb/c"),
            Some(Endpoint::Kv("a/b/c".into()))
        );
        assert_eq!(
            Endpoint::parse("/v1/kv/"),
            Some(Endpoint::Kv(String::new()))
        );
        assert_eq!(
            Endpoint::parse("/v1/agent/service/deregister/api-1"),
            Some(Endpoint::AgentServiceDeregister("api-1".into()))
        );
        assert_eq!(
            Endpoint::parse("/v1/agent/check/fail/service:api-1"),
            Some(Endpoint::AgentCheckTtl("critical", "service:api-1".into()))
        );
        assert_eq!(Endpoint::parse("/v1/nope"), None);
        assert_eq!(Endpoint::parse("/v1/kv/x").unwrap().methods().len(), 3);
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let resp = method_not_allowed(&Method::POST, &[Method::GET, Method::PUT]);
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[ALLOW], "GET,PUT");
    }
}
