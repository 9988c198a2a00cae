//! Logging: `tracing` to stdout or rolling files (non-blocking writer), JSON by default. The
//! access log is the `access` target, sampled in `proxy::handle`.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, Rotation};

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
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.is_ok().then_some(guard)
}
