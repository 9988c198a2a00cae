//! HTTP/1.x message heads: requests parsed into `http` types without copying header values,
//! upstream response heads parsed into offsets of the connection's buffer, and the framing rules
//! of RFC 9112 §6.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use super::super::error::ProxyError;

/// Most header fields accepted in one head.
pub const MAX_HEADERS: usize = 100;
/// Largest head accepted, request or response.
pub const MAX_HEAD: usize = 64 * 1024;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, target, version and headers (values share the head's bytes).
    pub req: Request<()>,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (removed from the forwarded headers).
    pub expect_continue: bool,
    /// The head as received (to hand the connection to another server with it put back).
    pub raw: Bytes,
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete. On success the head's
/// bytes are split off `buf`, which keeps what follows (body, pipelined requests).
pub fn parse_request(
    buf: &mut BytesMut,
    offsets: &mut Vec<(u32, u32, u32, u32)>,
) -> Result<Option<RequestHead>, ProxyError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ProxyError::HeadTooLarge(MAX_HEAD))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ProxyError::HeadTooLarge(MAX_HEAD)),
        Err(httparse::Error::Version) => {
            return Err(ProxyError::BadRequest("unsupported HTTP version"))
        }
        Err(_) => return Err(ProxyError::BadRequest("malformed request head")),
    };
    if len > MAX_HEAD {
        return Err(ProxyError::HeadTooLarge(MAX_HEAD));
    }
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| ProxyError::BadRequest("invalid method"))?;
    let target = at(parsed.path.unwrap_or("").as_bytes());
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    offsets.clear();
    offsets.extend(parsed.headers.iter().map(|h| {
        let (no, nl) = at(h.name.as_bytes());
        let (vo, vl) = at(h.value);
        (no, nl, vo, vl)
    }));
    let count = offsets.len();
    let head = buf.split_to(len).freeze();
    let target = target.0 as usize..(target.0 + target.1) as usize;
    let uri = Uri::from_maybe_shared(head.slice(target))
        .map_err(|_| ProxyError::BadRequest("invalid request target"))?;
    let mut headers = HeaderMap::with_capacity(count);
    for &(no, nl, vo, vl) in offsets.iter() {
        let (no, nl, vo, vl) = (no as usize, nl as usize, vo as usize, vl as usize);
        let name = HeaderName::from_bytes(&head[no..no + nl])
            .map_err(|_| ProxyError::BadRequest("invalid header name"))?;
        let value = header_value(&head, vo, vl)?;
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    let (close, keep) = connection_tokens(req.headers());
    let keep_alive = if version == Version::HTTP_11 {
        !close
    } else {
        keep && !close
    };
    let framing = request_framing(req.headers(), version)?;
    let expect_continue = version == Version::HTTP_11
        && framing != Framing::None
        && req
            .headers()
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expect_continue {
        req.headers_mut().remove(EXPECT);
    }
    Ok(Some(RequestHead {
        req,
        framing,
        keep_alive,
        expect_continue,
        raw: head,
    }))
}

fn header_value(head: &Bytes, off: usize, len: usize) -> Result<HeaderValue, ProxyError> {
    HeaderValue::from_maybe_shared(head.slice(off..off + len))
        .map_err(|_| ProxyError::BadRequest("invalid header value"))
}

