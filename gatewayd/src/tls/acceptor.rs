//! Loading a certificate and its key (refused with the file's name when they do not parse,
//! the certificate has expired or the key is not its key), the listener's rustls
//! `ServerConfig`, and the accept step with its handshake timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{provider, SniResolver, TlsError};
use crate::config::{CertKeyPair, TlsVersion};

/// TLS sessions remembered for resumption by session id, per listener (tickets need none).
const SESSION_CACHE: usize = 4096;

/// A certificate chain with its key, ready to serve, and what the resolver and the admin API
/// need to know about it.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// Certificate file.
    pub cert_file: PathBuf,
    /// Key file.
    pub key_file: PathBuf,
    /// Chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// DNS names of the leaf's SANs, lower-cased (`*.example.com` for wildcards).
    pub names: Vec<String>,
    /// End of the leaf's validity, Unix seconds.
    pub not_after: i64,
    /// The leaf's serial number, hex bytes separated by `:`.
    pub serial: String,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// Reads `pair` and checks it at time `now`: the chain parses, the leaf has not expired, the
/// key parses and is the leaf's key (when the key type lets rustls tell).
pub fn load_pair(pair: &CertKeyPair, now: SystemTime) -> Result<LoadedCert, TlsError> {
    let (cert_file, key_file) = (&pair.cert, &pair.key);
    let pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::invalid(cert_file, format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::invalid(cert_file, "no PEM certificate found"));
    };
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TlsError::invalid(cert_file, format!("certificate does not parse: {e}")))?;
    let not_after = x509.validity().not_after.timestamp();
    if not_after < unix(now) {
        return Err(TlsError::Expired {
            file: cert_file.clone(),
            not_after: x509.validity().not_after.to_string(),
            not_after_unix: not_after,
        });
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    let serial = x509.raw_serial_as_string();
    let key_pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::invalid(key_file, format!("no PEM private key found: {e}")))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::invalid(key_file, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_file.clone(),
                key: key_file.clone(),
            })
        }
        Err(e) => return Err(TlsError::invalid(cert_file, e.to_string())),
    }
    Ok(LoadedCert {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        key: Arc::new(certified),
        names,
        not_after,
        serial,
    })
}

/// A listener's `ServerConfig`: certificates from `resolver`, ALPN `h2` then `http/1.1`, TLS
/// 1.3 and (unless `min` is 1.3) 1.2, resumption by rotating-key tickets and by session id.
pub fn server_config(
    resolver: Arc<SniResolver>,
    min: TlsVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    static ALL: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let versions = match min {
        TlsVersion::Tls12 => ALL,
        TlsVersion::Tls13 => TLS13,
    };
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Ticket keys rotate every 6 hours (rustls' TicketRotator), the previous key still decrypts.
    c.ticketer = rustls::crypto::ring::Ticketer::new()?;
    c.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Arc::new(c))
}

/// What a finished handshake hands to the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2`: the HTTP/2 path.
    H2,
    /// `http/1.1` or nothing negotiated: the HTTP/1.1 engine.
    Http1,
}

/// The accept step of a TLS listener (cheap to clone: one `Arc` inside).
#[derive(Clone)]
pub struct Terminator {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for Terminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminator")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl Terminator {
    /// Accepts handshakes with `config`, each bounded by `handshake_timeout`.
    pub fn new(config: Arc<ServerConfig>, handshake_timeout: Duration) -> Self {
        Self {
            acceptor: TlsAcceptor::from(config),
            handshake_timeout,
        }
    }

    /// How long a handshake may take.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Runs the server side of a handshake with `peer` over `io` (a TCP stream, or one after a
    /// PROXY header), begun at `since`. `None` when it failed or did not finish within the
    /// handshake timeout of `since` (the connection is dropped; the reason is logged at debug
    /// level).
    pub async fn accept<I: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: I,
        peer: SocketAddr,
        since: Instant,
    ) -> Option<(TlsStream<I>, Alpn)> {
        let deadline = since + self.handshake_timeout;
        match tokio::time::timeout_at(deadline, self.acceptor.accept(io)).await {
            Ok(Ok(s)) => {
                let alpn = match s.get_ref().1.alpn_protocol() {
                    Some(b"h2") => Alpn::H2,
                    _ => Alpn::Http1,
                };
                Some((s, alpn))
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, client = %peer, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(client = %peer, timeout = ?self.handshake_timeout, "TLS handshake timed out");
                None
            }
        }
    }
}
