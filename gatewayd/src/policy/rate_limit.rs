//! `kind = "rate_limit"`: GCRA (governor) per key, a bounded key table, and the IETF
//! `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers, Structured
//! Fields: `"name";q=10;w=2` and `"name";r=3;t=1`).
//!
//! `scope = "fleet"`: the configured rate and burst are the fleet's. Each gateway enforces its
//! share, both divided by the number of gateways alive (rounded up, so never zero), and builds
//! a new limiter over the same key table when that number changes ([`RateLimit::set_fleet`]).

mod store;

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use http::{HeaderName, HeaderValue};

use super::jwt::Claims;
use super::Headers;
use crate::config::{RateKey, RateLimitConfig};
use store::{BoundedStore, ShareStore};

/// Header names.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// Header names.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// One rate-limit policy with its buckets (kept across reloads while its config is unchanged).
#[derive(Debug)]
pub struct RateLimit {
    name: String,
    key: RateKey,
    cfg: RateLimitConfig,
    share: Shares,
    table: Arc<BoundedStore>,
    clock: DefaultClock,
    /// The first limiter's clock reading: later limiters' offsets are measured from it.
    origin: <DefaultClock as Clock>::Instant,
    hasher: std::collections::hash_map::RandomState,
    /// Requests let through, and limited.
    pub(super) decisions: [AtomicU64; 2],
    /// Recent decisions.
    pub(super) recent: super::Recent,
}

/// The limiter in use: fixed for a local limit; swapped as the fleet changes for a fleet one
/// (only fleet limits pay for the swap's load).
#[derive(Debug)]
enum Shares {
    Local(Share),
    Fleet(ArcSwap<Share>),
}

/// This gateway's part of the limit: the quota for `gateways` gateways and its limiter.
#[derive(Debug)]
struct Share {
    gateways: u32,
    quota: Quota,
    limiter: RateLimiter<u64, ShareStore, DefaultClock, StateInformationMiddleware>,
    policy_value: HeaderValue,
}

/// Within or over the limit, with the headers every answer carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Let through; `RateLimit-Policy` and `RateLimit` (with the remaining quota).
    Allow([(HeaderName, HeaderValue); 2]),
    /// Over the limit: retry after this long (whole seconds, at least 1).
    Deny {
        /// `Retry-After`.
        retry_after: u64,
        /// `RateLimit-Policy` and `RateLimit` (`r=0`).
        headers: [(HeaderName, HeaderValue); 2],
    },
}

/// A fleet-wide limit's share on one of `gateways` gateways: `(count, burst)` each divided and
/// rounded up, so a share is never zero and the fleet admits at most `gateways - 1` more than
/// configured per period (and per burst).
pub fn fleet_share(
    count: NonZeroU32,
    burst: NonZeroU32,
    gateways: u32,
) -> (NonZeroU32, NonZeroU32) {
    let n = gateways.max(1);
    let div = |v: NonZeroU32| NonZeroU32::new(v.get().div_ceil(n)).unwrap_or(NonZeroU32::MIN);
    (div(count), div(burst))
}

