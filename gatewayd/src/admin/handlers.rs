//! Admin API routes. Every answer is JSON except `/metrics` (Prometheus text) and `/v1/events`
//! (server-sent events). Unauthenticated → 401; unknown route → 404; bad body → 400 naming the
//! field; revision mismatch → 409 with the current revision.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};

use super::auth::authorized;
use super::model::*;
use super::server::AdminBody;
use super::views;
use crate::app::Control;
use crate::metrics::{Gauges, RouteGauge, ServiceGauge};
use crate::weights::{rfc3339, WeightsError};

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;

type Resp = Response<AdminBody>;

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec_pretty(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Resp {
    json(
        status,
        &ApiError {
            error: code.into(),
            message: message.into(),
            field: None,
            current_revision: None,
        },
    )
}

fn not_found(what: &str) -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", what)
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("allowed: {allow}"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Dispatches one admin request.
pub async fn route(req: Request<Incoming>, c: &Control, peer: SocketAddr) -> Resp {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    // Health probes are open: load balancers and orchestrators call them without secrets.
    match segs.as_slice() {
        ["healthz"] => return json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        ["readyz"] => return readyz(c),
        ["metrics"] if c.snapshot.load().config.admin.public_metrics => return metrics(c),
        _ => {}
    }
    if !authorized(req.headers(), c.token.as_deref()) {
        let msg = if c.token.is_none() {
            "admin token not configured (set admin.token_file)"
        } else {
            "missing or wrong bearer token"
        };
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", msg);
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let query = req.uri().query().unwrap_or("").to_string();
    match (segs.as_slice(), &method) {
        (["metrics"], &Method::GET) => metrics(c),
        (["v1", "routes"], &Method::GET) => routes(c),
        (["v1", "routes", name], &Method::GET) => route_detail(c, name),
        (["v1", "routes", name, "weights"], &Method::PUT) => {
            let name = name.to_string();
            match read_json::<WeightsUpdate>(req).await {
                Ok(u) => {
                    change(
                        c,
                        &name,
                        Some(u.weights),
                        u.expected_revision,
                        u.changed_by,
                        u.reason,
                        peer,
                    )
                    .await
                }
                Err(r) => r,
            }
        }
        (["v1", "routes", name, "weights"], &Method::DELETE) => {
            let name = name.to_string();
            let body = read_json_opt::<FlipRequest>(req).await;
            match body {
                Ok(f) => {
                    change(
                        c,
                        &name,
                        None,
                        f.expected_revision,
                        f.changed_by,
                        Some(f.reason.unwrap_or_else(|| "back to file weights".into())),
                        peer,
                    )
                    .await
                }
                Err(r) => r,
            }
        }
        (["v1", "routes", _, "weights"], _) => method_not_allowed("PUT, DELETE"),
        (["v1", "routes", name, "flip"], &Method::POST) => {
            let name = name.to_string();
            match read_json_opt::<FlipRequest>(req).await {
                Ok(f) => flip(c, &name, f, peer).await,
                Err(r) => r,
            }
        }
        (["v1", "upstreams"], &Method::GET) => {
            let snap = c.snapshot.load();
            json(
                StatusCode::OK,
                &snap
                    .services
                    .iter()
                    .map(|s| views::upstream_info(s))
                    .collect::<Vec<_>>(),
            )
        }
        (["v1", "stats"], &Method::GET) => {
            let snap = c.snapshot.load();
            json(
                StatusCode::OK,
                &views::stats(
                    &snap,
                    &c.metrics.unmatched,
                    query
                        .split('&')
                        .any(|p| p == "history=true" || p == "history=1"),
                ),
            )
        }
        (["v1", "events"], &Method::GET) => events(c, &req),
        (["v1", "reload"], &Method::POST) => {
            let status = c.reload();
            let tls_errors = c.reload_tls();
            let code = if status.ok && tls_errors.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            json(code, &config_status(c, status))
        }
        (["v1", "config"], &Method::GET) => {
            let (_, _, last) = c.config_status();
            json(StatusCode::OK, &config_status(c, last))
        }
        (
            ["metrics"]
            | ["v1", "routes"]
            | ["v1", "routes", _]
            | ["v1", "upstreams"]
            | ["v1", "stats"]
            | ["v1", "events"]
            | ["v1", "config"],
            _,
        ) => method_not_allowed("GET"),
        (["v1", "reload"] | ["v1", "routes", _, "flip"], _) => method_not_allowed("POST"),
        _ => not_found(&format!("no admin endpoint {path}")),
    }
}

fn readyz(c: &Control) -> Resp {
    let (_, _, last) = c.config_status();
    let draining = c.draining.load(Relaxed);
    let tls_errors: Vec<String> = c
        .tls_status()
        .into_iter()
        .filter_map(|t| t.error.map(|e| format!("listener {}: {e}", t.listener)))
        .collect();
    let weights_errors: Vec<String> = c
        .weights_staleness()
        .map(|s| {
            let age = s.age(std::time::SystemTime::now()).as_secs();
            format!("Consul KV unreadable for {age} s: {}", s.reason)
        })
        .into_iter()
        .collect();
    let r = Readiness {
        ready: !draining,
        draining,
        config_ok: last.ok,
        config_errors: last.errors,
        tls_ok: tls_errors.is_empty(),
        tls_errors,
        weights_ok: weights_errors.is_empty(),
        weights_errors,
        generation: c.generation(),
    };
    // A rejected reload does not make the gateway unready: the previous config keeps serving,
    // and taking every gateway out of rotation on a bad deploy would turn a typo into an outage.
    json(
        if draining {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        },
        &r,
    )
}

fn metrics(c: &Control) -> Resp {
    let snap = c.snapshot.load();
    let now = crate::balance::now_nanos();
    let wall = std::time::SystemTime::now();
    let services = snap
        .services
        .iter()
        .map(|s| {
            let ejected = s
                .endpoints
                .iter()
                .filter(|e| e.stats.is_ejected(now))
                .count();
            ServiceGauge {
                service: s.config.name.clone(),
                healthy: s.endpoints.len() - ejected,
                ejected,
                last_update: s.state.last_success.map_or(0, crate::metrics::unix_secs),
                stale: s.state.stale.is_some(),
                stale_for: s
                    .state
                    .stale
                    .as_ref()
                    .map_or(Duration::ZERO, |st| st.age(wall)),
            }
        })
        .collect();
    let routes = snap
        .routes
        .iter()
        .map(|r| RouteGauge {
            route: r.config.name.clone(),
            latency_objective: r.config.latency_objective,
            backends: r
                .backends
                .iter()
                .zip(r.split.weights())
                .map(|(b, w)| {
                    let service = snap.services[b.service].config.name.clone();
                    (b.name.clone(), service, *w)
                })
                .collect(),
        })
        .collect();
    let gauges = Gauges {
        services,
        routes,
        last_reload_ok: c.config_status().2.ok,
    };
    let mut text = crate::metrics::render_prometheus(&c.metrics, &gauges, &c.policies);
    text.push_str(&crate::tls::prometheus(&c.tls_status()));
    let mut r = Response::new(Full::new(Bytes::from(text)).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn routes(c: &Control) -> Resp {
    let snap = c.snapshot.load();
    let v: Vec<RouteInfo> = snap
        .routes
        .iter()
        .map(|r| {
            let (_, hist) = c.weight_history(&r.config.name);
            views::route_info(&snap, r, hist.last())
        })
        .collect();
    json(StatusCode::OK, &v)
}

fn route_detail(c: &Control, name: &str) -> Resp {
    let snap = c.snapshot.load();
    let Some(ri) = snap.route_index(name) else {
        return not_found(&format!("no route named '{name}'"));
    };
    let (_, history) = c.weight_history(name);
    json(
        StatusCode::OK,
        &RouteDetail {
            route: views::route_info(&snap, &snap.routes[ri], history.last()),
            history,
            policies: snap.routes[ri]
                .config
                .policies
                .iter()
                .filter_map(|p| c.policies.describe(p))
                .collect(),
        },
    )
}

async fn change(
    c: &Control,
    name: &str,
    weights: Option<std::collections::BTreeMap<String, u32>>,
    expected: Option<u64>,
    by: Option<String>,
    reason: Option<String>,
    peer: SocketAddr,
) -> Resp {
    let by = by
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("admin@{}", peer.ip()));
    let result = match c.consul.get().filter(|l| l.kv_weights()) {
        Some(link) => {
            link.change_weights(name, weights, expected, by, reason.unwrap_or_default())
                .await
        }
        None => c.change_weights(name, weights, expected, by, reason.unwrap_or_default()),
    };
    match result {
        Ok(Some(change)) => {
            let snap = c.snapshot.load();
            let Some(ri) = snap.route_index(name) else {
                return not_found(name);
            };
            json(
                StatusCode::OK,
                &WeightsChanged {
                    route: views::route_info(&snap, &snap.routes[ri], Some(&change)),
                    change,
                },
            )
        }
        Ok(None) => not_found(&format!("no route named '{name}'")),
        Err(e) => weights_error(e),
    }
}

fn weights_error(e: WeightsError) -> Resp {
    match &e {
        WeightsError::Invalid { field, .. } => json(
            StatusCode::BAD_REQUEST,
            &ApiError {
                error: "bad_request".into(),
                message: e.to_string(),
                field: Some(field.clone()),
                current_revision: None,
            },
        ),
        WeightsError::Conflict { current, .. } => json(
            StatusCode::CONFLICT,
            &ApiError {
                error: "conflict".into(),
                message: e.to_string(),
                field: None,
                current_revision: Some(*current),
            },
        ),
        WeightsError::Unavailable { .. } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        ),
        WeightsError::Persist { .. } => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "persist_failed",
            e.to_string(),
        ),
    }
}

async fn flip(c: &Control, name: &str, f: FlipRequest, peer: SocketAddr) -> Resp {
    let snap = c.snapshot.load();
    let Some(ri) = snap.route_index(name) else {
        return not_found(&format!("no route named '{name}'"));
    };
    let r = &snap.routes[ri];
    if r.backends.len() != 2 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "flip needs a route with exactly two backends; '{name}' has {}: use PUT /v1/routes/{name}/weights",
                r.backends.len()
            ),
        );
    }
    let w = r.split.weights();
    let swapped = [
        (r.backends[0].name.clone(), w[1]),
        (r.backends[1].name.clone(), w[0]),
    ]
    .into_iter()
    .collect();
    let reason = f.reason.unwrap_or_else(|| "flip".into());
    // A flip is computed from the weights seen now, so it only applies at the revision seen
    // now: two operators flipping at once get one success and one 409, never a flip-back.
    let expected = f.expected_revision.or(Some(c.weight_history(name).0));
    drop(snap);
    change(
        c,
        name,
        Some(swapped),
        expected,
        f.changed_by,
        Some(reason),
        peer,
    )
    .await
}

