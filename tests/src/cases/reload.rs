//! Hot reload: applied on file change without failing a request; a broken file is rejected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use reqwest::Method;
use serde_json::Value;

use super::support::{client, origin_of};

fn cfg(blue: &Origin, green: &Origin, blue_w: u32, green_w: u32, extra: &str) -> String {
    super::support::blue_green(blue, green, blue_w, green_w, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_is_rejected_and_the_old_one_keeps_serving() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&cfg(&blue, &green, 100, 0, "")).unwrap();
    let http = client();
    // Line 21 of the written file is the route's `timeout`.
    gw.write_config(&cfg(&blue, &green, 0, 100, "timeout = \"fast\"\n"))
        .unwrap();
    let status: Value = eventually("the broken config to be reported", || async {
        let v: Value = gw
            .admin_req(&http, Method::GET, "/v1/config")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["last_reload"]["ok"] == false).then_some(v)
    })
    .await;
    let err = status["last_reload"]["errors"][0].as_str().unwrap();
    assert!(
        err.contains("gatewayd.toml:")
            && err.contains("routes.web.timeout")
            && err.contains("'fast' is not a duration"),
        "{err}"
    );
    let ready: Value = http
        .get(gw.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["config_ok"], false);
    assert_eq!(ready["ready"], true);
    for _ in 0..10 {
        assert_eq!(
            origin_of(http.get(gw.url("/")).send().await.unwrap()).await,
            (200, "blue".into()),
            "old config serves"
        );
    }
    // Fixing the file applies it.
    gw.write_config(&cfg(&blue, &green, 0, 100, "")).unwrap();
    eventually("green to serve after the fix", || async {
        (origin_of(http.get(gw.url("/")).send().await.ok()?).await.1 == "green").then_some(())
    })
    .await;
    assert!(gw.logged("config rejected; keeping previous"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&cfg(&blue, &green, 100, 0, "")).unwrap();
    let http = client();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (http, url, stop, ok, failed) = (
            http.clone(),
            gw.url("/"),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        load.push(tokio::spawn(async move {
            // Bounded: stops on the flag or after 20,000 requests.
            for _ in 0..20_000 {
                if stop.load(Relaxed) {
                    break;
                }
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Relaxed),
                    _ => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    let http2 = client();
    for round in 1..=6u32 {
        let (b, g) = if round % 2 == 0 { (100, 0) } else { (0, 100) };
        let extra = format!("\n[[routes]]\nname = \"extra{round}\"\npath = \"/extra{round}\"\nbackends = [{{ name = \"green\", weight = 1 }}]\n");
        gw.write_config(&cfg(&blue, &green, b, g, &extra)).unwrap();
        let want = format!("extra{round}");
        eventually("the reload to apply", || async {
            let v: Value = gw
                .admin_req(&http2, Method::GET, "/v1/routes")
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v.as_array()?
                .iter()
                .any(|r| r["name"] == want.as_str())
                .then_some(())
        })
        .await;
    }
    stop.store(true, Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(
        failed.load(Relaxed),
        0,
        "{} requests failed during reloads ({} ok)",
        failed.load(Relaxed),
        ok.load(Relaxed)
    );
    assert!(ok.load(Relaxed) > 100);
    assert!(
        blue.hits() > 0 && green.hits() > 0,
        "both weight settings served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_admin_reload_apply_the_file() {
    trace_init();
    let (blue, green) = (Origin::start("blue").await, Origin::start("green").await);
    let gw = Gateway::start(&cfg(&blue, &green, 100, 0, "")).unwrap();
    let http = client();
    // Write without the watcher's help being needed: POST /v1/reload answers with the result.
    gw.write_config(&cfg(&blue, &green, 0, 100, "")).unwrap();
    let r = gw
        .admin_req(&http, Method::POST, "/v1/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        origin_of(http.get(gw.url("/")).send().await.unwrap())
            .await
            .1,
        "green"
    );
    gw.write_config(&cfg(&blue, &green, 100, 0, "")).unwrap();
    gw.hangup();
    eventually("blue to serve after SIGHUP", || async {
        (origin_of(http.get(gw.url("/")).send().await.ok()?).await.1 == "blue").then_some(())
    })
    .await;
}
