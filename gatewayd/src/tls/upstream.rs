//! The client side: one rustls `ClientConfig` per service with `tls = {…}`. Verification is on
//! unless `insecure_skip_verify`: against `ca_file`, else the bundled Mozilla roots. The config
//! holds the session store, so every pooled connection of the service resumes sessions.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{provider, TlsError};
use crate::config::UpstreamTls;

/// Sessions remembered per service for resumption (shared by its pooled connections).
const SESSIONS: usize = 256;

fn read_certs(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(file).map_err(|source| TlsError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::invalid(file, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(file, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Builds the client configuration of a service's upstream TLS: roots from `ca_file` (else
/// webpki-roots), a client certificate when given (checked against its key), ALPN `http/1.1`,
/// an in-memory session store shared by every connection made with it.
pub fn client_config(t: &UpstreamTls) -> Result<Arc<ClientConfig>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if t.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &t.ca_file {
            Some(ca) => {
                for c in read_certs(ca)? {
                    roots.add(c).map_err(|e| {
                        TlsError::invalid(ca, format!("not a usable CA certificate: {e}"))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots)
    };
    let mut c = match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let pem = std::fs::read(key).map_err(|source| TlsError::Read {
                file: key.clone(),
                source,
            })?;
            let k = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| TlsError::invalid(key, format!("no PEM private key found: {e}")))?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                    e => TlsError::invalid(key, e.to_string()),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c.resumption = Resumption::in_memory_sessions(SESSIONS);
    Ok(Arc::new(c))
}

/// The name an endpoint's certificate is verified against: `server_name`, else its IP.
pub fn server_name(t: &UpstreamTls, ip: std::net::IpAddr) -> ServerName<'static> {
    t.server_name
        .as_deref()
        .and_then(|n| ServerName::try_from(n.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
}

/// A service's upstream TLS as the request path uses it: the client configuration (or why it
/// could not be built: requests then fail with a 502 naming it, never fall back to cleartext).
/// Kept across snapshots while the service's `tls` table is unchanged, so the session store
/// (resumption across pooled connections and reloads) survives.
#[derive(Debug)]
pub struct UpstreamTlsRuntime {
    /// The settings it was built from.
    pub settings: UpstreamTls,
    /// Unique in the process, never 0: pooled connections are keyed by it, so a connection
    /// verified for one service's settings is never reused for another's.
    pub id: u64,
    config: Result<Arc<ClientConfig>, String>,
}

impl UpstreamTlsRuntime {
    /// Builds the client configuration of `t` (reads its files).
    pub fn new(t: &UpstreamTls) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Self {
            settings: t.clone(),
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            config: client_config(t).map_err(|e| e.to_string()),
        }
    }

    /// Runs the client handshake on `tcp` (connected to `addr`). Any failure, including a
    /// certificate that does not verify, is a connect error naming TLS (502, retryable on
    /// another endpoint, an outlier failure for this one).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, crate::proxy::ProxyError>
    {
        let err = |reason: String| crate::proxy::ProxyError::UpstreamConnect { addr, reason };
        let config = self
            .config
            .as_ref()
            .map_err(|e| err(format!("upstream TLS is not usable: {e}")))?;
        tokio_rustls::TlsConnector::from(config.clone())
            .connect(server_name(&self.settings, addr.ip()), tcp)
            .await
            .map_err(|e| err(format!("TLS handshake failed: {e}")))
    }
}

/// `insecure_skip_verify = true`: any certificate is accepted (signatures are still checked,
/// so the handshake itself stays sound).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
