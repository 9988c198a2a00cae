//! TLS: the listener side (`[listeners.tls]`: PEM certificates, an SNI resolver that a reload
//! swaps atomically, rustls `ServerConfig` with ALPN `h2` / `http/1.1`) and the upstream side
//! (`services.NAME.tls`: a rustls `ClientConfig` per service). On the request path this is the
//! `[TLS: rustls, SNI, ALPN]` phase right after accept; everything else here runs on the control
//! runtime (loading, checking and reloading files).
//!
//! The crypto provider is *ring* (as everywhere else in the workspace); the issue asks for it to
//! be chosen against aws-lc-rs by measurement, which docs/benchmarks.md will record.

mod acceptor;
mod reload;
mod resolver;
mod upstream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use acceptor::{load_pair, server_config, Alpn, LoadedCert, Terminator};
pub use reload::{
    check_config, prometheus, spawn_poller, CertStatus, ListenerCerts, TlsListenerStatus,
};
pub use resolver::{CertStore, SniResolver};
pub use upstream::{client_config, server_name, UpstreamTlsRuntime};

/// Why certificates or keys could not be used. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// File.
        file: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The file's content is not what it should be (no PEM certificate, no private key, a
    /// certificate that does not parse).
    #[error("{}: {reason}", file.display())]
    Invalid {
        /// File.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The leaf certificate's validity ended.
    #[error("{}: certificate expired at {not_after} (Unix time {not_after_unix})", file.display())]
    Expired {
        /// Certificate file.
        file: PathBuf,
        /// End of validity, RFC 3339.
        not_after: String,
        /// End of validity, Unix seconds.
        not_after_unix: i64,
    },
    /// The private key is not the leaf certificate's.
    #[error("{}: private key does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    pub(crate) fn invalid(file: &Path, reason: impl Into<String>) -> Self {
        Self::Invalid {
            file: file.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// The crypto provider every TLS configuration of the process uses (explicit: the process-wide
/// default may be unset, or ambiguous when several providers are linked in).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    return Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    #[cfg(not(feature = "aws-lc-rs"))]
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
