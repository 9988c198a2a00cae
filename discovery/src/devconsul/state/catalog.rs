//! Nodes, service instances and checks, with Consul's catalog index rules.
//!
//! - `health/service/:s` and `catalog/service/:s` report a per-service index, bumped by any
//!   change to an instance of the service or to any check on it (node checks included). For a
//!   name with no instance left: the "last extinction" index, else the table maximum.
//! - `catalog/services` reports the services-table index: any service write moves it, check
//!   flaps do not.
//! - Writes that change nothing (same definition, same status and output) keep every index.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::records::{CheckRec, NodeRec, ServiceRec, Status};

/// The catalog tables and their indexes.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    nodes: BTreeMap<String, NodeRec>,
    /// Keyed by (node, service id).
    services: BTreeMap<(String, String), ServiceRec>,
    /// Keyed by (node, check id): iteration order is Consul's (node, CheckID) index order.
    checks: BTreeMap<(String, String), CheckRec>,
    service_indexes: BTreeMap<String, u64>,
    extinction: u64,
    nodes_index: u64,
    services_index: u64,
    checks_index: u64,
}

// === impl Catalog ===

impl Catalog {
    /// Inserts or updates a node; returns whether anything changed.
    pub(crate) fn upsert_node(&mut self, idx: u64, mut node: NodeRec) -> bool {
        if let Some(existing) = self.nodes.get(&node.name) {
            if existing.same_content(&node) {
                return false;
            }
            node.create_index = existing.create_index;
        } else {
            node.create_index = idx;
        }
        node.modify_index = idx;
        let name = node.name.clone();
        self.nodes.insert(name.clone(), node);
        self.nodes_index = idx;
        self.touch_node_services(idx, &name);
        true
    }

