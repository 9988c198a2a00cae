//! Zero-downtime restart and upgrade: the listening sockets handed to a successor
//! (`[gateway] handover_socket`, SIGUSR2 or `gatewayd --takeover`) under steady load from
//! clients that open a connection per request, keep-alive clients and an admin poller. Each
//! scenario prints what it sent, what succeeded and what failed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::gateway::{binary, preamble};
use meshgate_e2e::harness::tls::Pki;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};

use super::support::service;

/// Requests one load client sends at most (the loop ends earlier when the scenario is done).
const MAX_PER_CLIENT: u64 = 50_000;

/// What one kind of client saw.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    /// The first few failures, for the report.
    errors: Mutex<Vec<String>>,
}

/// Steady load on a gateway's proxy and admin addresses until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    /// Per kind of client: its name and what it saw.
    kinds: Vec<(&'static str, Arc<Tally>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Where the load goes.
struct Targets {
    /// The cleartext listener.
    proxy: SocketAddr,
    /// The admin API.
    admin: SocketAddr,
    /// A TLS listener serving `api.test`, and the CA that signed its certificate.
    tls: Option<(SocketAddr, Vec<u8>)>,
    /// A listener that expects a PROXY protocol header.
    proxy_protocol: Option<SocketAddr>,
}

// === impl Tally ===

impl Tally {
    fn record(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok.fetch_add(1, Relaxed),
            Err(e) => {
                let mut errors = self.errors.lock().unwrap();
                if errors.len() < 5 {
                    errors.push(e);
                }
                self.failed.fetch_add(1, Relaxed)
            }
        };
    }

    fn report(&self, scenario: &str, kind: &str) -> (u64, u64) {
        let (sent, ok, failed) = (
            self.sent.load(Relaxed),
            self.ok.load(Relaxed),
            self.failed.load(Relaxed),
        );
        println!(
            "{scenario}: {kind}: sent {sent}, succeeded {ok}, failed {failed} {:?}",
            self.errors.lock().unwrap()
        );
        (ok, failed)
    }
}

// === impl Load ===

impl Load {
    /// Per listener, clients opening a new connection per request and keep-alive clients
    /// (PROXY protocol: new connections only), and one admin poller (`GET /readyz`, a new
    /// connection each time, every 10 ms).
    fn start(t: Targets) -> Self {
        let mut load = Self {
            stop: Arc::new(AtomicBool::new(false)),
            kinds: Vec::new(),
            tasks: Vec::new(),
        };
        let plain = format!("http://{}/", t.proxy);
        for (kind, keep) in [("new connection per request", false), ("keep-alive", true)] {
            for _ in 0..2 {
                let (http, plain) = (client(keep, None), plain.clone());
                load.client(kind, Duration::ZERO, move || {
                    let (http, url) = (http.clone(), plain.clone());
                    async move { get(&http, &url).await }
                });
            }
        }
        if let Some((addr, ca)) = t.tls {
            for (kind, keep) in [
                ("tls, new connection per request", false),
                ("tls, keep-alive", true),
            ] {
                let http = client(keep, Some((addr, &ca)));
                load.client(kind, Duration::ZERO, move || {
                    let http = http.clone();
                    async move { get(&http, &format!("https://api.test:{}/", addr.port())).await }
                });
            }
        }
        if let Some(addr) = t.proxy_protocol {
            load.client(
                "proxy protocol, new connection per request",
                Duration::ZERO,
                move || proxied_get(addr),
            );
        }
        let (http, url) = (client(false, None), format!("http://{}/readyz", t.admin));
        load.client("admin /readyz", Duration::from_millis(10), move || {
            let (http, url) = (http.clone(), url.clone());
            async move { get(&http, &url).await }
        });
        load
    }

    /// A client of `kind` sending one request after another (`pause` between them).
    fn client<F, Fut>(&mut self, kind: &'static str, pause: Duration, request: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let tally = match self.kinds.iter().find(|(k, _)| *k == kind) {
            Some((_, t)) => t.clone(),
            None => {
                let t = Arc::new(Tally::default());
                self.kinds.push((kind, t.clone()));
                t
            }
        };
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            for _ in 0..MAX_PER_CLIENT {
                if stop.load(Relaxed) {
                    break;
                }
                tally.sent.fetch_add(1, Relaxed);
                tally.record(request().await);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }

