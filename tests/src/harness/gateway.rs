//! A real `gatewayd` process.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};

/// Path of a workspace binary, found next to the running test executable (Cargo only sets
/// `CARGO_BIN_EXE_*` for the package that owns the binary). `.ci/run` builds the binaries first.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A running gatewayd with its own temporary directory (config, token, state).
pub struct Gateway {
    child: Option<Child>,
    /// Temporary directory holding `gatewayd.toml`, `admin.token` and `weights.json`.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Proxy listener (the first one).
    pub addr: SocketAddr,
    /// Every proxy listener, in the config's order.
    pub listeners: Vec<SocketAddr>,
    /// Admin API.
    pub admin: SocketAddr,
    /// Admin bearer token.
    pub token: String,
    /// Every stdout/stderr line so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// The sections every test config gets, unless the body overrides them: ephemeral ports, a
/// token file and a state file in the gateway's directory, debug-level JSON logs.
pub fn preamble(workers: usize) -> String {
    format!(
        "[gateway]\nworkers = {workers}\ndrain_timeout = \"10s\"\nstate_file = \"weights.json\"\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n[log]\nlevel = \"info,gatewayd=debug\"\nformat = \"json\"\n\n"
    )
}

impl Gateway {
    /// Starts gatewayd on `preamble(2) + body` in a new temporary directory.
    pub fn start(body: &str) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("gatewayd.toml"), format!("{}{body}", preamble(2)))?;
        let mut g = Self::start_in(&dir)?;
        g._tmp = Some(tmp);
        Ok(g)
    }

    /// Starts gatewayd on `dir/gatewayd.toml` (an existing directory: restarts keep its state).
    pub fn start_in(dir: &Path) -> anyhow::Result<Self> {
        Self::start_as(dir, &binary("gatewayd"), &[], &[])
    }

    /// Starts `exe` (a gatewayd binary, possibly a copy) on `dir/gatewayd.toml` with `extra`
    /// arguments (`--takeover`) and environment variables, once it reports its addresses.
    pub fn start_as(
        dir: &Path,
        exe: &Path,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(dir.join("gatewayd.toml"))
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn gatewayd")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("MESHGATE_TEST_ECHO").is_some() {
                        eprintln!("gatewayd| {line}");
                    }
                    logs.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let (mut addr, mut admin) = (None, None);
        let mut listeners = Vec::new();
        let deadline = tokio::time::Instant::now() + super::patience();
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                bail!(
                    "gatewayd did not report its addresses; logs:\n{}",
                    logs.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                );
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match v["message"].as_str() {
                Some("listening") => {
                    let a: Option<SocketAddr> = v["addr"].as_str().and_then(|a| a.parse().ok());
                    listeners.extend(a);
                    addr = addr.or(a);
                }
                Some("admin API listening") => {
                    admin = v["admin_addr"].as_str().and_then(|a| a.parse().ok())
                }
                _ => {}
            }
        }
        let token = std::fs::read_to_string(dir.join("admin.token"))?
            .trim()
            .to_string();
        Ok(Self {
            child: Some(child),
            dir: dir.to_path_buf(),
            _tmp: None,
            addr: addr.unwrap_or_else(|| unreachable!()),
            listeners,
            admin: admin.unwrap_or_else(|| unreachable!()),
            token,
            logs,
        })
    }

    /// PID of the process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `http://ADDR` of the proxy.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://ADMIN` of the admin API.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// A request builder to the admin API carrying the token.
    pub fn admin_req(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        client
            .request(method, self.admin_url(path))
            .bearer_auth(&self.token)
    }

    /// `GET` of an admin API path with the token, decoded as JSON (panics on any failure: tests).
    pub async fn admin_get_json(&self, client: &reqwest::Client, path: &str) -> serde_json::Value {
        let r = self
            .admin_req(client, reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// `GET` of an admin API path with the token, as text (`/metrics`; panics on failure: tests).
    pub async fn admin_get_text(&self, client: &reqwest::Client, path: &str) -> String {
        let r = self
            .admin_req(client, reqwest::Method::GET, path)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.text().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Rewrites the config file (the daemon reloads it on change).
    pub fn write_config(&self, body: &str) -> anyhow::Result<()> {
        let tmp = self.dir.join(".gatewayd.toml.new");
        std::fs::write(&tmp, format!("{}{body}", preamble(2)))?;
        std::fs::rename(tmp, self.dir.join("gatewayd.toml"))?;
        Ok(())
    }

    /// Sends SIGTERM and waits (up to patience) for the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.pid();
        self.reap_within_patience(|| signal(pid, "TERM"), "after SIGTERM")
    }

    /// Waits (up to patience) for the process to exit by itself.
    pub fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        self.reap_within_patience(|| {}, "by itself")
    }

    /// Runs `first`, then waits (up to patience) for the exit status; past that the process is
    /// killed and reaped, and the error says it did not exit `how`.
    fn reap_within_patience(
        &mut self,
        first: impl FnOnce(),
        how: &str,
    ) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("already stopped")
        };
        first();
        let deadline = tokio::time::Instant::now() + super::patience();
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s);
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("gatewayd did not exit {how}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`USR2`) to the process.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Sends SIGHUP (reload).
    pub fn hangup(&self) {
        signal(self.pid(), "HUP");
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// True when a log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.contains(needle))
    }

    /// Peak resident memory (VmHWM) in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

fn signal(pid: u32, sig: &str) {
    // Our own child's PID: nothing else can be signalled by mistake.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}
