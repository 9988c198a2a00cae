//! Gateways following devconsul: endpoints come and go with registrations and checks, an outage
//! keeps the last known set (reported stale), a restart during an outage serves the saved set,
//! and weights in Consul KV move every gateway at once.

use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use reqwest::Method;
use serde_json::{json, Value};

use super::support::{client, origin_of};

/// `[consul]` plus blue/green services of Consul service `api` (by tag) and route `web`.
fn consul_cfg(dc: &DevConsul) -> String {
    consul_cfg_mode(dc, "per_service")
}

fn consul_cfg_mode(dc: &DevConsul, mode: &str) -> String {
    format!(
        "[consul]\naddress = \"{}\"\nwatch_mode = \"{mode}\"\nwait = \"5s\"\nbackoff_max = \"1s\"\ncache_file = \"discovery.json\"\n\n[services.blue]\nconsul = {{ service = \"api\", tags = [\"blue\"] }}\nbalance = \"round_robin\"\n\n[services.green]\nconsul = {{ service = \"api\", tags = [\"green\"] }}\nbalance = \"round_robin\"\n\n[[routes]]\nname = \"web\"\nbackends = [{{ name = \"blue\", weight = 100 }}, {{ name = \"green\", weight = 0 }}]\n",
        dc.url()
    )
}

async fn upstream(gw: &Gateway, http: &reqwest::Client, service: &str) -> Option<Value> {
    let v: Value = gw
        .admin_req(http, Method::GET, "/v1/upstreams")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v.as_array()?
        .iter()
        .find(|s| s["service"] == service)
        .cloned()
}

