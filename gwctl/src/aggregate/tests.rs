#![allow(clippy::unwrap_used)]

use gatewayd::admin::model::{SamplePoint, UpstreamInfo};

use super::*;
use crate::test_fixtures::{backend_stats, encode, stats_with};

fn values(from: u64, n: u64, step: u64) -> Vec<u64> {
    (0..n).map(|i| from + i * step).collect()
}

#[test]
fn merged_percentiles_are_those_of_all_requests() {
    let a = values(1_000, 900, 10); // 1–10 ms
    let b = values(50_000, 100, 1_000); // 50–149 ms: only on gateway 2
    let s1 = stats_with("api", &[("blue", 900, 9, &a)]);
    let s2 = stats_with("api", &[("blue", 100, 1, &b)]);
    let merged = merge_stats([&s1, &s2]);
    assert_eq!(merged.len(), 1);
    let blue = merged[0].backend("blue").unwrap();

    let mut all = empty_histogram();
    for v in a.iter().chain(&b) {
        all.record(*v).unwrap();
    }
    assert_eq!(blue.hist.len(), 1000);
    assert_eq!(blue.latency(), latency_of(&all));
    // An average of the two p99s would be far from the truth; the merged p99 is in b's range.
    assert!(blue.latency().p99 > 130.0, "{:?}", blue.latency());
    assert_eq!(blue.requests, 1000);
    assert_eq!(blue.errors, 10);
    assert!((blue.error_rate() - 0.01).abs() < 1e-12);
    assert!((blue.rps - 100.0).abs() < 1e-9);
    assert_eq!(blue.in_flight, 2);
    assert_eq!(blue.by_class.get("2xx"), Some(&990));
}

#[test]
fn routes_and_backends_union_in_first_seen_order() {
    let s1 = stats_with("api", &[("blue", 1, 0, &[100])]);
    let mut s2 = stats_with("web", &[("green", 1, 0, &[100])]);
    s2.routes
        .extend(stats_with("api", &[("green", 2, 0, &[100, 200])]).routes);
    let merged = merge_stats([&s1, &s2]);
    let names: Vec<_> = merged.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    let api: Vec<_> = merged[0]
        .backends
        .iter()
        .map(|b| b.backend.as_str())
        .collect();
    assert_eq!(api, ["blue", "green"]);
    assert_eq!(merged[0].total().requests, 3);
    assert_eq!(merged[0].total().hist.len(), 3);
    assert!(merge_stats(std::iter::empty()).is_empty());
}

#[test]
fn a_bad_histogram_is_counted_not_fatal() {
    let mut s = stats_with("api", &[("blue", 5, 0, &[100])]);
    s.routes[0].backends[0].histogram = "not base64!".into();
    let merged = merge_stats([&s]);
    let blue = merged[0].backend("blue").unwrap();
    assert_eq!(blue.undecodable, 1);
    assert_eq!(blue.requests, 5);
    assert!(blue.hist.is_empty());
    assert!(decode_histogram("").unwrap().is_empty());
    assert!(decode_histogram("AAAA").is_err());
}

#[test]
fn per_second_deltas_add_across_gateways_and_survive_restarts() {
    let p = |at, requests, errors, p99_ms| SamplePoint {
        at,
        requests,
        errors,
        p99_ms,
    };
    let g1 = backend_stats(
        "blue",
        30,
        0,
        &[1],
        Some(vec![
            p(100, 10, 0, 2.0),
            p(101, 20, 1, 3.0),
            p(102, 30, 1, 4.0),
        ]),
    );
    // Gateway 2 restarted between 101 and 102.
    let g2 = backend_stats(
        "blue",
        5,
        0,
        &[1],
        Some(vec![p(101, 50, 0, 9.0), p(102, 5, 2, 1.0)]),
    );
    let mut agg = BackendAgg::empty("blue");
    agg.add(&g1);
    agg.add(&g2);
    let secs: Vec<_> = agg.per_second.iter().map(|(at, s)| (*at, *s)).collect();
    assert_eq!(
        secs,
        vec![
            (
                101,
                Second {
                    requests: 10,
                    errors: 1,
                    p99_ms: 3.0
                }
            ),
            (
                102,
                Second {
                    requests: 15,
                    errors: 2,
                    p99_ms: 4.0
                }
            ),
        ]
    );
}

#[test]
fn window_is_the_difference_of_two_samples() {
    let early = values(1_000, 100, 10);
    let late_fast = values(1_000, 50, 10);
    let late_slow = values(80_000, 50, 100);
    let both: Vec<u64> = early
        .iter()
        .chain(&late_fast)
        .chain(&late_slow)
        .copied()
        .collect();
    let start = vec![Some(stats_with("api", &[("green", 100, 0, &early)])), None];
    let end = vec![
        Some(stats_with("api", &[("green", 200, 5, &both)])),
        Some(stats_with("api", &[("green", 999, 999, &[1])])),
    ];
    let w = window(&start, &end, "api", "green");
    assert_eq!(w.requests, 100, "gateway 2 was unreachable at the start");
    assert_eq!(w.errors, 5);
    assert_eq!(w.hist.len(), 100);
    assert!((w.error_rate() - 0.05).abs() < 1e-12);
    // p99 of the window only: the slow half dominates.
    assert!(w.p99_ms().unwrap() > 80.0);
    assert_eq!(window(&start, &end, "api", "blue").p99_ms(), None);
}

#[test]
fn window_after_a_restart_uses_the_new_totals() {
    let start = vec![Some(stats_with(
        "api",
        &[("green", 100, 3, &values(1, 100, 1))],
    ))];
    let end = vec![Some(stats_with(
        "api",
        &[("green", 10, 1, &values(1, 10, 1))],
    ))];
    let w = window(&start, &end, "api", "green");
    assert_eq!((w.requests, w.errors, w.hist.len()), (10, 1, 10));
    let _ = encode(&[]);
}

#[test]
fn upstream_views_merge_by_service_and_address() {
    let a = crate::test_fixtures::upstreams();
    let mut b = a.clone();
    b[0].endpoints[0].ejected = true;
    b[0].endpoints[0].ejected_seconds = Some(5.0);
    b[0].endpoints[0].ewma_ms = 99.0;
    b[0].stale = true;
    b[0].stale_seconds = Some(3.0);
    b.push(UpstreamInfo {
        service: "only-on-b".into(),
        ..a[0].clone()
    });
    let m = merge_upstreams(&[&a, &b]);
    assert_eq!(m.len(), a.len() + 1);
    let e = &m[0].endpoints[0];
    assert!(e.ejected);
    assert_eq!(e.ewma_ms, 99.0);
    assert_eq!(e.requests, 2 * a[0].endpoints[0].requests);
    assert_eq!(e.in_flight, 2 * a[0].endpoints[0].in_flight);
    assert!(m[0].stale);
    assert_eq!(m[0].stale_seconds, Some(3.0));
    assert_eq!(m[1].stale_seconds, Some(42.5));
    assert_eq!(m[0].endpoints.len(), 3);
}
