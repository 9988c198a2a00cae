//! Test PKI and TLS clients: a CA and leaf certificates generated at test time with rcgen
//! (nothing with a private key is committed), and the real clients the TLS cases drive —
//! `openssl s_client` and `curl` — run with bounded time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};

/// A CA whose leaves the clients trust through `ca.pem` in `dir`.
pub struct Pki {
    /// Where every file goes.
    pub dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA, its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "meshgate test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let issuer =
            CertifiedIssuer::self_signed(params, key).unwrap_or_else(|e| panic!("CA: {e}"));
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap_or_else(|e| panic!("ca.pem: {e}"));
        Self {
            dir: dir.to_path_buf(),
            issuer,
        }
    }

    /// The CA certificate clients trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf for `names` with serial `serial`, as PEM (certificate, key).
    pub fn leaf(&self, names: &[&str], serial: u64) -> (String, String) {
        self.leaf_with(names, serial, |_| {})
    }

    /// A leaf whose validity ended in 2021 (a year after it began), as PEM (certificate, key).
    pub fn expired_leaf(&self, names: &[&str], serial: u64) -> (String, String) {
        self.leaf_with(names, serial, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    /// A leaf for `names` with serial `serial` and `edit` applied to its parameters.
    fn leaf_with(
        &self,
        names: &[&str],
        serial: u64,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("params: {e}"));
        p.serial_number = Some(SerialNumber::from(serial));
        edit(&mut p);
        let cert = p
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("sign: {e}"));
        (cert.pem(), key.serialize_pem())
    }

    /// Writes a leaf to `dir/<stem>.pem` and `dir/<stem>.key` (creating `dir`'s subfolders).
    pub fn write_leaf(&self, stem: &str, names: &[&str], serial: u64) {
        let (cert, key) = self.leaf(names, serial);
        let pem = self.dir.join(format!("{stem}.pem"));
        if let Some(parent) = pem.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir: {e}"));
        }
        std::fs::write(&pem, cert).unwrap_or_else(|e| panic!("write cert: {e}"));
        std::fs::write(self.dir.join(format!("{stem}.key")), key)
            .unwrap_or_else(|e| panic!("write key: {e}"));
    }
}

/// A self-signed certificate for `names` (no CA vouches for it), as PEM (certificate, key).
pub fn self_signed(names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("key: {e}"));
    let p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("params: {e}"));
    let cert = p
        .self_signed(&key)
        .unwrap_or_else(|e| panic!("self-sign: {e}"));
    (cert.pem(), key.serialize_pem())
}

/// Runs a command with a time limit (the patience), stdin closed. Panics when it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    run_with_input(cmd, None)
}

/// Runs a command with a time limit (the patience), `input` written to its stdin (then
/// closed), or stdin closed at once. Panics when it cannot start.
pub fn run_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    let stdin = match input {
        Some(_) => Stdio::piped(),
        None => Stdio::null(),
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let input = input.map(<[u8]>::to_vec);
    let writer = child.stdin.take();
    std::thread::spawn(move || {
        if let (Some(mut w), Some(input)) = (writer, input) {
            use std::io::Write as _;
            let _ = w.write_all(&input);
        }
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(super::patience()) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{cmd:?}: {e}"),
        Err(_) => {
            // Our own child, by PID.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("{cmd:?} did not finish within {:?}", super::patience());
        }
    }
}

/// What one `openssl s_client` handshake saw.
#[derive(Debug)]
pub struct Handshake {
    /// The handshake completed.
    pub ok: bool,
    /// The served leaf's serial (upper-case hex, as `openssl x509 -serial` prints it).
    pub serial: Option<String>,
    /// The negotiated protocol line (`TLSv1.3`, ...), if any.
    pub protocol: Option<String>,
    /// The session was resumed (`Reused, …` rather than `New, …`).
    pub reused: bool,
    /// Everything printed (for messages).
    pub transcript: String,
}

/// `openssl s_client` to `addr` with `sni` (`None`: `-noservername`) and `extra` flags.
pub fn s_client(addr: SocketAddr, sni: Option<&str>, extra: &[&str]) -> Handshake {
    s_client_with(addr, sni, extra, None)
}

/// [`s_client`] with `input` on its stdin (with `-ign_eof` in `extra` it then waits for the
/// server to close, reading what the server sends after the handshake: TLS 1.3 tickets).
pub fn s_client_with(
    addr: SocketAddr,
    sni: Option<&str>,
    extra: &[&str],
    input: Option<&[u8]>,
) -> Handshake {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client").arg("-connect").arg(addr.to_string());
    match sni {
        Some(n) => cmd.arg("-servername").arg(n),
        None => cmd.arg("-noservername"),
    };
    cmd.args(extra);
    let out = run_with_input(&mut cmd, input);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let transcript = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let pem = stdout.find("-----BEGIN CERTIFICATE-----").and_then(|s| {
        stdout[s..]
            .find("-----END CERTIFICATE-----")
            .map(|e| &stdout[s..s + e + 25])
    });
    let serial = pem.and_then(|pem| {
        let mut c = Command::new("openssl");
        c.args(["x509", "-noout", "-serial"]);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        use std::io::Write as _;
        child.stdin.take()?.write_all(pem.as_bytes()).ok()?;
        let o = child.wait_with_output().ok()?;
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .strip_prefix("serial=")
            .map(str::to_string)
    });
    // "New, TLSv1.3, Cipher is ..." or "Reused, ..." (TLS 1.3 prints no session block before
    // the tickets).
    let (protocol, reused) = stdout
        .lines()
        .find_map(|l| {
            let (rest, reused) = match l.strip_prefix("New, ") {
                Some(rest) => (rest, false),
                None => (l.strip_prefix("Reused, ")?, true),
            };
            Some((rest.split(',').next().map(|p| p.trim().to_string()), reused))
        })
        .unwrap_or((None, false));
    let ok = out.status.success() && pem.is_some() && !transcript.contains("Cipher is (NONE)");
    Handshake {
        ok,
        serial,
        protocol,
        reused,
        transcript,
    }
}

/// `curl` over https to `https://NAME:PORT/PATH` resolved to `addr`, trusting `ca`. Returns
/// (HTTP status, HTTP version as curl reports it, body); status 0 when the request failed.
pub fn curl_https(
    addr: SocketAddr,
    name: &str,
    path: &str,
    ca: &Path,
    extra: &[&str],
) -> (u16, String, String) {
    let url = format!("https://{name}:{}{path}", addr.port());
    let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--resolve", &resolve, "--cacert"])
        .arg(ca)
        .args(extra)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .arg(&url));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut it = tail.split_whitespace();
    let status = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = it.next().unwrap_or("").to_string();
    (status, version, body.to_string())
}

