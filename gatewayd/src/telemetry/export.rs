//! The tracer workers hold (`[tracing]`): the sampler, and the bounded queue to the OTLP/HTTP
//! exporter, a task on the control runtime that drains the queue in batches every
//! `batch_interval` (sooner when a whole batch waits) and POSTs them. The request path never waits on it: a span that finds the queue full is dropped and
//! counted. A failed export is retried with backoff a few times, then its batch is dropped and
//! counted; failures are logged at most once a minute. Memory stays bounded by the queue and
//! one batch.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::otlp::{encode_request, SpanRecord};
use crate::config::{OtlpConfig, TracingConfig};
use crate::metrics::Registry;
use crate::proxy::trace::Sampler;

/// Attempts per batch before it is dropped.
const ATTEMPTS: u32 = 4;
/// Failures are logged at most this often (with the count since the last line).
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What workers use to take part in traces.
#[derive(Debug)]
pub struct Tracer {
    /// Samples new traces.
    pub sampler: Sampler,
    /// The export queue (`None`: trace context only, no export).
    queue: Option<mpsc::Sender<SpanRecord>>,
    /// Wakes the exporter early when a whole batch is waiting. The exporter does not wait on the
    /// queue itself: waking it for every span would cost a thread wake-up (a system call) per
    /// request.
    full_batch: Arc<Notify>,
    batch_size: usize,
    metrics: Arc<Registry>,
}

// === impl Tracer ===

impl Tracer {
    /// A tracer for `cfg`; with an OTLP endpoint its exporter is spawned on the current tokio
    /// runtime (the control runtime) and runs until every clone of the tracer is dropped.
    pub fn start(cfg: &TracingConfig, metrics: Arc<Registry>) -> Arc<Self> {
        let full_batch = Arc::new(Notify::new());
        let queue = cfg.otlp.as_ref().map(|o| {
            let (tx, rx) = mpsc::channel(o.queue_size);
            tokio::spawn(export(rx, full_batch.clone(), o.clone(), metrics.clone()));
            tx
        });
        Arc::new(Self {
            sampler: Sampler::new(cfg.sample_ratio),
            queue,
            full_batch,
            batch_size: cfg.otlp.as_ref().map_or(usize::MAX, |o| o.batch_size),
            metrics,
        })
    }

    /// True when sampled spans are exported.
    pub fn exports(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a finished span for export; never waits: when the queue is full (or the
    /// exporter gone) the span is dropped and counted.
    pub fn submit(&self, span: SpanRecord) {
        if let Some(q) = &self.queue {
            if q.try_send(span).is_err() {
                self.metrics.spans.dropped_queue_full.fetch_add(1, Relaxed);
            } else if q.max_capacity() - q.capacity() >= self.batch_size {
                self.full_batch.notify_one();
            }
        }
    }
}

/// The exporter: every `batch_interval`, or sooner when a whole batch waits, drains the queue
/// in batches of at most `batch_size` and sends them; ends when every tracer is gone.
async fn export(
    mut rx: mpsc::Receiver<SpanRecord>,
    full_batch: Arc<Notify>,
    cfg: OtlpConfig,
    metrics: Arc<Registry>,
) {
    let client = match reqwest::Client::builder()
        .timeout(cfg.export_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "OTLP exporter cannot start: spans will be dropped");
            return;
        }
    };
    let mut sender = Sender {
        client,
        url: cfg.endpoint.to_string(),
        service_name: cfg.service_name.clone(),
        metrics,
        backoff: discovery::Backoff::try_new(
            Duration::from_millis(200),
            Duration::from_secs(5),
            0.5,
        )
        .ok(),
        rng: rand::rngs::SmallRng::from_entropy(),
        failures_unlogged: 0,
        last_log: None,
    };
    let mut batch = Vec::with_capacity(cfg.batch_size);
    loop {
        tokio::select! {
            () = tokio::time::sleep(cfg.batch_interval) => {}
            () = full_batch.notified() => {}
        }
        loop {
            let mut closed = false;
            while batch.len() < cfg.batch_size {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            let drained = batch.len() < cfg.batch_size;
            if !batch.is_empty() {
                sender.send(&batch).await;
                batch.clear();
            }
            if closed {
                return;
            }
            if drained {
                break;
            }
        }
    }
}

/// Sends batches, retries, counts and logs.
struct Sender {
    client: reqwest::Client,
    url: String,
    service_name: String,
    metrics: Arc<Registry>,
    backoff: Option<discovery::Backoff>,
    rng: rand::rngs::SmallRng,
    failures_unlogged: u64,
    last_log: Option<Instant>,
}

/// How an export request ended.
enum Outcome {
    Accepted,
    /// Worth another try (connection failure, timeout, 429, 502, 503, 504: OTLP/HTTP's
    /// retryable answers).
    Retry(String),
    /// The collector refused the data itself: sending it again would not help.
    Refused(String),
}

impl Sender {
    async fn send(&mut self, batch: &[SpanRecord]) {
        let body = bytes::Bytes::from(encode_request(&self.service_name, batch));
        let n = batch.len() as u64;
        for attempt in 0..ATTEMPTS {
            let why = match self.post(body.clone()).await {
                Outcome::Accepted => {
                    self.metrics.spans.exported.fetch_add(n, Relaxed);
                    return;
                }
                Outcome::Refused(why) => {
                    self.failed(&why, n, true);
                    return;
                }
                Outcome::Retry(why) => why,
            };
            let last = attempt + 1 == ATTEMPTS;
            self.failed(&why, n, last);
            if let (false, Some(b)) = (last, &self.backoff) {
                tokio::time::sleep(b.delay(attempt, &mut self.rng)).await;
            }
        }
    }

    async fn post(&self, body: bytes::Bytes) -> Outcome {
        let sent = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Outcome::Accepted,
            Ok(r) => {
                let s = r.status().as_u16();
                let why = format!("collector answered {s}");
                match s {
                    429 | 502 | 503 | 504 => Outcome::Retry(why),
                    _ => Outcome::Refused(why),
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }

    /// Counts a failed request (and, when `dropped`, its `n` spans) and logs at most once per
    /// [`LOG_EVERY`].
    fn failed(&mut self, why: &str, n: u64, dropped: bool) {
        let s = &self.metrics.spans;
        s.export_failures.fetch_add(1, Relaxed);
        if dropped {
            s.dropped_export_failed.fetch_add(n, Relaxed);
        }
        self.failures_unlogged += 1;
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now >= t + LOG_EVERY) {
            tracing::warn!(
                endpoint = %self.url,
                error = why,
                failures = self.failures_unlogged,
                "OTLP span export failed (logged at most once a minute)"
            );
            self.failures_unlogged = 0;
            self.last_log = Some(now);
        }
    }
}
