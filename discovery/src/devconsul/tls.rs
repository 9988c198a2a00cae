//! Optional TLS serving: a rustls acceptor (ring provider, HTTP/1.1 only) built from a PEM
//! certificate chain and private key, so clients' `https://` paths can be tested offline.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::DevConsulError;

/// A cheaply clonable TLS acceptor (one `Arc<ServerConfig>` inside).
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
}

// === impl Tls ===

impl Tls {
    /// Reads the certificate chain (leaf first) from `cert_pem` and the first private key
    /// (PKCS#8, PKCS#1 or SEC1) from `key_pem`.
    pub(crate) fn load(cert_pem: &Path, key_pem: &Path) -> Result<Self, DevConsulError> {
        let tls_error = |reason: String| DevConsulError::Tls { reason };
        let certs = CertificateDer::pem_file_iter(cert_pem)
            .map_err(|e| tls_error(format!("{}: {e}", cert_pem.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error(format!("{}: {e}", cert_pem.display())))?;
        if certs.is_empty() {
            return Err(tls_error(format!(
                "{}: no PEM certificate found",
                cert_pem.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key_pem)
            .map_err(|e| tls_error(format!("{}: {e}", key_pem.display())))?;
        // An explicit provider: the process-wide default may be unset or ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls_error(format!("certificate and key do not fit: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The acceptor that runs the server side of a handshake.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}
