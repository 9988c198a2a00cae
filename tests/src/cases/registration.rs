//! Self-registration: a gatewayd with `[consul] register = true` is listed (passing) as service
//! `meshgate` at its admin address, stays passing past its TTL, and is gone once SIGTERM's drain
//! finishes; `gwctl --consul` finds every registered gateway and aggregates them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::gateway::preamble;
use meshgate_e2e::harness::gwctl::run_raw;
use meshgate_e2e::harness::{patience, trace_init, Gateway, Origin};
use serde_json::Value;

use super::support::{client, service};

/// TTL of the registration's check: short, so "still passing after 3 TTLs" is quick to see.
const TTL: Duration = Duration::from_secs(2);

/// `[consul]` with self-registration, plus a static service and route `web` to `origin`.
fn registering_cfg(dc: &DevConsul, origin: &Origin) -> String {
    format!(
        "[consul]\naddress = \"{}\"\nwait = \"5s\"\nbackoff_max = \"1s\"\ncache_file = \"discovery.json\"\nregister = true\nregister_ttl = \"{}s\"\n\n{}[[routes]]\nname = \"web\"\nbackends = [{{ name = \"web\", weight = 1 }}]\n",
        dc.url(),
        TTL.as_secs(),
        service("web", &[origin], "round_robin"),
    )
}

