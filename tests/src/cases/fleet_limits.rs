//! `scope = "fleet"` rate limits with no shared store: two gateways registered in devconsul
//! divide one limit between them (the sum they admit stays within the limit), and when one
//! leaves the other's share grows back to the whole limit within seconds.

use std::time::Duration;

use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};

use super::support::{client, service};

/// The fleet's limit: 20 a minute, 20 at once, per `x-key`.
const COUNT: usize = 20;
/// Seconds between two requests a share of 10 a minute refills.
const SHARE_REFILL_SECS: f64 = 6.0;

fn config(dc: &DevConsul, o: &Origin) -> String {
    format!(
        "[consul]\naddress = \"{}\"\nwait = \"5s\"\nbackoff_max = \"1s\"\ncache_file = \"discovery.json\"\nregister = true\nregister_ttl = \"2s\"\n\n{}[[routes]]\nname = \"api\"\npolicies = [\"fleet\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[policies.fleet]\nkind = \"rate_limit\"\nrate = \"{COUNT}/m\"\nkey = \"header:x-key\"\nscope = \"fleet\"\n",
        dc.url(),
        service("o", &[o], "round_robin"),
    )
}

/// The gateway's `meshgate_ratelimit_fleet_gateways{policy="fleet"}`.
async fn gateways_seen(gw: &Gateway, http: &reqwest::Client) -> Option<u64> {
    let m = gw.admin_get_text(http, "/metrics").await;
    m.lines()
        .find_map(|l| l.strip_prefix("meshgate_ratelimit_fleet_gateways{policy=\"fleet\"} "))
        .and_then(|v| v.parse().ok())
}

/// Sends one request with `key`; its status and `RateLimit-Policy`.
async fn send(gw: &Gateway, http: &reqwest::Client, key: &str) -> (u16, String) {
    let r = http
        .get(gw.url("/x"))
        .header("x-key", key)
        .send()
        .await
        .unwrap();
    let policy = r.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_string();
    (r.status().as_u16(), policy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_a_fleet_limit_and_the_survivor_takes_it_all_back() {
    trace_init();
    let dc = DevConsul::start().unwrap();
    let o = Origin::start("o").await;
    let a = Gateway::start(&config(&dc, &o)).unwrap();
    let mut b = Gateway::start(&config(&dc, &o)).unwrap();
    let http = client();
    for gw in [&a, &b] {
        eventually("each gateway to count two gateways alive", || async {
            (gateways_seen(gw, &http).await == Some(2)).then_some(())
        })
        .await;
    }

    // 15 requests of one key on each gateway, interleaved: each admits its half (10), so the
    // fleet admits the limit, plus at most one refill per gateway for each 6 s the loop took.
    let started = tokio::time::Instant::now();
    let (mut on_a, mut on_b) = (0, 0);
    for _ in 0..15 {
        let (status, policy) = send(&a, &http, "k1").await;
        assert_eq!(policy, "\"fleet\";q=10;w=60", "a's share");
        on_a += usize::from(status == 200);
        let (status, policy) = send(&b, &http, "k1").await;
        assert_eq!(policy, "\"fleet\";q=10;w=60", "b's share");
        on_b += usize::from(status == 200);
    }
    let refills = 2 * (started.elapsed().as_secs_f64() / SHARE_REFILL_SECS).ceil() as usize;
    assert!(
        on_a + on_b <= COUNT + refills,
        "the fleet admitted {on_a} + {on_b} > {COUNT} + {refills} refills"
    );
    assert!(
        on_a >= 10 && on_b >= 10,
        "each admits its share: {on_a}, {on_b}"
    );
    assert_eq!(
        o.hits(),
        (on_a + on_b) as u64,
        "the refused never reached the upstream"
    );

    // B leaves (SIGTERM deregisters it): A re-divides within seconds.
    assert!(b.terminate().unwrap().success());
    let left = tokio::time::Instant::now();
    eventually("a to count one gateway alive", || async {
        (gateways_seen(&a, &http).await == Some(1)).then_some(())
    })
    .await;
    let took = left.elapsed();
    eprintln!("fleet re-divided {took:?} after a gateway left");
    assert!(took < Duration::from_secs(10), "re-division took {took:?}");
    // A's share is the whole limit again: a new key gets all 20 through it.
    let mut admitted = 0;
    for _ in 0..(COUNT + 5) {
        let (status, policy) = send(&a, &http, "k2").await;
        assert_eq!(policy, "\"fleet\";q=20;w=60");
        admitted += usize::from(status == 200);
    }
    assert!(
        (COUNT..=COUNT + 1).contains(&admitted),
        "the survivor admits the whole limit: {admitted}"
    );
}
