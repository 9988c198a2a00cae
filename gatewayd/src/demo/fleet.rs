//! The demo service in Consul: registers every instance (service `demo`, tag = color, TTL
//! check), keeps the checks passing, and churns: every ~5 s one instance fails its check or
//! leaves Consul for a few seconds. Only one instance is ever down, so each color keeps at
//! least two.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use discovery::consul::{AgentServiceCheck, AgentServiceRegistration, CheckStatus};
use discovery::{ConsulClient, ConsulConfig, DiscoveryError};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio_util::sync::CancellationToken;

use super::upstream::{Color, Upstream};
use super::DemoError;

/// The Consul service name of every instance.
pub(super) const SERVICE: &str = "demo";

/// TTL of each instance's check; heartbeats come every third of it.
const TTL: Duration = Duration::from_secs(10);

/// How long a churned instance stays away.
const AWAY_FOR: Duration = Duration::from_secs(3);

/// Registered instances and what churn did to them.
#[derive(Debug)]
pub(super) struct Fleet {
    client: ConsulClient,
    members: Vec<Member>,
    status: Mutex<Vec<Status>>,
    /// Serializes Consul writes, so a heartbeat never passes a check churn just failed.
    ops: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    color: Color,
    addr: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Up,
    /// Registered, check critical.
    Failing,
    /// Deregistered.
    Away,
}

/// Instances up (registered and passing) and in total, for one color.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UpCount {
    pub(super) up: usize,
    pub(super) total: usize,
}

// === impl Fleet ===

impl Fleet {
    /// Registers every upstream in the Consul agent at `consul_url`, checks passing.
    pub(super) async fn register(
        consul_url: &str,
        upstreams: &[Upstream],
    ) -> Result<Arc<Self>, DemoError> {
        let register_err = |source: DiscoveryError| DemoError::Register {
            id: SERVICE.to_string(),
            source,
        };
        let address = ConsulConfig::parse_address(consul_url).map_err(register_err)?;
        let client = ConsulClient::new(ConsulConfig::new(address)).map_err(register_err)?;
        let members: Vec<Member> = upstreams
            .iter()
            .map(|u| Member {
                id: u.id.clone(),
                color: u.color,
                addr: u.addr,
            })
            .collect();
        let fleet = Arc::new(Self {
            client,
            status: Mutex::new(vec![Status::Up; members.len()]),
            members,
            ops: tokio::sync::Mutex::new(()),
        });
        for m in &fleet.members {
            fleet
                .client
                .agent_service_register(&registration(m), true)
                .await
                .map_err(|source| DemoError::Register {
                    id: m.id.clone(),
                    source,
                })?;
        }
        Ok(fleet)
    }

    /// Instances of `color` up now.
    pub(super) fn up_count(&self, color: Color) -> UpCount {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let of_color = self.members.iter().zip(status.iter());
        let (mut up, mut total) = (0, 0);
        for (_, s) in of_color.filter(|(m, _)| m.color == color) {
            total += 1;
            up += usize::from(*s == Status::Up);
        }
        UpCount { up, total }
    }

    /// Passes the check of every instance that is up, every `TTL / 3`, until `stop`. An
    /// instance Consul forgot (the check is unknown) is registered again.
    pub(super) async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(TTL / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let _ops = self.ops.lock().await;
            for (i, m) in self.members.iter().enumerate() {
                if self.status_of(i) != Status::Up {
                    continue;
                }
                let passed = self
                    .client
                    .agent_check_pass(&check_id(&m.id), Some("demo heartbeat"))
                    .await;
                if let Err(e) = passed {
                    tracing::warn!(instance = %m.id, error = %e, "heartbeat failed; registering again");
                    if let Err(e) = self
                        .client
                        .agent_service_register(&registration(m), true)
                        .await
                    {
                        tracing::warn!(instance = %m.id, error = %e, "cannot register again");
                    }
                }
            }
        }
    }

    /// Every ~5 s takes one random instance down for [`AWAY_FOR`] (failing its check, or
    /// deregistering it), then brings it back, until `stop`.
    pub(super) async fn churn(self: Arc<Self>, stop: CancellationToken) {
        let mut rng = SmallRng::from_entropy();
        loop {
            let gap = Duration::from_millis(rng.gen_range(1_500..=2_500));
            if !pause(&stop, gap).await {
                return;
            }
            let i = rng.gen_range(0..self.members.len());
            let fail_check = rng.gen_bool(0.5);
            self.take_down(i, fail_check).await;
            if !pause(&stop, AWAY_FOR).await {
                return;
            }
            self.bring_back(i).await;
        }
    }

    fn status_of(&self, i: usize) -> Status {
        self.status.lock().unwrap_or_else(|e| e.into_inner())[i]
    }

    fn set_status(&self, i: usize, s: Status) {
        self.status.lock().unwrap_or_else(|e| e.into_inner())[i] = s;
    }

    async fn take_down(&self, i: usize, fail_check: bool) {
        let _ops = self.ops.lock().await;
        let m = &self.members[i];
        let result = if fail_check {
            self.set_status(i, Status::Failing);
            tracing::info!(instance = %m.id, "demo churn: failing the TTL check");
            self.client
                .agent_check_update(
                    &check_id(&m.id),
                    CheckStatus::Critical,
                    "demo churn: simulated failure",
                )
                .await
        } else {
            self.set_status(i, Status::Away);
            tracing::info!(instance = %m.id, "demo churn: deregistering");
            self.client.agent_service_deregister(&m.id).await
        };
        if let Err(e) = result {
            tracing::warn!(instance = %m.id, error = %e, "demo churn failed");
        }
    }

    async fn bring_back(&self, i: usize) {
        let _ops = self.ops.lock().await;
        let m = &self.members[i];
        let result = match self.status_of(i) {
            Status::Up => Ok(()),
            Status::Failing => {
                self.client
                    .agent_check_pass(&check_id(&m.id), Some("demo churn: recovered"))
                    .await
            }
            Status::Away => {
                self.client
                    .agent_service_register(&registration(m), true)
                    .await
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(instance = %m.id, "demo churn: back");
                self.set_status(i, Status::Up);
            }
            // Stays down in our books; the next heartbeat skips it, the next churn may retry.
            Err(e) => tracing::warn!(instance = %m.id, error = %e, "demo churn: cannot bring back"),
        }
    }
}

/// The registration of one instance: service `demo`, tag = color, TTL check starting passing.
fn registration(m: &Member) -> AgentServiceRegistration {
    AgentServiceRegistration {
        id: Some(m.id.clone()),
        name: SERVICE.to_string(),
        tags: vec![m.color.name().to_string()],
        address: m.addr.ip().to_string(),
        port: m.addr.port(),
        meta: BTreeMap::from([("version".to_string(), m.color.name().to_string())]),
        weights: None,
        check: Some(AgentServiceCheck {
            check_id: Some(check_id(&m.id)),
            name: Some(format!("{} heartbeat", m.id)),
            ttl: Some(format!("{}s", TTL.as_secs())),
            status: Some("passing".to_string()),
            deregister_critical_service_after: None,
            notes: Some("kept passing by gatewayd demo".to_string()),
        }),
    }
}

fn check_id(id: &str) -> String {
    format!("service:{id}")
}

/// Sleeps `d`; false when `stop` came first.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
