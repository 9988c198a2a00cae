//! A policy's recent decisions, for the admin API's route detail: its outcome counts over the
//! last minute and its last refusals.
//!
//! Nothing here is paid by a request the policy lets through. The minute's counts come from
//! once-a-second samples of the policy's cumulative counters, taken by the control runtime's
//! sampler ([`super::PolicyRegistry::sample`]); the refusals are written only when a request is
//! refused, and never waited for (a refusal that finds the list busy is not kept).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::SystemTime;

use crate::admin::model::{RecentDecisions, RecentRefusal};

/// The window of the recent counts, in seconds.
pub const WINDOW_SECS: u64 = 60;
/// Refusals kept per policy.
pub const KEPT_REFUSALS: usize = 10;

/// One policy's recent decisions.
#[derive(Debug)]
pub struct Recent {
    name: Arc<str>,
    /// When the policy was compiled (unix seconds): its counters start at zero then.
    born: u64,
    /// `(unix second, cumulative counts)`, oldest first: one sample at least a window old
    /// (the baseline) and every later one.
    samples: Mutex<VecDeque<(u64, Vec<u64>)>>,
    /// The last refusals, oldest first.
    refusals: Mutex<VecDeque<Refusal>>,
}

/// A request a policy refused.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    at: SystemTime,
    outcome: &'static str,
    client: IpAddr,
}

// === impl Recent ===

impl Recent {
    /// The record of policy `name`, compiled now.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            born: crate::metrics::unix_secs(SystemTime::now()),
            samples: Mutex::new(VecDeque::with_capacity(WINDOW_SECS as usize + 2)),
            refusals: Mutex::new(VecDeque::with_capacity(KEPT_REFUSALS)),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Notes a refusal of `client`'s request (`outcome`: the refusal's reason, as its
    /// `meshgate_policy_decisions_total` label). Never waits: when another request is writing
    /// the list at that moment, this one is not kept.
    pub fn refused(&self, outcome: &'static str, client: IpAddr) {
        let mut list = match self.refusals.try_lock() {
            Ok(l) => l,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if list.len() >= KEPT_REFUSALS {
            list.pop_front();
        }
        list.push_back(Refusal {
            at: SystemTime::now(),
            outcome,
            client,
        });
    }

    /// Records the cumulative counts at unix second `now` (the sampler's tick).
    pub fn sample(&self, now: u64, counts: Vec<u64>) {
        let mut s = lock(&self.samples);
        s.push_back((now, counts));
        // Keep one sample at least a window old, the baseline, and drop what is older.
        while s.len() >= 2 && s[1].0 + WINDOW_SECS <= now {
            s.pop_front();
        }
    }

    /// The recent decisions at unix second `now`, given the cumulative counts by outcome now
    /// (`current`, the labels and counts of the policy's outcomes).
    pub fn view(&self, now: u64, current: &[(&'static str, u64)]) -> RecentDecisions {
        let s = lock(&self.samples);
        // A policy younger than the window (or not sampled yet): everything since it was
        // compiled.
        let (since, base) = match s.front() {
            Some((t, counts)) if t + WINDOW_SECS <= now => (*t, Some(counts)),
            _ => (self.born, None),
        };
        let decisions = current
            .iter()
            .enumerate()
            .map(|(i, (label, n))| {
                let before = base.and_then(|b| b.get(i)).copied().unwrap_or(0);
                (label.to_string(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        drop(s);
        let refusals = lock(&self.refusals)
            .iter()
            .rev()
            .map(|r| RecentRefusal {
                at: humantime::format_rfc3339_millis(r.at).to_string(),
                outcome: r.outcome.to_string(),
                client: r.client.to_string(),
            })
            .collect();
        RecentDecisions {
            window_seconds: now.saturating_sub(since),
            decisions,
            refusals,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counts(r: &RecentDecisions) -> Vec<(&str, u64)> {
        r.decisions.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    #[test]
    fn the_window_counts_what_happened_since_the_sample_a_minute_old() {
        let r = Recent::new("p");
        let t0 = r.born;
        // Younger than a minute: everything since it was compiled.
        let v = r.view(t0 + 5, &[("allowed", 7), ("limited", 0)]);
        assert_eq!(counts(&v), [("allowed", 7)]);
        assert_eq!(v.window_seconds, 5);
        for s in 0..=90 {
            r.sample(t0 + s, vec![s * 10, s]);
        }
        // 90 s in: the baseline is the sample of second 30.
        let v = r.view(t0 + 90, &[("allowed", 900), ("limited", 90)]);
        assert_eq!(counts(&v), [("allowed", 600), ("limited", 60)]);
        assert_eq!(v.window_seconds, 60);
        assert!(lock(&r.samples).len() <= WINDOW_SECS as usize + 1);
    }

    #[test]
    fn refusals_are_kept_newest_first_and_bounded() {
        let r = Recent::new("p");
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        for i in 0..(KEPT_REFUSALS + 5) {
            r.refused(if i % 2 == 0 { "expired" } else { "limited" }, client);
        }
        let v = r.view(r.born, &[]);
        assert_eq!(v.refusals.len(), KEPT_REFUSALS);
        // The last one (index 14, even) comes first.
        assert_eq!(v.refusals[0].outcome, "expired");
        assert_eq!(v.refusals[1].outcome, "limited");
        assert_eq!(v.refusals[0].client, "203.0.113.9");
        assert!(v.refusals[0].at.ends_with('Z'), "{}", v.refusals[0].at);
    }
}
