//! Agent-local registration semantics: service and check definitions, TTL expiry, and the
//! `DeregisterCriticalServiceAfter` reaper (consul-api.md §6).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::{CheckRec, ServiceAddress, ServiceRec, State, Status, Weights};
use crate::go_duration;

/// Output Consul writes on an expired TTL check.
pub(crate) const TTL_EXPIRED: &str = "TTL expired";

/// What kind of check a definition describes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CheckKind {
    /// Updated by the application through `/v1/agent/check/{pass,warn,fail,update}`.
    Ttl(Duration),
    /// Probed by the agent every `interval`.
    Probe(super::Probe),
    /// Any other kind (`script`, `grpc`, `alias`…): stored, never executed (stays as registered).
    Other(&'static str),
}

/// A check as registered (agent endpoints).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckDefinition {
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) notes: String,
    pub(crate) status: Option<Status>,
    pub(crate) kind: CheckKind,
    pub(crate) interval: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deregister_after: Option<Duration>,
    pub(crate) service_id: Option<String>,
}

/// A service as registered through `/v1/agent/service/register`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceDefinition {
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    pub(crate) tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub(crate) meta: Option<BTreeMap<String, String>>,
    pub(crate) port: i64,
    pub(crate) weights: Option<Weights>,
    pub(crate) enable_tag_override: bool,
    pub(crate) kind: String,
    pub(crate) checks: Vec<CheckDefinition>,
}

/// Agent operation failures, rendered by the HTTP layer with Consul's exact messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AgentError {
    /// 404.
    #[error(
        "Unknown service ID {0:?}. Ensure that the service ID is passed, not the service name."
    )]
    UnknownService(String),
    /// 404.
    #[error("Unknown check ID {0:?}. Ensure that the check ID is passed, not the check name.")]
    UnknownCheck(String),
    /// 500: pass/warn/fail on a check that is not a TTL check.
    #[error("CheckID {0:?} does not have associated TTL")]
    NoTtl(String),
    /// 400.
    #[error("{0}")]
    BadRequest(String),
}

// === impl State (agent) ===

impl State {
    /// Registers (or re-registers) an agent-local service with its checks. Existing checks keep
    /// their status and output; `replace_existing_checks` removes the service's other checks.
    pub(crate) fn agent_register(
        &mut self,
        def: ServiceDefinition,
        replace_existing_checks: bool,
        now: Instant,
    ) {
        let node = self.node_name.clone();
        let id = def.id.clone().unwrap_or_else(|| def.name.clone());
        let mut svc = ServiceRec::new(&node, &id, &def.name, def.port);
        svc.tags = def.tags.clone();
        svc.address = def.address.clone();
        svc.tagged_addresses = def.tagged_addresses.clone();
        add_default_tagged_addresses(&mut svc);
        svc.meta = def.meta.clone();
        svc.weights = def.weights.unwrap_or(svc.weights);
        svc.enable_tag_override = def.enable_tag_override;
        svc.kind = def.kind.clone();
        svc.agent_local = true;
        let idx = self.next_index();
        self.catalog.upsert_service(idx, svc);

        let total = def.checks.len();
        let mut kept = BTreeSet::new();
        for (i, check) in def.checks.iter().enumerate() {
            let check_id = check.id.clone().unwrap_or_else(|| {
                if total > 1 {
                    format!("service:{id}:{}", i + 1)
                } else {
                    format!("service:{id}")
                }
            });
            let name = check
                .name
                .clone()
                .unwrap_or_else(|| format!("Service '{}' check", def.name));
            let mut rec = check_record(&node, &check_id, &name, check, now);
            rec.service_id = id.clone();
            rec.service_name = def.name.clone();
            rec.service_tags = def.tags.clone();
            kept.insert(check_id);
            let idx = self.next_index();
            self.catalog.upsert_check_preserving(idx, rec, now);
        }
        if replace_existing_checks {
            let stale: Vec<String> = self
                .catalog
                .checks()
                .filter(|c| c.node == node && c.service_id == id && !kept.contains(&c.id))
                .map(|c| c.id.clone())
                .collect();
            for check_id in stale {
                let idx = self.next_index();
                self.catalog.remove_check(idx, &node, &check_id);
            }
        }
    }

