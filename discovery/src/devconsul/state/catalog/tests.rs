//! Index rules of the catalog.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;

use super::super::records::{CheckRec, NodeRec, ServiceRec, Status};
use super::Catalog;

fn catalog() -> (Catalog, Instant) {
    let now = Instant::now();
    let mut c = Catalog::default();
    c.upsert_node(1, NodeRec::new("n1", "10.0.0.5", "id".into()));
    c.upsert_check(
        2,
        CheckRec::node_check("n1", "serfHealth", "Serf", Status::Passing, ""),
        now,
    );
    c.upsert_service(3, ServiceRec::new("n1", "api-1", "api", 8080));
    c.upsert_service(4, ServiceRec::new("n1", "web-1", "web", 80));
    (c, now)
}

fn service_check(id: &str, svc: &str, name: &str) -> CheckRec {
    let mut c = CheckRec::node_check("n1", id, "check", Status::Critical, "");
    c.service_id = svc.into();
    c.service_name = name.into();
    c
}

#[test]
fn service_write_moves_its_index_and_the_table() {
    let (mut c, _) = catalog();
    assert_eq!(c.service_index("api"), 3);
    assert_eq!(c.services_table_index(), 4);
    let mut svc = ServiceRec::new("n1", "api-1", "api", 8081);
    assert!(c.upsert_service(5, svc.clone()));
    assert_eq!(c.service_index("api"), 5);
    assert_eq!(c.service_index("web"), 4);
    assert_eq!(c.services_table_index(), 5);
    // Same definition again: nothing moves.
    svc.port = 8081;
    assert!(!c.upsert_service(6, svc));
    assert_eq!(c.service_index("api"), 5);
    assert_eq!(c.services_table_index(), 5);
    assert_eq!(c.service("n1", "api-1").unwrap().create_index, 3);
}

#[test]
fn check_flaps_move_service_index_not_services_table() {
    let (mut c, now) = catalog();
    c.upsert_check(5, service_check("service:api-1", "api-1", "api"), now);
    assert_eq!(c.service_index("api"), 5);
    assert_eq!(
        c.set_check_status(6, "n1", "service:api-1", Status::Passing, "", now),
        Some(true)
    );
    assert_eq!(c.service_index("api"), 6);
    assert_eq!(c.service_index("web"), 4);
    assert_eq!(c.services_table_index(), 4);
    assert_eq!(c.checks_table_index(), 6);
    // Unchanged status and output: no index change.
    assert_eq!(
        c.set_check_status(7, "n1", "service:api-1", Status::Passing, "", now),
        Some(false)
    );
    assert_eq!(c.service_index("api"), 6);
    // Output alone changes the index.
    assert_eq!(
        c.set_check_status(8, "n1", "service:api-1", Status::Passing, "ok", now),
        Some(true)
    );
    assert_eq!(c.service_index("api"), 8);
}

#[test]
fn node_check_moves_every_service_on_the_node() {
    let (mut c, now) = catalog();
    c.set_check_status(9, "n1", "serfHealth", Status::Critical, "down", now);
    assert_eq!(c.service_index("api"), 9);
    assert_eq!(c.service_index("web"), 9);
}

#[test]
fn extinction_index_for_vanished_services() {
    let (mut c, _) = catalog();
    assert!(c.remove_service(10, "n1", "api-1").is_some());
    assert_eq!(c.service_index("api"), 10);
    assert_eq!(c.service_index("never-existed"), 10);
    assert_eq!(c.services_table_index(), 10);
}

#[test]
fn critical_since_survives_critical_updates() {
    let (mut c, now) = catalog();
    c.upsert_check(5, service_check("service:api-1", "api-1", "api"), now);
    let since = c.check("n1", "service:api-1").unwrap().critical_since;
    assert_eq!(since, Some(now));
    let later = now + Duration::from_secs(5);
    c.set_check_status(6, "n1", "service:api-1", Status::Critical, "x", later);
    assert_eq!(
        c.check("n1", "service:api-1").unwrap().critical_since,
        since
    );
    c.set_check_status(7, "n1", "service:api-1", Status::Passing, "", later);
    assert_eq!(c.check("n1", "service:api-1").unwrap().critical_since, None);
}
