//! The rate limit's key table: governor's per-key GCRA states, bounded, shared by the limiters
//! a fleet-wide policy builds as the fleet's size changes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};

/// Governor's per-key GCRA states in a table of at most `max` keys. A key that finds the table
/// full shares one overflow bucket with every other such key, so a flood of distinct keys is
/// limited as a whole and memory stays bounded (at most 64 bytes a key; measured 41–44 in
/// `tests/src/cases/flood.rs`). Keys idle for longer than a full bucket's refill are
/// indistinguishable from new ones and are evicted when the table is full, at most once a second.
#[derive(Debug)]
pub struct BoundedStore {
    map: DashMap<u64, Entry>,
    max: usize,
    /// Keys held plus keys being inserted: a slot is taken here before an insert, so two
    /// workers meeting a table one short of `max` never take it past `max`.
    held: AtomicUsize,
    overflow: InMemoryState,
    idle_after: u64,
    last_sweep: AtomicU64,
}

#[derive(Debug, Default)]
struct Entry {
    state: InMemoryState,
    /// Seconds (coarse clock) of the last request.
    seen: AtomicU64,
}

impl BoundedStore {
    pub(super) fn new(max: usize, refill: Duration) -> Self {
        Self {
            map: DashMap::new(),
            max,
            held: AtomicUsize::new(0),
            overflow: InMemoryState::default(),
            idle_after: refill.as_secs() + 1,
            last_sweep: AtomicU64::new(0),
        }
    }

    /// Buckets held (the overflow bucket not counted).
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    fn sweep(&self, now: u64) {
        let last = self.last_sweep.load(Relaxed);
        if now == last
            || self
                .last_sweep
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let mut evicted = 0;
        self.map.retain(|_, e| {
            let keep = now.saturating_sub(e.seen.load(Relaxed)) <= self.idle_after;
            evicted += usize::from(!keep);
            keep
        });
        self.held.fetch_sub(evicted, Relaxed);
    }

    /// Takes a slot for a new key, evicting idle keys first when the table is full; false
    /// when it is still full.
    fn reserve(&self, now: u64) -> bool {
        let take = || {
            self.held
                .fetch_update(Relaxed, Relaxed, |n| (n < self.max).then_some(n + 1))
                .is_ok()
        };
        take() || {
            self.sweep(now);
            take()
        }
    }
}

impl StateStore for BoundedStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let now = crate::balance::now_nanos() / 1_000_000_000;
        if let Some(e) = self.map.get(key) {
            e.seen.store(now, Relaxed);
            return e.state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if !self.reserve(now) {
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let e = match self.map.entry(*key) {
            MapEntry::Occupied(o) => {
                // Another worker inserted this key meanwhile: its slot is not needed.
                self.held.fetch_sub(1, Relaxed);
                o.into_ref()
            }
            MapEntry::Vacant(v) => v.insert(Entry::default()),
        };
        e.seen.store(now, Relaxed);
        e.state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

/// One limiter's view of a shared [`BoundedStore`]. Governor keeps each key's theoretical
/// arrival time relative to its limiter's start; the table keeps it relative to the first
/// limiter's start, and `offset` (this limiter's start minus that one, measured when it was
/// built) converts both ways. So a limiter built for a new fleet size carries every bucket on:
/// a client's debt, in time, is the same before and after the re-division.
#[derive(Debug)]
pub struct ShareStore {
    pub(super) table: Arc<BoundedStore>,
    pub(super) offset: Nanos,
}

impl StateStore for ShareStore {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let off = self.offset;
        if off == Nanos::new(0) {
            return self.table.measure_and_replace(key, f);
        }
        // A time before this limiter's start is in its past: a full bucket, as None is.
        self.table.measure_and_replace(key, |tat| {
            let (t, next) = f(tat.map(|v| v.saturating_sub(off)))?;
            Ok((t, next + off))
        })
    }
}
