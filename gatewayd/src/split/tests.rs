#![allow(clippy::unwrap_used)]
//! Backend choice: weighted distribution, failover, `on_empty_backend = "fail"`, cohort rules,
//! sticky keys (consistency, monotonic ramp, a golden table), and cookie parsing.

use http::Request;
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::*;
use crate::config::{CohortAction, CohortRule, OnEmptyBackend, RequestKey};

const PICKS: usize = 10_000;

fn req(headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().uri("/");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

fn plain(weights: &[u32]) -> Split {
    Split::new(weights.to_vec(), Vec::new(), None, OnEmptyBackend::Failover)
}

fn sticky_on(weights: &[u32], key: RequestKey) -> Split {
    Split::new(
        weights.to_vec(),
        Vec::new(),
        Some(key),
        OnEmptyBackend::Failover,
    )
}

fn header(name: &'static str) -> RequestKey {
    RequestKey::Header(http::HeaderName::from_static(name))
}

fn rule(key: RequestKey, value: &str, backend: usize, action: CohortAction) -> CohortRule {
    CohortRule {
        key,
        value: value.into(),
        backend,
        action,
    }
}

fn all(_: usize) -> bool {
    true
}

/// `n` choices for `r` with a seeded RNG.
fn choices(
    split: &Split,
    r: &Request<()>,
    usable: impl Fn(usize) -> bool,
    n: usize,
) -> Vec<Choice> {
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    (0..n).map(|_| split.choose(r, &usable, &mut rng)).collect()
}

fn count(cs: &[Choice], c: Choice) -> usize {
    cs.iter().filter(|&&x| x == c).count()
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

// === Weighted choice ===

#[test]
fn ninety_ten_split_over_ten_thousand_picks() {
    let cs = choices(&plain(&[90, 10]), &req(&[]), all, PICKS);
    assert_eq!(
        count(&cs, Choice::Backend(0)) + count(&cs, Choice::Backend(1)),
        PICKS
    );
    assert_binomial(count(&cs, Choice::Backend(1)), PICKS, 0.1);
}

#[test]
fn three_way_split_follows_weights() {
    let cs = choices(&plain(&[5, 3, 2]), &req(&[]), all, PICKS);
    for (i, p) in [0.5, 0.3, 0.2].into_iter().enumerate() {
        assert_binomial(count(&cs, Choice::Backend(i)), PICKS, p);
    }
}

#[test]
fn zero_weight_backend_is_never_chosen_while_others_are_usable() {
    let s = plain(&[0, 5, 5]);
    let cs = choices(&s, &req(&[]), all, PICKS);
    assert_eq!(count(&cs, Choice::Backend(0)), 0);
    assert_binomial(count(&cs, Choice::Backend(1)), PICKS, 0.5);
    // Still not while one of the weighted backends is down.
    let cs = choices(&s, &req(&[]), |i| i != 1, PICKS);
    assert_eq!(count(&cs, Choice::Backend(2)), PICKS);
    assert_eq!(s.weights(), [0, 5, 5]);
}

// === Failover ===

#[test]
fn an_unusable_backend_share_goes_to_the_others() {
    let cs = choices(&plain(&[80, 20]), &req(&[]), |i| i != 0, PICKS);
    assert_eq!(count(&cs, Choice::Backend(1)), PICKS);

    // 50/30/20 without the first: 60/40 between the other two.
    let cs = choices(&plain(&[50, 30, 20]), &req(&[]), |i| i != 0, PICKS);
    assert_eq!(count(&cs, Choice::Backend(0)), 0);
    assert_binomial(count(&cs, Choice::Backend(1)), PICKS, 0.6);
    assert_eq!(
        count(&cs, Choice::Backend(1)) + count(&cs, Choice::Backend(2)),
        PICKS
    );
}

#[test]
fn zero_weight_backends_take_traffic_when_they_are_the_only_usable() {
    let cs = choices(&plain(&[100, 0]), &req(&[]), |i| i == 1, 100);
    assert_eq!(count(&cs, Choice::Backend(1)), 100);
    // The first usable zero-weight backend, in declaration order.
    let cs = choices(&plain(&[100, 0, 0]), &req(&[]), |i| i != 0, 100);
    assert_eq!(count(&cs, Choice::Backend(1)), 100);
}

#[test]
fn nothing_usable_is_nothing() {
    let cs = choices(&plain(&[60, 40, 0]), &req(&[]), |_| false, 100);
    assert_eq!(count(&cs, Choice::Nothing), 100);
    let cs = choices(&plain(&[]), &req(&[]), all, 10);
    assert_eq!(count(&cs, Choice::Nothing), 10);
}

// === on_empty_backend = "fail" ===

fn failing(weights: &[u32]) -> Split {
    Split::new(weights.to_vec(), Vec::new(), None, OnEmptyBackend::Fail)
}

#[test]
fn fail_mode_reports_the_empty_backend_instead_of_moving_traffic() {
    let cs = choices(&failing(&[100, 0]), &req(&[]), |i| i != 0, 100);
    assert_eq!(
        count(&cs, Choice::Empty(0)),
        100,
        "not to the zero-weight backend"
    );

    let cs = choices(&failing(&[50, 50]), &req(&[]), |i| i != 1, PICKS);
    assert_eq!(count(&cs, Choice::Backend(1)), 0);
    let empty = count(&cs, Choice::Empty(1));
    assert_eq!(empty + count(&cs, Choice::Backend(0)), PICKS);
    assert_binomial(empty, PICKS, 0.5);
}

#[test]
fn fail_mode_with_everything_usable_is_plain_weighted() {
    let cs = choices(&failing(&[90, 10]), &req(&[]), all, PICKS);
    assert_binomial(count(&cs, Choice::Backend(1)), PICKS, 0.1);
    assert_eq!(
        count(&cs, Choice::Backend(0)) + count(&cs, Choice::Backend(1)),
        PICKS
    );
}

// === Cohorts ===

fn canary_split(action: CohortAction, weights: &[u32]) -> Split {
    Split::new(
        weights.to_vec(),
        vec![rule(header("x-canary"), "on", 1, action)],
        None,
        OnEmptyBackend::Failover,
    )
}

#[test]
fn force_sends_the_cohort_to_its_backend_even_at_weight_zero() {
    let s = canary_split(CohortAction::Force, &[100, 0]);
    let cs = choices(&s, &req(&[("x-canary", "on")]), all, 100);
    assert_eq!(count(&cs, Choice::Backend(1)), 100);
    for other in [
        req(&[]),
        req(&[("x-canary", "On")]),
        req(&[("x-canary", "off")]),
    ] {
        let cs = choices(&s, &other, all, 100);
        assert_eq!(count(&cs, Choice::Backend(0)), 100, "{other:?}");
    }
}

#[test]
fn force_to_an_unusable_backend_falls_back_to_weighted() {
    let s = canary_split(CohortAction::Force, &[100, 0]);
    let cs = choices(&s, &req(&[("x-canary", "on")]), |i| i != 1, 100);
    assert_eq!(count(&cs, Choice::Backend(0)), 100);

    let s = canary_split(CohortAction::Force, &[0, 30, 70]);
    let cs = choices(&s, &req(&[("x-canary", "on")]), |i| i != 1, 100);
    assert_eq!(count(&cs, Choice::Backend(2)), 100);
}

#[test]
fn avoid_keeps_the_cohort_off_its_backend() {
    let s = canary_split(CohortAction::Avoid, &[50, 50]);
    let cs = choices(&s, &req(&[("x-canary", "on")]), all, PICKS);
    assert_eq!(count(&cs, Choice::Backend(0)), PICKS);
    // Everyone else still gets the split.
    let cs = choices(&s, &req(&[]), all, PICKS);
    assert_binomial(count(&cs, Choice::Backend(1)), PICKS, 0.5);

    // Avoiding the only weighted backend: the zero-weight one serves.
    let s = canary_split(CohortAction::Avoid, &[0, 100, 0]);
    let cs = choices(&s, &req(&[("x-canary", "on")]), all, 100);
    assert_eq!(count(&cs, Choice::Backend(0)), 100);
}

#[test]
fn avoid_every_backend_is_nothing() {
    let s = Split::new(
        vec![50, 50],
        vec![
            rule(header("x-canary"), "off", 0, CohortAction::Avoid),
            rule(header("x-canary"), "off", 1, CohortAction::Avoid),
        ],
        None,
        OnEmptyBackend::Failover,
    );
    let cs = choices(&s, &req(&[("x-canary", "off")]), all, 10);
    assert_eq!(count(&cs, Choice::Nothing), 10);
}

#[test]
fn first_matching_force_rule_wins() {
    let s = Split::new(
        vec![1, 1, 1],
        vec![
            rule(header("x-team"), "core", 2, CohortAction::Force),
            rule(header("x-team"), "core", 1, CohortAction::Force),
            rule(
                RequestKey::Cookie("beta".into()),
                "1",
                1,
                CohortAction::Force,
            ),
        ],
        None,
        OnEmptyBackend::Failover,
    );
    let cs = choices(
        &s,
        &req(&[("x-team", "core"), ("cookie", "beta=1")]),
        all,
        50,
    );
    assert_eq!(count(&cs, Choice::Backend(2)), 50);
    let cs = choices(&s, &req(&[("cookie", "a=b; beta=1")]), all, 50);
    assert_eq!(count(&cs, Choice::Backend(1)), 50);
}

// === Sticky ===

/// The backend a sticky key lands on, computed from the hash directly.
fn expected_sticky(value: &str, weights: &[u32]) -> usize {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    let mut point = sticky_pick(sticky_hash(value.as_bytes()), total);
    for (i, &w) in weights.iter().enumerate() {
        if point < u64::from(w) {
            return i;
        }
        point -= u64::from(w);
    }
    unreachable!("point beyond total")
}

#[test]
fn same_key_same_backend_whatever_the_rng() {
    let weights = [50, 30, 20];
    let s = sticky_on(&weights, header("x-user"));
    for k in 0..300 {
        let user = format!("user-{k}");
        let r = req(&[("x-user", &user)]);
        let want = Choice::Backend(expected_sticky(&user, &weights));
        for seed in 0..5 {
            let mut rng = SmallRng::seed_from_u64(seed);
            assert_eq!(s.choose(&r, all, &mut rng), want, "{user}, seed {seed}");
        }
    }
}

#[test]
fn sticky_keys_spread_by_weight() {
    let s = sticky_on(&[90, 10], header("x-user"));
    let mut rng = SmallRng::seed_from_u64(1);
    let canary = (0..PICKS)
        .filter(|k| {
            let r = req(&[("x-user", &format!("client-{k}"))]);
            s.choose(&r, all, &mut rng) == Choice::Backend(1)
        })
        .count();
    assert_binomial(canary, PICKS, 0.1);
}

#[test]
fn requests_without_the_sticky_key_are_weighted_random() {
    let cs = choices(
        &sticky_on(&[50, 50], header("x-user")),
        &req(&[]),
        all,
        PICKS,
    );
    assert_binomial(count(&cs, Choice::Backend(1)), PICKS, 0.5);
}

#[test]
fn sticky_client_fails_over_when_its_backend_is_unusable() {
    let weights = [50, 50];
    // "alice" hashes to 77/100: backend 1 (see the golden table).
    assert_eq!(expected_sticky("alice", &weights), 1);
    let s = sticky_on(&weights, header("x-user"));
    let r = req(&[("x-user", "alice")]);
    assert_eq!(choices(&s, &r, all, 10), vec![Choice::Backend(1); 10]);
    assert_eq!(
        choices(&s, &r, |i| i != 1, 10),
        vec![Choice::Backend(0); 10]
    );
}

/// Failover rescales the sticky point over the usable backends' total, so when backend 0 goes
/// down, clients of the healthy backend 1 move too: "alice" (77/100, backend 1 under 50/30/20)
/// lands on backend 2 (point 38 of 50) while backend 0 is unusable, and moves back after.
#[test]
fn sticky_clients_of_healthy_backends_stay_when_another_fails() {
    let weights = [50, 30, 20];
    let s = sticky_on(&weights, header("x-user"));
    for k in 0..1000 {
        let user = format!("user-{k}");
        let home = expected_sticky(&user, &weights);
        if home == 0 {
            continue;
        }
        let r = req(&[("x-user", &user)]);
        assert_eq!(
            choices(&s, &r, |i| i != 0, 1),
            vec![Choice::Backend(home)],
            "{user} left healthy backend {home} when backend 0 failed"
        );
    }
}

#[test]
fn sticky_cookie_read_from_several_cookie_headers() {
    let r = req(&[
        ("cookie", "theme=dark"),
        ("cookie", "lang=en; session=alice; x=1"),
    ]);
    let key = RequestKey::Cookie("session".into());
    assert_eq!(key_value(&r, &key), Some(&b"alice"[..]));
    let s = sticky_on(&[50, 50], key.clone());
    assert_eq!(choices(&s, &r, all, 20), vec![Choice::Backend(1); 20]);

    // Quoted value, spaces around '=' and ';'.
    let r = req(&[("cookie", "a=1"), ("cookie", " session = \"alice\" ;b=2")]);
    assert_eq!(key_value(&r, &key), Some(&b"alice"[..]));
    // A cookie whose name merely ends in "session" is not it.
    let r = req(&[("cookie", "xsession=alice"), ("cookie", "sessionx=bob")]);
    assert_eq!(key_value(&r, &key), None);
    // The first Cookie header holding the name wins.
    let r = req(&[("cookie", "session=bob"), ("cookie", "session=alice")]);
    assert_eq!(key_value(&r, &key), Some(&b"bob"[..]));
}

#[test]
fn header_key_uses_the_first_value() {
    let r = req(&[("x-user", "bob"), ("x-user", "alice")]);
    assert_eq!(key_value(&r, &header("x-user")), Some(&b"bob"[..]));
    assert_eq!(key_value(&r, &header("x-other")), None);
}

/// Pinned outputs of the sticky hash: a change reshuffles every sticky client on upgrade.
/// Columns: key, `sticky_hash`, `sticky_pick(_, 100)`, `sticky_pick(_, 3)`,
/// `sticky_pick(_, 10_000)`, backend under weights 50/30/20, backend under 90/10.
const GOLDEN: [(&str, u64, u64, u64, u64, usize, usize); 12] = [
    ("", 0xf52a_15e9_a9b5_e89b, 95, 2, 9576, 2, 1),
    ("a", 0x02c0_bdbf_4814_20f8, 1, 0, 107, 0, 0),
    ("b", 0x3e35_b21b_fb9b_6405, 24, 0, 2430, 0, 0),
    ("alice", 0xc5d1_556d_6677_4a5c, 77, 2, 7727, 1, 0),
    ("bob", 0x6e85_72d0_8b26_8dec, 43, 1, 4317, 0, 0),
    ("user-1", 0xc499_b5f8_a721_df58, 76, 2, 7679, 1, 0),
    ("user-2", 0x4fb3_8f41_4590_a87b, 31, 0, 3113, 0, 0),
    ("user-42", 0x7a15_96f0_e94b_5793, 47, 1, 4768, 0, 0),
    (
        "session-0123456789abcdef",
        0xc762_de5b_ed83_ff4b,
        77,
        2,
        7788,
        1,
        0,
    ),
    (
        "d41d8cd98f00b204e9800998ecf8427e",
        0x59e5_e05e_5d14_2d94,
        35,
        1,
        3511,
        0,
        0,
    ),
    ("ñandú", 0xfbb1_0d28_51dc_0a7a, 98, 2, 9831, 2, 1),
    ("canary", 0xcf0d_c512_5c08_0bea, 80, 2, 8088, 2, 0),
];

#[test]
fn golden_sticky_table() {
    let three = sticky_on(&[50, 30, 20], header("x-user"));
    let two = sticky_on(&[90, 10], RequestKey::Cookie("session".into()));
    let mut rng = SmallRng::seed_from_u64(0);
    for (key, hash, p100, p3, p10k, in_three, in_two) in GOLDEN {
        let h = sticky_hash(key.as_bytes());
        assert_eq!(h, hash, "sticky_hash({key:?}) = {h:#018x}");
        assert_eq!(sticky_pick(h, 100), p100, "{key:?}");
        assert_eq!(sticky_pick(h, 3), p3, "{key:?}");
        assert_eq!(sticky_pick(h, 10_000), p10k, "{key:?}");
        let r = req(&[("x-user", key)]);
        assert_eq!(
            three.choose(&r, all, &mut rng),
            Choice::Backend(in_three),
            "{key:?}"
        );
        let cookie = format!("session={key}");
        let r = req(&[("cookie", &cookie)]);
        // An empty cookie value is still a value.
        assert_eq!(
            two.choose(&r, all, &mut rng),
            Choice::Backend(in_two),
            "{key:?}"
        );
    }
}

#[test]
fn sticky_pick_bounds() {
    assert_eq!(sticky_pick(0, 100), 0);
    assert_eq!(sticky_pick(u64::MAX, 100), 99);
    assert_eq!(sticky_pick(u64::MAX, u64::MAX), u64::MAX - 1);
    assert_eq!(sticky_pick(1 << 63, 10), 5);
}

proptest! {
    /// Raising the canary's weight (others fixed) never moves a sticky client off the canary,
    /// wherever the canary sits in the backend list.
    #[test]
    fn ramp_up_keeps_canary_clients_on_the_canary(
        key in prop::collection::vec(0x20u8..0x7f, 0..24),
        others in prop::collection::vec(0u32..=1000, 1..4),
        pos in 0usize..4,
        w in 0u32..=10_000,
        dw in 0u32..=10_000,
    ) {
        let pos = pos.min(others.len());
        let weights_with = |cw: u32| {
            let mut v = others.clone();
            v.insert(pos, cw);
            v
        };
        let value = http::HeaderValue::from_bytes(&key).unwrap();
        let r = Request::builder().header("x-user", value).body(()).unwrap();
        let mut rng = SmallRng::seed_from_u64(0);
        let before = sticky_on(&weights_with(w), header("x-user")).choose(&r, all, &mut rng);
        let after = sticky_on(&weights_with(w + dw), header("x-user")).choose(&r, all, &mut rng);
        if before == Choice::Backend(pos) {
            prop_assert_eq!(after, Choice::Backend(pos));
        }
    }

    /// The usual percentage ramp, stable = 100 - w and canary = w.
    #[test]
    fn percentage_ramp_is_monotonic(key in ".{0,20}", w in 0u32..=100, w2 in 0u32..=100) {
        let (lo, hi) = (w.min(w2), w.max(w2));
        let on_canary = |cw: u32| {
            let s = sticky_on(&[100 - cw, cw], RequestKey::Cookie("session".into()));
            let cookie = format!("session={}", key.replace([';', '"'], ""));
            let r = Request::builder()
                .header("cookie", http::HeaderValue::from_str(&cookie).unwrap_or(http::HeaderValue::from_static("session=k")))
                .body(())
                .unwrap();
            s.choose(&r, all, &mut SmallRng::seed_from_u64(0)) == Choice::Backend(1)
        };
        prop_assert!(!on_canary(lo) || on_canary(hi), "on canary at {} but not at {}", lo, hi);
        prop_assert!(!on_canary(0));
        prop_assert!(on_canary(100));
    }
}