    /// Deregisters an agent-local service and its checks.
    pub(crate) fn agent_deregister(&mut self, id: &str) -> Result<(), AgentError> {
        let node = self.node_name.clone();
        match self.catalog.service(&node, id) {
            Some(svc) if svc.agent_local => {}
            _ => return Err(AgentError::UnknownService(id.to_owned())),
        }
        let idx = self.next_index();
        self.catalog.remove_service(idx, &node, id);
        Ok(())
    }

    /// Registers a standalone agent check (`/v1/agent/check/register`).
    pub(crate) fn agent_register_check(
        &mut self,
        def: CheckDefinition,
        now: Instant,
    ) -> Result<(), AgentError> {
        let node = self.node_name.clone();
        let name = def
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| AgentError::BadRequest("Missing check name".to_owned()))?;
        let id = def.id.clone().unwrap_or_else(|| name.clone());
        let mut rec = check_record(&node, &id, &name, &def, now);
        if let Some(service_id) = def.service_id.as_deref().filter(|s| !s.is_empty()) {
            let svc = self.catalog.service(&node, service_id).ok_or_else(|| {
                AgentError::BadRequest(format!("ServiceID {service_id:?} does not exist"))
            })?;
            rec.service_id = svc.id.clone();
            rec.service_name = svc.name.clone();
            rec.service_tags = svc.tags.clone();
        }
        let idx = self.next_index();
        self.catalog.upsert_check(idx, rec, now);
        Ok(())
    }

    /// Removes an agent check.
    pub(crate) fn agent_deregister_check(&mut self, id: &str) -> Result<(), AgentError> {
        let node = self.node_name.clone();
        match self.catalog.check(&node, id) {
            Some(c) if c.agent_local => {}
            _ => return Err(AgentError::UnknownCheck(id.to_owned())),
        }
        let idx = self.next_index();
        self.catalog.remove_check(idx, &node, id);
        Ok(())
    }

    /// Sets a TTL check's status and output and restarts its TTL. Returns whether anything
    /// visible changed (an identical heartbeat changes no index, as on a real agent).
    pub(crate) fn agent_update_ttl(
        &mut self,
        id: &str,
        status: Status,
        output: &str,
        now: Instant,
    ) -> Result<bool, AgentError> {
        let node = self.node_name.clone();
        match self.catalog.check(&node, id) {
            None => return Err(AgentError::UnknownCheck(id.to_owned())),
            Some(c) if c.ttl.is_none() => return Err(AgentError::NoTtl(id.to_owned())),
            Some(_) => {}
        }
        let idx = self.next_index();
        let changed = self
            .catalog
            .set_check_status(idx, &node, id, status, output, now)
            .unwrap_or(false);
        Ok(changed)
    }

    /// Probes due at `now` (node, check id, probe, timeout); their next run is scheduled.
    pub(crate) fn due_probes(
        &mut self,
        now: Instant,
    ) -> Vec<(String, String, super::Probe, Duration)> {
        let mut due = Vec::new();
        for c in self.catalog.checks_mut() {
            let (Some(probe), Some(next)) = (&c.probe, c.next_probe) else {
                continue;
            };
            if next <= now {
                due.push((c.node.clone(), c.id.clone(), probe.clone(), c.probe_timeout));
                // Consul runs checks at most once a second.
                c.next_probe = Some(now + c.probe_every.max(Duration::from_secs(1)));
            }
        }
        due
    }

    /// The earliest scheduled probe.
    pub(crate) fn next_probe(&self) -> Option<Instant> {
        self.catalog.checks().filter_map(|c| c.next_probe).min()
    }

    /// The earliest pending TTL deadline.
    pub(crate) fn next_ttl_deadline(&self) -> Option<Instant> {
        self.catalog.checks().filter_map(|c| c.ttl_deadline).min()
    }

    /// Turns every TTL check whose deadline passed critical with output `TTL expired`.
    /// Returns whether anything changed.
    pub(crate) fn expire_ttls(&mut self, now: Instant) -> bool {
        let expired: Vec<(String, String)> = self
            .catalog
            .checks()
            .filter(|c| c.ttl_deadline.is_some_and(|d| d <= now))
            .map(|c| (c.node.clone(), c.id.clone()))
            .collect();
        let mut changed = false;
        for (node, id) in expired {
            let idx = self.next_index();
            changed |= self
                .catalog
                .set_check_status(idx, &node, &id, Status::Critical, TTL_EXPIRED, now)
                .unwrap_or(false);
            // The timer is spent until the next update restarts it.
            for c in self.catalog.checks_mut() {
                if c.node == node && c.id == id {
                    c.ttl_deadline = None;
                }
            }
        }
        changed
    }

    /// Agent services having a check critical for longer than its
    /// `DeregisterCriticalServiceAfter` (never less than `min_after`).
    pub(crate) fn critical_expired(&self, now: Instant, min_after: Duration) -> BTreeSet<String> {
        self.catalog
            .checks()
            .filter(|c| c.node == self.node_name && !c.service_id.is_empty())
            .filter(|c| match (c.deregister_after, c.critical_since) {
                (Some(after), Some(since)) => now >= since + after.max(min_after),
                _ => false,
            })
            .map(|c| c.service_id.clone())
            .collect()
    }

    /// Deregisters the services [`State::critical_expired`] names. Returns removed ids.
    pub(crate) fn reap_critical(&mut self, now: Instant, min_after: Duration) -> Vec<String> {
        let mut removed = Vec::new();
        for id in self.critical_expired(now, min_after) {
            if self.agent_deregister(&id).is_ok() {
                removed.push(id);
            }
        }
        removed
    }
}

