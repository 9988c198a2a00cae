//! `scope = "fleet"` rate limits with no shared store: two gateways registered in devconsul
//! divide one limit between them (the sum they admit is the limit), when one leaves the other's
//! share grows back to the whole limit, and when a third joins it shrinks again. The limit is
//! counted per hour, so no bucket refills while the test runs: every count below is exact,
//! whatever the machine's speed, and each step waits for an event (the registry's count of
//! gateways), never for a time.

use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::{trace_init, Gateway, Origin};

use super::support::{client, service};

/// The fleet's limit: 20 an hour, 20 at once, per `x-key`.
const COUNT: usize = 20;

fn config(dc: &DevConsul, o: &Origin) -> String {
    format!(
        "[consul]\naddress = \"{}\"\nwait = \"5s\"\nbackoff_max = \"1s\"\ncache_file = \"discovery.json\"\nregister = true\nregister_ttl = \"2s\"\n\n{}[[routes]]\nname = \"api\"\npolicies = [\"fleet\"]\nbackends = [{{ name = \"o\", weight = 1 }}]\n\n[policies.fleet]\nkind = \"rate_limit\"\nrate = \"{COUNT}/h\"\nkey = \"header:x-key\"\nscope = \"fleet\"\n",
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
async fn two_gateways_share_a_fleet_limit_the_survivor_takes_it_all_back_and_a_newcomer_halves_it()
{
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

    // 15 requests of one key on each gateway, interleaved: each admits its half (10) and no
    // more, so the fleet admits the limit.
    let (mut on_a, mut on_b) = (0, 0);
    for _ in 0..15 {
        let (status, policy) = send(&a, &http, "k1").await;
        assert_eq!(policy, "\"fleet\";q=10;w=3600", "a's share");
        on_a += usize::from(status == 200);
        let (status, policy) = send(&b, &http, "k1").await;
        assert_eq!(policy, "\"fleet\";q=10;w=3600", "b's share");
        on_b += usize::from(status == 200);
    }
    assert_eq!((on_a, on_b), (10, 10), "each admits its share");
    assert_eq!(
        o.hits(),
        (on_a + on_b) as u64,
        "the refused never reached the upstream"
    );

    // B leaves (SIGTERM deregisters it): A re-divides once it sees the registry change.
    assert!(b.terminate().unwrap().success());
    eventually("a to count one gateway alive", || async {
        (gateways_seen(&a, &http).await == Some(1)).then_some(())
    })
    .await;
    // A's share is the whole limit again: a new key gets exactly 20 through it; k1 keeps its
    // bucket across the re-division (spent: B may have let as many through).
    let mut admitted = 0;
    for _ in 0..(COUNT + 5) {
        let (status, policy) = send(&a, &http, "k2").await;
        assert_eq!(policy, "\"fleet\";q=20;w=3600");
        admitted += usize::from(status == 200);
    }
    assert_eq!(admitted, COUNT, "the survivor admits the whole limit");
    assert_eq!(
        send(&a, &http, "k1").await.0,
        429,
        "k1's bucket carried over"
    );

    // C joins: A's share halves again, and a new key gets half the limit.
    let c = Gateway::start(&config(&dc, &o)).unwrap();
    for gw in [&a, &c] {
        eventually("each gateway to count two gateways alive again", || async {
            (gateways_seen(gw, &http).await == Some(2)).then_some(())
        })
        .await;
    }
    let mut admitted = 0;
    for _ in 0..15 {
        let (status, policy) = send(&a, &http, "k3").await;
        assert_eq!(policy, "\"fleet\";q=10;w=3600");
        admitted += usize::from(status == 200);
    }
    assert_eq!(admitted, COUNT / 2, "a's share after c joined");
}