impl RateLimit {
    /// A limiter for `cfg`, named `name` in its headers. A fleet limit starts with the share of
    /// `gateways` gateways (the registry's last known count; 0 or 1: the whole limit).
    pub fn new(name: &str, cfg: &RateLimitConfig, gateways: u32) -> Self {
        let clock = DefaultClock::default();
        let origin = clock.now();
        let gateways = if cfg.fleet { gateways.max(1) } else { 1 };
        let (count, burst) = fleet_share(cfg.count, cfg.burst, gateways);
        // The refill time of a full bucket is the same for every share (both are divided).
        let refill = quota(cfg.per, count, burst).burst_size_replenished_in();
        let table = Arc::new(BoundedStore::new(cfg.max_keys, refill));
        let first = Share::new(
            name,
            cfg.per,
            (count, burst),
            gateways,
            &table,
            &clock,
            origin,
        );
        Self {
            name: name.to_string(),
            key: cfg.key.clone(),
            cfg: cfg.clone(),
            share: if cfg.fleet {
                Shares::Fleet(ArcSwap::from_pointee(first))
            } else {
                Shares::Local(first)
            },
            table,
            clock,
            origin,
            hasher: std::collections::hash_map::RandomState::new(),
            decisions: Default::default(),
            recent: super::Recent::new(name),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when buckets are keyed by a JWT claim (the limit then runs after the jwt policy).
    pub fn by_claim(&self) -> bool {
        matches!(self.key, RateKey::Claim(_))
    }

    /// The number of gateways the limit is divided among (1 for a local limit).
    pub fn gateways(&self) -> u32 {
        match &self.share {
            Shares::Local(_) => 1,
            Shares::Fleet(s) => s.load().gateways,
        }
    }

    /// This gateway's share now: (requests per period, burst).
    pub fn share(&self) -> (u32, u32) {
        let (count, burst) = fleet_share(self.cfg.count, self.cfg.burst, self.gateways());
        (count.get(), burst.get())
    }

    /// Re-divides a fleet limit among `gateways` gateways (0 counts as 1). Every key keeps its
    /// bucket: its debt, in time, carries over to the new share. No-op for a local limit or an
    /// unchanged count.
    pub fn set_fleet(&self, gateways: u32) {
        let gateways = gateways.max(1);
        if let Shares::Fleet(s) = &self.share {
            if s.load().gateways != gateways {
                s.store(Arc::new(self.build(gateways)));
            }
        }
    }

    fn build(&self, gateways: u32) -> Share {
        let (count, burst) = fleet_share(self.cfg.count, self.cfg.burst, gateways);
        Share::new(
            &self.name,
            self.cfg.per,
            (count, burst),
            gateways,
            &self.table,
            &self.clock,
            self.origin,
        )
    }

    /// Counts one request of `client` (its headers, the claims of its verified token) against
    /// its bucket.
    pub fn check(
        &self,
        client: IpAddr,
        headers: &dyn Headers,
        claims: Option<&Claims>,
    ) -> Decision {
        let key = self.key_of(client, headers, claims);
        let guard;
        let share = match &self.share {
            Shares::Local(s) => s,
            Shares::Fleet(s) => {
                guard = s.load();
                &**guard
            }
        };
        match share.limiter.check_key(&key) {
            Ok(snapshot) => {
                self.decisions[0].fetch_add(1, Relaxed);
                let left = snapshot.remaining_burst_capacity();
                let used = share.quota.burst_size().get().saturating_sub(left);
                let reset = (share.quota.replenish_interval() * used)
                    .as_secs_f64()
                    .ceil() as u64;
                Decision::Allow(share.headers(&self.name, left, reset))
            }
            Err(not_until) => {
                self.decisions[1].fetch_add(1, Relaxed);
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
                Decision::Deny {
                    retry_after,
                    headers: share.headers(&self.name, 0, retry_after),
                }
            }
        }
    }

    /// Buckets held now (the overflow bucket not counted).
    pub fn keys(&self) -> usize {
        self.table.len()
    }

    /// A 64-bit hash of the key's value (random per process, so clients cannot aim collisions).
    fn key_of(&self, client: IpAddr, headers: &dyn Headers, claims: Option<&Claims>) -> u64 {
        let mut h = self.hasher.build_hasher();
        match &self.key {
            RateKey::ClientIp => client.hash(&mut h),
            RateKey::Header(name) => headers.get(name).hash(&mut h),
            // Requests without the claim share one bucket; a string claim is its text, any
            // other value its JSON.
            RateKey::Claim(name) => match claims.and_then(|c| c.get(name)) {
                None => 0u8.hash(&mut h),
                Some(serde_json::Value::String(s)) => (1u8, s).hash(&mut h),
                Some(v) => (2u8, v.to_string()).hash(&mut h),
            },
            RateKey::Route => 0u8.hash(&mut h),
        }
        h.finish()
    }
}

/// GCRA: one request every `per / count`, `burst` at once.
fn quota(per: Duration, count: NonZeroU32, burst: NonZeroU32) -> Quota {
    let interval = per / count.get();
    Quota::with_period(interval.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(burst)
}

// === impl Share ===

impl Share {
    fn new(
        name: &str,
        per: Duration,
        (count, burst): (NonZeroU32, NonZeroU32),
        gateways: u32,
        table: &Arc<BoundedStore>,
        clock: &DefaultClock,
        origin: <DefaultClock as Clock>::Instant,
    ) -> Self {
        let quota = quota(per, count, burst);
        // The limiter's start is read right after this (within nanoseconds: negligible next to
        // any emission interval).
        let offset: Nanos = clock.now().duration_since(origin);
        let store = ShareStore {
            table: table.clone(),
            offset,
        };
        let limiter =
            RateLimiter::<u64, ShareStore, DefaultClock>::new(quota, store, clock.clone())
                .with_middleware::<StateInformationMiddleware>();
        let window = quota.burst_size_replenished_in().as_secs().max(1);
        let policy_value =
            HeaderValue::from_str(&format!("\"{}\";q={burst};w={window}", sf_string(name)))
                .unwrap_or(HeaderValue::from_static("\"limit\""));
        Self {
            gateways,
            quota,
            limiter,
            policy_value,
        }
    }

    fn headers(&self, name: &str, remaining: u32, reset: u64) -> [(HeaderName, HeaderValue); 2] {
        let now =
            HeaderValue::from_str(&format!("\"{}\";r={remaining};t={reset}", sf_string(name)))
                .unwrap_or(HeaderValue::from_static("\"limit\""));
        [
            (RATELIMIT_POLICY, self.policy_value.clone()),
            (RATELIMIT, now),
        ]
    }
}

/// A Structured Fields string's content: only printable ASCII, `"` and `\` escaped.
pub(super) fn sf_string(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c))
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    struct NoHeaders;
    impl Headers for NoHeaders {
        fn get(&self, _: &HeaderName) -> Option<&[u8]> {
            None
        }
    }

    fn config(count: u32, per: u64, burst: u32, max_keys: usize) -> RateLimitConfig {
        RateLimitConfig {
            count: NonZeroU32::new(count).unwrap(),
            per: Duration::from_secs(per),
            burst: NonZeroU32::new(burst).unwrap(),
            key: RateKey::ClientIp,
            max_keys,
            fleet: false,
        }
    }

    fn limit(count: u32, per: u64, burst: u32, max_keys: usize) -> RateLimit {
        RateLimit::new("per-client", &config(count, per, burst, max_keys), 1)
    }

    fn fleet(count: u32, per: u64, burst: u32, gateways: u32) -> RateLimit {
        let cfg = RateLimitConfig {
            fleet: true,
            ..config(count, per, burst, 100)
        };
        RateLimit::new("fleet", &cfg, gateways)
    }

    /// Requests of `client` let through out of `tries` (windows of hours: nothing refills
    /// while the test runs).
    fn admitted(l: &RateLimit, client: u32, tries: usize) -> usize {
        (0..tries)
            .filter(|_| matches!(l.check(ip(client), &NoHeaders, None), Decision::Allow(_)))
            .count()
    }

    #[test]
    fn a_fleet_share_is_rounded_up_and_never_zero() {
        let n = |v| NonZeroU32::new(v).unwrap();
        let share = |c, b, g| {
            let (c, b) = fleet_share(n(c), n(b), g);
            (c.get(), b.get())
        };
        assert_eq!(share(10, 20, 1), (10, 20));
        assert_eq!(share(10, 20, 3), (4, 7));
        assert_eq!(share(5, 5, 2), (3, 3));
        assert_eq!(share(1, 1, 10), (1, 1));
        assert_eq!(share(6, 6, 0), (6, 6), "no count known: the whole limit");
    }

    #[test]
    fn a_fleet_limit_enforces_its_share_and_re_divides_keeping_each_bucket() {
        let l = fleet(4, 3600, 4, 2);
        assert_eq!((l.gateways(), l.share()), (2, (2, 2)));
        assert_eq!(admitted(&l, 1, 5), 2, "half of 4 on each of 2 gateways");
        let Decision::Allow([(_, policy), _]) = l.check(ip(2), &NoHeaders, None) else {
            panic!("a new key has its share")
        };
        assert_eq!(
            policy, "\"fleet\";q=2;w=3600",
            "the policy announces this gateway's share"
        );
        // One gateway left: the share grows back to the whole limit. A key that spent its
        // whole share stays spent (its debt in time carries over: the other gateway may have
        // let as many through), a key that spent half of it has half of the new one.
        l.set_fleet(1);
        assert_eq!((l.gateways(), l.share()), (1, (4, 4)));
        assert_eq!(admitted(&l, 1, 4), 0);
        assert_eq!(admitted(&l, 2, 4), 2);
        assert_eq!(admitted(&l, 3, 6), 4, "a new key gets the whole limit");
        // Four gateways: a quarter each, never zero.
        l.set_fleet(4);
        assert_eq!(l.share(), (1, 1));
        assert_eq!(admitted(&l, 4, 3), 1);
        l.set_fleet(0);
        assert_eq!(l.gateways(), 1, "no gateway known counts as this one alone");
    }

    #[test]
    fn a_local_limit_ignores_the_fleet() {
        let l = limit(4, 3600, 4, 100);
        l.set_fleet(4);
        assert_eq!((l.gateways(), l.share()), (1, (4, 4)));
        assert_eq!(admitted(&l, 1, 5), 4);
    }

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(i.to_be_bytes())
    }

