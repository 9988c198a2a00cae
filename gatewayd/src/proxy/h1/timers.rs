//! A connection's deadlines: request head and keep-alive, route timeouts, and the worker's
//! shutdown.

use tokio::time::Instant;

/// A deadline that costs no timer-wheel insert and remove per request: moving it later is free
/// until the timer armed for an earlier deadline fires, which then re-arms once. A connection
/// with back-to-back requests touches the timer wheel about once per timeout period.
#[derive(Debug)]
pub(crate) struct LazyDeadline {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// The connection's timers and its view of the worker's shutdown.
pub(super) struct Timers<'a, S> {
    /// Request-head and keep-alive deadline.
    pub(super) idle: LazyDeadline,
    /// Route timeouts.
    pub(super) route: LazyDeadline,
    /// When the connection was last busy (a request started or a response ended).
    pub(super) last: Instant,
    /// Resolves when the worker stops.
    pub(super) stop: std::pin::Pin<&'a mut S>,
    /// `stop` has resolved (it must not be polled again): the connection is draining.
    pub(super) stopping: bool,
}

// === impl LazyDeadline ===

impl LazyDeadline {
    /// A timer first armed at `at`.
    pub(crate) fn new(at: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Resolves once `deadline` has passed (never before).
    pub(crate) async fn until(&mut self, deadline: Instant) {
        loop {
            if self.sleep.deadline() > deadline {
                self.sleep.as_mut().reset(deadline);
            }
            (&mut self.sleep).await;
            if Instant::now() >= deadline {
                return;
            }
            self.sleep.as_mut().reset(deadline);
        }
    }
}
