//! Waiting for conditions without fixed sleeps.

use std::time::Duration;

/// How long to wait for something that should happen soon: `MESHGATE_TEST_PATIENCE_SECS`
/// (default 20 s, generous for a loaded 2-core machine; success returns as soon as it is true).
pub fn patience() -> Duration {
    let secs = std::env::var("MESHGATE_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(secs)
}

/// Polls `check` every 25 ms until it returns `Some`, or panics with `what` after [`patience`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {:?} waiting for: {what}", patience());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
