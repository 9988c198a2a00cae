//! A real `devconsul` process (the project's Consul-compatible dev server).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context as _};
use serde_json::json;

/// A running devconsul. Killed by PID when dropped.
pub struct DevConsul {
    child: Option<Child>,
    /// Bound address.
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl DevConsul {
    /// Starts devconsul on 127.0.0.1:0.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?)
    }

    /// Starts devconsul on `addr` (to bring it back on the same port after a kill).
    pub fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        let mut child = Command::new(super::binary("devconsul"))
            .arg("--addr")
            .arg(addr.to_string())
            .arg("--max-wait")
            .arg("30s")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn devconsul")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().context("devconsul printed nothing")??;
        let Some(url) = first.strip_prefix("devconsul listening on http://") else {
            let _ = child.kill();
            bail!("unexpected first line from devconsul: {first}");
        };
        let addr = url.trim().parse()?;
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(Self {
            child: Some(child),
            addr,
            http: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers instance `id` of service `name` with `tags` at `at`, with a passing TTL check.
    pub async fn register(
        &self,
        id: &str,
        name: &str,
        tags: &[&str],
        at: SocketAddr,
    ) -> anyhow::Result<()> {
        let body = json!({
            "ID": id, "Name": name, "Tags": tags, "Address": at.ip().to_string(), "Port": at.port(),
            "Check": {"TTL": "300s", "Status": "passing"},
        });
        let r = self
            .http
            .put(format!("{}/v1/agent/service/register", self.url()))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "register {id}: {}", r.status());
        Ok(())
    }

    /// Sets the TTL check of instance `id` to `pass`, `warn` or `fail`.
    pub async fn check(&self, id: &str, status: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!(
                "{}/v1/agent/check/{status}/service:{id}",
                self.url()
            ))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "check {status} {id}: {}",
            r.status()
        );
        Ok(())
    }

    /// Deregisters instance `id`.
    pub async fn deregister(&self, id: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!("{}/v1/agent/service/deregister/{id}", self.url()))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "deregister {id}: {}", r.status());
        Ok(())
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for DevConsul {
    fn drop(&mut self) {
        self.kill();
    }
}
