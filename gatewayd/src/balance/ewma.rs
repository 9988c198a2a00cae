//! Peak-EWMA latency (as linkerd's `PeakEwma`): a slow response raises the estimate at once,
//! fast ones lower it gradually, and an idle estimate decays so a once-slow endpoint gets probed
//! again instead of being starved forever.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{EndpointRuntime, EndpointStats};

/// Time constant of the decay.
pub const DECAY: Duration = Duration::from_secs(10);

/// Estimate used before an endpoint has any sample. Not zero: a fresh endpoint must not look
/// infinitely attractive, or every new endpoint would take a burst of requests it may not handle.
pub const DEFAULT_RTT: Duration = Duration::from_millis(10);

/// Floor of the estimate used in costs: below it, outstanding requests decide, so a pool of fast
/// endpoints is balanced by load rather than by microsecond noise.
const MIN_RTT_NANOS: f64 = 50_000.0;

pub(super) fn estimate(s: &EndpointStats, now: u64) -> f64 {
    let stamp = s.ewma_stamp.load(Relaxed);
    if stamp == 0 {
        return 0.0;
    }
    let v = f64::from_bits(s.ewma_bits.load(Relaxed));
    v * decay(now.saturating_sub(stamp))
}

fn decay(elapsed_nanos: u64) -> f64 {
    // Clamp: exp of a huge negative is 0, of a positive (clock skew) would grow the estimate.
    (-(elapsed_nanos as f64) / DECAY.as_nanos() as f64)
        .exp()
        .clamp(0.0, 1.0)
}

/// Records one response latency.
pub fn observe(s: &EndpointStats, now: u64, rtt: Duration) {
    let rtt = rtt.as_nanos() as f64;
    let stamp = s.ewma_stamp.load(Relaxed);
    let next = if stamp == 0 {
        rtt
    } else {
        let prev = f64::from_bits(s.ewma_bits.load(Relaxed));
        if rtt > prev {
            rtt
        } else {
            let w = decay(now.saturating_sub(stamp));
            prev * w + rtt * (1.0 - w)
        }
    };
    s.ewma_bits.store(next.to_bits(), Relaxed);
    s.ewma_stamp.store(now.max(1), Relaxed);
}

pub(super) fn cost(ep: &EndpointRuntime, now: u64) -> f64 {
    let est = if ep.stats.ewma_stamp.load(Relaxed) == 0 {
        DEFAULT_RTT.as_nanos() as f64
    } else {
        estimate(&ep.stats, now)
    };
    let pending = f64::from(ep.stats.in_flight.load(Relaxed)) + 1.0;
    est.max(MIN_RTT_NANOS) * pending / f64::from(ep.weight())
}
