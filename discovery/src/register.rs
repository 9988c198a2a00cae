//! Self-registration: a gatewayd announces its admin API in Consul with a TTL check, keeps the
//! check passing while it runs, and deregisters on shutdown (gwctl `--consul` finds gateways
//! this way).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consul::{AgentServiceCheck, AgentServiceRegistration, ConsulClient};
use crate::error::DiscoveryError;
use crate::go_duration;

/// The service name gateways register under by default.
pub const DEFAULT_SERVICE_NAME: &str = "meshgate";

/// Consul's floor for `DeregisterCriticalServiceAfter`.
const MIN_DEREGISTER_AFTER: Duration = Duration::from_secs(60);

/// A live registration: a background task passes the TTL check every `ttl / 3`.
#[derive(Debug)]
pub struct Registration {
    client: ConsulClient,
    service_id: String,
    check_id: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Registers service `name` with instance `id` at `admin_addr` (an unspecified IP such as
/// `0.0.0.0` registers an empty address, i.e. the agent's node address) with a TTL check of
/// `ttl` that starts passing, and keeps it passing every `ttl / 3`. If the agent forgot the
/// service (404 after an agent restart), it registers again. A gateway that dies without
/// deregistering turns critical after `ttl` and is removed after `max(10 × ttl, 1m)`.
pub async fn register_self(
    client: ConsulClient,
    id: impl Into<String>,
    name: impl Into<String>,
    admin_addr: SocketAddr,
    ttl: Duration,
) -> Result<Registration, DiscoveryError> {
    let service_id = id.into();
    let ttl = ttl.max(Duration::from_secs(1));
    let registration = AgentServiceRegistration {
        id: Some(service_id.clone()),
        name: name.into(),
        tags: vec!["meshgate".to_owned(), "admin".to_owned()],
        address: if admin_addr.ip().is_unspecified() {
            String::new()
        } else {
            admin_addr.ip().to_string()
        },
        port: admin_addr.port(),
        check: Some(AgentServiceCheck {
            ttl: Some(go_duration::format(ttl)),
            status: Some("passing".to_owned()),
            deregister_critical_service_after: Some(go_duration::format(
                (ttl * 10).max(MIN_DEREGISTER_AFTER),
            )),
            notes: Some("meshgate heartbeat (TTL passed every ttl/3)".to_owned()),
            ..AgentServiceCheck::default()
        }),
        ..AgentServiceRegistration::default()
    };
    client.agent_service_register(&registration, true).await?;
    let check_id = format!("service:{service_id}");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(heartbeat(
        client.clone(),
        registration,
        check_id.clone(),
        ttl / 3,
        cancel.clone(),
    ));
    Ok(Registration {
        client,
        service_id,
        check_id,
        cancel,
        task,
    })
}

// === impl Registration ===

impl Registration {
    /// The registered service id.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// The TTL check id (`service:<id>`).
    pub fn check_id(&self) -> &str {
        &self.check_id
    }

    /// Stops the heartbeat and removes the service (and its check) from the agent.
    pub async fn deregister(mut self) -> Result<(), DiscoveryError> {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
        self.client.agent_service_deregister(&self.service_id).await
    }
}

impl Drop for Registration {
    /// Stops the heartbeat (the check then expires; call `deregister` to remove it at once).
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn heartbeat(
    client: ConsulClient,
    registration: AgentServiceRegistration,
    check_id: String,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match client.agent_check_pass(&check_id, None).await {
            Ok(()) => {}
            Err(e) if e.status() == Some(http::StatusCode::NOT_FOUND) => {
                tracing::warn!(check = %check_id, "agent lost our registration; registering again");
                if let Err(e) = client.agent_service_register(&registration, true).await {
                    tracing::warn!(error = %e, "re-registration failed; will retry");
                }
            }
            Err(e) => {
                tracing::warn!(check = %check_id, error = %e, "TTL heartbeat failed; will retry")
            }
        }
    }
}
