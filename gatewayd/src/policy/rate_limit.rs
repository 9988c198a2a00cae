//! `kind = "rate_limit"`: GCRA (governor) per key, a bounded key table, and the IETF
//! `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers, Structured
//! Fields: `"name";q=10;w=2` and `"name";r=3;t=1`).

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use http::{HeaderName, HeaderValue};

use super::jwt::Claims;
use super::Headers;
use crate::config::{RateKey, RateLimitConfig};

/// Header names.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// Header names.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// One rate-limit policy with its buckets (kept across reloads while its config is unchanged).
#[derive(Debug)]
pub struct RateLimit {
    name: String,
    key: RateKey,
    quota: Quota,
    limiter: RateLimiter<u64, BoundedStore, DefaultClock, StateInformationMiddleware>,
    clock: DefaultClock,
    hasher: std::collections::hash_map::RandomState,
    policy_value: HeaderValue,
    /// Requests let through, and limited.
    pub(super) decisions: [AtomicU64; 2],
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

impl RateLimit {
    /// A limiter for `cfg`, named `name` in its headers.
    pub fn new(name: &str, cfg: &RateLimitConfig) -> Self {
        // GCRA: one request every per/count, `burst` at once.
        let interval = cfg.per / cfg.count.get();
        let quota = Quota::with_period(interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(cfg.count))
            .allow_burst(cfg.burst);
        let clock = DefaultClock::default();
        let store = BoundedStore::new(cfg.max_keys, quota.burst_size_replenished_in());
        let limiter: RateLimiter<u64, BoundedStore, DefaultClock> =
            RateLimiter::new(quota, store, clock.clone());
        let limiter = limiter.with_middleware::<StateInformationMiddleware>();
        let window = quota.burst_size_replenished_in().as_secs().max(1);
        let policy_value = HeaderValue::from_str(&format!(
            "\"{}\";q={};w={window}",
            sf_string(name),
            cfg.burst
        ))
        .unwrap_or(HeaderValue::from_static("\"limit\""));
        Self {
            name: name.to_string(),
            key: cfg.key.clone(),
            quota,
            limiter,
            clock,
            hasher: std::collections::hash_map::RandomState::new(),
            policy_value,
            decisions: Default::default(),
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

    /// Counts one request of `client` (its headers, the claims of its verified token) against
    /// its bucket.
    pub fn check(
        &self,
        client: IpAddr,
        headers: &dyn Headers,
        claims: Option<&Claims>,
    ) -> Decision {
        let key = self.key_of(client, headers, claims);
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                self.decisions[0].fetch_add(1, Relaxed);
                let left = snapshot.remaining_burst_capacity();
                let used = self.quota.burst_size().get().saturating_sub(left);
                let reset = (self.quota.replenish_interval() * used)
                    .as_secs_f64()
                    .ceil() as u64;
                Decision::Allow(self.headers(left, reset))
            }
            Err(not_until) => {
                self.decisions[1].fetch_add(1, Relaxed);
                let wait = not_until.wait_time_from(self.clock.now());
                let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
                Decision::Deny {
                    retry_after,
                    headers: self.headers(0, retry_after),
                }
            }
        }
    }

    /// Buckets held now (the overflow bucket not counted).
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }

    fn headers(&self, remaining: u32, reset: u64) -> [(HeaderName, HeaderValue); 2] {
        let now = HeaderValue::from_str(&format!(
            "\"{}\";r={remaining};t={reset}",
            sf_string(&self.name)
        ))
        .unwrap_or(HeaderValue::from_static("\"limit\""));
        [
            (RATELIMIT_POLICY, self.policy_value.clone()),
            (RATELIMIT, now),
        ]
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

/// Governor's per-key GCRA states in a table of at most `max` keys. A key that finds the table
/// full shares one overflow bucket with every other such key, so a flood of distinct keys is
/// limited as a whole and memory stays bounded (about 64 bytes a key). Keys idle for longer than
/// a full bucket's refill are indistinguishable from new ones and are evicted when the table is
/// full, at most once a second.
#[derive(Debug)]
pub struct BoundedStore {
    map: DashMap<u64, Entry>,
    max: usize,
    overflow: InMemoryState,
    idle_after: u64,
    last_sweep: AtomicU64,
}

#[derive(Debug, Default)]
struct Entry {
    state: InMemoryState,
    /// Seconds (coarse clock) of the last request.
    seen: AtomicU64,
}

impl BoundedStore {
    fn new(max: usize, refill: Duration) -> Self {
        Self {
            map: DashMap::new(),
            max,
            overflow: InMemoryState::default(),
            idle_after: refill.as_secs() + 1,
            last_sweep: AtomicU64::new(0),
        }
    }

    fn sweep(&self, now: u64) {
        let last = self.last_sweep.load(Relaxed);
        if now == last
            || self
                .last_sweep
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        self.map
            .retain(|_, e| now.saturating_sub(e.seen.load(Relaxed)) <= self.idle_after);
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let now = crate::balance::now_nanos() / 1_000_000_000;
        if let Some(e) = self.map.get(key) {
            e.seen.store(now, Relaxed);
            return e.state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if self.map.len() >= self.max {
            self.sweep(now);
            if self.map.len() >= self.max {
                return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
            }
        }
        let e = self.map.entry(*key).or_default();
        e.seen.store(now, Relaxed);
        e.state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl governor::state::keyed::ShrinkableKeyedStateStore<u64> for BoundedStore {
    fn retain_recent(&self, _drop_below: Nanos) {
        self.sweep(crate::balance::now_nanos() / 1_000_000_000);
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
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

    fn limit(count: u32, per: u64, burst: u32, max_keys: usize) -> RateLimit {
        RateLimit::new(
            "per-client",
            &RateLimitConfig {
                count: NonZeroU32::new(count).unwrap(),
                per: Duration::from_secs(per),
                burst: NonZeroU32::new(burst).unwrap(),
                key: RateKey::ClientIp,
                max_keys,
            },
        )
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
    fn names_are_quoted_as_structured_field_strings() {
        assert_eq!(sf_string("a\"b\\c\u{e9}"), "a\\\"b\\\\c");
    }
}