    /// Waits until every kind of client had `n` more requests succeed (the admin poller: a
    /// tenth of that).
    async fn more(&self, n: u64) {
        let before: Vec<u64> = self.kinds.iter().map(|(_, t)| t.ok.load(Relaxed)).collect();
        eventually("more requests to succeed", || async {
            self.kinds
                .iter()
                .zip(&before)
                .all(|((kind, t), b)| {
                    let want = if kind.starts_with("admin") { n / 10 } else { n };
                    t.ok.load(Relaxed) >= b + want
                })
                .then_some(())
        })
        .await;
    }

    /// Stops the clients, prints the counts and returns the failures (proxy, admin).
    async fn finish(self, scenario: &str) -> (u64, u64) {
        self.stop.store(true, Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let (mut proxy_failed, mut admin_failed) = (0, 0);
        for (kind, t) in &self.kinds {
            let (ok, failed) = t.report(scenario, kind);
            assert!(ok > 0, "{kind}: the load ran");
            match kind.starts_with("admin") {
                true => admin_failed += failed,
                false => proxy_failed += failed,
            }
        }
        (proxy_failed, admin_failed)
    }
}

fn client(keep_alive: bool, tls: Option<(SocketAddr, &[u8])>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    if !keep_alive {
        b = b.pool_max_idle_per_host(0);
    }
    if let Some((addr, ca)) = tls {
        b = b
            .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
            .resolve("api.test", addr)
            .http1_only();
    }
    b.build().unwrap()
}

/// A GET that succeeds with a 200 and a whole body.
async fn get(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let r = http.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    let status = r.status();
    r.bytes().await.map_err(|e| format!("body: {e:?}"))?;
    match status.as_u16() {
        200 => Ok(()),
        s => Err(format!("status {s}")),
    }
}

/// A GET on a new connection that starts with a PROXY protocol v1 header.
async fn proxied_get(addr: SocketAddr) -> Result<(), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            b"PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\nGET / HTTP/1.1\r\nhost: pp\r\nconnection: close\r\n\r\n",
        )
        .await?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    match answer.starts_with(b"HTTP/1.1 200 ") {
        true => Ok(()),
        false => Err(format!(
            "{:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        )),
    }
}

/// A gateway directory whose config routes `/` to `origin` and offers its sockets on
/// `handover.sock`.
fn gateway_dir(origin: &Origin) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gatewayd.toml"), config(origin, "")).unwrap();
    dir
}

fn config(origin: &Origin, extra: &str) -> String {
    let preamble = preamble(2).replacen(
        "[gateway]\n",
        "[gateway]\nhandover_socket = \"handover.sock\"\n",
        1,
    );
    format!(
        "{preamble}{extra}{}[[routes]]\nname = \"r\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[origin], "round_robin")
    )
}

/// A process that is not our child (started by a gatewayd on SIGUSR2): killed by pid when
/// the test ends, whatever happened.
struct Adopted(u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        if running(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// True while `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The pid the successor logged once it took over.
fn successor_pid(gw: &Gateway) -> Option<u32> {
    let logs = gw.logs.lock().unwrap();
    logs.iter().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        let pid = v["pid"].as_u64()?;
        (v["message"] == "took over: the predecessor drains").then_some(pid as u32)
    })
}