fn config_status(c: &Control, last: ReloadStatus) -> ConfigStatus {
    let (cfg, loaded_at, _) = c.config_status();
    ConfigStatus {
        file: cfg.origin.clone(),
        generation: c.generation(),
        loaded_at: rfc3339(loaded_at),
        last_reload: last,
        source: cfg.source.to_string(),
        tls: c.tls_status(),
        jwks: c.policies.jwks(),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body larger than {MAX_BODY} bytes"),
        )),
    }
}

fn bad_json(e: &serde_json::Error) -> Resp {
    // serde_json names the field for unknown fields and type errors in its message.
    let msg = e.to_string();
    let field = msg.split('`').nth(1).map(str::to_string);
    json(
        StatusCode::BAD_REQUEST,
        &ApiError {
            error: "bad_request".into(),
            message: format!("invalid JSON body: {msg}"),
            field,
            current_revision: None,
        },
    )
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Resp> {
    let b = read_body(req).await?;
    serde_json::from_slice(&b).map_err(|e| bad_json(&e))
}

async fn read_json_opt<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, Resp> {
    let b = read_body(req).await?;
    if b.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&b).map_err(|e| bad_json(&e))
}

fn sse(e: &Event) -> Bytes {
    let data = serde_json::to_string(e).unwrap_or_default();
    Bytes::from(format!("id: {}\nevent: {}\ndata: {data}\n\n", e.id, e.kind))
}

fn events(c: &Control, req: &Request<Incoming>) -> Resp {
    let after = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX);
    let (backlog, rx) = c.events.subscribe(after);
    let first = Bytes::from(format!(
        ": meshgate events at {}\nretry: 2000\n\n",
        rfc3339(SystemTime::now())
    ));
    let head = futures_util::stream::iter(
        std::iter::once(first)
            .chain(backlog.iter().map(sse).collect::<Vec<_>>())
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
            Ok(Ok(e)) => Some((Ok::<_, Infallible>(Frame::data(sse(&e))), rx)),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => Some((
                Ok(Frame::data(Bytes::from(format!(
                    ": {n} events dropped (slow reader)\n\n"
                )))),
                rx,
            )),
            Ok(Err(_)) => None,
            Err(_) => Some((Ok(Frame::data(Bytes::from_static(b": ping\n\n"))), rx)),
        }
    });
    let mut r = Response::new(http_body_util::BodyExt::boxed(StreamBody::new(
        head.chain(live),
    )));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
