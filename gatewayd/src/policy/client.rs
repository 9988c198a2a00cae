//! The client address the policies see.

use std::net::IpAddr;

use crate::config::GatewayConfig;

/// The client address policies see (a `client_ip` rate-limit key, forward auth's
/// `X-Forwarded-For`): the one the gateway believes for `X-Forwarded-For`. That is `peer` (after
/// a PROXY protocol header, the client it names), unless `peer` is a trusted proxy: then the
/// first hop of `X-Forwarded-For` (`xff`: its field values, in order), read from the right,
/// that is not a trusted proxy; the leftmost hop when all are trusted; the last hop read when
/// the next one is not an address (so a forged entry left of it is never believed).
pub fn client_ip<'v>(
    gateway: &GatewayConfig,
    peer: IpAddr,
    xff: impl DoubleEndedIterator<Item = &'v [u8]>,
) -> IpAddr {
    if !gateway.trusts(peer) {
        return peer;
    }
    let mut client = peer;
    for value in xff.rev() {
        for hop in value.rsplit(|&b| b == b',') {
            let Some(ip) = hop_ip(hop.trim_ascii()) else {
                return client;
            };
            client = ip;
            if !gateway.trusts(ip) {
                return ip;
            }
        }
    }
    client
}

/// An `X-Forwarded-For` hop's address: `192.0.2.1`, `2001:db8::1`, with a port or in brackets.
fn hop_ip(hop: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(hop).ok()?;
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn gateway(trusted: &str) -> GatewayConfig {
        let src = format!(
            "[gateway]\ntrusted_proxies = [{trusted}]\n\n[services.b]\nendpoints = [\"127.0.0.1:9\"]\n\n[[routes]]\nname = \"r\"\nbackends = [{{ name = \"b\", weight = 1 }}]\n"
        );
        crate::config::from_str(&src, "t.toml").unwrap().gateway
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(g: &GatewayConfig, peer: &str, xff: &[&str]) -> IpAddr {
        client_ip(g, ip(peer), xff.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let g = gateway("\"10.0.0.0/8\", \"2001:db8::/32\"");
        // An untrusted peer: its X-Forwarded-For is not believed.
        assert_eq!(client(&g, "192.0.2.1", &["203.0.113.9"]), ip("192.0.2.1"));
        // A trusted one: the hop it saw, trusted hops on the right skipped, forged ones on the
        // left ignored; several fields are one list.
        assert_eq!(client(&g, "10.0.0.1", &["203.0.113.9"]), ip("203.0.113.9"));
        assert_eq!(
            client(&g, "10.0.0.1", &["198.51.100.1, 203.0.113.9, 10.2.2.2"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client(&g, "10.0.0.1", &["198.51.100.1", "203.0.113.9", "10.2.2.2"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client(&g, "2001:db8::1", &["[2001:db8::7]:443, 203.0.113.9:5000"]),
            ip("203.0.113.9")
        );
        // Every hop trusted: the leftmost; none sent: the peer.
        assert_eq!(
            client(&g, "10.0.0.1", &["10.3.3.3, 10.2.2.2"]),
            ip("10.3.3.3")
        );
        assert_eq!(client(&g, "10.0.0.1", &[]), ip("10.0.0.1"));
        // Not an address: the last hop read.
        assert_eq!(
            client(&g, "10.0.0.1", &["203.0.113.9, unknown, 10.2.2.2"]),
            ip("10.2.2.2")
        );
        assert_eq!(client(&g, "10.0.0.1", &["garbage"]), ip("10.0.0.1"));
        // Nobody trusted (the default).
        let none = gateway("");
        assert_eq!(client(&none, "10.0.0.1", &["203.0.113.9"]), ip("10.0.0.1"));
    }
}