/// Counts log lines containing `needle`.
fn count_logged(gw: &Gateway, needle: &str) -> usize {
    gw.logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// Restart onto the same binary (SIGUSR2), then upgrade onto a different binary file
/// (`--takeover`) under steady load: no request fails, the admin API answers throughout, the
/// sockets (addresses) stay the same, and every predecessor drains and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_upgrade_under_load_fail_no_request() {
    trace_init();
    let o = Origin::start("o").await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    pki.write_leaf("api", &["api.test"], 1);
    let listeners = "[[listeners]]\nname = \"tls\"\naddress = \"127.0.0.1:0\"\n[listeners.tls]\ncertificates = [{ cert = \"api.pem\", key = \"api.key\" }]\n\n[[listeners]]\nname = \"pp\"\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n\n";
    std::fs::write(dir.path().join("gatewayd.toml"), config(&o, listeners)).unwrap();
    // Stands in for systemd's notify socket (Type=notify).
    let notify_path = dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let env = [("NOTIFY_SOCKET", notify_path.as_os_str())];
    let mut a = Gateway::start_as(dir.path(), &binary("gatewayd"), &[], &env).unwrap();
    let (addr, admin, all) = (a.addr, a.admin, a.listeners.clone());
    assert_eq!(all.len(), 3, "plain, TLS and PROXY protocol listeners");
    let load = Load::start(Targets {
        proxy: addr,
        admin,
        tls: Some((all[1], std::fs::read(pki.ca()).unwrap())),
        proxy_protocol: Some(all[2]),
    });
    load.more(50).await;

    // Restart: SIGUSR2 starts the same binary with --takeover.
    a.signal("USR2");
    let (exit, a) = tokio::task::spawn_blocking(move || (a.wait_exit(), a))
        .await
        .unwrap();
    let exit = exit.unwrap();
    assert!(exit.success(), "the restarted gatewayd exits 0: {exit:?}");
    let b = Adopted(successor_pid(&a).expect("the successor logged its pid"));
    assert!(a.logged("drained after hand-over; bye"));
    load.more(50).await;

    // Upgrade: another binary file (a copy stands in for the new version) takes over.
    let next = dir.path().join("gatewayd-next");
    std::fs::copy(binary("gatewayd"), &next).unwrap();
    let d = dir.path().to_path_buf();
    let mut c =
        tokio::task::spawn_blocking(move || Gateway::start_as(&d, &next, &["--takeover"], &[]))
            .await
            .unwrap()
            .unwrap();
    assert_eq!((&c.listeners, c.admin), (&all, admin), "the same sockets");
    eventually("the replaced gatewayd to drain and exit", || async {
        (!running(b.0) && count_logged(&a, "drained after hand-over; bye") == 2).then_some(())
    })
    .await;
    load.more(50).await;

    let (failed, admin_failed) = load.finish("restart and upgrade").await;
    assert_eq!(failed, 0, "no proxied request failed");
    assert_eq!(admin_failed, 0, "the admin API answered throughout");
    // What systemd heard: ready, then each main process naming its successor.
    let mut heard = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = notify.recv(&mut buf) {
        heard.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let (b_pid, c_pid) = (b.0, c.pid());
    let mainpids: Vec<&String> = heard.iter().filter(|m| m.starts_with("MAINPID=")).collect();
    assert_eq!(
        heard.first().map(String::as_str),
        Some("READY=1"),
        "{heard:?}"
    );
    assert_eq!(
        mainpids,
        [&format!("MAINPID={b_pid}"), &format!("MAINPID={c_pid}")],
        "{heard:?}"
    );
    let exit = tokio::task::spawn_blocking(move || c.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// Successors that fail — a config that does not parse, one that parses but cannot start
/// after receiving the sockets — leave the running gateway serving with no failed request,
/// and a later good successor still takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_successors_leave_the_running_gateway_serving() {
    trace_init();
    let o = Origin::start("o").await;
    let dir = gateway_dir(&o);
    let mut a = Gateway::start_in(dir.path()).unwrap();
    let load = Load::start(Targets {
        proxy: a.addr,
        admin: a.admin,
        tls: None,
        proxy_protocol: None,
    });
    load.more(100).await;

    let broken = dir.path().join("broken.toml");
    let run = |path: &Path| {
        std::process::Command::new(binary("gatewayd"))
            .arg("--config")
            .arg(path)
            .arg("--takeover")
            .output()
            .unwrap()
    };
    std::fs::write(&broken, config(&o, "[nonsense\n")).unwrap();
    let out = tokio::task::block_in_place(|| run(&broken));
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    load.more(50).await;

    // Parses, takes the sockets, then cannot bind its second listener (not a local address).
    let unbindable = "[[listeners]]\nname = \"far\"\naddress = \"192.0.2.1:0\"\n\n";
    std::fs::write(&broken, config(&o, unbindable)).unwrap();
    let out = tokio::task::block_in_place(|| run(&broken));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("192.0.2.1"), "{stderr}");
    eventually(
        "the running gateway to log the abandoned hand-over",
        || async { a.logged("hand-over abandoned; still serving").then_some(()) },
    )
    .await;
    load.more(100).await;

    let d = dir.path().to_path_buf();
    let mut b = tokio::task::spawn_blocking(move || {
        Gateway::start_as(&d, &binary("gatewayd"), &["--takeover"], &[])
    })
    .await
    .unwrap()
    .unwrap();
    let exit = tokio::task::spawn_blocking(move || a.wait_exit())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    load.more(100).await;
    let (failed, admin_failed) = load.finish("failed successors").await;
    assert_eq!((failed, admin_failed), (0, 0));
    let exit = tokio::task::spawn_blocking(move || b.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}
