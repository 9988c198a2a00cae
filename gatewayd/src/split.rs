//! Which backend of a route serves a request: cohort rule → sticky hash → weighted random.
//!
//! A backend without usable endpoints is never chosen while another one can serve (its share
//! fails over), unless the route says `on_empty_backend = "fail"`.

mod cohort;
mod sticky;

#[cfg(test)]
mod tests;

use http::Request;
use rand::Rng;

pub use cohort::key_value;
pub use sticky::{sticky_hash, sticky_pick};

use crate::config::{CohortAction, CohortRule, OnEmptyBackend, RequestKey};

/// A route's backend choice, built per snapshot with the effective weights.
#[derive(Debug, Clone)]
pub struct Split {
    weights: Vec<u32>,
    cohorts: Vec<CohortRule>,
    sticky: Option<RequestKey>,
    on_empty: OnEmptyBackend,
}

/// What [`Split::choose`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Send to this backend.
    Backend(usize),
    /// `on_empty_backend = "fail"` and the chosen backend has no endpoint.
    Empty(usize),
    /// No backend can serve.
    Nothing,
}

impl Split {
    /// A split over `weights` (one per backend, in declaration order).
    pub fn new(
        weights: Vec<u32>,
        cohorts: Vec<CohortRule>,
        sticky: Option<RequestKey>,
        on_empty: OnEmptyBackend,
    ) -> Self {
        Self {
            weights,
            cohorts,
            sticky,
            on_empty,
        }
    }

    /// Effective weights, one per backend.
    pub fn weights(&self) -> &[u32] {
        &self.weights
    }

    /// True when choosing reads a header or cookie (cohorts, stickiness).
    pub fn reads_headers(&self) -> bool {
        !self.cohorts.is_empty() || self.sticky.is_some()
    }

    /// Picks a backend for `req`. `usable(i)` says whether backend `i` has endpoints to send to.
    pub fn choose<B, R: Rng + ?Sized>(
        &self,
        req: &Request<B>,
        usable: impl Fn(usize) -> bool,
        rng: &mut R,
    ) -> Choice {
        let mut avoided: u64 = 0;
        for rule in &self.cohorts {
            if key_value(req, &rule.key).is_some_and(|v| v == rule.value.as_bytes()) {
                match rule.action {
                    CohortAction::Force if usable(rule.backend) => {
                        return Choice::Backend(rule.backend)
                    }
                    CohortAction::Force => {}
                    CohortAction::Avoid => avoided |= 1 << (rule.backend % 64),
                }
            }
        }
        let eligible = |i: usize| avoided & (1 << (i % 64)) == 0;
        let fail_mode = self.on_empty == OnEmptyBackend::Fail;
        // In fail mode emptiness does not move traffic: choose as if all were usable, then check.
        let candidate = |i: usize| eligible(i) && (fail_mode || usable(i));
        let total: u64 = (0..self.weights.len())
            .filter(|&i| candidate(i))
            .map(|i| u64::from(self.weights[i]))
            .sum();
        let sticky = self
            .sticky
            .as_ref()
            .and_then(|k| key_value(req, k))
            .map(sticky_hash);
        let picked = if total == 0 {
            // Only zero-weight backends remain: they take the traffic rather than none being served.
            (0..self.weights.len()).find(|&i| eligible(i) && usable(i))
        } else if let Some(h) = sticky {
            // Place the client as if every backend could serve, so the clients of healthy
            // backends stay put while another fails; only the failed backend's clients move.
            let all: u64 = (0..self.weights.len())
                .filter(|&i| eligible(i))
                .map(|i| u64::from(self.weights[i]))
                .sum();
            match self.at(sticky_pick(h, all), eligible) {
                Some(i) if candidate(i) => Some(i),
                _ => self.at(sticky_pick(h, total), candidate),
            }
        } else {
            self.at(rng.gen_range(0..total), candidate)
        };
        match picked {
            Some(i) if fail_mode && !usable(i) => Choice::Empty(i),
            Some(i) => Choice::Backend(i),
            None => Choice::Nothing,
        }
    }

    /// The candidate backend whose cumulative weight range holds `point`.
    fn at(&self, mut point: u64, candidate: impl Fn(usize) -> bool) -> Option<usize> {
        for (i, &w) in self.weights.iter().enumerate() {
            if !candidate(i) || w == 0 {
                continue;
            }
            if point < u64::from(w) {
                return Some(i);
            }
            point -= u64::from(w);
        }
        None
    }
}
