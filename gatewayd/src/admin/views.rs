//! Snapshot → wire types.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use super::model::*;
use crate::balance::now_nanos;
use crate::config::{CohortAction, HostMatch, PathMatch};
use crate::metrics::{encode_histogram, percentiles, BackendMetrics, CLASSES, RPS_WINDOW};
use crate::snapshot::{RouteRuntime, ServiceRuntime, Snapshot, WeightsSource};
use crate::weights::rfc3339;

/// A route as `/v1/routes` shows it; `last` is the newest weight change, if any.
pub fn route_info(snap: &Snapshot, r: &RouteRuntime, last: Option<&WeightChange>) -> RouteInfo {
    let c = &r.config;
    let now = now_nanos();
    let (path, path_kind) = match &c.path {
        PathMatch::Prefix(p) => (p.clone(), "prefix"),
        PathMatch::Exact(p) => (p.clone(), "exact"),
        PathMatch::Template(t) => (t.as_str().to_owned(), "template"),
    };
    let backends = r
        .backends
        .iter()
        .zip(r.split.weights())
        .zip(&c.backends)
        .map(|((b, &w), bc)| {
            let svc = &snap.services[b.service];
            BackendInfo {
                name: b.name.clone(),
                service: bc.service.clone(),
                weight: w,
                file_weight: bc.weight,
                endpoints: svc.endpoints.len(),
                healthy_endpoints: svc
                    .endpoints
                    .iter()
                    .filter(|e| !e.stats.is_ejected(now))
                    .count(),
            }
        })
        .collect();
    let weights = match &r.weights_source {
        WeightsSource::File => WeightsInfo {
            source: "file".into(),
            revision: last.map_or(0, |l| l.revision),
            changed_by: last.map(|l| l.changed_by.clone()),
            changed_at: last.map(|l| l.changed_at.clone()),
            reason: last.map(|l| l.reason.clone()),
        },
        WeightsSource::Override { revision, store } => WeightsInfo {
            source: (*store).to_string(),
            revision: *revision,
            changed_by: last.map(|l| l.changed_by.clone()),
            changed_at: last.map(|l| l.changed_at.clone()),
            reason: last.map(|l| l.reason.clone()),
        },
    };
    RouteInfo {
        name: c.name.clone(),
        host: c.host.as_ref().map(|h| match h {
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(s) => format!("*{s}"),
        }),
        path,
        path_kind: path_kind.into(),
        methods: c.methods.iter().map(ToString::to_string).collect(),
        headers: c
            .headers
            .iter()
            .map(|h| HeaderCondition {
                name: h.name.to_string(),
                value: h.value.clone(),
            })
            .collect(),
        timeout_ms: c.timeout.as_millis() as u64,
        retries: c.retries,
        on_empty_backend: match c.on_empty_backend {
            crate::config::OnEmptyBackend::Failover => "failover".into(),
            crate::config::OnEmptyBackend::Fail => "fail".into(),
        },
        sticky: c.sticky.as_ref().map(ToString::to_string),
        cohorts: c
            .cohorts
            .iter()
            .map(|k| CohortInfo {
                key: k.key.to_string(),
                value: k.value.clone(),
                backend: c.backends[k.backend].name.clone(),
                action: match k.action {
                    CohortAction::Force => "force".into(),
                    CohortAction::Avoid => "avoid".into(),
                },
            })
            .collect(),
        backends,
        weights,
    }
}

/// A service as `/v1/upstreams` shows it.
pub fn upstream_info(svc: &ServiceRuntime) -> UpstreamInfo {
    let now = now_nanos();
    let wall = SystemTime::now();
    let st = &svc.state;
    UpstreamInfo {
        service: svc.config.name.clone(),
        source: match st.source {
            discovery::Source::Static => "static",
            discovery::Source::Consul => "consul",
            discovery::Source::Saved => "saved",
        }
        .into(),
        balance: svc.config.balance.as_str().into(),
        protocol: match svc.config.protocol {
            crate::config::UpstreamProtocol::Http1 => "http1",
            crate::config::UpstreamProtocol::H2c => "h2c",
        }
        .into(),
        stale: st.stale.is_some(),
        stale_seconds: st.stale.as_ref().map(|s| s.age(wall).as_secs_f64()),
        stale_reason: st.stale.as_ref().map(|s| s.reason.clone()),
        last_update: st.last_success.map(rfc3339),
        endpoints: svc
            .endpoints
            .iter()
            .map(|e| EndpointInfo {
                addr: e.endpoint.addr.to_string(),
                id: e.endpoint.id.clone(),
                weight: e.endpoint.weight,
                health: match e.endpoint.health {
                    discovery::Health::Passing => "passing",
                    discovery::Health::Warning => "warning",
                }
                .into(),
                ejected: e.stats.is_ejected(now),
                ejected_seconds: e
                    .stats
                    .ejected_for(now)
                    .map(|n| Duration::from_nanos(n).as_secs_f64()),
                in_flight: e.stats.in_flight.load(Relaxed),
                ewma_ms: e.stats.ewma_nanos(now) / 1e6,
                requests: e.stats.requests.load(Relaxed),
                failures: e.stats.failures.load(Relaxed),
                ejections: e.stats.ejections.load(Relaxed),
            })
            .collect(),
    }
}

/// Stats of one (route, backend).
pub fn backend_stats(m: &BackendMetrics, with_history: bool) -> BackendStats {
    let t = m.totals();
    let requests = t.requests();
    BackendStats {
        backend: m.backend.clone(),
        requests,
        by_class: CLASSES
            .iter()
            .zip(t.by_class)
            .map(|(c, n)| ((*c).to_string(), n))
            .collect::<BTreeMap<_, _>>(),
        error_rate: if requests == 0 {
            0.0
        } else {
            t.errors() as f64 / requests as f64
        },
        in_flight: t.in_flight,
        rps: m.rps(),
        latency_ms: percentiles(&t.latency),
        histogram: encode_histogram(&t.latency),
        history: with_history.then(|| {
            m.history()
                .into_iter()
                .map(|s| SamplePoint {
                    at: s.at,
                    requests: s.requests,
                    errors: s.errors,
                    p99_ms: s.p99_us as f64 / 1000.0,
                })
                .collect()
        }),
    }
}

/// `/v1/stats`.
pub fn stats(snap: &Snapshot, unmatched: &BackendMetrics, with_history: bool) -> Stats {
    Stats {
        generated_at: rfc3339(SystemTime::now()),
        window_seconds: RPS_WINDOW as u64,
        routes: snap
            .routes
            .iter()
            .map(|r| {
                let mut backends: Vec<BackendStats> = r
                    .backends
                    .iter()
                    .map(|b| backend_stats(&b.metrics, with_history))
                    .collect();
                let unrouted = backend_stats(&r.unrouted, with_history);
                if unrouted.requests > 0 {
                    backends.push(unrouted);
                }
                RouteStats {
                    route: r.config.name.clone(),
                    backends,
                }
            })
            .collect(),
        unmatched_requests: unmatched.totals().requests(),
    }
}
