#![allow(clippy::unwrap_used)]
//! Endpoint choice: round robin, smooth weighted round robin, P2C least-request and P2C
//! peak-EWMA, with ejection, `exclude` and edge sizes; distribution checks over 10,000 picks.

use std::cell::RefCell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::round_robin::schedule;
use super::*;
use crate::config::OutlierConfig;
use crate::health::{record_outcome, Outcome};

const PICKS: usize = 10_000;
/// A fixed "now" in nanoseconds; tests pass time explicitly.
const NOW: u64 = 1_000_000_000;
const SECOND: u64 = 1_000_000_000;

const POLICIES: [BalancePolicy; 4] = [
    BalancePolicy::RoundRobin,
    BalancePolicy::WeightedRoundRobin,
    BalancePolicy::P2cLeastRequest,
    BalancePolicy::P2cEwma,
];

fn eps(weights: &[u32]) -> Vec<EndpointRuntime> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let addr = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
            EndpointRuntime::new(
                discovery::Endpoint::new(addr).with_weight(w),
                Arc::new(EndpointStats::default()),
            )
        })
        .collect()
}

/// Ejects endpoint `i` for 30 s from `now` through the outlier detector.
fn eject(eps: &[EndpointRuntime], i: usize, now: u64) {
    let cfg = OutlierConfig {
        consecutive_failures: 1,
        consecutive_5xx: 0,
        base_ejection: Duration::from_secs(30),
        max_ejection: Duration::from_secs(30),
        max_ejected_percent: 100,
        consecutive_gateway_errors: 0,
        panic_threshold: 0,
    };
    let fault = Outcome::Fault(crate::proxy::EndpointFault::Connect);
    assert!(record_outcome(eps, i, fault, &cfg, now, String::new).is_some());
    assert!(eps[i].stats.is_ejected(now));
}

fn picks(
    b: &Balancer,
    eps: &[EndpointRuntime],
    now: u64,
    exclude: Option<usize>,
    n: usize,
) -> Vec<Option<usize>> {
    let mut rng = SmallRng::seed_from_u64(0xba1a);
    (0..n)
        .map(|_| b.pick(eps, now, exclude, &mut rng))
        .collect()
}

/// How often each endpoint was picked; panics on `None`.
fn counts(picks: &[Option<usize>], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for p in picks {
        c[p.expect("a pick")] += 1;
    }
    c
}

/// `hits` out of `n` Bernoulli(p) trials is within five standard deviations of `n·p`.
#[track_caller]
fn assert_binomial(hits: usize, n: usize, p: f64) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (hits as f64 - mean).abs() <= 5.0 * sigma,
        "{hits} of {n}: expected {mean:.0} ± {:.0}",
        5.0 * sigma
    );
}

// === Round robin ===

#[test]
fn round_robin_cycles_evenly() {
    let e = eps(&[1, 1, 1]);
    let b = Balancer::new(BalancePolicy::RoundRobin, &e);
    let p = picks(&b, &e, NOW, None, 9);
    assert_eq!(
        p,
        [0, 1, 2, 0, 1, 2, 0, 1, 2].map(Some).to_vec(),
        "in order"
    );
    assert_eq!(counts(&picks(&b, &e, NOW, None, 3000), 3), [1000; 3]);
}

#[test]
fn round_robin_ignores_weights() {
    let e = eps(&[5, 1]);
    let b = Balancer::new(BalancePolicy::RoundRobin, &e);
    assert_eq!(counts(&picks(&b, &e, NOW, None, 100), 2), [50, 50]);
}

#[test]
fn round_robin_skips_ejected_endpoints_until_the_ejection_ends() {
    let e = eps(&[1, 1, 1]);
    let b = Balancer::new(BalancePolicy::RoundRobin, &e);
    eject(&e, 1, NOW);
    let c = counts(&picks(&b, &e, NOW, None, 300), 3);
    assert_eq!(c[1], 0);
    assert!(c[0] > 0 && c[2] > 0, "{c:?}");
    let later = NOW + 31 * SECOND;
    assert_eq!(counts(&picks(&b, &e, later, None, 300), 3), [100; 3]);
}

// === Smooth weighted round robin ===

