//! Consecutive-failure outlier ejection (as Envoy's `consecutive_local_origin_failure`,
//! `consecutive_gateway_failure` and `consecutive_5xx`): after N of the endpoint's own failures
//! in a row (or, when configured, N 502/503/504 answers in a row, or N 5xx answers in a row) it
//! is left out for `base × 2^(ejections in a row)`, capped, and never more than
//! `max_ejected_percent` of a backend at once. Below `panic_threshold` usable endpoints the
//! balancer ignores ejections altogether ([`crate::balance::panicking`]).
//!
//! Only the endpoint's own faults reach this module ([`Outcome`] has no variant for what a
//! client did): the callers classify with [`crate::proxy::Fault`] first.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use tracing::warn;

use crate::balance::{EndpointRuntime, EndpointStats};
use crate::config::OutlierConfig;
use crate::proxy::EndpointFault;

/// Failure notes kept per endpoint (the newest): what an ejection reports as its cause.
pub const NOTES: usize = 10;

/// How one request to an endpoint ended, from the endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head that is not a 5xx.
    Success,
    /// A 5xx response head (its status): counts toward `consecutive_5xx`, and a 502, 503 or 504
    /// toward `consecutive_gateway_errors` too (another 5xx ends that run).
    ServerError(u16),
    /// The endpoint's own failure before a usable response head.
    Fault(EndpointFault),
}

/// An ejection that just happened: what the log line and the admin event report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ejected {
    /// The endpoint.
    pub endpoint: std::net::SocketAddr,
    /// How long it is out.
    pub duration: Duration,
    /// Failures in a row that triggered it.
    pub after: u32,
    /// `consecutive_failures`, `consecutive_gateway_errors` or `consecutive_5xx`.
    pub rule: &'static str,
    /// The requests and errors that caused it, oldest first (at most [`NOTES`]).
    pub causes: Vec<String>,
}

/// Updates the endpoint's counters; returns the ejection when this outcome caused one. `note`
/// describes the request and its error; it is called only for a counted failure.
pub fn record_outcome(
    eps: &[EndpointRuntime],
    idx: usize,
    outcome: Outcome,
    cfg: &OutlierConfig,
    now: u64,
    note: impl FnOnce() -> String,
) -> Option<Ejected> {
    let ep = eps.get(idx)?;
    let s = &ep.stats;
    // Extends a run of `counter` when its rule is on; the rule's name when the run is complete.
    let extend = |counter: &AtomicU32, threshold: u32, rule: &'static str| {
        if threshold == 0 {
            return (false, None);
        }
        let n = counter.fetch_add(1, Relaxed) + 1;
        (true, (n >= threshold).then_some((n, rule)))
    };
    let (counted, tripped) = match outcome {
        Outcome::Success => {
            let run = s.consecutive_failures.load(Relaxed)
                | s.consecutive_5xx.load(Relaxed)
                | s.consecutive_gateway.load(Relaxed);
            if run != 0 {
                s.consecutive_failures.store(0, Relaxed);
                s.consecutive_5xx.store(0, Relaxed);
                s.consecutive_gateway.store(0, Relaxed);
                notes(s).clear();
            }
            if s.ejections_in_row.load(Relaxed) != 0 && !s.is_ejected(now) {
                s.ejections_in_row.store(0, Relaxed);
            }
            return None;
        }
        Outcome::ServerError(status) => {
            s.failures.fetch_add(1, Relaxed);
            let (gateway_counted, gateway) = match status {
                502..=504 => extend(
                    &s.consecutive_gateway,
                    cfg.consecutive_gateway_errors,
                    "consecutive_gateway_errors",
                ),
                _ => {
                    // Another 5xx ends a run of gateway errors.
                    if s.consecutive_gateway.load(Relaxed) != 0 {
                        s.consecutive_gateway.store(0, Relaxed);
                    }
                    (false, None)
                }
            };
            let (any_counted, any) =
                extend(&s.consecutive_5xx, cfg.consecutive_5xx, "consecutive_5xx");
            // The narrower rule names the cause better when both runs are complete.
            (gateway_counted || any_counted, gateway.or(any))
        }
        Outcome::Fault(_) => {
            s.failures.fetch_add(1, Relaxed);
            extend(
                &s.consecutive_failures,
                cfg.consecutive_failures,
                "consecutive_failures",
            )
        }
    };
    if counted {
        note_failure(s, note);
    }
    let (n, rule) = tripped?;
    if s.is_ejected(now) {
        return None;
    }
    let ejected = eps.iter().filter(|e| e.stats.is_ejected(now)).count();
    if (ejected + 1) * 100 > eps.len() * usize::from(cfg.max_ejected_percent) {
        return None;
    }
    let k = s.ejections_in_row.fetch_add(1, Relaxed).min(16);
    let len = cfg
        .base_ejection
        .saturating_mul(1 << k)
        .min(cfg.max_ejection);
    s.ejected_until
        .store(now.saturating_add(nanos(len)).max(1), Relaxed);
    s.consecutive_failures.store(0, Relaxed);
    s.consecutive_5xx.store(0, Relaxed);
    s.consecutive_gateway.store(0, Relaxed);
    s.ejections.fetch_add(1, Relaxed);
    let causes: Vec<String> = notes(s).drain(..).collect();
    warn!(endpoint = %ep.endpoint.addr, ejection_ms = len.as_millis() as u64, rule, after = n, causes = ?causes, "endpoint ejected after consecutive failures");
    Some(Ejected {
        endpoint: ep.endpoint.addr,
        duration: len,
        after: n,
        rule,
        causes,
    })
}

