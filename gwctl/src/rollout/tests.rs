#![allow(clippy::unwrap_used)]

use super::*;
use crate::aggregate::merge_stats;
use crate::test_fixtures;

fn w(pairs: &[(&str, u32)]) -> Weights {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn api() -> RouteInfo {
    test_fixtures::routes()
        .into_iter()
        .find(|r| r.name == "api")
        .unwrap()
}

#[test]
fn split_gives_the_canary_its_percent_and_the_rest_proportionally() {
    let start = w(&[("blue", 100), ("green", 0)]);
    assert_eq!(
        split_weights("api", &start, &start, "green", 25).unwrap(),
        w(&[("blue", 75), ("green", 25)])
    );
    let three = w(&[("a", 2), ("b", 1), ("c", 0)]);
    // 90 split 2:1 between a and b.
    assert_eq!(
        split_weights("r", &three, &three, "c", 10).unwrap(),
        w(&[("a", 60), ("b", 30), ("c", 10)])
    );
    // Rounding: 95 over 1:1:1 → 32/32/31, always summing to 100.
    let even = w(&[("a", 1), ("b", 1), ("c", 1), ("d", 0)]);
    let out = split_weights("r", &even, &even, "d", 5).unwrap();
    assert_eq!(out.values().sum::<u32>(), 100);
    assert_eq!(out, w(&[("a", 32), ("b", 32), ("c", 31), ("d", 5)]));
}

#[test]
fn split_falls_back_to_file_weights_then_equal_shares() {
    let now = w(&[("blue", 0), ("green", 0), ("canary", 100)]);
    let file = w(&[("blue", 3), ("green", 1), ("canary", 0)]);
    assert_eq!(
        split_weights("r", &now, &file, "canary", 60).unwrap(),
        w(&[("blue", 30), ("green", 10), ("canary", 60)])
    );
    let zero = w(&[("blue", 0), ("green", 0), ("canary", 0)]);
    assert_eq!(
        split_weights("r", &now, &zero, "canary", 60).unwrap(),
        w(&[("blue", 20), ("green", 20), ("canary", 60)])
    );
}

#[test]
fn split_rejects_unknown_backends_and_lonely_routes() {
    let one = w(&[("main", 1)]);
    assert!(matches!(
        split_weights("r", &one, &one, "green", 10),
        Err(RolloutError::UnknownBackend { .. })
    ));
    assert!(split_weights("r", &one, &one, "main", 10).is_err());
    assert_eq!(
        split_weights("r", &one, &one, "main", 100).unwrap(),
        w(&[("main", 100)])
    );
}

#[test]
fn nudge_moves_by_a_step_and_stops_at_the_ends() {
    let mut route = api(); // blue 90 / green 10
    assert_eq!(
        nudge(&route, "green", 10).unwrap(),
        Some(w(&[("blue", 80), ("green", 20)]))
    );
    assert_eq!(
        nudge(&route, "green", -10).unwrap(),
        Some(w(&[("blue", 100), ("green", 0)]))
    );
    route.backends[0].weight = 0;
    route.backends[1].weight = 100;
    assert_eq!(nudge(&route, "green", 10).unwrap(), None);
    // Going back down from 100%: blue's current weight is 0, so its file weight decides.
    assert_eq!(
        nudge(&route, "green", -10).unwrap(),
        Some(w(&[("blue", 10), ("green", 90)]))
    );
    assert!(nudge(&route, "purple", 10).is_err());
}

#[test]
fn canary_is_the_backend_that_last_rose_else_the_lightest() {
    let detail = test_fixtures::route_detail();
    let route = detail.route.clone();
    assert_eq!(
        canary_backend(&route, detail.history.last()).as_deref(),
        Some("green")
    );
    // Without history: the lightest.
    assert_eq!(canary_backend(&route, None).as_deref(), Some("green"));
    let mut flipped = route.clone();
    flipped.backends[0].weight = 0;
    flipped.backends[1].weight = 100;
    assert_eq!(canary_backend(&flipped, None).as_deref(), Some("blue"));
    // Rev 6 raised blue.
    assert_eq!(
        canary_backend(&flipped, detail.history.get(1)).as_deref(),
        Some("blue")
    );
    let single = test_fixtures::routes()
        .into_iter()
        .find(|r| r.name == "checkout")
        .unwrap();
    assert_eq!(canary_backend(&single, None), None);
}

#[test]
fn flip_preview_swaps_weights_and_spreads_them_over_live_endpoints() {
    let stats = test_fixtures::stats();
    let merged = merge_stats([&stats]);
    let agg = merged.iter().find(|r| r.route == "api");
    let p = flip_preview(&api(), &test_fixtures::upstreams(), agg).unwrap();
    assert_eq!(p.from, w(&[("blue", 90), ("green", 10)]));
    assert_eq!(p.to, w(&[("blue", 10), ("green", 90)]));
    assert_eq!(p.endpoints.len(), 6);
    let share = |addr: &str| p.endpoints.iter().find(|e| e.addr == addr).unwrap().clone();
    assert!((share("10.0.1.11:8080").before - 30.0).abs() < 1e-9);
    assert!((share("10.0.1.11:8080").after - 10.0 / 3.0).abs() < 1e-9);
    // green-3 is ejected: green's 90% goes to the two others.
    assert!((share("10.0.2.21:8080").after - 45.0).abs() < 1e-9);
    assert_eq!(share("10.0.2.23:8080").after, 0.0);
    assert!(share("10.0.2.23:8080").ejected);
    let total: f64 = p.endpoints.iter().map(|e| e.after).sum();
    assert!((total - 100.0).abs() < 1e-9);
    assert_eq!(p.sides.len(), 2);
    assert_eq!(p.sides[1].backend, "green");
    assert!(p.sides[1].p99_ms.unwrap() > 100.0);
    assert!((p.sides[0].error_rate.unwrap() - 31.0 / 48213.0).abs() < 1e-12);
}

#[test]
fn flip_preview_needs_two_backends_and_copes_without_data() {
    let checkout = test_fixtures::routes()
        .into_iter()
        .find(|r| r.name == "checkout")
        .unwrap();
    assert!(matches!(
        flip_preview(&checkout, &[], None),
        Err(RolloutError::NotTwoBackends { count: 1, .. })
    ));
    let p = flip_preview(&api(), &[], None).unwrap();
    assert!(p.endpoints.is_empty());
    assert_eq!(p.sides[0].p99_ms, None);
}

#[test]
fn shares_and_format() {
    let s = shares(&w(&[("a", 1), ("b", 3)]));
    assert_eq!(s.get("b"), Some(&75.0));
    assert_eq!(shares(&w(&[("a", 0)])).get("a"), Some(&0.0));
    assert_eq!(
        format_weights(&w(&[("blue", 90), ("green", 10)])),
        "blue=90 green=10"
    );
}