    #[test]
    fn a_burst_passes_then_the_limit_answers_with_its_headers() {
        let l = limit(1, 60, 3, 100);
        for left in [2, 1, 0] {
            let Decision::Allow([(p, pv), (r, rv)]) = l.check(ip(1), &NoHeaders, None) else {
                panic!("within the burst")
            };
            assert_eq!((p, r), (RATELIMIT_POLICY, RATELIMIT));
            assert_eq!(pv, "\"per-client\";q=3;w=180");
            assert!(
                rv.to_str()
                    .unwrap()
                    .starts_with(&format!("\"per-client\";r={left};t=")),
                "{rv:?}"
            );
        }
        let Decision::Deny {
            retry_after,
            headers,
        } = l.check(ip(1), &NoHeaders, None)
        else {
            panic!("over the limit")
        };
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert!(headers[1].1.to_str().unwrap().contains(";r=0;"));
        // Another key keeps its full rate.
        assert!(matches!(
            l.check(ip(2), &NoHeaders, None),
            Decision::Allow(_)
        ));
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_table_and_shares_one_bucket() {
        let l = limit(1, 3600, 1, 1000);
        let mut allowed = 0;
        for i in 0..200_000 {
            if matches!(l.check(ip(i), &NoHeaders, None), Decision::Allow(_)) {
                allowed += 1;
            }
        }
        assert_eq!(l.keys(), 1000, "the table is bounded");
        // 1,000 keys with one request each, then one for the overflow bucket.
        assert_eq!(allowed, 1001);
        // A key already in the table keeps its own bucket.
        assert!(matches!(
            l.check(ip(5), &NoHeaders, None),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn workers_inserting_at_once_never_take_the_table_past_its_bound() {
        // Four threads meet the table's last free slots together, many times over: the bound
        // holds exactly (a check-then-insert would let two of them in at once).
        for round in 0..20u32 {
            let l = limit(1, 3600, 1, 100);
            std::thread::scope(|s| {
                for t in 0..4u32 {
                    let l = &l;
                    s.spawn(move || {
                        for i in 0..200 {
                            let _ = l.check(ip(round * 10_000 + t * 1000 + i), &NoHeaders, None);
                        }
                    });
                }
            });
            assert_eq!(l.keys(), 100, "round {round}");
        }
    }

    #[test]
    fn names_are_quoted_as_structured_field_strings() {
        assert_eq!(sf_string("a\"b\\c\u{e9}"), "a\\\"b\\\\c");
    }
}
