//! gwctl's scripted forms against a real gateway: what they print, their exit codes, and the
//! traffic they move as the upstream origins count it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use meshgate_e2e::harness::gwctl::{run_raw, Gwctl};
use meshgate_e2e::harness::{patience, trace_init, Gateway, Origin, OriginKind};
use reqwest::Method;
use serde_json::Value;

use super::support::{client, service};

/// Route `web` over backends `blue` (weight 100) and `green` (weight 0), one origin each.
pub fn blue_green(blue: &Origin, green: &Origin) -> String {
    format!(
        "{}{}[[routes]]\nname = \"web\"\nbackends = [{{ name = \"blue\", weight = 100 }}, {{ name = \"green\", weight = 0 }}]\n",
        service("blue", &[blue], "round_robin"),
        service("green", &[green], "round_robin")
    )
}

/// The effective weights of `route`, as the admin API reports them.
pub async fn admin_weights(
    gw: &Gateway,
    http: &reqwest::Client,
    route: &str,
) -> BTreeMap<String, u64> {
    let d: Value = gw
        .admin_req(http, Method::GET, &format!("/v1/routes/{route}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    d["route"]["backends"]
        .as_array()
        .unwrap_or_else(|| panic!("no backends in {d}"))
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `{"blue": b, "green": g}` as [`admin_weights`] returns it.
pub fn bg(b: u64, g: u64) -> BTreeMap<String, u64> {
    BTreeMap::from([("blue".to_string(), b), ("green".to_string(), g)])
}

/// Sends `n` requests through the gateway, each must answer 200; returns how many more hits
/// (blue, green) the origins counted meanwhile.
pub async fn traffic(
    http: &reqwest::Client,
    gw: &Gateway,
    blue: &Origin,
    green: &Origin,
    n: u64,
) -> (u64, u64) {
    let (b0, g0) = (blue.hits(), green.hits());
    for _ in 0..n {
        let r = http.get(gw.url("/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    (blue.hits() - b0, green.hits() - g0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_weights_get_reflect_the_gateway_and_flip_moves_traffic() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let (http, ctl) = (client(), Gwctl::new(&gw));

    let routes = ctl.run(&["routes", "--json"]).await;
    let v = routes.expect_code(0).json();
    let web = v
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "web"))
        .unwrap_or_else(|| panic!("no route web in\n{routes}"));
    assert_eq!(web["backends"][0]["name"], "blue");
    assert_eq!(web["backends"][0]["weight"], 100);
    assert_eq!(web["backends"][1]["name"], "green");
    assert_eq!(web["backends"][1]["weight"], 0);
    assert_eq!(web["weights"]["source"], "file");
    let human = ctl.run(&["routes"]).await;
    assert!(
        human.expect_code(0).stdout.contains("blue=100% green=0%"),
        "{human}"
    );

    let get = ctl.run(&["weights", "get", "web", "--json"]).await;
    let w = get.expect_code(0).json();
    assert_eq!(w["name"], "web");
    assert_eq!(w["backends"][0]["weight"], 100);
    assert_eq!(w["backends"][1]["weight"], 0);
    assert_eq!(w["weights"]["revision"], 0);

    assert_eq!(traffic(&http, &gw, &blue, &green, 20).await, (20, 0));
    let flip = ctl.run(&["flip", "web", "--reason", "e2e flip"]).await;
    assert!(
        flip.expect_code(0)
            .stdout
            .contains("web: blue=100 green=0 → blue=0 green=100 (revision 1"),
        "{flip}"
    );
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(0, 100));
    assert_eq!(traffic(&http, &gw, &blue, &green, 20).await, (0, 20));

    let get = ctl.run(&["weights", "get", "web", "--json"]).await;
    let w = get.expect_code(0).json();
    assert_eq!(w["backends"][0]["weight"], 0);
    assert_eq!(w["backends"][1]["weight"], 100);
    assert_eq!(w["weights"]["source"], "state_file");
    assert_eq!(w["weights"]["reason"], "e2e flip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_set_splits_traffic_and_rollback_restores_it() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let (http, ctl) = (client(), Gwctl::new(&gw));

    let set = ctl
        .run(&["weights", "set", "web", "blue=90", "green=10", "--json"])
        .await;
    let v = set.expect_code(0).json();
    assert_eq!(v["change"]["revision"], 1);
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(90, 10));

    // 1,000 requests at 10% green: within 5 binomial standard deviations of 100.
    let n = 1_000u64;
    let (b, g) = traffic(&http, &gw, &blue, &green, n).await;
    assert_eq!(b + g, n);
    let (p, nf) = (0.1, n as f64);
    let sigma = (nf * p * (1.0 - p)).sqrt();
    let tolerance = 5.0 * sigma;
    assert!(
        (g as f64 - nf * p).abs() <= tolerance,
        "green got {g} of {n} (expected {} ± {tolerance:.0})",
        nf * p
    );

    let rollback = ctl.run(&["rollback", "web"]).await;
    assert!(
        rollback
            .expect_code(0)
            .stdout
            .contains("blue=90 green=10 → blue=100 green=0"),
        "{rollback}"
    );
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(100, 0));
    assert_eq!(traffic(&http, &gw, &blue, &green, 50).await, (50, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_at_a_stale_revision_exits_3_and_changes_nothing() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let (http, ctl) = (client(), Gwctl::new(&gw));

    ctl.run(&["flip", "web", "--expected-revision", "0"])
        .await
        .expect_code(0);
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(0, 100));
    // A second operator who also read revision 0 loses instead of flipping back.
    let second = ctl.run(&["flip", "web", "--expected-revision", "0"]).await;
    second.expect_code(3);
    assert!(second.stderr.contains("409"), "{second}");
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(0, 100));
    assert_eq!(traffic(&http, &gw, &blue, &green, 20).await, (0, 20));
    // The same conflict through `weights set`.
    let set = ctl
        .run(&[
            "weights",
            "set",
            "web",
            "blue=50",
            "green=50",
            "--expected-revision",
            "0",
        ])
        .await;
    set.expect_code(3);
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(0, 100));
}

/// Keeps requests flowing through the gateway from a background task until `stop` is set (or a
/// bound is reached), one at a time, about one every 2 ms.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Load {
    fn start(http: &reqwest::Client, gw: &Gateway) -> Self {
        const MAX_REQUESTS: u64 = 200_000;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, http, url) = (stop.clone(), http.clone(), gw.url("/"));
        let task = tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_millis(2));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent = 0;
            while !s.load(Relaxed) && sent < MAX_REQUESTS {
                pace.tick().await;
                let _ = http.get(&url).send().await;
                sent += 1;
            }
            sent
        });
        Self { stop, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Relaxed);
        self.task.await.unwrap()
    }
}