    /// Removes a node with its services and checks; returns whether it existed.
    pub(crate) fn remove_node(&mut self, idx: u64, name: &str) -> bool {
        if self.nodes.remove(name).is_none() {
            return false;
        }
        self.nodes_index = idx;
        let ids: Vec<String> = self
            .services
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, id)| id.clone())
            .collect();
        for id in ids {
            self.remove_service(idx, name, &id);
        }
        let before = self.checks.len();
        self.checks.retain(|(n, _), _| n != name);
        if self.checks.len() != before {
            self.checks_index = idx;
        }
        true
    }

    /// Looks a node up.
    pub(crate) fn node(&self, name: &str) -> Option<&NodeRec> {
        self.nodes.get(name)
    }

    /// All nodes, by name.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &NodeRec> {
        self.nodes.values()
    }

    /// Inserts or updates a service instance (its node must exist); returns whether anything
    /// changed. Indexes move only on a real change.
    pub(crate) fn upsert_service(&mut self, idx: u64, mut svc: ServiceRec) -> bool {
        let key = (svc.node.clone(), svc.id.clone());
        let mut old_name = None;
        if let Some(existing) = self.services.get(&key) {
            if existing.same_content(&svc) && existing.agent_local == svc.agent_local {
                return false;
            }
            svc.create_index = existing.create_index;
            if existing.name != svc.name {
                old_name = Some(existing.name.clone());
            }
        } else {
            svc.create_index = idx;
        }
        svc.modify_index = idx;
        let name = svc.name.clone();
        self.services.insert(key, svc);
        self.services_index = idx;
        self.touch_service(idx, &name);
        if let Some(old) = old_name {
            self.touch_service(idx, &old);
        }
        true
    }

    /// Removes a service instance and its checks.
    pub(crate) fn remove_service(&mut self, idx: u64, node: &str, id: &str) -> Option<ServiceRec> {
        let svc = self.services.remove(&(node.to_owned(), id.to_owned()))?;
        let before = self.checks.len();
        self.checks
            .retain(|(n, _), c| !(n == node && c.service_id == id));
        if self.checks.len() != before {
            self.checks_index = idx;
        }
        self.services_index = idx;
        self.touch_service(idx, &svc.name);
        Some(svc)
    }

    /// Looks an instance up by (node, service id).
    pub(crate) fn service(&self, node: &str, id: &str) -> Option<&ServiceRec> {
        self.services.get(&(node.to_owned(), id.to_owned()))
    }

    /// All instances, ordered by (node, id).
    pub(crate) fn services(&self) -> impl Iterator<Item = &ServiceRec> {
        self.services.values()
    }

    /// Instances of one service name, ordered by (node, id).
    pub(crate) fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ServiceRec> {
        self.services.values().filter(move |s| s.name == name)
    }

    /// Service name → union of tags, for `/v1/catalog/services`.
    pub(crate) fn service_names(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for svc in self.services.values() {
            out.entry(svc.name.clone())
                .or_default()
                .extend(svc.tags.iter().cloned());
        }
        out
    }

    /// Inserts or updates a check; keeps the previous status and output when `preserve` is set
    /// and the check exists (agent re-registration). Returns whether anything visible changed.
    pub(crate) fn upsert_check(&mut self, idx: u64, check: CheckRec, now: Instant) -> bool {
        self.upsert_check_inner(idx, check, now, false)
    }

    /// Like [`Catalog::upsert_check`], keeping an existing check's status and output.
    pub(crate) fn upsert_check_preserving(
        &mut self,
        idx: u64,
        check: CheckRec,
        now: Instant,
    ) -> bool {
        self.upsert_check_inner(idx, check, now, true)
    }

    fn upsert_check_inner(
        &mut self,
        idx: u64,
        mut check: CheckRec,
        now: Instant,
        preserve: bool,
    ) -> bool {
        let key = (check.node.clone(), check.id.clone());
        let previous = self.checks.get(&key);
        if let Some(prev) = previous {
            if preserve {
                check.status = prev.status;
                check.output = prev.output.clone();
            }
            check.create_index = prev.create_index;
            check.modify_index = prev.modify_index;
        }
        check.track_critical(previous, now);
        let changed = previous.map_or(true, |p| !p.same_content(&check));
        if changed {
            if previous.is_none() {
                check.create_index = idx;
            }
            check.modify_index = idx;
        }
        let (node, service_id) = (check.node.clone(), check.service_id.clone());
        self.checks.insert(key, check);
        if changed {
            self.checks_index = idx;
            self.touch_check_target(idx, &node, &service_id);
        }
        changed
    }

    /// Sets a check's status and output; `None` if the check does not exist, else whether it
    /// changed. Resets the TTL deadline of TTL checks either way.
    pub(crate) fn set_check_status(
        &mut self,
        idx: u64,
        node: &str,
        id: &str,
        status: Status,
        output: &str,
        now: Instant,
    ) -> Option<bool> {
        let mut check = self.checks.get(&(node.to_owned(), id.to_owned()))?.clone();
        check.status = status;
        check.output = output.to_owned();
        check.ttl_deadline = check.ttl.map(|ttl| now + ttl);
        Some(self.upsert_check(idx, check, now))
    }

    /// Removes a check.
    pub(crate) fn remove_check(&mut self, idx: u64, node: &str, id: &str) -> Option<CheckRec> {
        let check = self.checks.remove(&(node.to_owned(), id.to_owned()))?;
        self.checks_index = idx;
        self.touch_check_target(idx, node, &check.service_id);
        Some(check)
    }

    /// Looks a check up.
    pub(crate) fn check(&self, node: &str, id: &str) -> Option<&CheckRec> {
        self.checks.get(&(node.to_owned(), id.to_owned()))
    }

    /// All checks, ordered by (node, check id).
    pub(crate) fn checks(&self) -> impl Iterator<Item = &CheckRec> {
        self.checks.values()
    }

    /// Mutable access for timers (TTL deadlines); callers must not change visible fields.
    pub(crate) fn checks_mut(&mut self) -> impl Iterator<Item = &mut CheckRec> {
        self.checks.values_mut()
    }

    /// Checks that apply to an instance: its node's checks, then its own, in CheckID order.
    pub(crate) fn checks_for<'a>(
        &'a self,
        node: &'a str,
        service_id: &'a str,
    ) -> Vec<&'a CheckRec> {
        self.checks
            .values()
            .filter(|c| c.node == node && (c.service_id.is_empty() || c.service_id == service_id))
            .collect()
    }

    /// The index `health/service/:name` and `catalog/service/:name` report (before the floor).
    pub(crate) fn service_index(&self, name: &str) -> u64 {
        if let Some(idx) = self.service_indexes.get(name) {
            return *idx;
        }
        if self.extinction > 0 {
            return self.extinction;
        }
        self.nodes_index
            .max(self.services_index)
            .max(self.checks_index)
    }

    /// The services-table index (`catalog/services`).
    pub(crate) fn services_table_index(&self) -> u64 {
        self.services_index
    }

    /// The checks-table index (`health/state/:state`).
    pub(crate) fn checks_table_index(&self) -> u64 {
        self.checks_index
    }

    /// The nodes-table index (`catalog/nodes`).
    pub(crate) fn nodes_table_index(&self) -> u64 {
        self.nodes_index
    }

    /// Clamps every stored index to at most `to` (snapshot restore hook).
    pub(crate) fn clamp(&mut self, to: u64) {
        for n in self.nodes.values_mut() {
            n.create_index = n.create_index.min(to);
            n.modify_index = n.modify_index.min(to);
        }
        for s in self.services.values_mut() {
            s.create_index = s.create_index.min(to);
            s.modify_index = s.modify_index.min(to);
        }
        for c in self.checks.values_mut() {
            c.create_index = c.create_index.min(to);
            c.modify_index = c.modify_index.min(to);
        }
        for i in self.service_indexes.values_mut() {
            *i = (*i).min(to);
        }
        self.extinction = self.extinction.min(to);
        self.nodes_index = self.nodes_index.min(to);
        self.services_index = self.services_index.min(to);
        self.checks_index = self.checks_index.min(to);
    }

    fn touch_check_target(&mut self, idx: u64, node: &str, service_id: &str) {
        if service_id.is_empty() {
            self.touch_node_services(idx, node);
        } else if let Some(name) = self.service(node, service_id).map(|s| s.name.clone()) {
            self.touch_service(idx, &name);
        }
    }

    fn touch_node_services(&mut self, idx: u64, node: &str) {
        let names: BTreeSet<String> = self
            .services
            .values()
            .filter(|s| s.node == node)
            .map(|s| s.name.clone())
            .collect();
        for name in names {
            self.touch_service(idx, &name);
        }
    }

    /// Moves a service name's index, or records its extinction when no instance is left.
    fn touch_service(&mut self, idx: u64, name: &str) {
        if self.services.values().any(|s| s.name == name) {
            self.service_indexes.insert(name.to_owned(), idx);
        } else if self.service_indexes.remove(name).is_some() {
            self.extinction = idx;
        }
    }
}

#[cfg(test)]
mod tests;
