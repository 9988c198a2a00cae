//! One worker's share of a (route, backend)'s metrics.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::{micros, new_histogram, Totals};

/// Status class labels, index = `status / 100 - 1`.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`CLASSES`] for a status code (codes outside 100..=599 count as 5xx).
pub fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => 4,
    }
}

/// Aligned to a cache line so two workers' shards never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Shard {
    in_flight: AtomicI64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_class: [u64; 5],
    /// Allocated on first record: routes without traffic cost no histogram memory.
    latency: Option<Histogram<u64>>,
}

impl Shard {
    /// A request started.
    pub fn start(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// A request that `start`ed ended with `status` after `latency` (`None`: latency histograms
    /// are switched off, only the count is kept).
    pub fn finish(&self, status: u16, latency: Option<Duration>) {
        self.in_flight.fetch_sub(1, Relaxed);
        self.record(status, latency);
    }

    /// Records a request that was never counted as in flight.
    pub fn record(&self, status: u16, latency: Option<Duration>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.by_class[class_index(status)] += 1;
        if let Some(latency) = latency {
            let h = g.latency.get_or_insert_with(new_histogram);
            // Auto-resizing histogram: recording cannot fail.
            let _ = h.record(micros(latency).max(1));
        }
    }

    pub(super) fn merge_into(&self, t: &mut Totals) {
        t.in_flight += self.in_flight.load(Relaxed);
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (a, b) in t.by_class.iter_mut().zip(g.by_class) {
            *a += b;
        }
        if let Some(h) = &g.latency {
            let _ = t.latency.add(h);
        }
    }
}
