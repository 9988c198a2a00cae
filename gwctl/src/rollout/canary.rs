//! The guarded canary's decisions, shared by `gwctl canary` and the console: which backend is
//! the baseline, the update of each step and of the rollback, what a window of traffic is, and
//! what to do after each poll. No I/O and no clock: callers pass what they sampled and how long
//! the step has been watched.

use std::time::Duration;

use gatewayd::admin::model::{Stats, WeightsUpdate};

use super::{
    evaluate, format_weights, split_weights, Guard, Observed, RolloutError, Verdict, Weights,
};
use crate::aggregate::window;

/// A step waits at most this many intervals for enough requests before giving up.
pub const MAX_INTERVALS_WAITING: u32 = 3;

/// Poll period within an interval: a sixth of it, between 1 s and 5 s.
pub fn poll_period(interval: Duration) -> Duration {
    (interval / 6).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Checks a canary before anything changes and returns its baseline: `explicit` when given
/// (must be another backend of the route), else the other backend with the most weight in
/// `start`. Fails when `to` is not a backend or the first step cannot be split.
pub fn canary_baseline(
    route: &str,
    start: &Weights,
    file: &Weights,
    to: &str,
    first_step: u32,
    explicit: Option<&str>,
) -> Result<String, RolloutError> {
    split_weights(route, start, file, to, first_step)?;
    match explicit {
        Some(b) if b == to => Err(RolloutError::Invalid(
            "--baseline must differ from --to".into(),
        )),
        Some(b) if !start.contains_key(b) => Err(RolloutError::Invalid(format!(
            "route {route} has no backend {b:?}"
        ))),
        Some(b) => Ok(b.to_string()),
        None => start
            .iter()
            .filter(|(k, _)| *k != to)
            .max_by_key(|(_, w)| **w)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| {
                RolloutError::Invalid("the route needs a second backend as baseline".into())
            }),
    }
}

/// Who changes what, and why, in a canary's updates.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryAuthor {
    /// `changed_by` of every update.
    pub changed_by: String,
    /// Text appended to every reason (`--reason`).
    pub reason: Option<String>,
}

impl CanaryAuthor {
    fn reason(&self, what: &str) -> String {
        match &self.reason {
            Some(r) => format!("{what} ({r})"),
            None => what.to_string(),
        }
    }
}

/// The update of step `index` (0-based) of `steps`, conditional on `revision`.
#[allow(clippy::too_many_arguments)]
pub fn step_update(
    route: &str,
    start: &Weights,
    file: &Weights,
    to: &str,
    steps: &[u32],
    index: usize,
    revision: u64,
    author: &CanaryAuthor,
) -> Result<WeightsUpdate, RolloutError> {
    let pct = steps.get(index).copied().unwrap_or(100);
    let weights = split_weights(route, start, file, to, pct)?;
    Ok(WeightsUpdate {
        weights,
        reason: Some(author.reason(&format!(
            "canary step {}/{}: {to} {pct}%",
            index + 1,
            steps.len()
        ))),
        changed_by: Some(author.changed_by.clone()),
        expected_revision: Some(revision),
    })
}

/// The update putting back the starting weights, conditional on `revision`.
pub fn rollback_to_start(
    start: &Weights,
    why: &str,
    revision: u64,
    author: &CanaryAuthor,
) -> WeightsUpdate {
    WeightsUpdate {
        weights: start.clone(),
        reason: Some(author.reason(&format!("canary rollback: {why}"))),
        changed_by: Some(author.changed_by.clone()),
        expected_revision: Some(revision),
    }
}

/// What `backend` of `route` saw between two samples of the same gateways.
pub fn observe(
    begin: &[Option<Stats>],
    now: &[Option<Stats>],
    route: &str,
    backend: &str,
) -> Observed {
    let w = window(begin, now, route, backend);
    Observed {
        backend: backend.to_string(),
        requests: w.requests,
        error_rate: w.error_rate(),
        p99_ms: w.p99_ms(),
    }
}

/// What to do after a poll.
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// Keep watching this step.
    Watch,
    /// The interval is over but there are too few requests to judge; keep watching (why).
    Waiting(String),
    /// The interval is over and every guard holds: next step (one-line summary).
    Pass(String),
    /// A guard failed: roll back (the guard's own words, without the step).
    Fail(String),
    /// Still too few requests after [`MAX_INTERVALS_WAITING`] intervals: roll back (why, with
    /// the step and the time waited).
    GiveUp(String),
}

/// Judges a poll of step `index` (0-based) of `n` after `elapsed` of the step's `interval`.
/// `last_baseline` keeps the baseline's latest window with enough requests across polls and
/// steps (a baseline drained by the canary is judged on its last busy window).
#[allow(clippy::too_many_arguments)]
pub fn judge(
    guard: &Guard,
    canary: &Observed,
    baseline: Observed,
    last_baseline: &mut Option<Observed>,
    index: usize,
    n: usize,
    elapsed: Duration,
    interval: Duration,
) -> Judgement {
    if baseline.requests >= guard.min_requests {
        *last_baseline = Some(baseline);
    }
    let done = elapsed >= interval;
    match evaluate(guard, canary, last_baseline.as_ref()) {
        Verdict::Fail(why) => Judgement::Fail(why),
        Verdict::Pass(summary) if done => Judgement::Pass(summary),
        Verdict::TooFew(why) if elapsed >= interval * MAX_INTERVALS_WAITING => Judgement::GiveUp(
            format!("step {}/{n}: {why} after {}s", index + 1, elapsed.as_secs()),
        ),
        Verdict::TooFew(why) if done => Judgement::Waiting(why),
        _ => Judgement::Watch,
    }
}

/// Why a run stops after a guard of step `index` (0-based) of `n` at `pct`% failed.
pub fn guard_failed(index: usize, n: usize, pct: u32, to: &str, why: &str) -> String {
    format!("step {}/{n} ({pct}% {to}): {why}", index + 1)
}

/// Why a run stops after setting step `index` (0-based) failed.
pub fn step_failed(index: usize, error: &str) -> String {
    format!("setting step {} failed: {error}", index + 1)
}

/// What a conflict on a step write means.
pub fn step_conflict(route: &str, error: &str) -> String {
    format!(
        "the weights of {route} changed meanwhile ({error}); canary stopped without rolling \
         back over that change"
    )
}

/// What a conflict on the rollback write means.
pub fn rollback_conflict(why: &str, error: &str) -> String {
    format!("{why}; NOT rolled back: the weights changed meanwhile ({error})")
}

/// What a failed rollback write means, with the command that restores the starting weights.
pub fn rollback_failed(why: &str, error: &str, route: &str, start: &Weights) -> String {
    format!(
        "{why}; ROLLBACK FAILED ({error}); restore with: gwctl weights set {route} {}",
        format_weights(start)
    )
}
