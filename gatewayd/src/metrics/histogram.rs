//! Latency histograms: microseconds, 3 significant figures, auto-resizing.

use base64::Engine as _;
use hdrhistogram::serialization::{Serializer as _, V2Serializer};
use hdrhistogram::Histogram;

/// An empty latency histogram (µs, 3 significant figures, grows as needed).
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap_or_else(|_| unreachable_histogram());
    h.auto(true);
    h
}

#[cold]
fn unreachable_histogram() -> Histogram<u64> {
    // `Histogram::new(3)` only fails for sigfig > 5.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap_or_else(|_| std::process::abort())
}

/// Base64 of the hdrhistogram V2 encoding (what `HdrHistogram` libraries call a compressed-less
/// V2 log entry), so several gateways' histograms can be merged exactly.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    if V2Serializer::new().serialize(h, &mut buf).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Percentiles of a µs histogram, in ms (all 0 when empty). One implementation for the admin
/// API and gwctl's merged views.
pub fn percentiles(h: &Histogram<u64>) -> crate::admin::model::LatencyMs {
    if h.is_empty() {
        return crate::admin::model::LatencyMs::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    crate::admin::model::LatencyMs {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}