/// Keeps the newest [`NOTES`] failure notes of the current run.
fn note_failure(s: &EndpointStats, note: impl FnOnce() -> String) {
    let mut n = notes(s);
    if n.len() == NOTES {
        n.pop_front();
    }
    n.push_back(note());
}

fn notes(s: &EndpointStats) -> std::sync::MutexGuard<'_, std::collections::VecDeque<String>> {
    s.fault_notes.lock().unwrap_or_else(|e| e.into_inner())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use discovery::Endpoint;

    use super::*;
    use crate::balance::EndpointStats;

    const FAIL: Outcome = Outcome::Fault(EndpointFault::Connect);

    fn eps(n: u16) -> Vec<EndpointRuntime> {
        (0..n)
            .map(|i| {
                EndpointRuntime::new(
                    Endpoint::new(format!("127.0.0.1:{}", 1000 + i).parse().unwrap()),
                    Arc::new(EndpointStats::default()),
                )
            })
            .collect()
    }

    fn cfg(pct: u8) -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            consecutive_5xx: 0,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: pct,
            consecutive_gateway_errors: 0,
            panic_threshold: 0,
        }
    }

    fn record(e: &[EndpointRuntime], i: usize, o: Outcome, c: &OutlierConfig, now: u64) -> bool {
        record_outcome(e, i, o, c, now, || format!("request at {now}")).is_some()
    }

    #[test]
    fn ejects_after_consecutive_failures_and_backs_off() {
        let e = eps(2);
        let c = cfg(100);
        assert!(!record(&e, 0, FAIL, &c, 1));
        assert!(!record(&e, 0, FAIL, &c, 1));
        assert!(record(&e, 0, FAIL, &c, 1));
        assert!(e[0].stats.is_ejected(1));
        assert!(!e[0].stats.is_ejected(1 + 10_000_000_000));
        // Second ejection in a row doubles (20 s); the third is capped at 25 s.
        let t = 1 + 10_000_000_000;
        for _ in 0..3 {
            record(&e, 0, FAIL, &c, t);
        }
        assert!(e[0].stats.is_ejected(t + 19_000_000_000));
        assert!(!e[0].stats.is_ejected(t + 20_000_000_000));
        let t = t + 20_000_000_000;
        for _ in 0..3 {
            record(&e, 0, FAIL, &c, t);
        }
        assert!(e[0].stats.is_ejected(t + 24_000_000_000));
        assert!(!e[0].stats.is_ejected(t + 25_000_000_000));
    }

    #[test]
    fn success_resets_the_count() {
        let e = eps(1);
        let c = cfg(100);
        record(&e, 0, FAIL, &c, 1);
        record(&e, 0, FAIL, &c, 1);
        record(&e, 0, Outcome::Success, &c, 1);
        assert!(!record(&e, 0, FAIL, &c, 1));
    }

    #[test]
    fn respects_max_ejected_percent() {
        let e = eps(2);
        let c = cfg(50);
        for _ in 0..3 {
            record(&e, 0, FAIL, &c, 1);
        }
        assert!(e[0].stats.is_ejected(1));
        for _ in 0..3 {
            record(&e, 1, FAIL, &c, 1);
        }
        assert!(
            !e[1].stats.is_ejected(1),
            "a second ejection would exceed 50%"
        );
    }

    #[test]
    fn an_ejection_names_the_requests_and_errors_that_caused_it() {
        let e = eps(1);
        let c = cfg(100);
        let kinds = [
            EndpointFault::Connect,
            EndpointFault::Broken,
            EndpointFault::Timeout,
        ];
        let mut got = None;
        for (i, k) in kinds.into_iter().enumerate() {
            got = record_outcome(&e, 0, Outcome::Fault(k), &c, 1, || {
                format!("GET /r{i}: {}", k.as_str())
            });
        }
        let got = got.unwrap();
        assert_eq!(got.endpoint, e[0].endpoint.addr);
        assert_eq!(got.after, 3);
        assert_eq!(got.rule, "consecutive_failures");
        assert_eq!(got.duration, Duration::from_secs(10));
        assert_eq!(
            got.causes,
            ["GET /r0: connect", "GET /r1: broken", "GET /r2: timeout"]
        );
        // The notes went with the ejection; a success clears a partial run's notes too.
        record(&e, 0, FAIL, &c, 1);
        record(&e, 0, Outcome::Success, &c, 1);
        assert!(e[0].stats.fault_notes.lock().unwrap().is_empty());
    }

    #[test]
    fn five_hundreds_eject_only_when_configured() {
        let e = eps(1);
        let c = cfg(100);
        for _ in 0..10 {
            assert!(!record(&e, 0, Outcome::ServerError(503), &c, 1));
        }
        assert_eq!(e[0].stats.failures.load(Relaxed), 10, "still counted");
        assert!(e[0].stats.fault_notes.lock().unwrap().is_empty());
        let c = OutlierConfig {
            consecutive_5xx: 2,
            ..cfg(100)
        };
        assert!(!record(&e, 0, Outcome::ServerError(503), &c, 1));
        let ej = record_outcome(&e, 0, Outcome::ServerError(503), &c, 1, || {
            "GET /: 503".into()
        });
        assert_eq!(ej.unwrap().rule, "consecutive_5xx");
    }

    #[test]
    fn the_two_runs_are_counted_apart() {
        let e = eps(1);
        let c = OutlierConfig {
            consecutive_5xx: 3,
            ..cfg(100)
        };
        // 5xx answers between connect failures neither reset nor extend the failure run.
        record(&e, 0, FAIL, &c, 1);
        record(&e, 0, Outcome::ServerError(503), &c, 1);
        record(&e, 0, FAIL, &c, 1);
        record(&e, 0, Outcome::ServerError(503), &c, 1);
        assert!(!e[0].stats.is_ejected(1));
        assert!(record(&e, 0, FAIL, &c, 1));
    }

    #[test]
    fn notes_are_bounded() {
        let e = eps(1);
        let c = OutlierConfig {
            consecutive_failures: 1000,
            ..cfg(100)
        };
        for _ in 0..(NOTES * 3) {
            record(&e, 0, FAIL, &c, 1);
        }
        assert_eq!(e[0].stats.fault_notes.lock().unwrap().len(), NOTES);
    }

    #[test]
    fn gateway_errors_eject_on_their_own_run() {
        let e = eps(4);
        let c = OutlierConfig {
            consecutive_gateway_errors: 3,
            ..cfg(100)
        };
        // A 500 ends the run of gateway errors; it is not one.
        record(&e, 0, Outcome::ServerError(502), &c, 1);
        record(&e, 0, Outcome::ServerError(503), &c, 1);
        record(&e, 0, Outcome::ServerError(500), &c, 1);
        record(&e, 0, Outcome::ServerError(504), &c, 1);
        assert!(!e[0].stats.is_ejected(1));
        record(&e, 0, Outcome::ServerError(503), &c, 1);
        let ej = record_outcome(&e, 0, Outcome::ServerError(502), &c, 1, || "x".into());
        let ej = ej.unwrap();
        assert_eq!((ej.rule, ej.after), ("consecutive_gateway_errors", 3));
        assert_eq!(ej.causes.last().map(String::as_str), Some("x"));
        // Off by default: 500s and 503s alike never eject then.
        let c = cfg(100);
        for _ in 0..20 {
            assert!(!record(&e, 1, Outcome::ServerError(503), &c, 1));
        }
        // With both rules on, a 503 run completes the narrower one first.
        let c = OutlierConfig {
            consecutive_gateway_errors: 2,
            consecutive_5xx: 2,
            ..cfg(100)
        };
        record(&e, 2, Outcome::ServerError(500), &c, 1);
        let ej = record_outcome(&e, 2, Outcome::ServerError(503), &c, 1, String::new).unwrap();
        assert_eq!(
            ej.rule, "consecutive_5xx",
            "500 then 503: two 5xx, one gateway error"
        );
        record(&e, 3, Outcome::ServerError(503), &c, 1);
        let ej = record_outcome(&e, 3, Outcome::ServerError(503), &c, 1, String::new).unwrap();
        assert_eq!(ej.rule, "consecutive_gateway_errors");
    }
}
