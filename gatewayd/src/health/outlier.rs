//! Consecutive-failure outlier ejection (as Envoy's `consecutive_5xx`): after N failures in a row
//! an endpoint is left out for `base × 2^(ejections in a row)`, capped, and never more than
//! `max_ejected_percent` of a backend at once.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tracing::warn;

use crate::balance::EndpointRuntime;
use crate::config::OutlierConfig;

/// How one request to an endpoint ended, from the endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head that is not a 5xx.
    Success,
    /// Connect failure, timeout, broken connection, or a 5xx response.
    Failure,
}

/// Updates the endpoint's counters; returns true when this outcome ejected it.
pub fn record_outcome(
    eps: &[EndpointRuntime],
    idx: usize,
    outcome: Outcome,
    cfg: &OutlierConfig,
    now: u64,
) -> bool {
    let Some(ep) = eps.get(idx) else { return false };
    let s = &ep.stats;
    match outcome {
        Outcome::Success => {
            if s.consecutive_failures.load(Relaxed) != 0 {
                s.consecutive_failures.store(0, Relaxed);
            }
            if s.ejections_in_row.load(Relaxed) != 0 && !s.is_ejected(now) {
                s.ejections_in_row.store(0, Relaxed);
            }
            false
        }
        Outcome::Failure => {
            s.failures.fetch_add(1, Relaxed);
            let n = s.consecutive_failures.fetch_add(1, Relaxed) + 1;
            if cfg.consecutive_failures == 0 || n < cfg.consecutive_failures || s.is_ejected(now) {
                return false;
            }
            let ejected = eps.iter().filter(|e| e.stats.is_ejected(now)).count();
            if (ejected + 1) * 100 > eps.len() * usize::from(cfg.max_ejected_percent) {
                return false;
            }
            let k = s.ejections_in_row.fetch_add(1, Relaxed).min(16);
            let len = cfg
                .base_ejection
                .saturating_mul(1 << k)
                .min(cfg.max_ejection);
            s.ejected_until
                .store(now.saturating_add(nanos(len)).max(1), Relaxed);
            s.consecutive_failures.store(0, Relaxed);
            s.ejections.fetch_add(1, Relaxed);
            warn!(endpoint = %ep.endpoint.addr, ejection_ms = len.as_millis() as u64, "endpoint ejected after consecutive failures");
            true
        }
    }
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
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: pct,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_and_backs_off() {
        let e = eps(2);
        let c = cfg(100);
        assert!(!record_outcome(&e, 0, Outcome::Failure, &c, 1));
        assert!(!record_outcome(&e, 0, Outcome::Failure, &c, 1));
        assert!(record_outcome(&e, 0, Outcome::Failure, &c, 1));
        assert!(e[0].stats.is_ejected(1));
        assert!(!e[0].stats.is_ejected(1 + 10_000_000_000));
        // Second ejection in a row doubles (20 s); the third is capped at 25 s.
        let t = 1 + 10_000_000_000;
        for _ in 0..3 {
            record_outcome(&e, 0, Outcome::Failure, &c, t);
        }
        assert!(e[0].stats.is_ejected(t + 19_000_000_000));
        assert!(!e[0].stats.is_ejected(t + 20_000_000_000));
        let t = t + 20_000_000_000;
        for _ in 0..3 {
            record_outcome(&e, 0, Outcome::Failure, &c, t);
        }
        assert!(e[0].stats.is_ejected(t + 24_000_000_000));
        assert!(!e[0].stats.is_ejected(t + 25_000_000_000));
    }

    #[test]
    fn success_resets_the_count() {
        let e = eps(1);
        let c = cfg(100);
        record_outcome(&e, 0, Outcome::Failure, &c, 1);
        record_outcome(&e, 0, Outcome::Failure, &c, 1);
        record_outcome(&e, 0, Outcome::Success, &c, 1);
        assert!(!record_outcome(&e, 0, Outcome::Failure, &c, 1));
    }

    #[test]
    fn respects_max_ejected_percent() {
        let e = eps(2);
        let c = cfg(50);
        for _ in 0..3 {
            record_outcome(&e, 0, Outcome::Failure, &c, 1);
        }
        assert!(e[0].stats.is_ejected(1));
        for _ in 0..3 {
            record_outcome(&e, 1, Outcome::Failure, &c, 1);
        }
        assert!(
            !e[1].stats.is_ejected(1),
            "a second ejection would exceed 50%"
        );
    }
}
