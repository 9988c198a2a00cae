//! A real Prometheus server (Debian's `prometheus`, installed by `tests/run.sh`) on loopback,
//! with its TSDB in a temporary directory, and its HTTP query API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// A running Prometheus. Killed by PID when dropped.
pub struct Prometheus {
    child: Option<Child>,
    /// Address of its HTTP API.
    pub addr: SocketAddr,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// A port on 127.0.0.1 that nothing listens on now: bound by the OS, then closed.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

impl Prometheus {
    /// Starts `prometheus` with `config` (prometheus.yml text; `rule_files` paths absolute) and
    /// waits until it is ready. Its TSDB lives in a temporary directory removed on drop.
    pub async fn start(config: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config)?;
        // Prometheus cannot report a port it chose itself: take a free one from the OS.
        let addr = free_port()?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn prometheus (tests/run.sh installs Debian's `prometheus`)")?;
        let mut p = Self {
            child: Some(child),
            addr,
            http: reqwest::Client::builder().no_proxy().build()?,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + super::patience();
        loop {
            if let Some(c) = p.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    let mut err = String::new();
                    if let Some(mut e) = c.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    bail!("prometheus exited with {status}: {err}");
                }
            }
            let ready = p
                .http
                .get(format!("http://{addr}/-/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(p);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("prometheus not ready on {addr}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `GET /api/v1/<path>` with `params`; the `data` member of a `success` answer.
    pub async fn api(&self, path: &str, params: &[(&str, &str)]) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("http://{}/api/v1/{path}", self.addr))
            .query(params)
            .send()
            .await?;
        let v: Value = r.json().await?;
        if v["status"] != "success" {
            bail!("{path} {params:?}: {v}");
        }
        Ok(v["data"].clone())
    }

    /// An instant query at `time` (Unix seconds; None: now): its `result` array.
    pub async fn query(&self, expr: &str, time: Option<f64>) -> anyhow::Result<Vec<Value>> {
        let t = time.map(|t| format!("{t:.3}"));
        let mut params = vec![("query", expr)];
        if let Some(t) = &t {
            params.push(("time", t));
        }
        let data = self.api("query", &params).await?;
        match &data["result"] {
            Value::Array(a) => Ok(a.clone()),
            // Scalars and strings: one value.
            other => Ok(vec![serde_json::json!({ "metric": {}, "value": other })]),
        }
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sample value of one instant-vector element (`"NaN"` parses as NaN).
pub fn value(v: &Value) -> f64 {
    v["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Runs `promtool` with `args` in `dir` (stdin: the file `stdin`, if given), bounded by the
/// patience; its exit status success and its stdout + stderr.
pub fn promtool(dir: &Path, args: &[&str], stdin: Option<&Path>) -> (bool, String) {
    let input = match stdin {
        Some(p) => {
            Stdio::from(std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        }
        None => Stdio::null(),
    };
    let child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool (tests/run.sh installs `prometheus`): {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(super::patience()) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("promtool {args:?}: {e}"),
        Err(_) => {
            // Our own child, by PID.
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!(
                "promtool {args:?} did not finish within {:?}",
                super::patience()
            );
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
