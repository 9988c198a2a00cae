//! `[tracing]` from the file: sampling and the OTLP exporter's settings.

use toml::Spanned;

use super::super::defaults as d;
use super::super::file::TracingFile;
use super::super::types::{OtlpConfig, TracingConfig};
use super::Ctx;

/// Most spans one export request may carry.
const MAX_BATCH: i64 = 65_536;
/// Most spans the export queue may hold.
const MAX_QUEUE: i64 = 1_048_576;

pub(super) fn tracing(cx: &mut Ctx<'_>, t: &Spanned<TracingFile>) -> TracingConfig {
    let t = t.get_ref();
    let mut sample_ratio = d::TRACE_SAMPLE_RATIO;
    if let Some(s) = &t.sample_ratio {
        let v = *s.get_ref();
        if (0.0..=1.0).contains(&v) {
            sample_ratio = v;
        } else {
            cx.err(
                s.span(),
                "tracing.sample_ratio",
                format!("{v} is not a fraction between 0 and 1"),
            );
        }
    }
    let exporter_keys = [
        t.service_name.as_ref().map(Spanned::span),
        t.batch_size.as_ref().map(Spanned::span),
        t.batch_interval.as_ref().map(Spanned::span),
        t.queue_size.as_ref().map(Spanned::span),
        t.export_timeout.as_ref().map(Spanned::span),
    ];
    let Some(endpoint) = &t.otlp_endpoint else {
        if let Some(span) = exporter_keys.into_iter().flatten().next() {
            cx.err(
                span,
                "tracing",
                "export settings need tracing.otlp_endpoint (the collector's URL)",
            );
        }
        return TracingConfig {
            sample_ratio,
            otlp: None,
        };
    };
    let uri = match endpoint.get_ref().parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => {
            Some(u)
        }
        _ => {
            cx.err(
                endpoint.span(),
                "tracing.otlp_endpoint",
                format!(
                    "'{}' is not an http:// or https:// URL (example: 'http://127.0.0.1:4318/v1/traces')",
                    endpoint.get_ref()
                ),
            );
            None
        }
    };
    let service_name = match &t.service_name {
        Some(n) if n.get_ref().is_empty() => {
            cx.err(n.span(), "tracing.service_name", "must not be empty");
            d::TRACE_SERVICE_NAME.to_string()
        }
        Some(n) => n.get_ref().clone(),
        None => d::TRACE_SERVICE_NAME.to_string(),
    };
    let batch_size = t
        .batch_size
        .as_ref()
        .and_then(|v| cx.int(v, "tracing.batch_size", 1, MAX_BATCH))
        .unwrap_or(d::TRACE_BATCH_SIZE);
    let queue_size = t
        .queue_size
        .as_ref()
        .and_then(|v| cx.int(v, "tracing.queue_size", 1, MAX_QUEUE))
        .unwrap_or(d::TRACE_QUEUE_SIZE);
    if queue_size < batch_size {
        // Blame the key that was written (one of them was).
        let (span, field) = match (&t.queue_size, &t.batch_size) {
            (Some(q), _) => (q.span(), "tracing.queue_size"),
            (None, Some(b)) => (b.span(), "tracing.batch_size"),
            (None, None) => (0..0, "tracing.queue_size"),
        };
        cx.err(
            span,
            field,
            format!("queue_size {queue_size} is smaller than batch_size {batch_size}"),
        );
    }
    let batch_interval = cx.duration(
        &t.batch_interval,
        "tracing.batch_interval",
        d::TRACE_BATCH_INTERVAL,
    );
    let export_timeout = cx.duration(
        &t.export_timeout,
        "tracing.export_timeout",
        d::TRACE_EXPORT_TIMEOUT,
    );
    TracingConfig {
        sample_ratio,
        otlp: uri.map(|endpoint| OtlpConfig {
            endpoint,
            service_name,
            batch_size,
            batch_interval,
            queue_size,
            export_timeout,
        }),
    }
}
