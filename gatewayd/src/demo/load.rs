//! The demo's synthetic load: evenly spaced `GET /` requests through the proxy, most carrying
//! one of a dozen `demo-session` cookies (so sticky splits show cohorts), and a one-line summary
//! every 10 s: requests by status class and which color answered.
//!
//! Light by construction: at most [`super::MAX_RPS`] requests per second, no catch-up bursts
//! after a stall, and at most [`MAX_IN_FLIGHT`] outstanding (ticks beyond that are skipped).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use super::fleet::Fleet;
use super::upstream::Color;

/// Most requests outstanding at once.
const MAX_IN_FLIGHT: u64 = 32;

/// Per request, until the whole body is read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the summary is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Distinct session cookies; every fourth request has none.
const SESSIONS: u64 = 12;

/// Counts since the last summary.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    by_class: [AtomicU64; 6],
    failed: AtomicU64,
    skipped: AtomicU64,
    blue: AtomicU64,
    green: AtomicU64,
    in_flight: AtomicU64,
}

/// Sends about `rps` requests per second to `proxy` until `stop`.
pub(super) async fn run(proxy: SocketAddr, rps: u32, fleet: Arc<Fleet>, stop: CancellationToken) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IN_FLIGHT as usize)
        .build_http();
    let counters = Arc::new(Counters::default());
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rps.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut summary = tokio::time::interval(SUMMARY_EVERY);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    summary.tick().await;
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = summary.tick() => super::say(&counters.take_summary(&fleet)),
            _ = tick.tick() => {
                n += 1;
                if counters.in_flight.load(Relaxed) >= MAX_IN_FLIGHT {
                    counters.skipped.fetch_add(1, Relaxed);
                    continue;
                }
                let Some(req) = request(proxy, n) else { continue };
                counters.in_flight.fetch_add(1, Relaxed);
                let (client, counters) = (client.clone(), counters.clone());
                tokio::spawn(async move {
                    let sent = tokio::time::timeout(REQUEST_TIMEOUT, async {
                        let resp = client.request(req).await.ok()?;
                        let status = resp.status();
                        let who = resp
                            .headers()
                            .get("x-demo-instance")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        resp.into_body().collect().await.ok()?;
                        Some((status, who))
                    })
                    .await;
                    counters.record(sent.ok().flatten());
                    counters.in_flight.fetch_sub(1, Relaxed);
                });
            }
        }
    }
}

/// Request number `n`: `GET /`, with cookie `demo-session=user-K` unless `n` is a multiple of 4.
fn request(proxy: SocketAddr, n: u64) -> Option<Request<Empty<Bytes>>> {
    let mut b =
        Request::get(format!("http://{proxy}/")).header(header::USER_AGENT, "meshgate-demo-load");
    match n % 4 {
        0 => {}
        _ => {
            b = b.header(
                header::COOKIE,
                format!("demo-session=user-{}", n % SESSIONS + 1),
            );
        }
    }
    b.body(Empty::new()).ok()
}

// === impl Counters ===

impl Counters {
    fn record(&self, outcome: Option<(http::StatusCode, Option<String>)>) {
        self.sent.fetch_add(1, Relaxed);
        let Some((status, who)) = outcome else {
            self.failed.fetch_add(1, Relaxed);
            return;
        };
        let class = usize::from(status.as_u16() / 100).min(5);
        self.by_class[class].fetch_add(1, Relaxed);
        match who.as_deref() {
            Some(w) if w.starts_with(Color::Blue.name()) => self.blue.fetch_add(1, Relaxed),
            Some(w) if w.starts_with(Color::Green.name()) => self.green.fetch_add(1, Relaxed),
            _ => 0,
        };
    }

    /// `demo: load 10s: …`, resetting the counts.
    fn take_summary(&self, fleet: &Fleet) -> String {
        let sent = self.sent.swap(0, Relaxed);
        let class = |c: usize| self.by_class[c].swap(0, Relaxed);
        let (c2, c3, c4, c5) = (class(2), class(3), class(4), class(5));
        let _ = (class(0), class(1));
        let failed = self.failed.swap(0, Relaxed);
        let skipped = self.skipped.swap(0, Relaxed);
        let (blue, green) = (self.blue.swap(0, Relaxed), self.green.swap(0, Relaxed));
        let pct = |x: u64| {
            let total = blue + green;
            (x * 100 + total / 2).checked_div(total).unwrap_or(0)
        };
        let (b, g) = (fleet.up_count(Color::Blue), fleet.up_count(Color::Green));
        let mut line = format!(
            "demo: load last {}s: {sent} requests, 2xx {c2}, 3xx {c3}, 4xx {c4}, 5xx {c5}, failed {failed}",
            SUMMARY_EVERY.as_secs()
        );
        if skipped > 0 {
            line.push_str(&format!(", skipped {skipped} (too many in flight)"));
        }
        line.push_str(&format!(
            " | blue {blue} ({}%), green {green} ({}%) | instances up: blue {}/{}, green {}/{}",
            pct(blue),
            pct(green),
            b.up,
            b.total,
            g.up,
            g.total
        ));
        line
    }
}
