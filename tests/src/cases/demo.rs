//! `gatewayd demo` end to end: the real binary on ephemeral ports starts dev Consul, the blue
//! and green instances and the gateway; traffic reaches blue, discovery reports both services
//! from Consul, a flip moves traffic to green (and `gwctl routes` agrees), SIGTERM exits 0.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::gwctl::run_raw;
use meshgate_e2e::harness::{binary, patience, trace_init};
use serde_json::Value;

use super::support::client;

/// A running `gatewayd demo`, killed (by PID) when dropped.
struct Demo {
    child: Option<Child>,
    proxy: String,
    admin: String,
    consul: String,
    token_file: PathBuf,
    /// Every stdout/stderr line so far, for failure messages.
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the demo on port 0 everywhere with its state in a new temporary directory, and
    /// waits for the address lines and `demo: ready`.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary("gatewayd"))
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--consul", "127.0.0.1:0", "--rps", "5", "--state-dir"])
            .arg(dir.path())
            .env_remove("MESHGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let (lines, tx) = (lines.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("MESHGATE_TEST_ECHO").is_some() {
                        eprintln!("demo| {line}");
                    }
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let mut demo = Self {
            child: Some(child),
            proxy: String::new(),
            admin: String::new(),
            consul: String::new(),
            token_file: dir.path().join("admin.token"),
            lines,
            _dir: dir,
        };
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                panic!("gatewayd demo did not get ready:\n{}", demo.output());
            };
            let url = |prefix: &str| line.strip_prefix(prefix).map(str::to_owned);
            if let Some(u) = url("demo: proxy ") {
                demo.proxy = u;
            } else if let Some(u) = url("demo: admin ") {
                demo.admin = u;
            } else if let Some(u) = url("demo: consul ") {
                demo.consul = u;
            } else if line == "demo: ready" {
                break;
            }
        }
        for (what, url) in [
            ("proxy", &demo.proxy),
            ("admin", &demo.admin),
            ("consul", &demo.consul),
        ] {
            assert!(
                url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
                "{what} line missing or unresolved ({url:?}):\n{}",
                demo.output()
            );
        }
        demo
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .unwrap()
            .trim()
            .to_string()
    }

    /// Sends SIGTERM (by PID) and waits, bounded, for the exit code.
    async fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed");
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s.code();
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gatewayd demo did not exit within {:?} of SIGTERM:\n{}",
                    patience(),
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Our own child, by its PID.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `x-demo-instance` of `n` requests through the proxy (each must answer 200).
async fn instances(http: &reqwest::Client, demo: &Demo, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let resp = http.get(format!("{}/", demo.proxy)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{:?}", resp.headers());
        let who = resp.headers()["x-demo-instance"]
            .to_str()
            .unwrap()
            .to_string();
        let body = resp.text().await.unwrap();
        assert!(body.contains(&who), "body {body:?} does not name {who}");
        out.push(who);
    }
    out
}

fn all_of(color: &str, who: &[String]) -> bool {
    who.iter().all(|w| w.starts_with(&format!("{color}-")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_blue_flips_to_green_and_stops_cleanly() {
    trace_init();
    let mut demo = Demo::start();
    let http = client();
    let token = demo.token();
    assert!(!token.is_empty());

    // Route web starts 100/0: only blue instances answer.
    let who = instances(&http, &demo, 10).await;
    assert!(all_of("blue", &who), "expected blue only: {who:?}");

    // Discovery: both services from Consul with all 3 instances (churn takes at most one away
    // at a time, for a few seconds).
    let upstreams = || async {
        let v: Value = http
            .get(format!("{}/v1/upstreams", demo.admin))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let count = |name: &str| {
            v.as_array()?
                .iter()
                .find(|u| u["service"] == name && u["source"] == "consul")?["endpoints"]
                .as_array()
                .map(Vec::len)
        };
        (count("blue") == Some(3) && count("green") == Some(3)).then_some(())
    };
    eventually(
        "blue and green from consul with 3 endpoints each",
        upstreams,
    )
    .await;

    // Flip through the admin API: traffic moves to green.
    let resp = http
        .post(format!("{}/v1/routes/web/flip", demo.admin))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    eventually("green answers every request", || async {
        all_of("green", &instances(&http, &demo, 5).await).then_some(())
    })
    .await;

    // The real gwctl sees the same.
    let run = run_raw(
        &[
            "routes".into(),
            "--json".into(),
            "--admin".into(),
            demo.admin.clone(),
            "--token-file".into(),
            demo.token_file.display().to_string(),
        ],
        patience(),
    )
    .await;
    run.expect_code(0);
    let routes = run.json();
    let web = routes
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "web")
        .unwrap_or_else(|| panic!("no route web in {routes}"));
    let weight = |name: &str| {
        web["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .and_then(|b| b["weight"].as_u64())
    };
    assert_eq!(
        (weight("blue"), weight("green")),
        (Some(0), Some(100)),
        "{web}"
    );

    let code = demo.terminate().await;
    assert_eq!(code, Some(0), "exit after SIGTERM:\n{}", demo.output());
    assert!(demo.output().contains("demo: stopped"), "{}", demo.output());
}
