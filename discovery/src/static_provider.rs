//! The static provider: endpoints listed in the gateway's TOML, never stale.

use std::net::SocketAddr;

use crate::endpoint::{Endpoint, EndpointSet, ServiceState};

/// Builds the state of a statically configured service from `(address, weight)` pairs.
pub fn service_state(endpoints: &[(SocketAddr, u32)]) -> ServiceState {
    let set = EndpointSet::new(
        endpoints
            .iter()
            .map(|&(addr, weight)| Endpoint::new(addr).with_weight(weight))
            .collect(),
    );
    ServiceState::from_static(set)
}
