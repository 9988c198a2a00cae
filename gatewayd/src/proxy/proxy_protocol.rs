//! The PROXY protocol (HAProxy's, versions 1 and 2): the header an L4 load balancer sends before
//! the client's bytes, naming the client's address. Parsed from the start of a buffer; what
//! follows the header is the client's own stream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's signature.
const V2_SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 header, CRLF included.
const V1_MAX: usize = 107;
/// Longest version 2 header accepted (the fixed part and addresses, TLVs included).
const V2_MAX: usize = 16 + 1024;

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's address, as the balancer saw it.
    Client(SocketAddr),
    /// The balancer's own connection (health check, `LOCAL`, or `UNKNOWN`): use the peer.
    Local,
}

/// Why a connection's first bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Neither signature, or a malformed header.
    #[error("not a PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Parses a header at the start of `buf`: `Ok(None)` when more bytes are needed, else the source
/// and the header's length (the client's stream starts after it).
pub fn parse(buf: &[u8]) -> Result<Option<(Source, usize)>, HeaderError> {
    let bad = |why| Err(HeaderError::Malformed(why));
    let n = buf.len().min(V2_SIG.len());
    if buf[..n] == V2_SIG[..n] {
        return if buf.len() < 16 { Ok(None) } else { v2(buf) };
    }
    let n = buf.len().min(6);
    if buf[..n] != b"PROXY "[..n] {
        return bad("no PROXY signature");
    }
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            bad("version 1 header too long")
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| HeaderError::Malformed("not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["UNKNOWN", ..] => Source::Local,
        [proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src
                .parse()
                .map_err(|_| HeaderError::Malformed("source address"))?;
            if ip.is_ipv4() != (*proto == "TCP4") {
                return bad("address family");
            }
            let port: u16 = sport
                .parse()
                .map_err(|_| HeaderError::Malformed("source port"))?;
            Source::Client(SocketAddr::new(ip, port))
        }
        _ => return bad("version 1 fields"),
    };
    Ok(Some((source, end + 2)))
}

fn v2(buf: &[u8]) -> Result<Option<(Source, usize)>, HeaderError> {
    let bad = |why| Err(HeaderError::Malformed(why));
    let (ver_cmd, fam) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return bad("version 2 header with another version");
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    if total > V2_MAX {
        return bad("version 2 header too long");
    }
    if buf.len() < total {
        return Ok(None);
    }
    let a = &buf[16..total];
    let source = match (ver_cmd & 0x0f, fam >> 4) {
        (0, _) => Source::Local,
        (1, 1) if a.len() >= 12 => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Source::Client(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        (1, 2) if a.len() >= 36 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(o);
            Source::Client(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([a[32], a[33]]),
            ))
        }
        // AF_UNSPEC or AF_UNIX: nothing to use.
        (1, 0 | 3) => Source::Local,
        (1, _) => return bad("version 2 addresses"),
        _ => return bad("version 2 command"),
    };
    Ok(Some((source, total)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v2_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
        let mut h = V2_SIG.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&[10, 0, 0, 1]);
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&443u16.to_be_bytes());
        h
    }

    #[test]
    fn version_1_headers() {
        let h = b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (s, n) = parse(h).unwrap().unwrap();
        assert_eq!(s, Source::Client("203.0.113.9:51234".parse().unwrap()));
        assert_eq!(&h[n..n + 3], b"GET");
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n";
        assert_eq!(
            parse(h).unwrap().unwrap().0,
            Source::Client("[2001:db8::1]:4000".parse().unwrap())
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap(),
            (Source::Local, 15)
        );
        // Incomplete: more bytes needed, whatever the split.
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        for cut in 1..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "{cut}");
        }
    }

    #[test]
    fn version_2_headers() {
        let mut h = v2_tcp4([198, 51, 100, 7], 40000);
        h.extend_from_slice(b"GET");
        let (s, n) = parse(&h).unwrap().unwrap();
        assert_eq!(s, Source::Client("198.51.100.7:40000".parse().unwrap()));
        assert_eq!(&h[n..], b"GET");
        for cut in 1..n {
            assert_eq!(parse(&h[..cut]).unwrap(), None, "{cut}");
        }
        let mut local = V2_SIG.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).unwrap().unwrap(), (Source::Local, 16));
    }

    #[test]
    fn anything_else_is_refused() {
        for bytes in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            &[b'P'; 200],
        ] {
            assert!(
                parse(bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let mut wrong_version = v2_tcp4([1, 2, 3, 4], 1);
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version).is_err());
    }
}
