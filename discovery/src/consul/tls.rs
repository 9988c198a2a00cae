//! TLS for `https://` Consul addresses: the rustls client configuration (ring provider) and the
//! trust roots it verifies the agent's certificate against.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::DiscoveryError;

/// The client configuration for `address`: trusts only the PEM certificates of `ca_file` when
/// given, else the Mozilla roots compiled in by `webpki-roots` (no platform store is read, so
/// this works the same on every machine, offline included). No client certificate is sent.
pub(crate) fn client_config(
    address: &str,
    ca_file: Option<&Path>,
) -> Result<ClientConfig, DiscoveryError> {
    let tls_error = |reason: String| DiscoveryError::Tls {
        address: address.to_owned(),
        reason,
    };
    let roots = match ca_file {
        Some(path) => roots_from_file(path).map_err(tls_error)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    // An explicit provider: `ClientConfig::builder()` panics at run time when feature
    // unification enables both ring and aws-lc-rs in rustls and no default was installed.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Every certificate of a PEM file; fails on an unreadable file, a malformed PEM section, a
/// certificate rustls cannot use as a trust anchor, or a file without any certificate.
fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("ca_file {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("ca_file {shown}: no PEM certificate found"));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("ca_file {shown}: {e}"))?;
    }
    Ok(roots)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn without_ca_file_uses_bundled_roots() {
        assert!(client_config("https://consul:8501", None).is_ok());
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let missing = Path::new("/nonexistent/meshgate-ca.pem");
        let err = client_config("https://consul:8501", Some(missing)).unwrap_err();
        assert!(matches!(err, DiscoveryError::Tls { .. }), "{err}");
        assert!(err.to_string().contains("meshgate-ca.pem"), "{err}");

        let mut empty = tempfile::NamedTempFile::new().unwrap();
        writeln!(empty, "not a certificate").unwrap();
        let err = client_config("https://consul:8501", Some(empty.path())).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }
}