/// (`close`, `keep-alive`) present among the `Connection` tokens.
fn connection_tokens(h: &HeaderMap) -> (bool, bool) {
    let (mut close, mut keep) = (false, false);
    for v in h.get_all(CONNECTION) {
        for t in v.as_bytes().split(|&b| b == b',') {
            let t = t.trim_ascii();
            close |= t.eq_ignore_ascii_case(b"close");
            keep |= t.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    (close, keep)
}

/// RFC 9112 §6.3 for requests, strictly: a request with both `Content-Length` and
/// `Transfer-Encoding`, conflicting lengths, or a coding other than plain `chunked` is refused
/// (the classic request-smuggling ambiguities).
fn request_framing(h: &HeaderMap, version: Version) -> Result<Framing, ProxyError> {
    if h.contains_key(TRANSFER_ENCODING) {
        if version == Version::HTTP_10 {
            return Err(ProxyError::BadRequest(
                "transfer-encoding in an HTTP/1.0 request",
            ));
        }
        if h.contains_key(CONTENT_LENGTH) {
            return Err(ProxyError::BadRequest(
                "both content-length and transfer-encoding",
            ));
        }
        let mut codings = h
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii);
        return match (codings.next(), codings.next()) {
            (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => Err(ProxyError::NotImplemented("only chunked is accepted")),
        };
    }
    match content_length(h.get_all(CONTENT_LENGTH).iter().map(HeaderValue::as_bytes)) {
        Ok(None | Some(0)) => Ok(Framing::None),
        Ok(Some(n)) => Ok(Framing::Length(n)),
        Err(()) => Err(ProxyError::BadRequest("invalid content-length")),
    }
}

/// The one length all `Content-Length` values agree on. `Err` for a malformed or conflicting one.
pub fn content_length<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, ()> {
    let mut found = None;
    for v in values {
        for part in v.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(());
            }
            let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
            if found.is_some_and(|f| f != n) {
                return Err(());
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// One header of a response head, as offsets into the connection's buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Field {
    /// Name start and length.
    pub name: (u32, u32),
    /// Value start and length.
    pub value: (u32, u32),
}

/// A parsed upstream response head; every slice is an offset into the buffer it came from.
#[derive(Debug, Default)]
pub struct ResponseHead {
    /// Length of the head in the buffer.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// Reason phrase (offsets).
    pub reason: (u32, u32),
    /// HTTP/1.0 response.
    pub http10: bool,
    /// Header fields.
    pub fields: Vec<Field>,
    /// `Content-Length`, when valid and present.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` ends in `chunked`.
    pub chunked: bool,
    /// `Transfer-Encoding` present.
    pub has_te: bool,
    /// `Connection: close` (or HTTP/1.0 without keep-alive).
    pub close: bool,
}

impl ResponseHead {
    /// Parses the head at the start of `buf` into `self` (reusing its field list).
    /// `Ok(false)`: incomplete.
    pub fn parse(&mut self, buf: &[u8]) -> Result<bool, &'static str> {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err("response head too large")
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err("malformed response head"),
        };
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
        self.len = len;
        self.status = parsed.code.unwrap_or(0);
        self.reason = at(parsed.reason.unwrap_or("").as_bytes());
        self.http10 = parsed.version == Some(0);
        self.fields.clear();
        self.content_length = None;
        self.chunked = false;
        self.has_te = false;
        let (mut close, mut keep) = (false, false);
        let mut lengths_ok = true;
        for h in parsed.headers.iter() {
            self.fields.push(Field {
                name: at(h.name.as_bytes()),
                value: at(h.value),
            });
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                match content_length(std::iter::once(h.value)) {
                    Ok(Some(n)) if self.content_length.is_none_or(|c| c == n) => {
                        self.content_length = Some(n)
                    }
                    _ => lengths_ok = false,
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                self.has_te = true;
                self.chunked = h
                    .value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case(b"connection") {
                for t in h.value.split(|&b| b == b',') {
                    let t = t.trim_ascii();
                    close |= t.eq_ignore_ascii_case(b"close");
                    keep |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        if !lengths_ok && !self.has_te {
            return Err("invalid content-length in response");
        }
        self.close = close || (self.http10 && !keep);
        Ok(true)
    }

    /// How the body that follows is delimited (RFC 9112 §6.3), given the request's method.
    pub fn framing(&self, head_request: bool) -> Framing {
        if head_request || (100..200).contains(&self.status) || matches!(self.status, 204 | 304) {
            Framing::None
        } else if self.has_te {
            if self.chunked {
                Framing::Chunked
            } else {
                Framing::Close
            }
        } else {
            match self.content_length {
                Some(0) => Framing::None,
                Some(n) => Framing::Length(n),
                None => Framing::Close,
            }
        }
    }
}

/// Appends `name: value\r\n`.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the upstream request head: origin-form target, HTTP/1.1, the prepared headers, and
/// `transfer-encoding: chunked` for a chunked body (hop-by-hop, so removed by `prepare`).
pub fn write_request(out: &mut Vec<u8>, req: &Request<()>, framing: Framing) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(raw: &[u8]) -> Result<Option<RequestHead>, ProxyError> {
        parse_request(&mut BytesMut::from(raw), &mut Vec::new())
    }

    #[test]
    fn parses_a_request_and_keeps_what_follows() {
        let mut buf = BytesMut::from(
            &b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\nabcGET"[..],
        );
        let h = parse_request(&mut buf, &mut Vec::new()).unwrap().unwrap();
        assert_eq!(h.req.method(), Method::POST);
        assert_eq!(h.req.uri(), "/a?b=1");
        assert_eq!(h.req.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(h.framing, Framing::Length(3));
        assert!(h.keep_alive);
        assert_eq!(&buf[..], b"abcGET");
    }

    #[test]
    fn incomplete_heads_wait_and_huge_ones_fail() {
        assert!(req(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert!(matches!(req(&big), Err(ProxyError::HeadTooLarge(_))));
    }

    #[test]
    fn keep_alive_rules() {
        let h = req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = req(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        ] {
            assert!(req(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Length(3));
    }

    #[test]
    fn expect_continue_is_taken_out() {
        let h = req(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
        assert!(!h.req.headers().contains_key(EXPECT));
    }

    #[test]
    fn response_framing() {
        let mut r = ResponseHead::default();
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
        assert!(r.parse(raw).unwrap());
        assert_eq!(r.len, raw.len() - 5);
        assert_eq!(r.framing(false), Framing::Length(5));
        assert_eq!(r.framing(true), Framing::None);
        assert!(!r.close);
        assert!(r
            .parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n")
            .unwrap());
        assert_eq!(r.framing(false), Framing::Chunked);
        assert!(r.parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap());
        assert_eq!(r.framing(false), Framing::Close);
        assert!(r.close);
        assert!(r.parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap());
        assert_eq!(r.framing(false), Framing::None);
        assert!(!r.parse(b"HTTP/1.1 200 OK\r\n").unwrap());
        assert!(r
            .parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .is_err());
    }

    #[test]
    fn writes_the_upstream_head() {
        let h = req(b"POST /x?y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        let mut r = h.req;
        r.headers_mut().remove(TRANSFER_ENCODING);
        let mut out = Vec::new();
        write_request(&mut out, &r, h.framing);
        assert_eq!(
            out,
            b"POST /x?y HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
