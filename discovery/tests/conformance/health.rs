//! Health, catalog and agent cases (consul-api.md §3, §4, §6).

use std::time::Duration;

use discovery::consul::{CheckStatus, HealthQuery, QueryOptions};
use discovery::ConsulClient;
use http::{Method, StatusCode};
use serde_json::json;

use super::harness::{targets, unique, within, Target};

/// Registers a node with one service instance through the catalog; `node_check` is the status
/// of its `serfHealth` node check and `service_check` the status of the instance's check.
async fn catalog_instance(
    t: &Target,
    node: &str,
    service: &str,
    addr: &str,
    node_check: &str,
    service_check: &str,
) {
    let body = json!({
        "Node": node,
        "Address": "10.9.9.9",
        "Service": {"ID": format!("{service}-{node}"), "Service": service, "Port": 8080, "Address": addr},
        "Checks": [
            {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": node_check},
            {"CheckID": format!("service:{service}-{node}"), "Name": "svc", "Status": service_check,
             "ServiceID": format!("{service}-{node}")}
        ]
    });
    let r = t
        .raw(
            Method::PUT,
            "/v1/catalog/register",
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}: {}", t.name, r.text());
}

async fn deregister_node(t: &Target, node: &str) {
    let body = json!({"Node": node});
    t.raw(
        Method::PUT,
        "/v1/catalog/deregister",
        body.to_string().as_bytes(),
    )
    .await;
}

#[tokio::test]
async fn health_passing_counts_node_checks() {
    for t in targets().await {
        let service = unique("conf-svc");
        let (good, bad, warn) = (
            unique("conf-node"),
            unique("conf-node"),
            unique("conf-node"),
        );
        catalog_instance(&t, &good, &service, "", "passing", "passing").await;
        catalog_instance(&t, &bad, &service, "10.1.1.1", "critical", "passing").await;
        catalog_instance(&t, &warn, &service, "10.1.1.2", "passing", "warning").await;

        let all = t
            .raw(Method::GET, &format!("/v1/health/service/{service}"), b"")
            .await;
        assert_eq!(all.json().as_array().unwrap().len(), 3, "{}", t.name);
        for flag in ["passing", "passing=1", "passing=true"] {
            let r = t
                .raw(
                    Method::GET,
                    &format!("/v1/health/service/{service}?{flag}"),
                    b"",
                )
                .await;
            let entries = r.json();
            let entries = entries.as_array().unwrap();
            assert_eq!(
                entries.len(),
                1,
                "{}: ?{flag} keeps only all-passing entries",
                t.name
            );
            let e = &entries[0];
            assert_eq!(e["Node"]["Node"], good.as_str());
            assert_eq!(e["Service"]["Address"], "", "empty Service.Address is kept");
            let tagged = e["Service"].get("TaggedAddresses");
            assert!(tagged.map_or(true, |v| v.as_object().map_or(true, |m| m.is_empty())));
            assert_eq!(e["Service"]["Weights"], json!({"Passing": 1, "Warning": 1}));
            assert_eq!(
                e["Checks"].as_array().unwrap().len(),
                2,
                "node and service checks"
            );
            assert!(e["Checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["CheckID"] == "serfHealth"));
        }
        let r = t
            .raw(
                Method::GET,
                &format!("/v1/health/service/{service}?passing=maybe"),
                b"",
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.text().contains("Invalid value for ?passing"),
            "{}",
            r.text()
        );

        // The client: passing-only through the server, or warning kept client-side.
        let client = t.client();
        let q = HealthQuery {
            passing_only: true,
            ..HealthQuery::default()
        };
        let passing = client
            .health_service(&service, &q, QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(passing.value.len(), 1);
        assert_eq!(
            passing.value[0].host(),
            "10.9.9.9",
            "falls back to Node.Address"
        );
        let every = client
            .health_service(&service, &HealthQuery::default(), QueryOptions::default())
            .await
            .unwrap();
        let mut statuses: Vec<_> = every.value.iter().map(|e| e.status()).collect();
        statuses.sort();
        assert_eq!(
            statuses,
            vec![
                CheckStatus::Passing,
                CheckStatus::Warning,
                CheckStatus::Critical
            ]
        );

        for n in [&good, &bad, &warn] {
            deregister_node(&t, n).await;
        }
        let r = t
            .raw(Method::GET, &format!("/v1/health/service/{service}"), b"")
            .await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::OK, "[]"),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn health_tags_and_filter() {
    for t in targets().await {
        let service = unique("conf-tags");
        let client = t.client();
        for (id, tags, version) in [
            ("a", vec!["v1", "blue"], "1"),
            ("b", vec!["v2", "blue"], "2"),
        ] {
            let body = json!({"ID": format!("{service}-{id}"), "Name": service, "Tags": tags, "Port": 80,
                              "Meta": {"version": version}, "Check": {"TTL": "30s", "Status": "passing"}});
            let r = t
                .raw(
                    Method::PUT,
                    "/v1/agent/service/register",
                    body.to_string().as_bytes(),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        }
        let count = |path: String| {
            let t = &t;
            async move {
                t.raw(Method::GET, &path, b"")
                    .await
                    .json()
                    .as_array()
                    .unwrap()
                    .len()
            }
        };
        assert_eq!(
            count(format!("/v1/health/service/{service}?tag=blue")).await,
            2
        );
        assert_eq!(
            count(format!("/v1/health/service/{service}?tag=blue&tag=v2")).await,
            1,
            "tags are ANDed"
        );
        let filter = "filter=Service.Meta.version%20%3D%3D%20%222%22";
        assert_eq!(
            count(format!("/v1/health/service/{service}?{filter}")).await,
            1
        );
        let filter = "filter=Service.Tags%20contains%20%22v1%22%20and%20Service.Meta.version%20!%3D%20%222%22";
        assert_eq!(
            count(format!("/v1/health/service/{service}?{filter}")).await,
            1
        );
        let r = t.raw(Method::GET, "/v1/agent/services", b"").await;
        let services = r.json();
        assert_eq!(
            services[format!("{service}-a")]["Service"],
            service.as_str()
        );
        for id in ["a", "b"] {
            client
                .agent_service_deregister(&format!("{service}-{id}"))
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn agent_registration_rules_and_errors() {
    for t in targets().await {
        let service = unique("conf-agent");
        let body = json!({"Name": service, "Port": 9000, "Address": "10.0.0.7",
                          "Checks": [{"TTL": "30s"}, {"TTL": "60s", "Status": "warning"}]});
        let r = t
            .raw(
                Method::PUT,
                "/v1/agent/service/register",
                body.to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let checks = t.raw(Method::GET, "/v1/agent/checks", b"").await.json();
        let first = &checks[format!("service:{service}:1")];
        assert_eq!(
            first["Status"], "critical",
            "{}: TTL checks start critical",
            t.name
        );
        assert_eq!(first["Name"], format!("Service '{service}' check"));
        assert_eq!(first["ServiceID"], service.as_str(), "ID defaults to Name");
        assert_eq!(checks[format!("service:{service}:2")]["Status"], "warning");
        let entries = t
            .raw(Method::GET, &format!("/v1/health/service/{service}"), b"")
            .await
            .json();
        let tagged = &entries[0]["Service"]["TaggedAddresses"];
        assert_eq!(
            tagged["lan_ipv4"],
            json!({"Address": "10.0.0.7", "Port": 9000})
        );

        let r = t
            .raw(Method::PUT, "/v1/agent/service/deregister/nope-nope", b"")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(
            r.text().contains(r#"Unknown service ID "nope-nope""#),
            "{}",
            r.text()
        );
        let r = t
            .raw(Method::PUT, "/v1/agent/check/pass/nope-nope", b"")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(
            r.text().contains(r#"Unknown check ID "nope-nope""#),
            "{}",
            r.text()
        );

        let client = t.client();
        client
            .agent_check_update(&format!("service:{service}:1"), CheckStatus::Passing, "ok")
            .await
            .unwrap();
        let checks = t.raw(Method::GET, "/v1/agent/checks", b"").await.json();
        assert_eq!(checks[format!("service:{service}:1")]["Output"], "ok");
        client.agent_service_deregister(&service).await.unwrap();
        let checks = t.raw(Method::GET, "/v1/agent/checks", b"").await.json();
        assert!(
            checks.get(format!("service:{service}:1")).is_none(),
            "deregister removes checks"
        );
    }
}

/// Blocks on the service's health until `pred` holds for its only instance's checks.
async fn wait_for_check(client: &ConsulClient, service: &str, pred: impl Fn(&str, &str) -> bool) {
    let mut index = 0;
    within(async {
        loop {
            let q = QueryOptions {
                index,
                wait: Some(Duration::from_secs(5)),
            };
            let resp = client
                .health_service(service, &HealthQuery::default(), q)
                .await
                .unwrap();
            index = resp.meta.index;
            let found = resp
                .value
                .iter()
                .flat_map(|e| &e.checks)
                .filter(|c| !c.service_id.is_empty())
                .any(|c| pred(&c.status, &c.output));
            if found {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn ttl_expiry_turns_critical() {
    for t in targets().await {
        let service = unique("conf-ttl");
        let client = t.client();
        let body = json!({"Name": service, "Port": 80, "Check": {"TTL": "1s"}});
        t.raw(
            Method::PUT,
            "/v1/agent/service/register",
            body.to_string().as_bytes(),
        )
        .await;
        client
            .agent_check_pass(&format!("service:{service}"), Some("alive"))
            .await
            .unwrap();
        wait_for_check(&client, &service, |s, o| s == "passing" && o == "alive").await;
        wait_for_check(&client, &service, |s, o| {
            s == "critical" && o.contains("TTL expired")
        })
        .await;
        client.agent_service_deregister(&service).await.unwrap();
    }
}

#[tokio::test]
async fn catalog_services_index_ignores_health_flaps() {
    for t in targets().await {
        let service = unique("conf-flap");
        let client = t.client();
        let body = json!({"Name": service, "Tags": ["x"], "Port": 80, "Check": {"TTL": "60s"}});
        t.raw(
            Method::PUT,
            "/v1/agent/service/register",
            body.to_string().as_bytes(),
        )
        .await;
        let catalog = client
            .catalog_services(QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(catalog.value.get(&service), Some(&vec!["x".to_owned()]));
        let health = client
            .health_service(&service, &HealthQuery::default(), QueryOptions::default())
            .await
            .unwrap();
        client
            .agent_check_pass(&format!("service:{service}"), None)
            .await
            .unwrap();
        wait_for_check(&client, &service, |s, _| s == "passing").await;
        let health2 = client
            .health_service(&service, &HealthQuery::default(), QueryOptions::default())
            .await
            .unwrap();
        assert!(
            health2.meta.index > health.meta.index,
            "{}: a flap moves the service index",
            t.name
        );
        if t.is_dev() {
            // A real agent may see unrelated catalog writes meanwhile; devconsul sees none.
            let catalog2 = client
                .catalog_services(QueryOptions::default())
                .await
                .unwrap();
            assert_eq!(
                catalog2.meta.index, catalog.meta.index,
                "flaps do not move catalog/services"
            );
        }
        // A port change moves catalog/services even though its body is unchanged.
        let body = json!({"Name": service, "Tags": ["x"], "Port": 81, "Check": {"TTL": "60s"}});
        t.raw(
            Method::PUT,
            "/v1/agent/service/register",
            body.to_string().as_bytes(),
        )
        .await;
        let q = QueryOptions {
            index: catalog.meta.index,
            wait: Some(Duration::from_secs(10)),
        };
        let catalog3 = within(client.catalog_services(q)).await.unwrap();
        assert!(catalog3.meta.index > catalog.meta.index, "{}", t.name);
        assert_eq!(catalog3.value, catalog.value);
        client.agent_service_deregister(&service).await.unwrap();
    }
}

#[tokio::test]
async fn register_self_heartbeats_and_deregisters() {
    for t in targets().await {
        let client = t.client();
        let id = unique("meshgate-gw");
        let reg = discovery::register_self(
            client.clone(),
            id.clone(),
            discovery::register::DEFAULT_SERVICE_NAME,
            "127.0.0.1:9901".parse().unwrap(),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
        assert_eq!(reg.check_id(), format!("service:{id}"));
        let checks = client.agent_checks().await.unwrap();
        assert_eq!(checks[reg.check_id()].status, "passing", "{}", t.name);
        assert!(client.agent_service_ids().await.unwrap().contains(&id));
        // Follow the instance for longer than one TTL: without the heartbeat (every ttl/3) the
        // check would expire after 3 s and the blocking query would report it critical.
        let start = tokio::time::Instant::now();
        let mut index = 0;
        while start.elapsed() < Duration::from_secs(5) {
            let opts = QueryOptions {
                index,
                wait: Some(Duration::from_secs(2)),
            };
            let resp = within(client.health_service("meshgate", &HealthQuery::default(), opts))
                .await
                .unwrap();
            index = resp.meta.index;
            let me = resp.value.iter().find(|e| e.service.id == id).unwrap();
            assert_eq!(
                me.status(),
                CheckStatus::Passing,
                "{}: heartbeat keeps the TTL check passing",
                t.name
            );
        }
        reg.deregister().await.unwrap();
        assert!(!client.agent_service_ids().await.unwrap().contains(&id));
    }
}
