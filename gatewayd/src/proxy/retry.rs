//! When a failed attempt is tried again: the reasons, and the per-route budget that keeps
//! retries from multiplying an outage (Finagle's and Linkerd's retry budgets: retries may add a
//! share of the route's requests, plus a small floor per second).
//!
//! Whether an error may be retried at all is the error's and the transport's business
//! ([`super::ProxyError::is_retryable`], [`super::SendError::Replayable`]); this module only
//! decides whether the route can afford it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::RetryPolicy;

/// Why an attempt was retried (the `reason` label of `meshgate_retries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// The connection could not be made (nothing was sent).
    Connect,
    /// No response head within the route's `try_timeout`.
    TryTimeout,
    /// The endpoint closed or reset the connection before a response head.
    Reset,
    /// The endpoint answered a status the route retries on (`retry_on`).
    Status,
}

impl RetryReason {
    /// Every reason, in the order of [`RetryReason::index`].
    pub const ALL: [RetryReason; 4] = [Self::Connect, Self::TryTimeout, Self::Reset, Self::Status];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::TryTimeout => "try_timeout",
            Self::Reset => "reset",
            Self::Status => "status",
        }
    }

    /// Position in [`RetryReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A route's retry budget over a sliding window of the current and the previous second, shared
/// by every worker (atomics; a race between two workers at a second's boundary can let one
/// retry too many through, never an unbounded number). Kept across reloads, by route name.
#[derive(Debug, Default)]
pub struct RetryBudget {
    /// The second the `cur_*` counters belong to.
    second: AtomicU64,
    cur_requests: AtomicU64,
    cur_retries: AtomicU64,
    prev_requests: AtomicU64,
    prev_retries: AtomicU64,
}

impl RetryBudget {
    /// Counts a request (its first attempt) at `second` (any monotonic second count).
    pub fn deposit(&self, second: u64) {
        self.roll(second);
        self.cur_requests.fetch_add(1, Relaxed);
    }

    /// Takes one retry from the budget at `second`; false when the budget is spent.
    pub fn withdraw(&self, policy: &RetryPolicy, second: u64) -> bool {
        self.roll(second);
        let requests = self.cur_requests.load(Relaxed) + self.prev_requests.load(Relaxed);
        let retries = self.cur_retries.load(Relaxed) + self.prev_retries.load(Relaxed);
        // Two seconds of floor, and the share of two seconds of requests.
        let allowed = 2 * u64::from(policy.budget_min_per_second)
            + requests * u64::from(policy.budget_percent) / 100;
        if retries >= allowed {
            return false;
        }
        self.cur_retries.fetch_add(1, Relaxed);
        true
    }

    /// Gives back a retry taken at `second` and not made after all.
    pub fn refund(&self, second: u64) {
        if self.second.load(Relaxed) == second {
            let _ = self
                .cur_retries
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
    }

    fn roll(&self, second: u64) {
        let seen = self.second.load(Relaxed);
        if second <= seen
            || self
                .second
                .compare_exchange(seen, second, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let (requests, retries) = if second == seen + 1 {
            (
                self.cur_requests.swap(0, Relaxed),
                self.cur_retries.swap(0, Relaxed),
            )
        } else {
            self.cur_requests.store(0, Relaxed);
            self.cur_retries.store(0, Relaxed);
            (0, 0)
        };
        self.prev_requests.store(requests, Relaxed);
        self.prev_retries.store(retries, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(percent: u32, floor: u32) -> RetryPolicy {
        RetryPolicy {
            budget_percent: percent,
            budget_min_per_second: floor,
            ..RetryPolicy::default()
        }
    }

    fn granted(b: &RetryBudget, p: &RetryPolicy, second: u64, tries: usize) -> usize {
        (0..tries).filter(|_| b.withdraw(p, second)).count()
    }

    #[test]
    fn retries_are_bounded_by_the_share_of_requests_plus_the_floor() {
        let b = RetryBudget::default();
        let p = policy(20, 0);
        for _ in 0..100 {
            b.deposit(1);
        }
        assert_eq!(granted(&b, &p, 1, 1000), 20, "20 % of 100 requests");
        let p = policy(20, 5);
        let b = RetryBudget::default();
        assert_eq!(
            granted(&b, &p, 1, 1000),
            10,
            "a quiet route: two seconds of floor"
        );
    }

    #[test]
    fn the_window_slides_and_old_seconds_are_forgotten() {
        let b = RetryBudget::default();
        let p = policy(50, 0);
        for _ in 0..10 {
            b.deposit(1);
        }
        assert_eq!(granted(&b, &p, 1, 100), 5);
        // The next second still sees the previous one: its requests and its retries.
        for _ in 0..10 {
            b.deposit(2);
        }
        assert_eq!(granted(&b, &p, 2, 100), 5);
        // Two seconds later everything before is gone.
        assert_eq!(granted(&b, &p, 4, 100), 0);
        for _ in 0..4 {
            b.deposit(4);
        }
        assert_eq!(granted(&b, &p, 4, 100), 2);
    }

    #[test]
    fn reasons_are_indexed_in_order() {
        for (i, r) in RetryReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
