//! Canary guards: judge a canary's window of traffic against the baseline's.

/// Below this many ms, p99s are treated as equal to it: a canary at 0.4 ms against a baseline at
/// 0.2 ms is "2× slower" but nobody cares, and sub-millisecond p99s are mostly scheduler noise.
pub const P99_FLOOR_MS: f64 = 1.0;

/// Thresholds of a guarded canary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// Highest tolerated canary error rate (5xx / requests, 0–1) within a window.
    pub max_error_rate: f64,
    /// Highest tolerated canary p99 / baseline p99 within a window.
    pub max_p99_ratio: f64,
    /// Fewest requests a side must have in a window before it is judged.
    pub min_requests: u64,
}

/// What one side saw in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Backend name.
    pub backend: String,
    /// Requests in the window.
    pub requests: u64,
    /// 5xx / requests in the window.
    pub error_rate: f64,
    /// p99 in ms (`None` without latency data).
    pub p99_ms: Option<f64>,
}

/// The judgement of a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every guard holds; a one-line summary.
    Pass(String),
    /// A guard failed; why, in one line.
    Fail(String),
    /// Not enough requests to judge yet; why, in one line.
    TooFew(String),
}

/// Judges `canary` against `baseline` (the baseline's latest window with enough requests; `None`
/// when there is none). The error-rate guard is absolute; the p99 guard is relative to the
/// baseline, with both p99s floored at [`P99_FLOOR_MS`].
pub fn evaluate(guard: &Guard, canary: &Observed, baseline: Option<&Observed>) -> Verdict {
    if canary.requests < guard.min_requests {
        return Verdict::TooFew(format!(
            "{} has {} requests in this window (need {})",
            canary.backend, canary.requests, guard.min_requests
        ));
    }
    if canary.error_rate > guard.max_error_rate {
        return Verdict::Fail(format!(
            "{} error rate {} exceeds {} ({} requests)",
            canary.backend,
            pct(canary.error_rate),
            pct(guard.max_error_rate),
            canary.requests
        ));
    }
    let Some(base) = baseline.filter(|b| b.requests >= guard.min_requests) else {
        return Verdict::TooFew(format!(
            "no baseline window with {} requests yet",
            guard.min_requests
        ));
    };
    let (Some(c99), Some(b99)) = (canary.p99_ms, base.p99_ms) else {
        return Verdict::Fail(format!(
            "no latency data for {} or {}",
            canary.backend, base.backend
        ));
    };
    let ratio = c99.max(P99_FLOOR_MS) / b99.max(P99_FLOOR_MS);
    if ratio > guard.max_p99_ratio {
        return Verdict::Fail(format!(
            "{} p99 {c99:.1}ms is {ratio:.2}× {}'s {b99:.1}ms (max {:.2}×)",
            canary.backend, base.backend, guard.max_p99_ratio
        ));
    }
    Verdict::Pass(format!(
        "{} {} errors, p99 {c99:.1}ms ({ratio:.2}× {}) over {} requests",
        canary.backend,
        pct(canary.error_rate),
        base.backend,
        canary.requests
    ))
}

fn pct(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Guard = Guard {
        max_error_rate: 0.01,
        max_p99_ratio: 1.5,
        min_requests: 20,
    };

    fn obs(backend: &str, requests: u64, error_rate: f64, p99: f64) -> Observed {
        Observed {
            backend: backend.into(),
            requests,
            error_rate,
            p99_ms: Some(p99),
        }
    }

    #[test]
    fn healthy_canary_passes() {
        let v = evaluate(
            &G,
            &obs("green", 100, 0.0, 12.0),
            Some(&obs("blue", 900, 0.0, 10.0)),
        );
        assert!(
            matches!(v, Verdict::Pass(ref s) if s.contains("1.20× blue")),
            "{v:?}"
        );
    }

    #[test]
    fn too_few_requests_are_not_judged() {
        let v = evaluate(
            &G,
            &obs("green", 19, 1.0, 900.0),
            Some(&obs("blue", 900, 0.0, 1.0)),
        );
        assert!(matches!(v, Verdict::TooFew(_)), "{v:?}");
        let v = evaluate(
            &G,
            &obs("green", 50, 0.0, 9.0),
            Some(&obs("blue", 5, 0.0, 1.0)),
        );
        assert!(
            matches!(v, Verdict::TooFew(ref s) if s.contains("baseline")),
            "{v:?}"
        );
        let v = evaluate(&G, &obs("green", 50, 0.0, 9.0), None);
        assert!(matches!(v, Verdict::TooFew(_)), "{v:?}");
    }

    #[test]
    fn error_rate_guard_is_absolute_and_strict() {
        let v = evaluate(
            &G,
            &obs("green", 100, 0.01, 10.0),
            Some(&obs("blue", 900, 0.0, 10.0)),
        );
        assert!(
            matches!(v, Verdict::Pass(_)),
            "exactly at the limit passes: {v:?}"
        );
        let v = evaluate(
            &G,
            &obs("green", 100, 0.02, 10.0),
            Some(&obs("blue", 900, 0.05, 10.0)),
        );
        assert!(
            matches!(v, Verdict::Fail(ref s) if s.contains("error rate 2.00% exceeds 1.00%")),
            "{v:?}"
        );
    }

    #[test]
    fn p99_guard_is_relative_with_a_floor() {
        let v = evaluate(
            &G,
            &obs("green", 100, 0.0, 16.0),
            Some(&obs("blue", 900, 0.0, 10.0)),
        );
        assert!(
            matches!(v, Verdict::Fail(ref s) if s.contains("1.60×")),
            "{v:?}"
        );
        // 0.9 ms vs 0.3 ms: both below the floor, equal.
        let v = evaluate(
            &G,
            &obs("green", 100, 0.0, 0.9),
            Some(&obs("blue", 900, 0.0, 0.3)),
        );
        assert!(matches!(v, Verdict::Pass(_)), "{v:?}");
        let mut no_lat = obs("green", 100, 0.0, 1.0);
        no_lat.p99_ms = None;
        let v = evaluate(&G, &no_lat, Some(&obs("blue", 900, 0.0, 1.0)));
        assert!(matches!(v, Verdict::Fail(_)), "{v:?}");
    }
}
