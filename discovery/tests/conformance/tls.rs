//! `https://` Consul addresses: the client verifies devconsul's certificate against
//! `ca_file`, and a wrong CA fails the read with a TLS error instead of a panic. The CA and the
//! server certificate are generated at test time with rcgen (nothing checked in can expire).

use std::path::{Path, PathBuf};

use discovery::consul::{AgentServiceCheck, AgentServiceRegistration, HealthQuery, QueryOptions};
use discovery::devconsul::DevConsul;
use discovery::{ConsulClient, DiscoveryError};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::harness::{unique, within, Target};

/// PEM files of one test PKI, in a temporary directory removed on drop.
struct Pki {
    _dir: tempfile::TempDir,
    /// The CA that signed `server_cert`.
    ca: PathBuf,
    /// An unrelated CA, for the negative cases.
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A CA and a server certificate for `127.0.0.1` and `localhost` signed by it.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("meshgate test CA");
    let other = ca("someone else's CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    Pki {
        ca: write(dir.path(), "ca.pem", &issuer.pem()),
        other_ca: write(dir.path(), "other-ca.pem", &other.pem()),
        server_cert: write(dir.path(), "server.pem", &server.pem()),
        server_key: write(dir.path(), "server.key", &server_key.serialize_pem()),
        _dir: dir,
    }
}

fn target(dev: discovery::devconsul::RunningDevConsul) -> Target {
    Target {
        name: "devconsul (https)".into(),
        address: dev.url().parse().unwrap(),
        token: None,
        dev: Some(dev),
    }
}

async fn https_target(pki: &Pki) -> Target {
    let dev = DevConsul::builder()
        .tls(&pki.server_cert, &pki.server_key)
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    target(dev)
}

/// The read error of a client that must not trust the server: a transport error naming the
/// certificate problem.
async fn assert_tls_rejected(client: &ConsulClient, what: &str) {
    let err = within(client.kv_get("tls/none", QueryOptions::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DiscoveryError::Transport { reason, .. } if reason.contains("certificate")),
        "{what}: expected a certificate error, got {err}"
    );
}

#[tokio::test]
async fn https_client_with_ca_file_reads_kv_and_health() {
    let pki = pki();
    let t = https_target(&pki).await;
    assert!(t.address.to_string().starts_with("https://127.0.0.1:"));
    let client = t.client_with(|c| c.ca_file = Some(pki.ca.clone()));

    let key = unique("tls/kv");
    assert!(within(client.kv_put(&key, b"over tls", None))
        .await
        .unwrap());
    let got = within(client.kv_get(&key, QueryOptions::default()))
        .await
        .unwrap();
    assert_eq!(got.value.unwrap().value, b"over tls");
    assert!(got.meta.index > 1);

    let service = unique("tls-svc");
    let registration = AgentServiceRegistration {
        id: Some(format!("{service}-1")),
        name: service.clone(),
        address: "10.1.2.3".into(),
        port: 8443,
        check: Some(AgentServiceCheck {
            ttl: Some("30s".into()),
            status: Some("passing".into()),
            ..AgentServiceCheck::default()
        }),
        ..AgentServiceRegistration::default()
    };
    within(client.agent_service_register(&registration, false))
        .await
        .unwrap();
    let query = HealthQuery {
        passing_only: true,
        ..HealthQuery::default()
    };
    let health = within(client.health_service(&service, &query, QueryOptions::default()))
        .await
        .unwrap();
    assert_eq!(health.value.len(), 1, "{:?}", health.value);
    assert_eq!(health.value[0].host(), "10.1.2.3");
    assert_eq!(health.value[0].service.port, 8443);

    // A blocking read over the same pooled TLS connection wakes on a write.
    let index = got.meta.index;
    let writer = t.client_with(|c| c.ca_file = Some(pki.ca.clone()));
    let blocked = client.kv_get(
        &key,
        QueryOptions {
            index,
            wait: Some(std::time::Duration::from_secs(10)),
        },
    );
    let (blocked, put) =
        within(async { tokio::join!(blocked, writer.kv_put(&key, b"v2", None)) }).await;
    assert!(put.unwrap());
    let blocked = blocked.unwrap();
    assert!(blocked.meta.index > index);
    assert_eq!(blocked.value.unwrap().value, b"v2");
}

#[tokio::test]
async fn https_read_fails_with_a_tls_error_without_the_right_ca() {
    let pki = pki();
    let t = https_target(&pki).await;
    let wrong_ca = t.client_with(|c| c.ca_file = Some(pki.other_ca.clone()));
    assert_tls_rejected(&wrong_ca, "other CA").await;
    // No ca_file: only the bundled public roots are trusted, and they did not sign this one.
    let public_roots = t.client();
    assert_tls_rejected(&public_roots, "webpki roots").await;
    // The server is still fine for a client that trusts it.
    let good = t.client_with(|c| c.ca_file = Some(pki.ca.clone()));
    within(good.kv_get("tls/none", QueryOptions::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn devconsul_refuses_an_unusable_certificate() {
    let pki = pki();
    let err = DevConsul::builder()
        .tls(&pki.ca, &pki.ca)
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, discovery::devconsul::DevConsulError::Tls { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn devconsul_binary_serves_https_with_tls_flags() {
    use tokio::io::AsyncBufReadExt;
    let pki = pki();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_devconsul"))
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--tls-cert")
        .arg(&pki.server_cert)
        .arg("--tls-key")
        .arg(&pki.server_key)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = within(lines.next_line()).await.unwrap().unwrap();
    let url = line.strip_prefix("devconsul listening on ").unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    let t = Target {
        name: "devconsul binary (https)".into(),
        address: url.parse().unwrap(),
        token: None,
        dev: None,
    };
    let client = t.client_with(|c| c.ca_file = Some(pki.ca.clone()));
    let got = within(client.kv_get("tls/none", QueryOptions::default()))
        .await
        .unwrap();
    assert!(got.value.is_none());
    child.kill().await.unwrap();
}
