//! Agent registration semantics.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::super::{State, Status, Weights};
use super::*;

fn def(id: &str, checks: Vec<CheckDefinition>) -> ServiceDefinition {
    ServiceDefinition {
        id: Some(id.into()),
        name: "api".into(),
        tags: vec!["v2".into()],
        address: "10.0.0.7".into(),
        tagged_addresses: BTreeMap::new(),
        meta: None,
        port: 8080,
        weights: None,
        enable_tag_override: false,
        kind: String::new(),
        checks,
    }
}

fn ttl(secs: u64) -> CheckDefinition {
    CheckDefinition {
        id: None,
        name: None,
        notes: String::new(),
        status: None,
        kind: CheckKind::Ttl(Duration::from_secs(secs)),
        interval: None,
        timeout: None,
        deregister_after: None,
        service_id: None,
    }
}

#[test]
fn check_ids_and_names_follow_consul() {
    let now = Instant::now();
    let mut st = State::new("dc1", "n1", false, now);
    st.agent_register(def("api-1", vec![ttl(10)]), false, now);
    let c = st.catalog.check("n1", "service:api-1").unwrap();
    assert_eq!(c.name, "Service 'api' check");
    assert_eq!(c.status, Status::Critical);
    assert_eq!(c.kind, "ttl");
    st.agent_register(def("api-2", vec![ttl(10), ttl(20)]), false, now);
    assert!(st.catalog.check("n1", "service:api-2:1").is_some());
    assert!(st.catalog.check("n1", "service:api-2:2").is_some());
    let svc = st.catalog.service("n1", "api-1").unwrap();
    assert_eq!(svc.tagged_addresses["lan_ipv4"].port, 8080);
    assert_eq!(
        svc.weights,
        Weights {
            passing: 1,
            warning: 1
        }
    );
}

#[test]
fn ttl_expiry_and_heartbeats() {
    let now = Instant::now();
    let mut st = State::new("dc1", "n1", false, now);
    st.agent_register(def("api-1", vec![ttl(10)]), false, now);
    assert!(st
        .agent_update_ttl("service:api-1", Status::Passing, "", now)
        .unwrap());
    let idx = st.catalog.service_index("api");
    // Same status and output: no index movement.
    assert!(!st
        .agent_update_ttl("service:api-1", Status::Passing, "", now)
        .unwrap());
    assert_eq!(st.catalog.service_index("api"), idx);
    assert_eq!(st.next_ttl_deadline(), Some(now + Duration::from_secs(10)));
    assert!(!st.expire_ttls(now + Duration::from_secs(9)));
    assert!(st.expire_ttls(now + Duration::from_secs(10)));
    let c = st.catalog.check("n1", "service:api-1").unwrap();
    assert_eq!(
        (c.status, c.output.as_str()),
        (Status::Critical, TTL_EXPIRED)
    );
    assert_eq!(st.next_ttl_deadline(), None);
}

#[test]
fn reregistration_keeps_check_status() {
    let now = Instant::now();
    let mut st = State::new("dc1", "n1", false, now);
    st.agent_register(def("api-1", vec![ttl(10)]), false, now);
    st.agent_update_ttl("service:api-1", Status::Passing, "ok", now)
        .unwrap();
    st.agent_register(def("api-1", vec![ttl(10)]), false, now);
    assert_eq!(
        st.catalog.check("n1", "service:api-1").unwrap().status,
        Status::Passing
    );
}

#[test]
fn errors_name_the_id() {
    let now = Instant::now();
    let mut st = State::new("dc1", "n1", false, now);
    assert_eq!(
        st.agent_deregister("x").unwrap_err().to_string(),
        "Unknown service ID \"x\". Ensure that the service ID is passed, not the service name."
    );
    assert_eq!(
        st.agent_update_ttl("x", Status::Passing, "", now)
            .unwrap_err()
            .to_string(),
        "Unknown check ID \"x\". Ensure that the check ID is passed, not the check name."
    );
    assert!(matches!(
        st.agent_update_ttl("serfHealth", Status::Passing, "", now),
        Err(AgentError::NoTtl(_))
    ));
}

#[test]
fn reaper_honours_minimum() {
    let now = Instant::now();
    let mut st = State::new("dc1", "n1", false, now);
    let mut check = ttl(5);
    check.deregister_after = Some(Duration::from_secs(1));
    st.agent_register(def("api-1", vec![check]), false, now);
    let min = Duration::from_secs(60);
    assert!(st
        .reap_critical(now + Duration::from_secs(59), min)
        .is_empty());
    assert_eq!(
        st.reap_critical(now + Duration::from_secs(60), min),
        vec!["api-1"]
    );
    assert!(st.catalog.service("n1", "api-1").is_none());
}