async fn serves(gw: &Gateway, http: &reqwest::Client, want: &str) -> Option<()> {
    let (status, origin) = origin_of(http.get(gw.url("/")).send().await.ok()?).await;
    (status == 200 && origin == want).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_registrations_and_checks() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let (b1, b2) = (Origin::start("blue-1").await, Origin::start("blue-2").await);
    let gw = Gateway::start(&consul_cfg(&dc)).unwrap();
    let http = client();
    // Nothing registered: the route has no endpoint.
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 503);
    dc.register("blue-1", "api", &["blue"], b1.addr)
        .await
        .unwrap();
    eventually("blue-1 to receive traffic", || serves(&gw, &http, "blue-1")).await;
    dc.register("blue-2", "api", &["blue"], b2.addr)
        .await
        .unwrap();
    eventually("blue-2 to receive traffic", || serves(&gw, &http, "blue-2")).await;
    // A failing check takes blue-2 out.
    dc.check("blue-2", "fail").await.unwrap();
    eventually("blue has one endpoint", || async {
        (upstream(&gw, &http, "blue").await?["endpoints"]
            .as_array()?
            .len()
            == 1)
            .then_some(())
    })
    .await;
    let before = b2.hits();
    for _ in 0..20 {
        assert_eq!(
            origin_of(http.get(gw.url("/")).send().await.unwrap()).await,
            (200, "blue-1".into())
        );
    }
    assert_eq!(b2.hits(), before, "no traffic to a failing instance");
    // Deregistering the last one empties the backend: 503.
    dc.deregister("blue-1").await.unwrap();
    eventually("blue to be empty", || async {
        (upstream(&gw, &http, "blue").await?["endpoints"]
            .as_array()?
            .is_empty())
        .then_some(())
    })
    .await;
    assert_eq!(http.get(gw.url("/")).send().await.unwrap().status(), 503);
    let u = upstream(&gw, &http, "blue").await.unwrap();
    assert_eq!(u["source"], "consul");
    assert_eq!(u["stale"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consul_outage_keeps_the_last_known_set_and_restart_serves_the_saved_one() {
    trace_init();
    let mut dc = DevConsul::start().unwrap();
    let b1 = Origin::start("blue-1").await;
    let mut gw = Gateway::start(&consul_cfg(&dc)).unwrap();
    let http = client();
    dc.register("blue-1", "api", &["blue"], b1.addr)
        .await
        .unwrap();
    eventually("blue-1 to receive traffic", || serves(&gw, &http, "blue-1")).await;
    eventually("the discovery cache to be written", || async {
        std::fs::read_to_string(gw.dir.join("discovery.json"))
            .ok()?
            .contains(&b1.addr.to_string())
            .then_some(())
    })
    .await;

    // Consul goes away: traffic continues, the set is reported stale.
    let addr = dc.addr;
    dc.kill();
    eventually("blue to be reported stale", || async {
        (upstream(&gw, &http, "blue").await?["stale"] == true).then_some(())
    })
    .await;
    for _ in 0..20 {
        assert_eq!(
            origin_of(http.get(gw.url("/")).send().await.unwrap()).await,
            (200, "blue-1".into())
        );
    }
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert!(
        m.contains("meshgate_discovery_stale{service=\"blue\"} 1"),
        "{m}"
    );

    // A gateway restarted during the outage serves from the saved set.
    assert!(gw.terminate().unwrap().success());
    let gw2 = Gateway::start_in(&gw.dir).unwrap();
    for _ in 0..10 {
        assert_eq!(
            origin_of(http.get(gw2.url("/")).send().await.unwrap()).await,
            (200, "blue-1".into())
        );
    }
    let u = upstream(&gw2, &http, "blue").await.unwrap();
    assert_eq!(u["source"], "saved");
    assert_eq!(u["stale"], true);

    // Consul comes back (empty: a new in-memory server); registrations catch up.
    let dc2 = DevConsul::start_on(addr).unwrap();
    let b2 = Origin::start("blue-2").await;
    dc2.register("blue-2", "api", &["blue"], b2.addr)
        .await
        .unwrap();
    eventually("the gateway to catch up with Consul", || {
        serves(&gw2, &http, "blue-2")
    })
    .await;
    let u = upstream(&gw2, &http, "blue").await.unwrap();
    assert_eq!(u["source"], "consul");
    assert_eq!(u["stale"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_through_one_gateway_moves_every_gateway() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    register_blue_and_green(&dc, &blue, &green).await;
    let gw1 = Gateway::start(&consul_cfg(&dc)).unwrap();
    let gw2 = Gateway::start(&consul_cfg(&dc)).unwrap();
    let http = client();
    for gw in [&gw1, &gw2] {
        eventually("blue to serve", || serves(gw, &http, "blue")).await;
    }
    let v = flip_as_alice(&gw1, &http).await;
    assert_eq!(v["route"]["weights"]["source"], "consul");
    // gw2 learns the flip through its KV watch.
    eventually("gw2 to follow the flip", || serves(&gw2, &http, "green")).await;
    for gw in [&gw1, &gw2] {
        for _ in 0..10 {
            assert_eq!(
                origin_of(http.get(gw.url("/")).send().await.unwrap())
                    .await
                    .1,
                "green"
            );
        }
    }
    let d: Value = gw2.admin_get_json(&http, "/v1/routes/web").await;
    assert_eq!(d["history"][0]["changed_by"], "alice");
    assert_eq!(d["route"]["weights"]["source"], "consul");

    // Two operators flip at once through different gateways, both seeing revision 1: one wins.
    let f1 = gw1
        .admin_req(&http, Method::POST, "/v1/routes/web/flip")
        .json(&json!({"expected_revision": 1}))
        .send();
    let f2 = gw2
        .admin_req(&http, Method::POST, "/v1/routes/web/flip")
        .json(&json!({"expected_revision": 1}))
        .send();
    let (r1, r2) = tokio::join!(f1, f2);
    let mut codes = [r1.unwrap().status().as_u16(), r2.unwrap().status().as_u16()];
    codes.sort_unstable();
    assert_eq!(codes, [200, 409]);
    // Returning to the file's weights is shared too.
    let r = gw2
        .admin_req(&http, Method::DELETE, "/v1/routes/web/weights")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for gw in [&gw1, &gw2] {
        eventually("both gateways to serve blue again", || {
            serves(gw, &http, "blue")
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gwctl_flips_in_consul_mode_and_both_gateways_follow() {
    use meshgate_e2e::harness::gwctl::Gwctl;
    trace_init();
    let dc = DevConsul::start().unwrap();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    register_blue_and_green(&dc, &blue, &green).await;
    let gw1 = Gateway::start(&consul_cfg(&dc)).unwrap();
    let gw2 = Gateway::start(&consul_cfg(&dc)).unwrap();
    let http = client();
    for gw in [&gw1, &gw2] {
        eventually("blue to serve", || serves(gw, &http, "blue")).await;
    }
    Gwctl::new(&gw1).run(&["flip", "web"]).await.expect_code(0);
    for gw in [&gw1, &gw2] {
        eventually("traffic to move to green on every gateway", || {
            serves(gw, &http, "green")
        })
        .await;
    }
    let before = blue.hits();
    for gw in [&gw1, &gw2] {
        for _ in 0..10 {
            assert_eq!(
                origin_of(http.get(gw.url("/")).send().await.unwrap())
                    .await
                    .1,
                "green"
            );
        }
    }
    assert_eq!(blue.hits(), before, "blue gets nothing after the flip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_mode_follows_checks_and_re_registrations_on_two_connections() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let (b1, b2, b1_moved) = (
        Origin::start("blue-1").await,
        Origin::start("blue-2").await,
        Origin::start("blue-1-moved").await,
    );
    dc.register("blue-1", "api", &["blue"], b1.addr)
        .await
        .unwrap();
    let gw = Gateway::start(&consul_cfg_mode(&dc, "fleet")).unwrap();
    let http = client();
    eventually("blue-1 to receive traffic", || serves(&gw, &http, "blue-1")).await;
    // A new instance: the catalog index moves.
    dc.register("blue-2", "api", &["blue"], b2.addr)
        .await
        .unwrap();
    eventually("blue-2 to receive traffic", || serves(&gw, &http, "blue-2")).await;
    // A check status change: health/state/any moves.
    dc.check("blue-2", "fail").await.unwrap();
    eventually("blue-2 to leave", || async {
        (upstream(&gw, &http, "blue").await?["endpoints"]
            .as_array()?
            .len()
            == 1)
            .then_some(())
    })
    .await;
    // The same instance re-registered on another port touches no check.
    dc.register("blue-1", "api", &["blue"], b1_moved.addr)
        .await
        .unwrap();
    eventually("the moved instance to receive traffic", || {
        serves(&gw, &http, "blue-1-moved")
    })
    .await;
    let before = b1.hits();
    for _ in 0..10 {
        assert_eq!(
            origin_of(http.get(gw.url("/")).send().await.unwrap())
                .await
                .1,
            "blue-1-moved"
        );
    }
    assert_eq!(b1.hits(), before);
}

/// Weights in Consul KV follow the same rule as endpoints: in an outage the last good weights
/// keep serving, reported stale (`/readyz`, a metric, an event), and when Consul is back the
/// gateway follows it again by itself. A Consul that comes back empty does not empty the
/// gateway: the last known endpoints serve until the services are registered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_outage_keeps_the_last_good_weights_reported_stale_until_consul_is_back() {
    trace_init();
    let mut dc = DevConsul::start().unwrap();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    register_blue_and_green(&dc, &blue, &green).await;
    let gw = Gateway::start(&consul_cfg(&dc)).unwrap();
    let http = client();
    eventually("blue to serve", || serves(&gw, &http, "blue")).await;
    flip_as_alice(&gw, &http).await;
    eventually("green to serve", || serves(&gw, &http, "green")).await;
    // What Consul holds, to restore it into the restarted server below.
    let keys: Vec<String> = http
        .get(format!("{}/v1/kv/meshgate/?keys", dc.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let mut kv = Vec::new();
    for key in keys {
        let raw = http
            .get(format!("{}/v1/kv/{key}?raw", dc.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        kv.push((key, raw));
    }

    let addr = dc.addr;
    dc.kill();
    let ready = || async {
        let v: Value = http
            .get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    eventually("the weights to be reported stale", || async {
        (ready().await["weights_ok"] == false).then_some(())
    })
    .await;
    let r = ready().await;
    assert_eq!(
        r["ready"], true,
        "stale weights do not make a gateway unready"
    );
    assert!(
        r["weights_errors"][0]
            .as_str()
            .unwrap()
            .contains("Consul KV unreadable"),
        "{r}"
    );
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert!(m.contains("meshgate_weights_stale 1"), "{m}");
    for _ in 0..10 {
        let got = origin_of(http.get(gw.url("/")).send().await.unwrap()).await;
        assert_eq!(got, (200, "green".into()), "the last good weights serve");
    }

    // Consul comes back empty (a new in-memory server): until the services are registered
    // again the gateway keeps the last known set rather than failing every request, and the
    // weights it last read.
    let dc2 = DevConsul::start_on(addr).unwrap();
    let t0 = tokio::time::Instant::now();
    let mut sent = 0;
    while t0.elapsed() < std::time::Duration::from_secs(2) {
        let got = origin_of(http.get(gw.url("/")).send().await.unwrap()).await;
        assert_eq!(
            got,
            (200, "green".into()),
            "request {sent} after Consul came back empty"
        );
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let u = upstream(&gw, &http, "green").await.unwrap();
    assert_eq!(u["stale"], true, "{u}");
    assert!(
        u["stale_reason"]
            .as_str()
            .unwrap()
            .contains("no instance right after an outage"),
        "{u}"
    );
    eprintln!("{sent} requests while Consul was empty: all served");
    // Then the services are registered again and the KV restored: the gateway follows Consul
    // again, no longer stale.
    register_blue_and_green(&dc2, &blue, &green).await;
    for (key, value) in kv {
        let put = http
            .put(format!("{}/v1/kv/{key}", dc2.url()))
            .body(value)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
    }
    eventually("the weights to be fresh again", || async {
        (ready().await["weights_ok"] == true).then_some(())
    })
    .await;
    let m = gw.admin_get_text(&http, "/metrics").await;
    assert!(m.contains("meshgate_weights_stale 0"), "{m}");
    assert!(
        gw.logged("Consul KV readable again"),
        "the recovery is logged"
    );
    eventually("green to serve again", || serves(&gw, &http, "green")).await;
}

/// Registers `blue` and `green` as instances blue-1 and green-1 of service api, tagged by colour.
async fn register_blue_and_green(dc: &DevConsul, blue: &Origin, green: &Origin) {
    dc.register("blue-1", "api", &["blue"], blue.addr)
        .await
        .unwrap();
    dc.register("green-1", "api", &["green"], green.addr)
        .await
        .unwrap();
}

/// Flips route web through `gw`'s admin API as alice; the answer's body.
async fn flip_as_alice(gw: &Gateway, http: &reqwest::Client) -> Value {
    let r = gw
        .admin_req(http, Method::POST, "/v1/routes/web/flip")
        .json(&json!({"changed_by": "alice", "reason": "release"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}
