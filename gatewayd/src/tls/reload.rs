//! A TLS listener's certificates over time: loaded at start (a failure stops the start),
//! re-read when their files change (polled: a rename over the file and a symlink swap both
//! change what `stat` sees, which inotify on a symlinked directory does not always report), on
//! SIGHUP and on `POST /v1/reload`. A failed reload keeps the previous certificates serving and
//! is reported by [`ListenerCerts::status`] until a later reload succeeds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::acceptor::Terminator;
use super::{load_pair, server_config, CertStore, LoadedCert, SniResolver, TlsError};
use crate::config::{Config, ListenerTls};

/// How often the certificate files are checked for changes (the bound is 2 s).
pub const POLL: Duration = Duration::from_millis(500);

/// One served certificate, as `/v1/config` and `/readyz` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStatus {
    /// Certificate file.
    pub cert: String,
    /// Key file.
    pub key: String,
    /// Names served (SAN DNS names).
    pub names: Vec<String>,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Serial number (hex bytes, `:`-separated).
    pub serial: String,
}

/// A TLS listener's certificate state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsListenerStatus {
    /// Listener name.
    pub listener: String,
    /// False when the last reload was refused (the certificates below keep serving).
    pub ok: bool,
    /// Why the last reload was refused (names the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Certificates serving now.
    pub certificates: Vec<CertStatus>,
}

/// What `stat` says about one file (following symlinks); a change triggers a reload.
type Stamp = Option<(u64, u64, Option<SystemTime>, u64)>;

#[derive(Debug)]
struct State {
    serving: Vec<LoadedCert>,
    error: Option<String>,
    stamps: Vec<Stamp>,
}

/// A TLS listener's resolver, server configuration and reload state.
#[derive(Debug)]
pub struct ListenerCerts {
    /// Listener name.
    pub listener: String,
    config: ListenerTls,
    resolver: Arc<SniResolver>,
    terminator: Terminator,
    server: Arc<rustls::ServerConfig>,
    state: Mutex<State>,
}

fn load_all(cfg: &ListenerTls) -> Result<Vec<LoadedCert>, TlsError> {
    let now = SystemTime::now();
    cfg.certificates.iter().map(|p| load_pair(p, now)).collect()
}

fn stamps(cfg: &ListenerTls) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    cfg.certificates
        .iter()
        .flat_map(|p| [&p.cert, &p.key])
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.modified().ok(), m.len()))
        })
        .collect()
}

