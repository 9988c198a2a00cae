//! Upstream TLS beyond static endpoints and verified certificates: a Consul-discovered service
//! (devconsul) with `tls = {…}` is reached over TLS (the same service without the table is
//! not), and `insecure_skip_verify = true` accepts a self-signed upstream that verification
//! (webpki roots, or the test CA) refuses.

use std::net::SocketAddr;

use meshgate_e2e::harness::consul::DevConsul;
use meshgate_e2e::harness::eventually::eventually;
use meshgate_e2e::harness::tls::{self_signed, TlsOrigin};
use serde_json::Value;

use super::tls::{setup, API};

fn route(name: &str) -> String {
    format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}/\"\nbackends = [{{ name = \"{name}\", weight = 1 }}]\n\n")
}

/// `GET` through the gateway: status and body.
async fn get(http: &reqwest::Client, url: String) -> (u16, String) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A gateway-made 502 whose JSON message names TLS (or, for `tls`-less services, any 502).
fn assert_tls_502((status, body): &(u16, String), what: &str) {
    assert_eq!(*status, 502, "{what}: {body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert!(
        v["message"].as_str().unwrap_or("").contains("TLS"),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consul_discovered_service_is_reached_over_tls() {
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let origin = TlsOrigin::start(&s.pki, "consul-tls-origin", &["origin.test"], false).await;
    let dc = DevConsul::start().unwrap();
    dc.register("secure-1", "secure", &[], origin.addr)
        .await
        .unwrap();
    let body = format!(
        "[consul]\naddress = \"{}\"\nwait = \"5s\"\nbackoff_max = \"1s\"\ncache_file = \"discovery.json\"\n\n[services.secure]\nconsul = {{ service = \"secure\" }}\ntls = {{ ca_file = \"ca.pem\", server_name = \"origin.test\" }}\n\n[services.plain]\nconsul = {{ service = \"secure\" }}\n\n{}{}",
        dc.url(),
        route("secure"),
        route("plain"),
    );
    let gw = s.start(API, &body);
    let http = super::support::client();
    // Until discovery delivers the endpoint, the answer is 503.
    let got = eventually("the Consul endpoint to be used", || {
        let (http, url) = (http.clone(), gw.url("/secure/x"));
        async move {
            let got = get(&http, url).await;
            (got.0 != 503).then_some(got)
        }
    })
    .await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert!(
        got.1.contains("\"origin\":\"consul-tls-origin\""),
        "{}",
        got.1
    );
    // The same endpoints without `tls`: cleartext to a TLS server fails.
    let got = eventually("the plain service's endpoint", || {
        let (http, url) = (http.clone(), gw.url("/plain/x"));
        async move {
            let got = get(&http, url).await;
            (got.0 != 503).then_some(got)
        }
    })
    .await;
    assert_eq!(got.0, 502, "cleartext to a TLS upstream: {}", got.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_a_self_signed_upstream_that_verification_refuses() {
    let s = setup(&[("api", "api.example.com", 0x01)]).await;
    let (cert, key) = self_signed(&["origin.test"]);
    let origin = TlsOrigin::start_pem("self-signed", &cert, &key, None).await;
    let svc = |name: &str, addr: SocketAddr, tls: &str| {
        format!(
            "[services.{name}]\nendpoints = [\"{addr}\"]\ntls = {{ {tls} }}\n\n{}",
            route(name)
        )
    };
    let body = [
        svc("skip", origin.addr, "insecure_skip_verify = true"),
        svc(
            "skipname",
            origin.addr,
            "insecure_skip_verify = true, server_name = \"wrong.test\"",
        ),
        svc("webpki", origin.addr, "server_name = \"origin.test\""),
        svc(
            "testca",
            origin.addr,
            "ca_file = \"ca.pem\", server_name = \"origin.test\"",
        ),
    ]
    .concat();
    let gw = s.start(API, &body);
    let http = super::support::client();
    for name in ["skip", "skipname"] {
        let (status, body) = get(&http, gw.url(&format!("/{name}/x"))).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert!(
            body.contains("\"origin\":\"self-signed\""),
            "{name}: {body}"
        );
    }
    for name in ["webpki", "testca"] {
        let got = get(&http, gw.url(&format!("/{name}/x"))).await;
        assert_tls_502(&got, name);
    }
}
