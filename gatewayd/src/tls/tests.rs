//! Certificates generated in the test with rcgen: loading, refusals naming the file, SNI
//! resolution, swaps, and real handshakes over an in-memory pipe.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rcgen::{CertificateParams, KeyPair, SerialNumber};

use super::*;
use crate::config::{CertKeyPair, ListenerTls, TlsVersion, UpstreamTls};

/// Writes a self-signed certificate for `names` with `serial` (and its key) into `dir`.
fn cert(dir: &Path, file: &str, names: &[&str], serial: u64) -> CertKeyPair {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.serial_number = Some(SerialNumber::from(serial));
    let c = p.self_signed(&key).unwrap();
    write(dir, file, &c.pem(), &key.serialize_pem())
}

fn write(dir: &Path, file: &str, cert: &str, key: &str) -> CertKeyPair {
    let pair = CertKeyPair {
        cert: dir.join(format!("{file}.pem")),
        key: dir.join(format!("{file}.key")),
    };
    std::fs::write(&pair.cert, cert).unwrap();
    std::fs::write(&pair.key, key).unwrap();
    pair
}

fn listener(certificates: Vec<CertKeyPair>, strict: bool) -> ListenerTls {
    ListenerTls {
        certificates,
        default_certificate: 0,
        strict_sni: strict,
        min_version: TlsVersion::Tls12,
        handshake_timeout: std::time::Duration::from_secs(5),
    }
}

fn serial_of(k: &rustls::sign::CertifiedKey) -> String {
    let (_, x) = x509_parser::parse_x509_certificate(k.cert[0].as_ref()).unwrap();
    x.raw_serial_as_string()
}

#[test]
fn loads_names_serial_and_expiry() {
    let d = tempfile::tempdir().unwrap();
    let p = cert(d.path(), "api", &["api.example.com", "*.Example.org"], 7);
    let c = load_pair(&p, SystemTime::now()).unwrap();
    assert_eq!(c.names, vec!["api.example.com", "*.example.org"]);
    assert_eq!(c.serial, "07");
    assert!(c.not_after > 0);
}

#[test]
fn refusals_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    // Not PEM at all.
    let garbage = write(d.path(), "garbage", "hello", "world");
    let e = load_pair(&garbage, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("garbage.pem"), "{e}");
    // Missing file.
    let missing = CertKeyPair {
        cert: d.path().join("nope.pem"),
        key: d.path().join("nope.key"),
    };
    let e = load_pair(&missing, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.pem") && e.contains("cannot read"), "{e}");
    // Key of another certificate.
    let a = cert(d.path(), "a", &["a.test"], 1);
    let b = cert(d.path(), "b", &["b.test"], 2);
    let mixed = CertKeyPair {
        cert: a.cert.clone(),
        key: b.key.clone(),
    };
    let e = load_pair(&mixed, SystemTime::now()).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("b.key") && e.to_string().contains("a.pem"));
    // A key file with no key in it.
    let nokey = CertKeyPair {
        cert: a.cert.clone(),
        key: a.cert.clone(),
    };
    let e = load_pair(&nokey, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(e.contains("a.pem") && e.contains("private key"), "{e}");
}

#[test]
fn expired_certificates_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let c = p.self_signed(&key).unwrap();
    let pair = write(d.path(), "old", &c.pem(), &key.serialize_pem());
    let e = load_pair(&pair, SystemTime::now()).unwrap_err();
    assert!(matches!(e, TlsError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("old.pem"), "{e}");
}

#[test]
fn sni_exact_then_wildcard_then_default() {
    let d = tempfile::tempdir().unwrap();
    let api = load_pair(
        &cert(d.path(), "api", &["api.example.com"], 1),
        SystemTime::now(),
    )
    .unwrap();
    let wild = load_pair(
        &cert(d.path(), "wild", &["*.example.com"], 2),
        SystemTime::now(),
    )
    .unwrap();
    let certs = vec![api, wild];
    let s = CertStore::new(&certs, 0, false);
    let serial = |n: Option<&str>| s.lookup(n).map(|k| serial_of(&k));
    assert_eq!(serial(Some("api.example.com")).as_deref(), Some("01"));
    assert_eq!(serial(Some("API.example.com.")).as_deref(), Some("01"));
    assert_eq!(serial(Some("www.example.com")).as_deref(), Some("02"));
    // One label only: neither the apex nor two labels match the wildcard.
    assert_eq!(serial(Some("a.b.example.com")).as_deref(), Some("01"));
    assert_eq!(serial(Some("example.com")).as_deref(), Some("01"));
    assert_eq!(serial(None).as_deref(), Some("01"));
    let strict = CertStore::new(&certs, 1, true);
    assert!(strict.lookup(Some("other.test")).is_none());
    assert!(strict.lookup(None).is_none());
    assert!(strict.lookup(Some("x.example.com")).is_some());
    let default_wild = CertStore::new(&certs, 1, false);
    assert_eq!(
        default_wild
            .lookup(Some("other.test"))
            .map(|k| serial_of(&k))
            .as_deref(),
        Some("02")
    );
}

