//! Round robin and smooth weighted round robin.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::EndpointRuntime;

/// Plain rotation; ejected endpoints are passed over.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub(super) fn pick(&self, n: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Relaxed);
        (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
    }
}

/// nginx's smooth weighted round robin, precomputed into a schedule so picking is one atomic
/// increment: weights 5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c.
#[derive(Debug)]
pub struct SmoothWeighted {
    schedule: Vec<u32>,
    next: AtomicUsize,
}

/// Longest schedule; larger weight sums are scaled down (keeping every endpoint ≥ 1).
const MAX_SCHEDULE: u64 = 4096;

impl SmoothWeighted {
    pub(super) fn new(eps: &[EndpointRuntime]) -> Self {
        Self {
            schedule: schedule(&eps.iter().map(EndpointRuntime::weight).collect::<Vec<_>>()),
            next: AtomicUsize::new(0),
        }
    }

    pub(super) fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Relaxed);
        (0..n)
            .map(|k| self.schedule[(start + k) % n] as usize)
            .find(|&i| usable(i))
    }
}

/// The smooth WRR sequence for `weights` (one full cycle).
pub(super) fn schedule(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0u32, gcd).max(1);
    let mut w: Vec<i64> = weights.iter().map(|&x| i64::from(x / g)).collect();
    let total: u64 = w.iter().map(|&x| x as u64).sum();
    if total > MAX_SCHEDULE {
        w.iter_mut()
            .for_each(|x| *x = ((*x as u64 * MAX_SCHEDULE / total) as i64).max(1));
    }
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