/// Builds the stored record of a check definition (status: given, else critical).
fn check_record(node: &str, id: &str, name: &str, def: &CheckDefinition, now: Instant) -> CheckRec {
    let mut rec = CheckRec::node_check(node, id, name, def.status.unwrap_or(Status::Critical), "");
    rec.notes = def.notes.clone();
    rec.deregister_after = def.deregister_after;
    rec.agent_local = true;
    match def.kind {
        CheckKind::Ttl(ttl) => {
            rec.kind = "ttl".to_owned();
            rec.ttl = Some(ttl);
            rec.ttl_deadline = Some(now + ttl);
        }
        CheckKind::Probe(ref probe) => {
            rec.kind = match probe {
                super::Probe::Http { .. } => "http",
                super::Probe::Tcp { .. } => "tcp",
            }
            .to_owned();
            rec.probe = Some(probe.clone());
            rec.probe_every = def.interval.unwrap_or(Duration::from_secs(10));
            rec.probe_timeout = def.timeout.unwrap_or(Duration::from_secs(10));
            rec.next_probe = Some(now);
        }
        CheckKind::Other(kind) => rec.kind = kind.to_owned(),
    }
    if rec.ttl.is_none() {
        rec.interval = def.interval.map(go_duration::format).unwrap_or_default();
        rec.timeout = def.timeout.map(go_duration::format).unwrap_or_default();
    }
    rec
}

/// The agent adds `lan_ipv4`/`wan_ipv4` (or `_ipv6`) tagged addresses when the service has an
/// IP-literal address, unless the registration set them.
fn add_default_tagged_addresses(svc: &mut ServiceRec) {
    let family = match svc.address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "ipv4",
        Ok(IpAddr::V6(_)) => "ipv6",
        Err(_) => return,
    };
    for scope in ["lan", "wan"] {
        svc.tagged_addresses
            .entry(format!("{scope}_{family}"))
            .or_insert_with(|| ServiceAddress {
                address: svc.address.clone(),
                port: svc.port,
            });
    }
}

#[cfg(test)]
mod tests;
