//! Power of two random choices.

use std::sync::atomic::Ordering::Relaxed;

use rand::Rng;
use tracing::trace;

use super::EndpointRuntime;

/// Draws two distinct indexes (no rejection loop) and keeps the cheaper usable one. When the
/// draw hits ejected endpoints, falls back to the cheapest usable endpoint from a random start.
pub(super) fn pick<R: Rng + ?Sized>(
    n: usize,
    usable: impl Fn(usize) -> bool,
    rng: &mut R,
    cost: impl Fn(usize) -> f64,
) -> Option<usize> {
    match n {
        0 => None,
        1 => usable(0).then_some(0),
        _ => {
            let a = rng.gen_range(0..n);
            let mut b = rng.gen_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let chosen = match (usable(a), usable(b)) {
                (true, true) => {
                    let (ca, cb) = (cost(a), cost(b));
                    let c = if cb < ca { b } else { a };
                    trace!(a.load = ca, b.load = cb, chosen = c);
                    Some(c)
                }
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => {
                    let start = rng.gen_range(0..n);
                    (0..n)
                        .map(|k| (start + k) % n)
                        .filter(|&i| usable(i))
                        .min_by(|&x, &y| cost(x).total_cmp(&cost(y)))
                }
            };
            chosen
        }
    }
}

/// Outstanding requests divided by weight.
pub(super) fn least_request_cost(ep: &EndpointRuntime) -> f64 {
    f64::from(ep.stats.in_flight.load(Relaxed)) / f64::from(ep.weight())
}