/// An `openssl` that can be asked for a protocol version (`-tls1`, `-tls1_1`): true when a
/// local `openssl s_server` offering only that version completes a handshake with the same
/// client flags. OpenSSL 3 refuses these versions on the client side unless the security level
/// is lowered, so a refusal by the gateway only counts when this is true.
pub fn probe_reaches_old_server(version_flag: &str, cert: &Path, key: &Path) -> bool {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        l.local_addr().map(|a| a.port()).unwrap_or(0)
    };
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", version_flag])
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-cert"])
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(["-accept", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl s_server: {e}"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = tokio::time::Instant::now() + super::patience();
    let reached = loop {
        let h = old_client(addr, version_flag);
        // Until s_server listens, the connect is refused: try again; any other outcome counts.
        if h.ok || !h.transcript.contains("refused") || tokio::time::Instant::now() > deadline {
            break h.ok;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // Our own child, by PID.
    let _ = server.kill();
    let _ = server.wait();
    reached
}

/// `openssl s_client` offering only `version_flag`, with the security level lowered so that the
/// client itself allows it.
pub fn old_client(addr: SocketAddr, version_flag: &str) -> Handshake {
    s_client(
        addr,
        Some("localhost"),
        &[version_flag, "-cipher", "DEFAULT@SECLEVEL=0"],
    )
}

/// An HTTPS origin on 127.0.0.1:0 with a certificate from a [`Pki`], optionally demanding a
/// client certificate signed by the same CA. Every request is answered 200 with
/// `{"origin": NAME, "client_cert": true|false}`. Stops when dropped.
pub struct TlsOrigin {
    /// Bound address.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsOrigin {
    /// Starts it, serving a leaf for `names`; `require_client_cert`: mTLS.
    pub async fn start(pki: &Pki, name: &str, names: &[&str], require_client_cert: bool) -> Self {
        let (cert, key) = pki.leaf(names, 0x4242);
        let client_ca = require_client_cert.then(|| pki.ca());
        Self::start_pem(name, &cert, &key, client_ca.as_deref()).await
    }

    /// Starts it, serving the PEM `cert` and `key` (a self-signed one, say); with `client_ca`
    /// it demands a client certificate signed by that CA.
    pub async fn start_pem(name: &str, cert: &str, key: &str, client_ca: Option<&Path>) -> Self {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("origin cert: {e}"));
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
            .unwrap_or_else(|e| panic!("origin key: {e}"));
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"));
        let builder = if let Some(ca) = client_ca {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap_or_else(|e| panic!("{e}")) {
                roots
                    .add(c.unwrap_or_else(|e| panic!("{e}")))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .unwrap_or_else(|e| panic!("origin config: {e}"));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let name = name.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, name) = (acceptor.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_cert = tls.get_ref().1.peer_certificates().is_some();
                    let svc = hyper::service::service_fn(move |_req| {
                        let body =
                            format!("{{\"origin\":\"{name}\",\"client_cert\":{client_cert}}}");
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `openssl s_server -www` on 127.0.0.1 (an ephemeral port): an HTTPS upstream that is not
/// gatewayd's TLS stack, answering every `GET` with a page describing the handshake, in which
/// `New, TLSv1.3, …` or `Reused, TLSv1.3, …` says whether the client resumed a session. It
/// closes each connection after its answer, so every request is a new handshake. Killed by
/// PID when dropped.
pub struct OpensslWww {
    /// Bound address.
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl OpensslWww {
    /// Starts it with `cert` and `key` and `extra` flags (`-tls1_2` to offer TLS 1.2 only).
    pub fn start(cert: &Path, key: &Path, extra: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new("openssl")
            .args(["s_server", "-www", "-accept", "127.0.0.1:0", "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("openssl s_server: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| unreachable!());
        let (tx, rx) = std::sync::mpsc::channel();
        // Reports the "ACCEPT 127.0.0.1:PORT" line, then drains the rest.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(a) = line.strip_prefix("ACCEPT ") {
                    let _ = tx.send(a.trim().parse::<SocketAddr>());
                }
            }
        });
        match rx.recv_timeout(super::patience()) {
            Ok(Ok(addr)) => Self { addr, child },
            other => {
                // Our own child, by PID.
                let _ = child.kill();
                let _ = child.wait();
                panic!("openssl s_server did not report its address: {other:?}");
            }
        }
    }
}

impl Drop for OpensslWww {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
