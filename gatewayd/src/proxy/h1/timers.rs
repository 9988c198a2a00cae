//! A connection's deadlines: request head and keep-alive, route timeouts, and the worker's
//! shutdown.

use tokio::time::Instant;

use crate::config::ClientTimeouts;

/// A deadline that costs no timer-wheel insert and remove per request: moving it later is free
/// until the timer armed for an earlier deadline fires, which then re-arms once. A connection
/// with back-to-back requests touches the timer wheel about once per timeout period.
#[derive(Debug)]
pub(crate) struct LazyDeadline {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The waker the timer holds since it was last armed (polled and not yet fired): while the
    /// same task waits again, the timer need not be polled (a timer-entry update) at all.
    armed: Option<std::task::Waker>,
}

/// The connection's timers and its view of the worker's shutdown.
pub(super) struct Timers<'a, S> {
    /// Request-head and keep-alive deadline.
    pub(super) idle: LazyDeadline,
    /// Route timeouts.
    pub(super) route: LazyDeadline,
    /// When the connection was last busy (a request started or a response ended).
    pub(super) last: Instant,
    /// The listener's header and keep-alive timeouts (copied at accept).
    pub(super) limits: ClientTimeouts,
    /// Resolves when the worker stops.
    pub(super) stop: Stop<'a, S>,
    /// `stop` has resolved (it must not be polled again): the connection is draining.
    pub(super) stopping: bool,
}

/// The worker's shutdown future, polled only when the shutdown signal may have moved: while
/// the same task waits again it costs one atomic load instead of a watch registration.
pub(super) struct Stop<'a, S> {
    fut: std::pin::Pin<&'a mut S>,
    /// A receiver of the signal `fut` waits on, to see whether it changed.
    probe: tokio::sync::watch::Receiver<bool>,
    armed: Option<std::task::Waker>,
}

impl<'a, S: std::future::Future> Stop<'a, S> {
    /// Wraps `fut`, which resolves once the signal `probe` receives says stop.
    pub(super) fn new(
        fut: std::pin::Pin<&'a mut S>,
        probe: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            fut,
            probe,
            armed: None,
        }
    }

    /// Resolves when the worker stops.
    pub(super) async fn wait(&mut self) {
        std::future::poll_fn(|cx| {
            let same = self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            // A closed channel counts as changed: `fut` then resolves.
            if same && !self.probe.has_changed().unwrap_or(true) {
                return std::task::Poll::Pending;
            }
            let r = self.fut.as_mut().poll(cx).map(|_| ());
            self.armed = r.is_pending().then(|| cx.waker().clone());
            r
        })
        .await;
    }
}

// === impl LazyDeadline ===

impl LazyDeadline {
    /// A timer first armed at `at`.
    pub(crate) fn new(at: Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            armed: None,
        }
    }

    /// Resolves once `deadline` has passed (never before).
    pub(crate) async fn until(&mut self, deadline: Instant) {
        std::future::poll_fn(|cx| self.poll_until(cx, deadline)).await;
    }

    fn poll_until(
        &mut self,
        cx: &mut std::task::Context<'_>,
        deadline: Instant,
    ) -> std::task::Poll<()> {
        use std::future::Future as _;
        use std::task::Poll;
        loop {
            if self.sleep.deadline() > deadline {
                self.sleep.as_mut().reset(deadline);
                self.armed = None;
            }
            if self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
                && !self.sleep.is_elapsed()
            {
                // The timer will wake this very task when it fires.
                return Poll::Pending;
            }
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => {
                    self.armed = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Poll::Ready(()) => {
                    self.armed = None;
                    if Instant::now() >= deadline {
                        return Poll::Ready(());
                    }
                    self.sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::LazyDeadline;

    const S: Duration = Duration::from_secs(1);

    /// A deadline later than the armed timer waits for itself; an earlier one re-arms.
    #[tokio::test(start_paused = true)]
    async fn resolves_at_its_own_deadline_never_the_armed_one() {
        let t0 = Instant::now();
        let mut d = LazyDeadline::new(t0 + 10 * S);
        d.until(t0 + 20 * S).await;
        assert_eq!(Instant::now() - t0, 20 * S);
        d.until(t0 + 25 * S).await;
        assert_eq!(Instant::now() - t0, 25 * S);
        let t1 = Instant::now();
        let mut d = LazyDeadline::new(t1 + 10 * S);
        d.until(t1 + 3 * S).await;
        assert_eq!(Instant::now() - t1, 3 * S);
    }

    /// While armed, the waiting task is woken by other things many times (the timer is then
    /// not polled again): the deadline still ends the wait on time.
    #[tokio::test(start_paused = true)]
    async fn an_armed_timer_still_wakes_a_task_woken_by_other_things_meanwhile() {
        let t0 = Instant::now();
        let mut d = LazyDeadline::new(t0 + 10 * S);
        let mut tick = tokio::time::interval(S / 4);
        let mut ticks = 0;
        loop {
            tokio::select! {
                biased;
                () = d.until(t0 + 7 * S) => break,
                _ = tick.tick() => ticks += 1,
            }
        }
        assert_eq!(Instant::now() - t0, 7 * S);
        assert!(ticks >= 27, "{ticks}");
        // Waited for again after each wake-up with a later deadline each time.
        for k in 8..12 {
            tokio::select! {
                () = d.until(t0 + k * S) => {}
                _ = tokio::time::sleep(2 * S) => panic!("deadline {k} s missed"),
            }
            assert_eq!(Instant::now() - t0, k * S);
        }
    }

    /// Armed by one task, then waited for by another: the second one is woken.
    #[tokio::test(start_paused = true)]
    async fn another_task_waiting_re_arms_for_itself() {
        let t0 = Instant::now();
        let d = LazyDeadline::new(t0 + 10 * S);
        let mut d = tokio::spawn(async move {
            let mut d = d;
            let r = tokio::time::timeout(S, d.until(t0 + 5 * S)).await;
            assert!(r.is_err());
            d
        })
        .await
        .unwrap();
        d.until(t0 + 5 * S).await;
        assert_eq!(Instant::now() - t0, 5 * S);
    }

    /// The shutdown wait, woken meanwhile by other things (then only the probe is read), still
    /// sees the signal at once; a signal sent before the wait began is seen on the first poll.
    #[tokio::test(start_paused = true)]
    async fn the_stop_wait_sees_a_signal_sent_while_it_was_armed() {
        use super::Stop;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut waiter = rx.clone();
        let fut = crate::proxy::worker::stopped(&mut waiter);
        tokio::pin!(fut);
        let mut stop = Stop::new(fut, rx.clone());
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(S / 4);
        let mut ticks = 0;
        loop {
            tokio::select! {
                biased;
                () = stop.wait() => break,
                _ = tick.tick() => {
                    ticks += 1;
                    if ticks == 12 {
                        tx.send(true).unwrap();
                    }
                }
            }
        }
        assert_eq!(ticks, 12, "seen on the poll right after the signal");
        assert!(Instant::now() - t0 < 3 * S);

        let mut waiter = rx.clone();
        let fut = crate::proxy::worker::stopped(&mut waiter);
        tokio::pin!(fut);
        let mut late = Stop::new(fut, rx.clone());
        tokio::select! {
            () = late.wait() => {}
            () = tokio::time::sleep(S) => panic!("a signal sent before the wait was missed"),
        }
    }
}
