//! Test helpers: the admin API fixtures in `tests/fixtures/admin/` and a histogram encoder.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use base64::Engine as _;
use gatewayd::admin::model::{
    BackendStats, Event, RouteDetail, RouteInfo, RouteStats, SamplePoint, Stats, UpstreamInfo,
};
use hdrhistogram::serialization::{Serializer as _, V2Serializer};
use hdrhistogram::Histogram;

/// Raw text of `routes.json`.
pub const ROUTES: &str = include_str!("../../tests/fixtures/admin/routes.json");
/// Raw text of `route_detail.json`.
pub const ROUTE_DETAIL: &str = include_str!("../../tests/fixtures/admin/route_detail.json");
/// Raw text of `policies.json`: a route's policies as `GET /v1/routes/{name}` lists them.
pub const POLICIES: &str = include_str!("../../tests/fixtures/admin/policies.json");
/// Raw text of `upstreams.json`.
pub const UPSTREAMS: &str = include_str!("../../tests/fixtures/admin/upstreams.json");
/// Raw text of `stats.json`.
pub const STATS: &str = include_str!("../../tests/fixtures/admin/stats.json");
/// Raw text of `events.json`.
pub const EVENTS: &str = include_str!("../../tests/fixtures/admin/events.json");

pub fn routes() -> Vec<RouteInfo> {
    serde_json::from_str(ROUTES).unwrap()
}
pub fn route_detail() -> RouteDetail {
    serde_json::from_str(ROUTE_DETAIL).unwrap()
}
pub fn upstreams() -> Vec<UpstreamInfo> {
    serde_json::from_str(UPSTREAMS).unwrap()
}
pub fn stats() -> Stats {
    serde_json::from_str(STATS).unwrap()
}
pub fn events() -> Vec<Event> {
    serde_json::from_str(EVENTS).unwrap()
}

/// Base64 V2 encoding of a histogram holding `values_us`.
pub fn encode(values_us: &[u64]) -> String {
    let mut h = Histogram::<u64>::new(3).unwrap();
    h.auto(true);
    for v in values_us {
        h.record(*v).unwrap();
    }
    let mut buf = Vec::new();
    V2Serializer::new().serialize(&h, &mut buf).unwrap();
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Stats with one route and the given backends `(name, requests, errors_5xx, latencies_us)`.
pub fn stats_with(route: &str, backends: &[(&str, u64, u64, &[u64])]) -> Stats {
    Stats {
        generated_at: "2025-01-01T00:00:00Z".into(),
        window_seconds: 10,
        routes: vec![RouteStats {
            route: route.into(),
            backends: backends
                .iter()
                .map(|(name, req, err, lat)| backend_stats(name, *req, *err, lat, None))
                .collect(),
        }],
        unmatched_requests: 0,
    }
}

/// One backend's stats.
pub fn backend_stats(
    name: &str,
    requests: u64,
    errors: u64,
    latencies_us: &[u64],
    history: Option<Vec<SamplePoint>>,
) -> BackendStats {
    let mut by_class = BTreeMap::new();
    by_class.insert("2xx".to_string(), requests - errors);
    if errors > 0 {
        by_class.insert("5xx".to_string(), errors);
    }
    BackendStats {
        backend: name.into(),
        requests,
        by_class,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        in_flight: 1,
        rps: requests as f64 / 10.0,
        latency_ms: Default::default(),
        histogram: encode(latencies_us),
        history,
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::*;
    use crate::aggregate::{decode_histogram, latency_of};

    /// The fixture decodes as the wire type and encodes back to the same JSON: no unknown,
    /// missing or renamed field.
    fn round_trip<T: DeserializeOwned + Serialize>(name: &str, raw: &str) {
        let orig: serde_json::Value = serde_json::from_str(raw).unwrap();
        let typed: T = serde_json::from_value(orig.clone())
            .unwrap_or_else(|e| panic!("{name} does not match its type: {e}"));
        assert_eq!(serde_json::to_value(&typed).unwrap(), orig, "{name}");
    }

    #[test]
    fn fixtures_round_trip_against_the_wire_types() {
        round_trip::<Vec<RouteInfo>>("routes.json", ROUTES);
        round_trip::<RouteDetail>("route_detail.json", ROUTE_DETAIL);
        round_trip::<Vec<gatewayd::admin::model::PolicyInfo>>("policies.json", POLICIES);
        round_trip::<Vec<UpstreamInfo>>("upstreams.json", UPSTREAMS);
        round_trip::<Stats>("stats.json", STATS);
        round_trip::<Vec<Event>>("events.json", EVENTS);
    }

    #[test]
    fn fixtures_are_consistent_with_each_other() {
        let stats = stats();
        for r in &stats.routes {
            for b in &r.backends {
                let h = decode_histogram(&b.histogram).unwrap();
                assert_eq!(h.len(), b.requests, "{}/{}", r.route, b.backend);
                let l = latency_of(&h);
                assert_eq!(
                    (l.p50, l.p90, l.p99, l.p999, l.max),
                    (
                        b.latency_ms.p50,
                        b.latency_ms.p90,
                        b.latency_ms.p99,
                        b.latency_ms.p999,
                        b.latency_ms.max
                    )
                );
                let errors = b.by_class.get("5xx").copied().unwrap_or(0);
                assert_eq!(b.by_class.values().sum::<u64>(), b.requests);
                let last = b.history.as_ref().and_then(|h| h.last()).unwrap();
                assert_eq!((last.requests, last.errors), (b.requests, errors));
            }
        }
        let routes = routes();
        let detail = route_detail();
        assert_eq!(detail.route, routes[0]);
        let last = detail.history.last().unwrap();
        assert_eq!(last.revision, detail.route.weights.revision);
        for b in &detail.route.backends {
            assert_eq!(last.weights.get(&b.name), Some(&b.weight));
        }
        let ups = upstreams();
        for r in &routes {
            for b in &r.backends {
                let u = ups.iter().find(|u| u.service == b.service).unwrap();
                assert_eq!(u.endpoints.len(), b.endpoints, "{}", b.service);
            }
        }
        assert!(events().windows(2).all(|w| w[0].id < w[1].id));
    }
}