/// `GET /v1/health/service/meshgate[?passing]` on devconsul.
async fn meshgate_instances(http: &reqwest::Client, dc: &DevConsul, passing: bool) -> Vec<Value> {
    let q = if passing { "?passing" } else { "" };
    let r = http
        .get(format!("{}/v1/health/service/meshgate{q}", dc.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<Value>>().await.unwrap()
}

/// The instance registered at admin address `admin` (Service.Address, or Node.Address when that
/// is empty, and Service.Port), if listed.
fn instance_at(list: &[Value], admin: SocketAddr) -> Option<Value> {
    list.iter()
        .find(|e| {
            let s = &e["Service"];
            let host = match s["Address"].as_str() {
                Some("") | None => e["Node"]["Address"].as_str(),
                a => a,
            };
            host == Some(&admin.ip().to_string()) && s["Port"] == admin.port()
        })
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_registers_its_admin_address_and_deregisters_on_sigterm() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let origin = Origin::start("web").await;
    let mut gw = Gateway::start(&registering_cfg(&dc, &origin)).unwrap();
    let http = client();

    let entry = eventually(
        "the gateway to be listed as passing service meshgate",
        || async { instance_at(&meshgate_instances(&http, &dc, true).await, gw.admin) },
    )
    .await;
    let svc = &entry["Service"];
    assert_eq!(svc["Service"], "meshgate", "{entry}");
    assert_eq!(svc["Address"], gw.admin.ip().to_string(), "{entry}");
    assert_eq!(svc["Port"], gw.admin.port(), "{entry}");
    // The documented default id: meshgate-<admin port>-<pid>.
    assert_eq!(
        svc["ID"],
        format!("meshgate-{}-{}", gw.admin.port(), gw.pid()),
        "{entry}"
    );
    let check = entry["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == format!("service:{}", svc["ID"].as_str().unwrap()))
        .cloned()
        .unwrap_or_else(|| panic!("no TTL check in {entry}"));
    assert_eq!(check["Status"], "passing", "{entry}");

    // The heartbeat keeps it passing well past its TTL: watch it for three TTLs. (A time span is
    // the claim itself here, not a wait for something to happen.)
    let until = tokio::time::Instant::now() + 3 * TTL;
    while tokio::time::Instant::now() < until {
        let list = meshgate_instances(&http, &dc, true).await;
        assert!(
            instance_at(&list, gw.admin).is_some(),
            "the registration stopped passing within 3 TTLs: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM: deregistered before the process exits (not merely expired: the instance is not
    // listed at all, passing or not).
    let admin = gw.admin;
    assert!(gw.terminate().unwrap().success());
    let all = meshgate_instances(&http, &dc, false).await;
    assert!(
        instance_at(&all, admin).is_none(),
        "still registered after exit: {all:?}"
    );
    assert!(gw.logged("deregistered from Consul"));
}

/// Writes `dir/gatewayd.toml` whose admin token is the shared file `token`; the harness reads the
/// token from `dir/admin.token`, so that name links to the shared file.
fn gateway_dir(dir: &Path, token: &Path, body: &str) {
    let own = "token_file = \"admin.token\"";
    let pre = preamble(2);
    assert!(pre.contains(own), "the harness preamble changed: {pre}");
    let pre = pre.replace(
        own,
        &format!("token_file = {:?}", token.display().to_string()),
    );
    std::fs::write(dir.join("gatewayd.toml"), format!("{pre}{body}")).unwrap();
    std::os::unix::fs::symlink(token, dir.join("admin.token")).unwrap();
}

async fn gwctl(args: &[&str]) -> meshgate_e2e::harness::gwctl::GwctlRun {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_raw(&args, patience()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gwctl_consul_targets_every_registered_gateway() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let origin = Origin::start("web").await;
    // One token file for both gateways.
    let shared = tempfile::tempdir().unwrap();
    let token = shared.path().join("admin.token");
    std::fs::write(&token, "e2e-shared-admin-token\n").unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let body = registering_cfg(&dc, &origin);
    gateway_dir(d1.path(), &token, &body);
    gateway_dir(d2.path(), &token, &body);
    let gw1 = Gateway::start_in(d1.path()).unwrap();
    let gw2 = Gateway::start_in(d2.path()).unwrap();
    assert_eq!(gw1.token, gw2.token);
    let http = client();
    eventually("both gateways to be registered and passing", || async {
        let list = meshgate_instances(&http, &dc, true).await;
        (instance_at(&list, gw1.admin).is_some() && instance_at(&list, gw2.admin).is_some())
            .then_some(())
    })
    .await;

    let consul = dc.addr.to_string();
    let token_file = token.display().to_string();
    let target = [
        "--consul",
        consul.as_str(),
        "--token-file",
        token_file.as_str(),
    ];

    // `routes` works through Consul alone (no --admin).
    let run = gwctl(&[&["routes", "--json"][..], &target[..]].concat()).await;
    run.expect_code(0);
    let routes = run.json();
    assert_eq!(routes[0]["name"], "web", "{run}");

    // `status` asks each gateway found.
    let run = gwctl(&[&["status", "--json"][..], &target[..]].concat()).await;
    run.expect_code(0);
    let mut admins: Vec<String> = run
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["admin"].as_str().unwrap().to_string())
        .collect();
    admins.sort();
    let mut want = vec![gw1.admin_url(""), gw2.admin_url("")];
    want.sort();
    assert_eq!(admins, want, "{run}");

    // `stats` merges both gateways' counters: 3 requests through one, 5 through the other.
    for (gw, n) in [(&gw1, 3), (&gw2, 5)] {
        for _ in 0..n {
            let r = http.get(gw.url("/")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    let run = eventually("gwctl stats to merge 8 requests of route web", || async {
        let run = gwctl(&[&["stats", "--json"][..], &target[..]].concat()).await;
        let v: Value = serde_json::from_str(&run.stdout).ok()?;
        let web = v["routes"]
            .as_array()?
            .iter()
            .find(|r| r["route"] == "web")?;
        let total: u64 = web["backends"]
            .as_array()?
            .iter()
            .filter_map(|b| b["requests"].as_u64())
            .sum();
        (run.code == Some(0) && total == 8).then_some(run)
    })
    .await;
    assert!(run.stderr.is_empty(), "{run}");

    // MESHGATE_CONSUL works like --consul.
    let run = {
        let mut cmd = tokio::process::Command::new(meshgate_e2e::harness::binary("gwctl"));
        cmd.args(["routes", "--json", "--token-file", token_file.as_str()])
            .env("MESHGATE_CONSUL", &consul)
            .env_remove("MESHGATE_ADMIN")
            .env_remove("MESHGATE_TOKEN_FILE")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        tokio::time::timeout(patience(), cmd.output())
            .await
            .expect("gwctl with MESHGATE_CONSUL timed out")
            .unwrap()
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v[0]["name"], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gwctl_consul_without_registered_gateways_fails_clearly() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let run = gwctl(&["routes", "--consul", &dc.addr.to_string()]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("no passing gatewayd"), "{run}");
}