/// Long enough for a few 1–2 s canary steps on a loaded machine.
fn canary_timeout() -> Duration {
    patience() * 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_error_rate_trips_the_guard_is_rolled_back() {
    trace_init();
    let blue = Origin::start("blue").await;
    // 5% errors: every 20th request answers 500.
    let green = Origin::start_kind("green", OriginKind::FailEvery(20)).await;
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let (http, ctl) = (client(), Gwctl::new(&gw));
    let start = admin_weights(&gw, &http, "web").await;
    assert_eq!(start, bg(100, 0));

    let load = Load::start(&http, &gw);
    let canary = ctl
        .run_for(
            &[
                "canary",
                "web",
                "--to",
                "green",
                "--steps",
                "25,50,100",
                "--interval",
                "2s",
                "--max-error-rate",
                "1%",
                // Only the error-rate guard is under test; latency on a loaded box is noise.
                "--max-p99-ratio",
                "1000",
                "--min-requests",
                "10",
            ],
            canary_timeout(),
        )
        .await;
    let sent = load.stop().await;
    canary.expect_code(1);
    let out = format!("{}{}", canary.stdout, canary.stderr);
    assert!(
        out.contains("green error rate") && out.contains("exceeds 1.00%"),
        "the failed guard is named:\n{canary}"
    );
    assert!(
        canary.stdout.contains("rolled back to blue=100 green=0"),
        "{canary}"
    );
    assert!(
        !canary.stdout.contains("step 2/3"),
        "stopped at the first step\n{canary}"
    );
    assert!(green.hits() > 0, "green saw canary traffic ({sent} sent)");
    assert_eq!(admin_weights(&gw, &http, "web").await, start);
    // The rollback is in the history, after the step it undid.
    let d: Value = gw.admin_get_json(&http, "/v1/routes/web").await;
    let reasons: Vec<&str> = d["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("canary rollback: ")),
        "{reasons:?}"
    );
    let before = green.hits();
    assert_eq!(traffic(&http, &gw, &blue, &green, 20).await, (20, 0));
    assert_eq!(green.hits(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_completes_at_100_percent() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&blue_green(&blue, &green)).unwrap();
    let (http, ctl) = (client(), Gwctl::new(&gw));

    let load = Load::start(&http, &gw);
    let canary = ctl
        .run_for(
            &[
                "canary",
                "web",
                "--to",
                "green",
                "--steps",
                "50,100",
                "--interval",
                "1s",
                "--max-error-rate",
                "1%",
                "--max-p99-ratio",
                "1000",
                "--min-requests",
                "10",
                "--json",
            ],
            canary_timeout(),
        )
        .await;
    load.stop().await;
    let report = canary.expect_code(0).json();
    assert_eq!(report["outcome"], "completed", "{canary}");
    assert_eq!(
        report["steps"].as_array().map(Vec::len),
        Some(2),
        "{canary}"
    );
    assert_eq!(admin_weights(&gw, &http, "web").await, bg(0, 100));
    assert_eq!(traffic(&http, &gw, &blue, &green, 20).await, (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_exits_4() {
    trace_init();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let run = run_raw(
        &[
            "routes".into(),
            "--admin".into(),
            format!("http://{closed}"),
            // Explicit, so no token file of the machine is looked for.
            "--token-file".into(),
            "/dev/null".into(),
        ],
        patience(),
    )
    .await;
    run.expect_code(4);
    assert!(run.stderr.contains("unreachable"), "{run}");
}