/// Handshakes `server` with a client trusting `trust`, SNI `sni`; returns the served serial and
/// the negotiated ALPN.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    trust: &CertKeyPair,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<(String, Option<Vec<u8>>), String> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&trust.cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cc = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let srv = tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cc))
        .connect(name, b)
        .await
        .map_err(|e| e.to_string())?;
    let _ = srv.await;
    let (_, c) = conn.get_ref();
    let serial = serial_of_der(&c.peer_certificates().unwrap()[0]);
    Ok((serial, c.alpn_protocol().map(<[u8]>::to_vec)))
}

fn serial_of_der(d: &rustls::pki_types::CertificateDer<'_>) -> String {
    let (_, x) = x509_parser::parse_x509_certificate(d.as_ref()).unwrap();
    x.raw_serial_as_string()
}

#[tokio::test]
async fn handshakes_pick_by_sni_negotiate_alpn_and_see_swaps() {
    let d = tempfile::tempdir().unwrap();
    let api = cert(d.path(), "api", &["api.example.com"], 1);
    let wild = cert(d.path(), "wild", &["*.example.com"], 2);
    let l = ListenerCerts::load("tls", &listener(vec![api.clone(), wild.clone()], false)).unwrap();
    let server = l.server();
    let (s, alpn) = handshake(
        server.clone(),
        &api,
        "api.example.com",
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    assert_eq!((s.as_str(), alpn.as_deref()), ("01", Some(&b"h2"[..])));
    let (s, alpn) = handshake(server.clone(), &wild, "www.example.com", &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(
        (s.as_str(), alpn.as_deref()),
        ("02", Some(&b"http/1.1"[..]))
    );
    // A new certificate renamed over the old one: new handshakes get it.
    let new = cert(d.path(), "api-new", &["api.example.com"], 3);
    std::fs::rename(&new.cert, &api.cert).unwrap();
    std::fs::rename(&new.key, &api.key).unwrap();
    assert_eq!(l.reload_if_changed(), Some(Ok(())));
    assert_eq!(l.reload_if_changed(), None);
    let server = l.server();
    let (s, _) = handshake(server, &api, "api.example.com", &[])
        .await
        .unwrap();
    assert_eq!(s, "03");
}

#[test]
fn a_bad_reload_keeps_the_old_certificates_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let api = cert(d.path(), "api", &["api.example.com"], 1);
    let l = ListenerCerts::load("tls", &listener(vec![api.clone()], false)).unwrap();
    std::fs::write(&api.cert, "not a certificate").unwrap();
    let e = l.reload().unwrap_err();
    assert!(e.contains("api.pem"), "{e}");
    let st = l.status();
    assert!(!st.ok && st.error.as_deref() == Some(e.as_str()));
    assert_eq!(st.certificates[0].serial, "01");
    assert_eq!(
        l.resolver()
            .lookup(Some("api.example.com"))
            .map(|k| serial_of(&k))
            .as_deref(),
        Some("01")
    );
    let prom = prometheus(&[st]);
    assert!(
        prom.contains("meshgate_tls_certificates_ok{listener=\"tls\"} 0"),
        "{prom}"
    );
    assert!(
        prom.contains(
            "meshgate_tls_certificate_expiry_seconds{listener=\"tls\",name=\"api.example.com\""
        ),
        "{prom}"
    );
    // Repaired: served again, status clean.
    let fixed = cert(d.path(), "fixed", &["api.example.com"], 9);
    std::fs::rename(&fixed.cert, &api.cert).unwrap();
    std::fs::rename(&fixed.key, &api.key).unwrap();
    assert_eq!(l.reload_if_changed(), Some(Ok(())));
    assert!(l.status().ok);
    assert_eq!(l.status().certificates[0].serial, "09");
}

#[test]
fn upstream_client_configs() {
    let d = tempfile::tempdir().unwrap();
    let ca = cert(d.path(), "ca", &["upstream.test"], 1);
    let client = cert(d.path(), "client", &["client.test"], 2);
    let t = UpstreamTls {
        ca_file: Some(ca.cert.clone()),
        server_name: Some("upstream.test".into()),
        client_cert: Some(client.cert.clone()),
        client_key: Some(client.key.clone()),
        insecure_skip_verify: false,
    };
    let c = client_config(&t).unwrap();
    assert!(c.client_auth_cert_resolver.has_certs());
    let webpki = client_config(&UpstreamTls {
        ca_file: None,
        server_name: None,
        client_cert: None,
        client_key: None,
        insecure_skip_verify: false,
    });
    assert!(webpki.is_ok());
    let bad = UpstreamTls {
        client_key: Some(ca.key.clone()),
        ..t.clone()
    };
    let e = client_config(&bad).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    let missing = UpstreamTls {
        ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
        ..t
    };
    assert!(client_config(&missing)
        .unwrap_err()
        .to_string()
        .contains("ca.pem"));
}
