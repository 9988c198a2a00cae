//! Consul propagation benchmark (run by hand, not by CI): how fast a health change in devconsul
//! reaches gatewayd's routing, and what following many services costs.
//!
//! ```text
//! cargo build --release -p gatewayd -p meshgate-e2e --bin gatewayd --bin propagation
//! cargo build --release -p discovery --features devconsul --bin devconsul
//! target/release/propagation flips [--flips 200] [--settle-ms 250]
//! target/release/propagation scale [--services 1000] [--endpoints 10] [--idle-secs 10] [--watch-mode auto|per_service|fleet]
//! ```
//!
//! Common options: `--gatewayd PATH`, `--devconsul PATH` (default: next to this executable),
//! `--workers N` (default 1).
//!
//! `flips`: two origins A and B registered as instances of service `prop`, B failing. Each flip
//! first sets the failing instance to passing and times the first request through the gateway
//! answered by it ("add"), then sets the other one failing and times the first request after which
//! it answers no more ("remove"). Requests go back to back on one keep-alive connection. Each time
//! starts just before the check update is sent to devconsul.
//!
//! `scale`: registers SERVICES × ENDPOINTS instances, starts gatewayd with SERVICES Consul-backed
//! services and as many routes, waits until every service has all its endpoints, then reports
//! gatewayd's RSS, its CPU over an idle window, and its TCP connections to devconsul.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::StreamExt as _;
use meshgate_e2e::harness::Origin;
use serde_json::json;
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Args {
    mode: String,
    gatewayd: PathBuf,
    devconsul: PathBuf,
    workers: usize,
    flips: usize,
    settle: Duration,
    services: usize,
    endpoints: usize,
    idle: Duration,
    watch_mode: Option<String>,
    load_timeout: Duration,
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        mode: String::new(),
        gatewayd: sibling("gatewayd"),
        devconsul: sibling("devconsul"),
        workers: 1,
        flips: 200,
        settle: Duration::from_millis(250),
        services: 1000,
        endpoints: 10,
        idle: Duration::from_secs(10),
        watch_mode: None,
        load_timeout: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "flips" | "scale" => a.mode = arg.clone(),
            "--gatewayd" => a.gatewayd = val()?.into(),
            "--devconsul" => a.devconsul = val()?.into(),
            "--workers" => a.workers = val()?.parse()?,
            "--flips" => a.flips = val()?.parse()?,
            "--settle-ms" => a.settle = Duration::from_millis(val()?.parse()?),
            "--services" => a.services = val()?.parse()?,
            "--endpoints" => a.endpoints = val()?.parse()?,
            "--idle-secs" => a.idle = Duration::from_secs(val()?.parse()?),
            "--watch-mode" => a.watch_mode = Some(val()?),
            "--load-timeout-secs" => a.load_timeout = Duration::from_secs(val()?.parse()?),
            "-h" | "--help" => {
                println!("usage: propagation flips|scale [options]; see the source header");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.mode.is_empty() {
        bail!("give a mode: flips or scale");
    }
    for p in [&a.gatewayd, &a.devconsul] {
        anyhow::ensure!(
            p.exists(),
            "{} not found (build it or pass its path)",
            p.display()
        );
    }
    Ok(a)
}

/// A child process killed by PID when dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct DevConsul {
    proc: Proc,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl DevConsul {
    fn start(path: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(path)
            .args(["--addr", "127.0.0.1:0", "--max-wait", "10m"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn devconsul")?;
        let stdout = child.stdout.take().context("stdout")?;
        let proc = Proc(child);
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().context("devconsul printed nothing")??;
        let addr = first
            .strip_prefix("devconsul listening on http://")
            .with_context(|| format!("unexpected first line: {first}"))?
            .trim()
            .parse()?;
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Ok(Self {
            proc,
            addr,
            http: reqwest::Client::builder().no_proxy().build()?,
        })
    }

    async fn register(
        &self,
        id: &str,
        name: &str,
        at: SocketAddr,
        passing: bool,
    ) -> anyhow::Result<()> {
        let body = json!({
            "ID": id, "Name": name, "Address": at.ip().to_string(), "Port": at.port(),
            "Check": {"TTL": "3600s", "Status": if passing { "passing" } else { "critical" }},
        });
        let r = self
            .http
            .put(format!("http://{}/v1/agent/service/register", self.addr))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "register {id}: {}", r.status());
        Ok(())
    }

    async fn check(&self, id: &str, status: &str) -> anyhow::Result<()> {
        let r = self
            .http
            .put(format!(
                "http://{}/v1/agent/check/{status}/service:{id}",
                self.addr
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
}

struct Gatewayd {
    proc: Proc,
    addr: SocketAddr,
    admin: SocketAddr,
    token: String,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Gatewayd {
    fn start(path: &Path, workers: usize, body: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("gatewayd.toml");
        std::fs::write(
            &cfg,
            format!(
                "[gateway]\nworkers = {workers}\ndrain_timeout = \"1s\"\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n[log]\nlevel = \"info\"\nformat = \"json\"\naccess_log = false\n\n{body}"
            ),
        )?;
        let mut child = Command::new(path)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn gatewayd")?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let streams: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().context("stdout")?),
            Box::new(child.stderr.take().context("stderr")?),
        ];
        let proc = Proc(child);
        for s in streams {
            let (tx, logs) = (tx.clone(), logs.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    logs.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let (mut addr, mut admin) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| {
                anyhow::anyhow!(
                    "gatewayd did not report its addresses; logs:\n{}",
                    logs.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                )
            })?;
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            match v["message"].as_str() {
                Some("listening") => addr = v["addr"].as_str().and_then(|a| a.parse().ok()),
                Some("admin API listening") => {
                    admin = v["admin_addr"].as_str().and_then(|a| a.parse().ok())
                }
                _ => {}
            }
        }
        let token = std::fs::read_to_string(dir.path().join("admin.token"))?
            .trim()
            .to_string();
        Ok(Self {
            proc,
            addr: addr.context("no listener address")?,
            admin: admin.context("no admin address")?,
            token,
            logs,
            _dir: dir,
        })
    }

    fn log_lines_containing(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

// ------------------------------------------------------------------------------------------------
// /proc readings.

fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": state is field 3 of stat, so utime (14) and stime (15) are 11 and 12.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// TCP sockets of `pid` whose remote port is `port`, by state name.
fn tcp_to(pid: u32, port: u16) -> std::collections::BTreeMap<&'static str, usize> {
    let mut inodes = HashSet::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.to_string_lossy();
                if let Some(i) = t.strip_prefix("socket:[").and_then(|x| x.strip_suffix(']')) {
                    inodes.insert(i.to_string());
                }
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for file in ["tcp", "tcp6"] {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in s.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            let rport = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if rport != Some(port) {
                continue;
            }
            let state = match f[3] {
                "01" => "established",
                "06" => "time_wait",
                "08" => "close_wait",
                "02" => "syn_sent",
                _ => "other",
            };
            *out.entry(state).or_insert(0) += 1;
        }
    }
    out
}

// ------------------------------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(name: &str, mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let s = json!({
        "what": name,
        "n": v.len(),
        "p50_ms": ms(percentile(&v, 50.0)),
        "p90_ms": ms(percentile(&v, 90.0)),
        "p99_ms": ms(percentile(&v, 99.0)),
        "max_ms": ms(v.last().copied().unwrap_or_default()),
        "min_ms": ms(v.first().copied().unwrap_or_default()),
        "over_50ms": v.iter().filter(|d| **d > Duration::from_millis(50)).count(),
        "slowest_ms": v.iter().rev().take(5).map(|d| ms(*d)).collect::<Vec<_>>(),
    });
    println!(
        "{name}: n={} p50={} ms p90={} ms p99={} ms max={} ms min={} ms; over 50 ms: {}; slowest: {}",
        s["n"],
        s["p50_ms"],
        s["p90_ms"],
        s["p99_ms"],
        s["max_ms"],
        s["min_ms"],
        s["over_50ms"],
        s["slowest_ms"]
    );
    s
}

async fn who(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let r = client.get(url).send().await?;
    let status = r.status();
    let body = r.text().await?;
    Ok(if status.is_success() {
        body
    } else {
        format!("status {status}")
    })
}

async fn flips(a: &Args) -> anyhow::Result<()> {
    let dc = DevConsul::start(&a.devconsul)?;
    let oa = Origin::start("a").await;
    let ob = Origin::start("b").await;
    dc.register("inst-a", "prop", oa.addr, true).await?;
    dc.register("inst-b", "prop", ob.addr, false).await?;
    let gw = Gatewayd::start(
        &a.gatewayd,
        a.workers,
        &format!(
            "[consul]\naddress = \"http://{}\"\n{}\n[services.prop]\nconsul = {{ service = \"prop\" }}\nbalance = \"round_robin\"\n\n[[routes]]\nname = \"prop\"\npath_prefix = \"/\"\nretries = 0\nbackends = [{{ name = \"prop\", weight = 1 }}]\n",
            dc.addr,
            a.watch_mode
                .as_ref()
                .map(|m| format!("watch_mode = \"{m}\"\n"))
                .unwrap_or_default(),
        ),
    )?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()?;
    let url = format!("http://{}/status/200", gw.addr);
    // Steady state: only A answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut run = 0;
    while run < 50 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "gateway never settled on instance a"
        );
        if who(&client, &url).await? == "a" {
            run += 1;
        } else {
            run = 0;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let limit = Duration::from_secs(10);
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    let mut requests = 0u64;
    let mut cur = ("inst-a", "a");
    let mut next = ("inst-b", "b");
    for i in 0..a.flips {
        tokio::time::sleep(a.settle).await;
        let t0 = Instant::now();
        dc.check(next.0, "pass").await?;
        loop {
            let got = who(&client, &url).await?;
            requests += 1;
            if got == next.1 {
                adds.push(t0.elapsed());
                break;
            }
            anyhow::ensure!(t0.elapsed() < limit, "flip {i}: {} never answered", next.1);
        }
        tokio::time::sleep(a.settle).await;
        let t1 = Instant::now();
        dc.check(cur.0, "fail").await?;
        // The first answer from `next` after the last answer from `cur`; a quiet window of
        // 300 ms (dozens of requests) without `cur` closes the measurement.
        let mut first_clean: Option<Duration> = None;
        loop {
            let got = who(&client, &url).await?;
            requests += 1;
            let at = t1.elapsed();
            if got == cur.1 {
                first_clean = None;
            } else if got == next.1 && first_clean.is_none() {
                first_clean = Some(at);
            }
            if let Some(fc) = first_clean {
                if at > fc + Duration::from_millis(300) {
                    removes.push(fc);
                    break;
                }
            }
            anyhow::ensure!(at < limit, "flip {i}: {} kept answering", cur.1);
        }
        std::mem::swap(&mut cur, &mut next);
    }
    println!(
        "flips: {} (each: one instance to passing, then the other to critical), {} requests, settle {} ms, gatewayd workers {}",
        a.flips,
        requests,
        a.settle.as_millis(),
        a.workers
    );
    let s1 = summary(
        "health change -> first request to the newly passing instance",
        adds,
    );
    let s2 = summary(
        "health change -> first request after which the failed instance gets none",
        removes,
    );
    println!(
        "{}",
        json!({"mode": "flips", "pass": s1, "fail": s2, "gatewayd_pid": gw.proc.pid(), "devconsul_pid": dc.proc.pid()})
    );
    Ok(())
}

async fn scale(a: &Args) -> anyhow::Result<()> {
    let dc = DevConsul::start(&a.devconsul)?;
    let t_reg = Instant::now();
    let mut jobs = Vec::new();
    for s in 0..a.services {
        for e in 0..a.endpoints {
            // Addresses nobody listens on: nothing is proxied in this mode.
            let at: SocketAddr = format!(
                "127.{}.{}.{}:{}",
                10 + s / 250,
                s % 250 + 1,
                e % 250 + 1,
                20000 + e
            )
            .parse()?;
            jobs.push((format!("s-{s:04}-{e}"), format!("s-{s:04}"), at));
        }
    }
    let n_inst = jobs.len();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(jobs)
        .map(|(id, name, at)| {
            let dc = &dc;
            async move { dc.register(&id, &name, at, true).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for r in results {
        r?;
    }
    println!(
        "registered {n_inst} instances of {} services in {:.1} s",
        a.services,
        t_reg.elapsed().as_secs_f64()
    );
    let mut body = format!(
        "[consul]\naddress = \"http://{}\"\n{}\n",
        dc.addr,
        a.watch_mode
            .as_ref()
            .map(|m| format!("watch_mode = \"{m}\"\n"))
            .unwrap_or_default()
    );
    for s in 0..a.services {
        body.push_str(&format!(
            "[services.s-{s:04}]\nconsul = {{ service = \"s-{s:04}\" }}\nbalance = \"round_robin\"\n\n"
        ));
    }
    for s in 0..a.services {
        body.push_str(&format!(
            "[[routes]]\nname = \"r-{s:04}\"\npath_prefix = \"/s-{s:04}/\"\nbackends = [{{ name = \"b\", service = \"s-{s:04}\", weight = 1 }}]\n\n"
        ));
    }
    let t_start = Instant::now();
    let gw = Gatewayd::start(&a.gatewayd, a.workers, &body)?;
    let pid = gw.proc.pid();
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut max_conns = 0usize;
    let (loaded, stale, t_load) = loop {
        let v: serde_json::Value = client
            .get(format!("http://{}/v1/upstreams", gw.admin))
            .bearer_auth(&gw.token)
            .send()
            .await?
            .json()
            .await?;
        let list = v.as_array().cloned().unwrap_or_default();
        let loaded = list
            .iter()
            .filter(|s| s["endpoints"].as_array().map_or(0, Vec::len) == a.endpoints)
            .count();
        let stale = list.iter().filter(|s| s["stale"] == json!(true)).count();
        let c = tcp_to(pid, dc.addr.port());
        max_conns = max_conns.max(c.get("established").copied().unwrap_or(0));
        if loaded == a.services {
            break (loaded, stale, Some(t_start.elapsed()));
        }
        if t_start.elapsed() > a.load_timeout {
            break (loaded, stale, None);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match t_load {
        Some(t) => println!(
            "all {} services loaded ({} endpoints each) {:.2} s after gatewayd was started",
            a.services,
            a.endpoints,
            t.as_secs_f64()
        ),
        None => println!(
            "NOT LOADED: after {} s only {loaded} of {} services have their {} endpoints ({stale} stale)",
            a.load_timeout.as_secs(),
            a.services,
            a.endpoints
        ),
    }
    // Settle, then an idle window with no requests and no changes in Consul.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let hz = clk_tck();
    let conns_before = tcp_to(pid, dc.addr.port());
    let (g0, d0) = (cpu_ticks(pid), cpu_ticks(dc.proc.pid()));
    let w0 = Instant::now();
    tokio::time::sleep(a.idle).await;
    let secs = w0.elapsed().as_secs_f64();
    let (g1, d1) = (cpu_ticks(pid), cpu_ticks(dc.proc.pid()));
    let conns_after = tcp_to(pid, dc.addr.port());
    let cpu = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => (b.saturating_sub(a)) as f64 / hz,
        _ => f64::NAN,
    };
    let (gcpu, dcpu) = (cpu(g0, g1), cpu(d0, d1));
    let rss = proc_status(pid, "VmRSS").unwrap_or(0);
    let hwm = proc_status(pid, "VmHWM").unwrap_or(0);
    let threads = proc_status(pid, "Threads").unwrap_or(0);
    let dc_rss = proc_status(dc.proc.pid(), "VmRSS").unwrap_or(0);
    let too_many = gw.log_lines_containing("429") + gw.log_lines_containing("too many");
    let warns = gw.log_lines_containing("\"level\":\"WARN\"");
    println!(
        "gatewayd: RSS {:.1} MiB (peak {:.1} MiB), {threads} threads; idle CPU {gcpu:.2} s over {secs:.1} s ({:.2} % of a core)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        100.0 * gcpu / secs
    );
    println!(
        "TCP connections gatewayd -> devconsul: {conns_before:?} at the start of the idle window, {conns_after:?} at its end, max established while loading {max_conns}"
    );
    println!(
        "devconsul: idle CPU {dcpu:.2} s over {secs:.1} s, RSS {:.1} MiB; gatewayd log lines mentioning 429/too many: {too_many}; WARN lines: {warns}",
        dc_rss as f64 / 1024.0
    );
    println!(
        "{}",
        json!({
            "mode": "scale", "services": a.services, "endpoints": a.endpoints,
            "watch_mode": a.watch_mode.clone().unwrap_or_else(|| "default".into()),
            "loaded": loaded, "load_seconds": t_load.map(|t| t.as_secs_f64()),
            "rss_kib": rss, "peak_rss_kib": hwm, "threads": threads,
            "idle_cpu_seconds": gcpu, "idle_window_seconds": secs,
            "conns_established": conns_after.get("established").copied().unwrap_or(0),
            "max_conns_established_while_loading": max_conns,
            "log_429": too_many, "warn_lines": warns, "devconsul_idle_cpu_seconds": dcpu,
        })
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match args.mode.as_str() {
            "flips" => flips(&args).await,
            _ => scale(&args).await,
        }
    })
}