#[test]
fn smooth_weighted_schedule_for_5_1_1() {
    assert_eq!(schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
    // Common factors do not lengthen the cycle.
    assert_eq!(schedule(&[10, 2, 2]), [0, 0, 1, 0, 2, 0, 0]);
    let e = eps(&[5, 1, 1]);
    let b = Balancer::new(BalancePolicy::WeightedRoundRobin, &e);
    let p: Vec<usize> = picks(&b, &e, NOW, None, 14).into_iter().flatten().collect();
    assert_eq!(p, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn smooth_weighted_long_run_matches_weights() {
    let e = eps(&[3, 2, 1]);
    let b = Balancer::new(BalancePolicy::WeightedRoundRobin, &e);
    assert_eq!(
        counts(&picks(&b, &e, NOW, None, 6000), 3),
        [3000, 2000, 1000]
    );
}

#[test]
fn smooth_weighted_skips_ejected_endpoints() {
    let e = eps(&[5, 1, 1]);
    let b = Balancer::new(BalancePolicy::WeightedRoundRobin, &e);
    eject(&e, 0, NOW);
    let c = counts(&picks(&b, &e, NOW, None, 700), 3);
    assert_eq!(c[0], 0);
    assert!(c[1] > 0 && c[2] > 0, "{c:?}");
}

#[test]
fn large_weights_are_scaled_but_keep_every_endpoint() {
    let s = schedule(&[1_000_000, 1, 999_999]);
    assert!(s.len() <= 4096 + 3, "{}", s.len());
    for i in 0..3 {
        assert!(s.contains(&i), "endpoint {i} missing");
    }
    let zeros = s.iter().filter(|&&i| i == 0).count();
    let twos = s.iter().filter(|&&i| i == 2).count();
    assert!(zeros.abs_diff(twos) <= 2, "{zeros} vs {twos}");
    assert!(schedule(&[]).is_empty());
}

proptest! {
    /// Below the length cap, one cycle holds each endpoint exactly weight/gcd times.
    #[test]
    fn schedule_counts_are_the_reduced_weights(weights in prop::collection::vec(1u32..50, 1..8)) {
        let g = weights.iter().fold(0, |a, &b| gcd(a, b));
        let s = schedule(&weights);
        for (i, w) in weights.iter().enumerate() {
            let n = s.iter().filter(|&&x| x as usize == i).count();
            prop_assert_eq!(n as u32, w / g, "endpoint {} in {:?}", i, s);
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

// === P2C ===

proptest! {
    /// The two candidates are distinct, in range, and the pick is one of them.
    #[test]
    fn p2c_pair_is_distinct(n in 2usize..64, seed in any::<u64>()) {
        let mut rng = SmallRng::seed_from_u64(seed);
        for _ in 0..16 {
            let seen = RefCell::new(Vec::new());
            let chosen = p2c::pick(n, |_| true, &mut rng, |i| {
                seen.borrow_mut().push(i);
                0.0
            });
            let seen = seen.into_inner();
            prop_assert_eq!(seen.len(), 2);
            prop_assert_ne!(seen[0], seen[1]);
            prop_assert!(seen.iter().all(|&i| i < n));
            prop_assert!(chosen.is_some_and(|c| seen.contains(&c)));
        }
    }
}

#[test]
fn p2c_pairs_cover_every_endpoint() {
    let mut rng = SmallRng::seed_from_u64(3);
    let drawn = RefCell::new([0usize; 5]);
    for _ in 0..PICKS {
        let _ = p2c::pick(
            5,
            |_| true,
            &mut rng,
            |i| {
                drawn.borrow_mut()[i] += 1;
                0.0
            },
        );
    }
    let drawn = drawn.into_inner();
    // Each draw evaluates two endpoints; each one is in a pair with probability 2/5.
    for d in drawn {
        assert_binomial(d, PICKS, 0.4);
    }
}

#[test]
fn least_request_prefers_fewer_in_flight() {
    let e = eps(&[1, 1, 1]);
    for (ep, n) in e.iter().zip([0, 5, 10]) {
        ep.stats.in_flight.store(n, Relaxed);
    }
    let b = Balancer::new(BalancePolicy::P2cLeastRequest, &e);
    let c = counts(&picks(&b, &e, NOW, None, PICKS), 3);
    // The idlest wins every pair it is in (2/3), the middle one only against the busiest.
    assert_binomial(c[0], PICKS, 2.0 / 3.0);
    assert_binomial(c[1], PICKS, 1.0 / 3.0);
    assert_eq!(c[2], 0, "{c:?}");
}

#[test]
fn least_request_divides_by_weight() {
    let e = eps(&[4, 1]);
    e[0].stats.in_flight.store(3, Relaxed);
    e[1].stats.in_flight.store(1, Relaxed);
    // 3/4 < 1/1: the heavier endpoint is less loaded.
    let b = Balancer::new(BalancePolicy::P2cLeastRequest, &e);
    assert_eq!(counts(&picks(&b, &e, NOW, None, 100), 2), [100, 0]);
}

#[test]
fn p2c_falls_back_to_usable_endpoints_when_the_pair_is_ejected() {
    let e = eps(&[1; 10]);
    for i in 0..8 {
        eject(&e, i, NOW);
    }
    for policy in [BalancePolicy::P2cLeastRequest, BalancePolicy::P2cEwma] {
        let b = Balancer::new(policy, &e);
        let c = counts(&picks(&b, &e, NOW, None, 1000), 10);
        assert_eq!(c[..8], [0; 8], "{policy:?}");
        assert!(c[8] > 0 && c[9] > 0, "{policy:?}: {c:?}");
    }
}

// === P2C with peak EWMA ===

#[test]
fn ewma_is_peak_sensitive_and_decays() {
    let s = EndpointStats::default();
    assert_eq!(s.ewma_nanos(NOW), 0.0, "no sample yet");
    observe_latency(&s, NOW, Duration::from_millis(1));
    assert_eq!(s.ewma_nanos(NOW), 1e6);
    // A slow response raises the estimate at once...
    observe_latency(&s, NOW, Duration::from_millis(200));
    assert_eq!(s.ewma_nanos(NOW), 200e6);
    // ...a fast one right after barely lowers it...
    observe_latency(&s, NOW + 1, Duration::from_millis(1));
    assert!(s.ewma_nanos(NOW + 1) > 199e6);
    // ...and idle time decays it with time constant DECAY.
    let t = NOW + 1 + u64::try_from(DECAY.as_nanos()).unwrap();
    let decayed = s.ewma_nanos(t) / s.ewma_nanos(NOW + 1);
    assert!((decayed - (-1.0f64).exp()).abs() < 1e-9, "{decayed}");
}

#[test]
fn ewma_avoids_a_slow_endpoint_then_probes_it_after_decay() {
    let e = eps(&[1, 1, 1]);
    observe_latency(&e[0].stats, NOW, Duration::from_millis(500));
    observe_latency(&e[1].stats, NOW, Duration::from_millis(1));
    observe_latency(&e[2].stats, NOW, Duration::from_millis(1));
    let b = Balancer::new(BalancePolicy::P2cEwma, &e);
    let c = counts(&picks(&b, &e, NOW, None, PICKS), 3);
    assert_eq!(c[0], 0, "slow endpoint chosen: {c:?}");

    // 70 s later the fast endpoints are still answering in 1 ms, but the slow one's estimate
    // has decayed to 500 ms · e^-7 ≈ 0.46 ms: it gets probed again, winning its pairs.
    let later = NOW + 70 * SECOND;
    observe_latency(&e[1].stats, later, Duration::from_millis(1));
    observe_latency(&e[2].stats, later, Duration::from_millis(1));
    let c = counts(&picks(&b, &e, later, None, PICKS), 3);
    assert_binomial(c[0], PICKS, 2.0 / 3.0);

    // One more slow answer and it is avoided again at once.
    observe_latency(&e[0].stats, later, Duration::from_millis(500));
    let c = counts(&picks(&b, &e, later, None, PICKS), 3);
    assert_eq!(c[0], 0, "{c:?}");
}

#[test]
fn ewma_weighs_latency_by_outstanding_requests() {
    let e = eps(&[1, 1]);
    observe_latency(&e[0].stats, NOW, Duration::from_millis(10));
    observe_latency(&e[1].stats, NOW, Duration::from_millis(10));
    e[0].stats.in_flight.store(4, Relaxed);
    let b = Balancer::new(BalancePolicy::P2cEwma, &e);
    assert_eq!(counts(&picks(&b, &e, NOW, None, 100), 2), [0, 100]);
}

#[test]
fn ewma_new_endpoint_is_neither_free_nor_starved() {
    // Without a sample an endpoint costs DEFAULT_RTT (10 ms): it beats a 50 ms endpoint and
    // loses to a 1 ms one.
    assert_eq!(DEFAULT_RTT, Duration::from_millis(10));
    let e = eps(&[1, 1]);
    let b = Balancer::new(BalancePolicy::P2cEwma, &e);
    observe_latency(&e[1].stats, NOW, Duration::from_millis(50));
    assert_eq!(counts(&picks(&b, &e, NOW, None, 100), 2), [100, 0]);

    let e = eps(&[1, 1]);
    let b = Balancer::new(BalancePolicy::P2cEwma, &e);
    observe_latency(&e[1].stats, NOW, Duration::from_millis(1));
    assert_eq!(counts(&picks(&b, &e, NOW, None, 100), 2), [0, 100]);
}

// === Every policy ===

#[test]
fn all_ejected_is_none() {
    let e = eps(&[1, 2, 3]);
    for i in 0..3 {
        eject(&e, i, NOW);
    }
    assert!(!any_usable(&e, NOW));
    for policy in POLICIES {
        let b = Balancer::new(policy, &e);
        assert!(
            picks(&b, &e, NOW, None, 50).iter().all(Option::is_none),
            "{policy:?}"
        );
    }
    assert!(any_usable(&e, NOW + 31 * SECOND));
}

#[test]
fn exclude_is_honoured() {
    let e = eps(&[3, 1]);
    for policy in POLICIES {
        let b = Balancer::new(policy, &e);
        let p = picks(&b, &e, NOW, Some(0), 100);
        assert!(p.iter().all(|&x| x == Some(1)), "{policy:?}: {p:?}");
        let p = picks(&b, &e, NOW, Some(1), 100);
        assert!(p.iter().all(|&x| x == Some(0)), "{policy:?}: {p:?}");
    }
    // Excluding the only usable endpoint leaves nothing.
    let e = eps(&[1, 1, 1]);
    eject(&e, 0, NOW);
    eject(&e, 2, NOW);
    for policy in POLICIES {
        let b = Balancer::new(policy, &e);
        assert_eq!(picks(&b, &e, NOW, Some(1), 10), [None; 10], "{policy:?}");
        assert_eq!(picks(&b, &e, NOW, None, 10), [Some(1); 10], "{policy:?}");
    }
}

#[test]
fn a_single_endpoint_works() {
    let e = eps(&[7]);
    for policy in POLICIES {
        let b = Balancer::new(policy, &e);
        assert_eq!(picks(&b, &e, NOW, None, 20), [Some(0); 20], "{policy:?}");
        assert_eq!(picks(&b, &e, NOW, Some(0), 5), [None; 5], "{policy:?}");
    }
    eject(&e, 0, NOW);
    for policy in POLICIES {
        let b = Balancer::new(policy, &e);
        assert_eq!(picks(&b, &e, NOW, None, 5), [None; 5], "{policy:?}");
    }
}

#[test]
fn no_endpoints_is_none() {
    let e = eps(&[]);
    assert!(!any_usable(&e, NOW));
    for policy in POLICIES {
        let b = Balancer::new(policy, &e);
        assert_eq!(picks(&b, &e, NOW, None, 3), [None; 3], "{policy:?}");
    }
}

#[test]
fn endpoint_runtime_carries_authority_and_weight() {
    let e = eps(&[0, 3]);
    assert_eq!(e[0].authority.as_str(), "127.0.0.1:9000");
    assert_eq!(e[0].weight(), 1, "weights are at least 1");
    assert_eq!(e[1].weight(), 3);
    let v6 = EndpointRuntime::new(
        discovery::Endpoint::new("[::1]:8080".parse().unwrap()),
        Arc::new(EndpointStats::default()),
    );
    assert_eq!(v6.authority.as_str(), "[::1]:8080");
}

#[test]
fn endpoints_at_their_in_flight_limit_are_skipped() {
    let e = eps(&[1, 1, 1]);
    let mut rng = SmallRng::seed_from_u64(7);
    e[0].stats.in_flight.store(2, Relaxed);
    e[1].stats.in_flight.store(1, Relaxed);
    for b in [
        Balancer::new(BalancePolicy::RoundRobin, &e),
        Balancer::new(BalancePolicy::P2cLeastRequest, &e),
    ] {
        for _ in 0..50 {
            let i = b.pick_within(&e, 1, None, Some(2), &mut rng).unwrap();
            assert_ne!(i, 0, "at its limit");
        }
        assert_eq!(b.pick_within(&e, 1, Some(2), Some(1), &mut rng), None);
    }
}

#[test]
fn below_the_panic_threshold_ejections_are_ignored() {
    let e = eps(&[1, 1, 1, 1]);
    eject(&e, 0, NOW);
    eject(&e, 1, NOW);
    // Two of four usable: 50 % is not below a threshold of 50, but is below 51.
    assert!(!panicking(&e, NOW, 50));
    assert!(panicking(&e, NOW, 51));
    assert!(!panicking(&e, NOW, 0), "0 is off");
    let mut rng = SmallRng::seed_from_u64(7);
    for policy in POLICIES {
        let b = Balancer::new(policy, &e);
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            let i = b
                .pick_panicking(&e, NOW, Some(3), None, 51, &mut rng)
                .unwrap();
            seen[i] += 1;
        }
        assert_eq!(seen[3], 0, "{policy:?}: exclude still holds");
        assert!(
            seen[0] > 0 && seen[1] > 0,
            "{policy:?}: ejected used: {seen:?}"
        );
        let calm: Vec<_> = (0..100)
            .map(|_| b.pick_panicking(&e, NOW, None, None, 50, &mut rng).unwrap())
            .collect();
        assert!(calm.iter().all(|&i| i >= 2), "{policy:?}: not in panic");
    }
    eject(&e, 2, NOW);
    eject(&e, 3, NOW);
    assert!(!any_usable_within(&e, NOW, 0));
    assert!(
        any_usable_within(&e, NOW, 1),
        "all ejected: a panicking backend"
    );
    assert!(!any_usable_within(&[], NOW, 50));
}