impl ListenerCerts {
    /// Loads the listener's certificates; any failure is returned (the gateway does not start).
    pub fn load(listener: &str, config: &ListenerTls) -> Result<Self, TlsError> {
        let stamps = stamps(config);
        let serving = load_all(config)?;
        let resolver = Arc::new(SniResolver::new(CertStore::new(
            &serving,
            config.default_certificate,
            config.strict_sni,
        )));
        let server = server_config(resolver.clone(), config.min_version)?;
        Ok(Self {
            listener: listener.to_string(),
            terminator: Terminator::new(server.clone(), config.handshake_timeout),
            server,
            config: config.clone(),
            resolver,
            state: Mutex::new(State {
                serving,
                error: None,
                stamps,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The accept step for this listener's workers.
    pub fn terminator(&self) -> Terminator {
        self.terminator.clone()
    }

    /// The listener's server configuration (one per listener, shared by its workers, so the
    /// session cache and ticket keys are too).
    pub fn server(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }

    /// The resolver (tests and diagnostics).
    pub fn resolver(&self) -> &SniResolver {
        &self.resolver
    }

    /// Re-reads every file. On success new handshakes get the new certificates; on failure the
    /// previous ones keep serving and the error is remembered for [`Self::status`].
    pub fn reload(&self) -> Result<(), String> {
        let stamps = stamps(&self.config);
        let result = load_all(&self.config);
        let mut st = self.lock();
        st.stamps = stamps;
        match result {
            Ok(serving) => {
                self.resolver.swap(CertStore::new(
                    &serving,
                    self.config.default_certificate,
                    self.config.strict_sni,
                ));
                let serials: Vec<&str> = serving.iter().map(|c| c.serial.as_str()).collect();
                tracing::info!(listener = %self.listener, ?serials, "TLS certificates loaded");
                st.serving = serving;
                st.error = None;
                Ok(())
            }
            Err(e) => {
                let e = e.to_string();
                tracing::warn!(listener = %self.listener, error = %e, "TLS certificates refused; the previous ones keep serving");
                st.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Reloads when a file changed since the last load (or reload attempt).
    pub fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let now = stamps(&self.config);
        if self.lock().stamps == now {
            return None;
        }
        Some(self.reload())
    }

    /// What serves now and whether the last reload was refused.
    pub fn status(&self) -> TlsListenerStatus {
        let st = self.lock();
        TlsListenerStatus {
            listener: self.listener.clone(),
            ok: st.error.is_none(),
            error: st.error.clone(),
            certificates: st
                .serving
                .iter()
                .map(|c| CertStatus {
                    cert: c.cert_file.display().to_string(),
                    key: c.key_file.display().to_string(),
                    names: c.names.clone(),
                    not_after: c.not_after,
                    serial: c.serial.clone(),
                })
                .collect(),
        }
    }
}

/// Polls every listener's files until shutdown; `on_change` hears each reload's outcome.
pub fn spawn_poller(
    listeners: Vec<Arc<ListenerCerts>>,
    mut shutdown: watch::Receiver<bool>,
    on_change: impl Fn(&ListenerCerts, &Result<(), String>) + Send + 'static,
) {
    if listeners.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = crate::proxy::stopped(&mut shutdown) => return,
            }
            for l in &listeners {
                let l2 = l.clone();
                let r = tokio::task::spawn_blocking(move || l2.reload_if_changed()).await;
                if let Ok(Some(r)) = r {
                    on_change(l, &r);
                }
            }
        }
    });
}

/// Everything `gatewayd check` reads besides the TOML: every listener's certificates and keys
/// and every service's upstream TLS files. Each problem names its file.
pub fn check_config(config: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let now = SystemTime::now();
    for l in &config.listeners {
        for p in l.tls.iter().flat_map(|t| &t.certificates) {
            if let Err(e) = load_pair(p, now) {
                errors.push(format!("listener {}: {e}", l.name));
            }
        }
    }
    for (name, s) in &config.services {
        if let Some(t) = &s.tls {
            if let Err(e) = super::client_config(t) {
                errors.push(format!("services.{name}.tls: {e}"));
            }
        }
    }
    errors
}

/// Prometheus lines for the TLS listeners: `meshgate_tls_certificate_expiry_seconds` (end of
/// validity as Unix time, per listener and name) and `meshgate_tls_certificates_ok` (0 while a
/// refused reload is in force).
pub fn prometheus(statuses: &[TlsListenerStatus]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if statuses.is_empty() {
        return o;
    }
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(o, "# HELP meshgate_tls_certificate_expiry_seconds End of validity (Unix time) of the certificate serving each name.");
    let _ = writeln!(o, "# TYPE meshgate_tls_certificate_expiry_seconds gauge");
    for s in statuses {
        for c in &s.certificates {
            let names: Vec<&str> = if c.names.is_empty() {
                vec![""]
            } else {
                c.names.iter().map(String::as_str).collect()
            };
            for n in names {
                let _ = writeln!(
                    o,
                    "meshgate_tls_certificate_expiry_seconds{{listener=\"{}\",name=\"{}\",file=\"{}\"}} {}",
                    esc(&s.listener),
                    esc(n),
                    esc(&c.cert),
                    c.not_after
                );
            }
        }
    }
    let _ = writeln!(o, "# HELP meshgate_tls_certificates_ok 1 when the listener's last certificate (re)load succeeded, 0 while a refused one keeps the previous certificates serving.");
    let _ = writeln!(o, "# TYPE meshgate_tls_certificates_ok gauge");
    for s in statuses {
        let _ = writeln!(
            o,
            "meshgate_tls_certificates_ok{{listener=\"{}\"}} {}",
            esc(&s.listener),
            u8::from(s.ok)
        );
    }
    o
}
