//! Building blocks for end-to-end cases.

pub mod consul;
pub mod eventually;
pub mod gateway;
pub mod gwctl;
pub mod origin;
pub mod prometheus;
pub mod tls;

pub use eventually::patience;
pub use gateway::{binary, Gateway};
pub use origin::{Origin, OriginKind};

/// Installs a test log subscriber once (`RUST_LOG` controls it).
pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}
