//! Events stream, access log, rolling log files, and SO_REUSEPORT side-by-side start.

use futures_util::StreamExt as _;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use reqwest::Method;
use serde_json::Value;

use super::support::{client, origin_of};

fn blue_green(blue: &Origin, green: &Origin, extra: &str) -> String {
    super::support::blue_green(blue, green, 100, 0, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_reports_weight_changes_and_reloads() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green, "")).unwrap();
    let http = client();
    let resp = gw
        .admin_req(&http, Method::GET, "/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    gw.admin_req(&http, Method::POST, "/v1/routes/web/flip")
        .send()
        .await
        .unwrap();
    gw.write_config(&blue_green(&blue, &green, "timeout = \"nope\"\n"))
        .unwrap();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + meshgate_e2e::harness::patience();
    while !(text.contains("event: weights_changed") && text.contains("event: config_rejected")) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let chunk = tokio::time::timeout(left, body.next())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("weights_changed"))
        .unwrap();
    let ev: Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
    assert_eq!(ev["route"], "web");
    assert!(ev["id"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_and_rolling_files() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let body = blue_green(&blue, &green, "");
    // Full access log into rolling files in the gateway's directory.
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "[gateway]\nworkers = 1\nstate_file = \"weights.json\"\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n\n[log]\nformat = \"json\"\naccess_log = true\ndirectory = \"logs\"\nfile_prefix = \"gw.log\"\nrotation = \"never\"\n\n{body}"
    );
    std::fs::write(dir.path().join("gatewayd.toml"), cfg).unwrap();
    // Logs go to the file: the harness reads addresses from stdout, so start it by hand.
    let mut child = std::process::Command::new(meshgate_e2e::harness::binary("gatewayd"))
        .arg("--config")
        .arg(dir.path().join("gatewayd.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.path().join("logs/gw.log");
    let addr: String = eventually("the listening line in the log file", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "listening")
            .and_then(|v| v["addr"].as_str().map(str::to_string))
    })
    .await;
    let http = client();
    for _ in 0..3 {
        let r = http
            .get(format!("http://{addr}/a/b?c=d"))
            .header("x-request-id", "trace-me")
            .send()
            .await
            .unwrap();
        assert_eq!(origin_of(r).await, (200, "blue".into()));
    }
    let lines: Vec<Value> = eventually("three access log lines", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        let v: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["log.logger"] == "access")
            .collect();
        (v.len() >= 3).then_some(v)
    })
    .await;
    // Elastic Common Schema documents: the field set is a stable interface (docs/operations.md).
    let doc = lines[0].as_object().unwrap();
    let keys: Vec<&str> = doc.keys().map(String::as_str).collect();
    let mut want = vec![
        "@timestamp",
        "client.ip",
        "client.port",
        "ecs.version",
        "event.category",
        "event.dataset",
        "event.duration",
        "event.kind",
        "event.outcome",
        "event.type",
        "http.request.id",
        "http.request.method",
        "http.response.status_code",
        "http.version",
        "log.level",
        "log.logger",
        "meshgate.backend",
        "meshgate.endpoint",
        "meshgate.route",
        "message",
        "url.path",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(doc["http.request.method"], "GET");
    assert_eq!(doc["url.path"], "/a/b");
    assert_eq!(doc["http.response.status_code"], 200);
    assert_eq!(doc["http.version"], "1.1");
    assert_eq!(doc["event.outcome"], "success");
    assert_eq!(doc["meshgate.route"], "web");
    assert_eq!(doc["meshgate.backend"], "blue");
    assert_eq!(doc["meshgate.endpoint"], blue.addr.to_string());
    assert_eq!(doc["client.ip"], "127.0.0.1");
    assert_eq!(doc["message"], "GET /a/b 200");
    assert!(doc["event.duration"].as_u64().unwrap() > 0);
    assert!(doc["http.request.id"]
        .as_str()
        .unwrap()
        .contains("trace-me"));
    let ts = doc["@timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000000Z".len(),
        "{ts}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_can_bind_the_same_port() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let mut old = Gateway::start(&blue_green(&blue, &green, "")).unwrap();
    // The new process binds the very address the old one serves (SO_REUSEPORT).
    let body = blue_green(&blue, &green, "").replace(
        "weight = 100 }, { name = \"green\", weight = 0",
        "weight = 0 }, { name = \"green\", weight = 100",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = meshgate_e2e::harness::gateway::preamble(1).replace(
        "127.0.0.1:0\"\n\n[admin]",
        &format!("{}\"\n\n[admin]", old.addr),
    );
    std::fs::write(dir.path().join("gatewayd.toml"), format!("{cfg}{body}")).unwrap();
    let new = Gateway::start_in(dir.path()).unwrap();
    assert_eq!(new.addr, old.addr);
    // The old one drains and leaves; the new one keeps serving the same address.
    assert!(old.terminate().unwrap().success());
    let http = client();
    eventually("the new process to serve", || async {
        let r = http.get(new.url("/")).send().await.ok()?;
        (origin_of(r).await.1 == "green").then_some(())
    })
    .await;
}
