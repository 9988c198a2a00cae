//! `--consul ADDR`: the admin URLs of every gatewayd registered in Consul (service `meshgate`,
//! passing instances only), so that reads ask, and aggregate, every gateway of a cluster.

use std::time::Duration;

use discovery::consul::{HealthQuery, QueryOptions, ServiceEntry};
use discovery::register::DEFAULT_SERVICE_NAME;
use discovery::{ConsulClient, ConsulConfig, DiscoveryError};

use crate::error::CliError;

/// One read; Consul answers an immediate health read in milliseconds.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads `GET /v1/health/service/meshgate?passing` from the agent at `address` (`host:port` or
/// `http://host:port`, as `CONSUL_HTTP_ADDR` is written), sending `token` as `X-Consul-Token`
/// when given, and returns the admin URLs found (see [`admin_urls`]). Fails with exit code 4 when
/// Consul cannot be reached, 1 when it answers an error or lists no passing gateway, 2 on a bad
/// address.
pub async fn gateways(address: &str, token: Option<String>) -> anyhow::Result<Vec<String>> {
    let uri = ConsulConfig::parse_address(address.trim())
        .map_err(|e| CliError::Usage(format!("--consul: {e}")))?;
    let mut config = ConsulConfig::new(uri);
    config.token = token.filter(|t| !t.trim().is_empty());
    config.request_timeout = LOOKUP_TIMEOUT;
    let client =
        ConsulClient::new(config).map_err(|e| CliError::Usage(format!("--consul: {e}")))?;
    let query = HealthQuery {
        passing_only: true,
        ..HealthQuery::default()
    };
    let entries = client
        .health_service(DEFAULT_SERVICE_NAME, &query, QueryOptions::default())
        .await
        .map_err(|e| lookup_error(address, e))?
        .value;
    let urls = admin_urls(&entries);
    if urls.is_empty() {
        return Err(CliError::Failed(format!(
            "no passing gatewayd registered as service {DEFAULT_SERVICE_NAME:?} in Consul at \
             {address} (gateways register with `[consul] register = true`)"
        ))
        .into());
    }
    Ok(urls)
}

/// The admin URL of each instance: `http://HOST:PORT` with `Service.Address`, or `Node.Address`
/// when that is empty (IPv6 hosts in brackets), and `Service.Port`. Instances with no address at
/// all or port 0 are skipped; the result is sorted and free of duplicates.
pub fn admin_urls(entries: &[ServiceEntry]) -> Vec<String> {
    let mut urls: Vec<String> = entries
        .iter()
        .filter(|e| e.service.port != 0)
        .filter_map(|e| {
            let host = e.host().trim();
            if host.is_empty() {
                return None;
            }
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            Some(format!("http://{host}:{}", e.service.port))
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

fn lookup_error(address: &str, e: DiscoveryError) -> anyhow::Error {
    let msg = format!("cannot list gateways in Consul at {address}: {e}");
    match e {
        DiscoveryError::Transport { .. } | DiscoveryError::Timeout { .. } => {
            CliError::Unreachable(msg).into()
        }
        DiscoveryError::InvalidAddress { .. } | DiscoveryError::Tls { .. } => {
            CliError::Usage(msg).into()
        }
        _ => CliError::Failed(msg).into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entries(json: &str) -> Vec<ServiceEntry> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn service_address_wins_and_node_address_fills_in() {
        let e = entries(
            r#"[
            {"Node":{"Node":"n1","Address":"10.0.0.5"},
             "Service":{"ID":"meshgate-1","Service":"meshgate","Address":"10.0.0.7","Port":9901},
             "Checks":[]},
            {"Node":{"Node":"n2","Address":"10.0.0.6"},
             "Service":{"ID":"meshgate-2","Service":"meshgate","Address":"","Port":9902},
             "Checks":null}
        ]"#,
        );
        assert_eq!(
            admin_urls(&e),
            ["http://10.0.0.6:9902", "http://10.0.0.7:9901"]
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let e = entries(
            r#"[{"Node":{"Address":"fe80::1"},"Service":{"Address":"::1","Port":9901}},
                {"Node":{"Address":"fe80::1"},"Service":{"Address":"","Port":9902}}]"#,
        );
        assert_eq!(
            admin_urls(&e),
            ["http://[::1]:9901", "http://[fe80::1]:9902"]
        );
    }

    #[test]
    fn unusable_and_duplicate_instances_are_dropped() {
        let e = entries(
            r#"[{"Node":{"Address":""},"Service":{"Address":"","Port":9901}},
                {"Node":{"Address":"10.0.0.5"},"Service":{"Address":"","Port":0}},
                {"Node":{"Address":"10.0.0.5"},"Service":{"Address":"127.0.0.1","Port":9901}},
                {"Node":{"Address":"10.0.0.6"},"Service":{"Address":"127.0.0.1","Port":9901}}]"#,
        );
        assert_eq!(admin_urls(&e), ["http://127.0.0.1:9901"]);
        assert!(admin_urls(&[]).is_empty());
    }

    #[tokio::test]
    async fn finds_passing_gateways_in_devconsul_with_the_acl_token() {
        use discovery::consul::{AgentServiceCheck, AgentServiceRegistration};
        use discovery::devconsul::DevConsul;
        let consul = DevConsul::builder()
            .token("s3cret")
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let mut config = ConsulConfig::new(ConsulConfig::parse_address(&consul.url()).unwrap());
        config.token = Some("s3cret".into());
        let client = ConsulClient::new(config).unwrap();
        // Two gateways the way gatewayd registers (passing TTL), and one whose check is critical.
        let mut live = Vec::new();
        for port in [9901, 9902] {
            let admin = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let r = discovery::register_self(
                client.clone(),
                format!("meshgate-{port}"),
                DEFAULT_SERVICE_NAME,
                admin,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
            live.push(r);
        }
        let critical = AgentServiceRegistration {
            id: Some("meshgate-dead".into()),
            name: DEFAULT_SERVICE_NAME.into(),
            address: "127.0.0.1".into(),
            port: 9903,
            check: Some(AgentServiceCheck {
                ttl: Some("30s".into()),
                ..AgentServiceCheck::default()
            }),
            ..AgentServiceRegistration::default()
        };
        client
            .agent_service_register(&critical, false)
            .await
            .unwrap();
        let addr = consul.addr().to_string();
        assert_eq!(
            gateways(&addr, Some("s3cret".into())).await.unwrap(),
            ["http://127.0.0.1:9901", "http://127.0.0.1:9902"]
        );
        // Without the token Consul answers 403: a failure, not "unreachable".
        let err = gateways(&addr, None).await.unwrap_err();
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::EXIT_FAILED,
            "{err:#}"
        );
        // No gateway registered under the name: a clear failure.
        for r in live {
            r.deregister().await.unwrap();
        }
        let err = gateways(&format!("http://{addr}"), Some("s3cret".into()))
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("no passing gatewayd"),
            "{err:#}"
        );
        consul.shutdown().await;
    }

    #[tokio::test]
    async fn bad_address_is_a_usage_error() {
        // Not an http(s)://host:port address (https itself is supported).
        let err = gateways("ftp://127.0.0.1:8501", None).await.unwrap_err();
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::EXIT_USAGE,
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn unreachable_consul_exits_4() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = gateways(&format!("127.0.0.1:{port}"), None)
            .await
            .unwrap_err();
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::EXIT_UNREACHABLE,
            "{err:#}"
        );
    }
}
