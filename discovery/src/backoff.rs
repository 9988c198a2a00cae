//! Exponential backoff with bounded jitter, for retrying Consul reads.
//!
//! The invariants live in [`Backoff::try_new`]: a backoff that exists is valid, so the watch loops
//! never re-check it. Delays double from `min` up to `max`; jitter adds up to `jitter × delay`
//! and the result is clamped back into `[min, max]`, so a storm of retries spreads out without
//! ever waiting longer than `max`.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Why a backoff could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBackoff {
    /// `min` was zero: retries would spin.
    #[error("backoff minimum must be greater than zero")]
    ZeroMin,
    /// `min` exceeded `max`.
    #[error("backoff minimum {min:?} exceeds maximum {max:?}")]
    MinAboveMax {
        /// Requested minimum.
        min: Duration,
        /// Requested maximum.
        max: Duration,
    },
    /// Jitter outside `[0, 1]` (or not a number).
    #[error("backoff jitter {0} is not within [0, 1]")]
    Jitter(f64),
}

/// A validated exponential backoff policy: `min ≤ delay ≤ max`, jitter fraction in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    jitter: f64,
}

/// A running backoff: counts consecutive failures and owns its random source.
#[derive(Debug, Clone)]
pub struct BackoffState {
    policy: Backoff,
    attempt: u32,
    rng: SmallRng,
}

// === impl Backoff ===

impl Backoff {
    /// Builds a policy. Fails when `min` is zero, `min > max`, or `jitter` is not in `[0, 1]`.
    pub fn try_new(min: Duration, max: Duration, jitter: f64) -> Result<Self, InvalidBackoff> {
        if min.is_zero() {
            return Err(InvalidBackoff::ZeroMin);
        }
        if min > max {
            return Err(InvalidBackoff::MinAboveMax { min, max });
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(InvalidBackoff::Jitter(jitter));
        }
        Ok(Self { min, max, jitter })
    }

    /// Shortest delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// Longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Jitter fraction in `[0, 1]`.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The un-jittered delay after `attempt` consecutive failures (0-based): `min · 2^attempt`,
    /// capped at `max`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The delay for `attempt`, with jitter drawn from `rng`: within `[min, max]` and at most
    /// `jitter × base_delay(attempt)` above the base delay.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_delay(attempt);
        let spread = base.mul_f64(self.jitter);
        let extra = if spread.is_zero() {
            Duration::ZERO
        } else {
            rng.gen_range(Duration::ZERO..=spread)
        };
        (base + extra).clamp(self.min, self.max)
    }

    /// A running state with a random seed.
    pub fn start(self) -> BackoffState {
        BackoffState {
            policy: self,
            attempt: 0,
            rng: SmallRng::from_entropy(),
        }
    }

    /// A running state with a fixed seed (deterministic tests).
    pub fn start_seeded(self, seed: u64) -> BackoffState {
        BackoffState {
            policy: self,
            attempt: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

impl Default for Backoff {
    /// 500 ms doubling up to 60 s with 20 % jitter (between consul-template's 250 ms…1 m and
    /// api/watch's 5 s·n²…180 s).
    fn default() -> Self {
        Self {
            min: Duration::from_millis(500),
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

// === impl BackoffState ===

impl BackoffState {
    /// The delay before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.policy.delay(self.attempt, &mut self.rng);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Forgets past failures (call after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Consecutive failures counted so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The policy in use.
    pub fn policy(&self) -> &Backoff {
        &self.policy
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use quickcheck::{quickcheck, TestResult};

    use super::*;

    fn policy(min_ms: u16, extra_ms: u16, jitter_pct: u8) -> Backoff {
        let min = Duration::from_millis(u64::from(min_ms) + 1);
        let max = min + Duration::from_millis(u64::from(extra_ms));
        Backoff::try_new(min, max, f64::from(jitter_pct % 101) / 100.0).unwrap()
    }

    #[test]
    fn rejects_invalid_policies() {
        let s = Duration::from_secs(1);
        assert_eq!(
            Backoff::try_new(Duration::ZERO, s, 0.1),
            Err(InvalidBackoff::ZeroMin)
        );
        assert!(matches!(
            Backoff::try_new(s * 2, s, 0.1),
            Err(InvalidBackoff::MinAboveMax { .. })
        ));
        assert!(Backoff::try_new(s, s, 1.5).is_err());
        assert!(Backoff::try_new(s, s, -0.1).is_err());
        assert!(Backoff::try_new(s, s, f64::NAN).is_err());
        assert!(Backoff::try_new(s, s, 1.0).is_ok());
    }

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::try_new(Duration::from_millis(100), Duration::from_secs(1), 0.0).unwrap();
        let mut st = b.start_seeded(1);
        let delays: Vec<_> = (0..6).map(|_| st.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        st.reset();
        assert_eq!(st.next_delay(), Duration::from_millis(100));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn delay_is_within_min_and_max() {
        fn prop(min_ms: u16, extra_ms: u16, jitter_pct: u8, attempt: u32, seed: u64) -> bool {
            let b = policy(min_ms, extra_ms, jitter_pct);
            let mut rng = SmallRng::seed_from_u64(seed);
            let d = b.delay(attempt, &mut rng);
            b.min() <= d && d <= b.max()
        }
        quickcheck(prop as fn(u16, u16, u8, u32, u64) -> bool);
    }

    #[test]
    fn jitter_stays_bounded() {
        fn prop(min_ms: u16, extra_ms: u16, jitter_pct: u8, attempt: u8, seed: u64) -> TestResult {
            let b = policy(min_ms, extra_ms, jitter_pct);
            let mut rng = SmallRng::seed_from_u64(seed);
            let base = b.base_delay(u32::from(attempt));
            let d = b.delay(u32::from(attempt), &mut rng);
            // Never below the un-jittered delay; never more than jitter × base above it.
            let bound = base + base.mul_f64(b.jitter()) + Duration::from_nanos(1);
            TestResult::from_bool(d >= base && d <= bound)
        }
        quickcheck(prop as fn(u16, u16, u8, u8, u64) -> TestResult);
    }

    #[test]
    fn delays_never_decrease_without_jitter() {
        fn prop(min_ms: u16, extra_ms: u16, attempt: u8) -> bool {
            let b = policy(min_ms, extra_ms, 0);
            b.base_delay(u32::from(attempt)) <= b.base_delay(u32::from(attempt) + 1)
        }
        quickcheck(prop as fn(u16, u16, u8) -> bool);
    }
}
