//! SIGTERM: stop accepting, finish in-flight requests, exit 0.

use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};
use reqwest::Method;
use serde_json::Value;

use super::support::{client, service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    trace_init();
    let o = Origin::start("o").await;
    let cfg = format!(
        "{}[[routes]]\nname = \"r\"\nbackends = [{{ name = \"o\", weight = 1 }}]\n",
        service("o", &[&o], "round_robin")
    );
    let mut gw = Gateway::start(&cfg).unwrap();
    let http = client();
    let url = gw.url("/slow/1500");
    let inflight = tokio::spawn({
        let http = http.clone();
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    eventually("the slow request to be in flight", || async {
        let s: Value = gw
            .admin_req(&http, Method::GET, "/v1/stats")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (s["routes"][0]["backends"][0]["in_flight"].as_i64()? >= 1).then_some(())
    })
    .await;
    let (addr, admin) = (gw.addr, gw.admin);
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.terminate().unwrap();
        (s, gw)
    });
    // While draining, the admin API still answers and says not ready.
    eventually("readyz to report draining", || async {
        let r = http
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 503).then_some(())
    })
    .await;
    assert_eq!(
        inflight.await.unwrap().unwrap(),
        200,
        "the in-flight request finished"
    );
    let (exit, _gw) = status.await.unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
