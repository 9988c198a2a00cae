//! The client side of blocking queries: the index state machine and the per-loop rate limit.

use std::time::Duration;

use tokio::time::Instant;

/// What an answer's index means for the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexUpdate {
    /// Index went up (or first answer): diff the content, something may have changed.
    Changed,
    /// Same index: a timeout or no-op; rebuild nothing.
    Unchanged,
    /// Index went backwards (snapshot restore, tombstone reaping): the next read is immediate
    /// (index 0). The body is a valid 200 and may be applied.
    Reset,
}

/// The last index of one blocking-query loop (consul-api.md, "What a robust client must do").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockingIndex {
    last: u64,
}

/// A token bucket: `burst` requests at once, then one per `refill` (tokio time).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: u32,
    tokens: f64,
    refill: Duration,
    updated: Instant,
}

// === impl BlockingIndex ===

impl BlockingIndex {
    /// Starts at 0 (first read immediate).
    pub fn new() -> Self {
        Self { last: 0 }
    }

    /// The index to send as `?index=` (0: do not block).
    pub fn current(&self) -> u64 {
        self.last
    }

    /// Records the index of a 200 answer: lower than before → reset to 0; 0 → treated as 1;
    /// equal → unchanged; higher → changed.
    pub fn observe(&mut self, index: u64) -> IndexUpdate {
        let index = index.max(1);
        if index < self.last {
            self.last = 0;
            return IndexUpdate::Reset;
        }
        if index == self.last {
            return IndexUpdate::Unchanged;
        }
        self.last = index;
        IndexUpdate::Changed
    }

    /// Forgets the index (next read immediate).
    pub fn reset(&mut self) {
        self.last = 0;
    }
}

// === impl TokenBucket ===

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least 1) refilling one per `refill`.
    pub fn new(burst: u32, refill: Duration) -> Self {
        let burst = burst.max(1);
        Self {
            burst,
            tokens: f64::from(burst),
            refill,
            updated: Instant::now(),
        }
    }

    /// Takes a token now, or returns how long until one is available.
    pub fn try_acquire(&mut self) -> Result<(), Duration> {
        self.top_up();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        if self.refill.is_zero() {
            self.tokens = 0.0;
            return Ok(());
        }
        Err(self.refill.mul_f64(1.0 - self.tokens))
    }

    /// Waits for a token (never sleeps while tokens remain).
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire() {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    fn top_up(&mut self) {
        let now = Instant::now();
        if self.refill.is_zero() {
            self.tokens = f64::from(self.burst);
        } else {
            let earned = now.duration_since(self.updated).as_secs_f64() / self.refill.as_secs_f64();
            self.tokens = (self.tokens + earned).min(f64::from(self.burst));
        }
        self.updated = now;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn index_state_machine() {
        let mut idx = BlockingIndex::new();
        assert_eq!(idx.current(), 0);
        assert_eq!(idx.observe(10), IndexUpdate::Changed);
        assert_eq!(idx.current(), 10);
        assert_eq!(idx.observe(10), IndexUpdate::Unchanged);
        assert_eq!(idx.observe(12), IndexUpdate::Changed);
        assert_eq!(idx.observe(5), IndexUpdate::Reset);
        assert_eq!(idx.current(), 0, "reset makes the next read immediate");
        assert_eq!(idx.observe(5), IndexUpdate::Changed);
        let mut zero = BlockingIndex::new();
        assert_eq!(zero.observe(0), IndexUpdate::Changed);
        assert_eq!(
            zero.current(),
            1,
            "0 is treated as 1 so the next read blocks"
        );
        assert_eq!(zero.observe(0), IndexUpdate::Unchanged);
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_burst_then_paces() {
        let mut bucket = TokenBucket::new(2, Duration::from_secs(1));
        let start = Instant::now();
        bucket.acquire().await;
        bucket.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "burst of 2 goes through");
        bucket.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(1));
        bucket.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(2));
        // After a quiet period the burst is available again, but never more than 2.
        tokio::time::advance(Duration::from_secs(60)).await;
        let t = Instant::now();
        bucket.acquire().await;
        bucket.acquire().await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        assert!(bucket.try_acquire().is_err());
    }
}
