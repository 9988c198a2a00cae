//! Logging: `tracing` to stdout or rolling files (non-blocking writer), JSON by default. The
//! access log is the `access` target, sampled in `proxy::finish`; in JSON it is written as
//! Elastic Common Schema (ECS) documents by [`AccessOrJson`], every other event as tracing's
//! own JSON. Span export over OTLP/HTTP is `export` (the tracer workers hold) and `otlp` (the
//! protobuf encoding).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, Rotation};

mod export;
mod otlp;

pub use export::Tracer;
pub use otlp::{encode_request, SpanRecord, Value};

/// The `tracing` target of access-log events.
pub const ACCESS: &str = "access";
/// ECS version the access log follows (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

/// Installs the global subscriber. Keep the guard alive: dropping it flushes and stops the
/// background writer.
pub fn init(cfg: &LogConfig) -> Option<WorkerGuard> {
    let filter =
        EnvFilter::try_from_env("MESHGATE_LOG").unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let (writer, guard) = match &cfg.file {
        Some(f) => {
            let rotation = match f.rotation {
                Rotation::Minutely => tracing_appender::rolling::Rotation::MINUTELY,
                Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
                Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
                Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
            };
            let appender = tracing_appender::rolling::RollingFileAppender::new(
                rotation,
                &f.directory,
                &f.prefix,
            );
            tracing_appender::non_blocking(appender)
        }
        None => tracing_appender::non_blocking(std::io::stdout()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match cfg.format {
        LogFormat::Json => builder.json().event_format(AccessOrJson::new()).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.is_ok().then_some(guard)
}

/// Event format: `access` events as one ECS JSON document per line, others as tracing's JSON
/// (flattened, without spans).
///
/// An access document is `{"@timestamp", "log.level", "log.logger", "message", "ecs.version",
/// "event.kind", "event.category", "event.type", "event.dataset"}` followed by the event's own
/// fields in the order `proxy::finish` records them (their names are ECS field names, dotted:
/// Elasticsearch expands `http.request.method` into `http.request.method` objects).
#[derive(Debug)]
pub struct AccessOrJson {
    json: format::Format<format::Json>,
}

impl AccessOrJson {
    /// The format `init` installs.
    pub fn new() -> Self {
        Self {
            json: format::format()
                .json()
                .flatten_event(true)
                .with_current_span(false),
        }
    }
}

impl Default for AccessOrJson {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, N> FormatEvent<S, N> for AccessOrJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if event.metadata().target() != ACCESS {
            return self.json.format_event(ctx, writer, event);
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = String::with_capacity(512);
        line.push('{');
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let head: [(&str, serde_json::Value); 9] = [
            ("@timestamp", now.to_string().into()),
            ("log.level", level.into()),
            ("log.logger", ACCESS.into()),
            ("message", fields.message.take().unwrap_or_default().into()),
            ("ecs.version", ECS_VERSION.into()),
            ("event.kind", "event".into()),
            ("event.category", serde_json::json!(["web"])),
            ("event.type", serde_json::json!(["access"])),
            ("event.dataset", "meshgate.access".into()),
        ];
        for (i, (k, v)) in head.iter().chain(fields.values.iter()).enumerate() {
            if i > 0 {
                line.push(',');
            }
            let _ = write!(line, "{}:{v}", serde_json::Value::from(*k));
        }
        line.push('}');
        writeln!(writer, "{line}")
    }
}

/// An event's fields as JSON values, in recording order; `message` apart.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    values: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.values.push((field.name(), text.into()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            self.values.push((field.name(), value.into()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.values.push((field.name(), value.into()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.values.push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.values.push((field.name(), value.into()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(emit: impl FnOnce()) -> (String, Vec<serde_json::Value>) {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .json()
            .event_format(AccessOrJson::new())
            .finish();
        tracing::subscriber::with_default(sub, emit);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (text, v)
    }

    #[test]
    fn access_events_are_ecs_documents_in_a_fixed_order() {
        let (raw, v) = lines(|| {
            let id: Option<&str> = None;
            tracing::info!(
                target: "access",
                message = "GET /a 200",
                http.request.method = %"GET",
                url.path = "/a",
                http.response.status_code = 200u64,
                http.request.id = id,
            );
        });
        let doc = v[0].as_object().unwrap();
        let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        // serde_json's map is sorted; the order on the wire is checked on the raw text below.
        assert_eq!(
            keys,
            [
                "@timestamp",
                "ecs.version",
                "event.category",
                "event.dataset",
                "event.kind",
                "event.type",
                "http.request.method",
                "http.response.status_code",
                "log.level",
                "log.logger",
                "message",
                "url.path"
            ]
        );
        assert_eq!(doc["http.response.status_code"], 200);
        assert_eq!(doc["http.request.method"], "GET");
        assert_eq!(doc["message"], "GET /a 200");
        assert_eq!(doc["log.level"], "info");
        assert_eq!(doc["event.category"], serde_json::json!(["web"]));
        let ts = doc["@timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        let order = [
            "\"@timestamp\"",
            "\"log.level\"",
            "\"log.logger\"",
            "\"message\"",
            "\"ecs.version\"",
            "\"event.kind\"",
            "\"event.category\"",
            "\"event.type\"",
            "\"event.dataset\"",
            "\"http.request.method\"",
            "\"url.path\"",
            "\"http.response.status_code\"",
        ];
        let at: Vec<usize> = order.iter().map(|k| raw.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{raw}");
        assert!(
            !raw.contains("http.request.id"),
            "None fields are left out: {raw}"
        );
    }

    #[test]
    fn other_events_stay_tracing_json() {
        let (_, v) = lines(|| tracing::info!(target: "gatewayd::app", addr = "x", "listening"));
        assert_eq!(v[0]["message"], "listening");
        assert_eq!(v[0]["target"], "gatewayd::app");
        assert_eq!(v[0]["addr"], "x");
        assert!(v[0].get("@timestamp").is_none());
    }
}
