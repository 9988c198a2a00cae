//! HTTP/1.x message heads: requests parsed into `http` types without copying header values,
//! upstream response heads parsed into offsets of the connection's buffer, and the framing rules
//! of RFC 9112 §6.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HOST};
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

/// What a header field is to the gateway: the hop-by-hop fields of RFC 9110 §7.6.1, the
/// framing fields, and the ones the policies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// Anything else: forwarded as received.
    #[default]
    Other,
    /// `Host`.
    Host,
    /// `Content-Length`.
    ContentLength,
    /// `Transfer-Encoding`.
    TransferEncoding,
    /// `Connection`.
    Connection,
    /// `Upgrade`.
    Upgrade,
    /// `TE`.
    Te,
    /// `Trailer`.
    Trailer,
    /// `Keep-Alive`.
    KeepAlive,
    /// `Proxy-Connection`.
    ProxyConnection,
    /// `Expect`.
    Expect,
    /// `X-Request-Id`.
    RequestId,
    /// `X-Forwarded-For`.
    ForwardedFor,
    /// `X-Forwarded-Proto`.
    ForwardedProto,
    /// `X-Forwarded-Host`.
    ForwardedHost,
}

/// The kind of the field named `name` (compared by length first, so most names cost one
/// comparison of lengths).
pub fn classify(name: &[u8]) -> Kind {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is(b"te") => Kind::Te,
        4 if is(b"host") => Kind::Host,
        6 if is(b"expect") => Kind::Expect,
        7 if is(b"trailer") => Kind::Trailer,
        7 if is(b"upgrade") => Kind::Upgrade,
        10 if is(b"connection") => Kind::Connection,
        10 if is(b"keep-alive") => Kind::KeepAlive,
        12 if is(b"x-request-id") => Kind::RequestId,
        14 if is(b"content-length") => Kind::ContentLength,
        15 if is(b"x-forwarded-for") => Kind::ForwardedFor,
        16 if is(b"proxy-connection") => Kind::ProxyConnection,
        16 if is(b"x-forwarded-host") => Kind::ForwardedHost,
        17 if is(b"transfer-encoding") => Kind::TransferEncoding,
        17 if is(b"x-forwarded-proto") => Kind::ForwardedProto,
        _ => Kind::Other,
    }
}

/// One header field, as offsets into the head it came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Field {
    /// Name start and length.
    pub name: (u32, u32),
    /// Value start and length.
    pub value: (u32, u32),
    /// What the field is.
    pub kind: Kind,
}

impl Field {
    /// The name, in `head`.
    pub fn name<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        span(head, self.name)
    }

    /// The value, in `head`.
    pub fn value<'a>(&self, head: &'a [u8]) -> &'a [u8] {
        span(head, self.value)
    }
}

/// Where `part` lies in `buf`, as (offset, length). httparse hands out slices of the buffer,
/// except for some empty ones (a missing reason phrase is a static `""`): anything outside the
/// buffer is the empty span at 0.
fn offsets_in(buf: &[u8], part: &[u8]) -> (u32, u32) {
    let base = buf.as_ptr() as usize;
    let start = (part.as_ptr() as usize).wrapping_sub(base);
    match start.checked_add(part.len()) {
        Some(end) if start <= buf.len() && end <= buf.len() => (start as u32, part.len() as u32),
        _ => (0, 0),
    }
}

fn span(b: &[u8], (o, l): (u32, u32)) -> &[u8] {
    &b[o as usize..(o + l) as usize]
}

/// The non-empty comma-separated tokens of a list-valued field.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// True when a `Connection` field among `fields` names `name` (which is then hop-by-hop).
pub fn listed_in_connection(head: &[u8], fields: &[Field], name: &[u8]) -> bool {
    fields
        .iter()
        .filter(|f| f.kind == Kind::Connection)
        .flat_map(|f| tokens(f.value(head)))
        .any(|t| t.eq_ignore_ascii_case(name))
}

/// A parsed request head. Its fields are in the connection's scratch list, as offsets into `raw`.
#[derive(Debug)]
pub struct RequestHead {
    /// Method, target and version; the header map stays empty until [`fill_headers`] or
    /// [`insert_host`] (routing by host, header or cohort needs them; forwarding never does).
    ///
    /// [`fill_headers`]: RequestHead::fill_headers
    /// [`insert_host`]: RequestHead::insert_host
    pub req: Request<()>,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (not forwarded: the gateway answers it).
    pub expect_continue: bool,
    /// An HTTP/1.1 protocol switch (`Connection: upgrade` and `Upgrade`).
    pub upgrade: bool,
    /// `Connection` names other fields, which are then hop-by-hop too.
    pub listed: bool,
    /// The `Host` field's value (offsets into `raw`).
    pub host: Option<(u32, u32)>,
    /// The head as received.
    pub raw: Bytes,
}

/// Parses a request head from the start of `buf` into `fields` (offsets into the head).
/// `Ok(None)`: incomplete. On success the head's bytes are split off `buf`, which keeps what
/// follows (body, pipelined requests).
pub fn parse_request(
    buf: &mut BytesMut,
    fields: &mut Vec<Field>,
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
    let at = |s: &[u8]| offsets_in(buf, s);
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| ProxyError::BadRequest("invalid method"))?;
    let target = at(parsed.path.unwrap_or("").as_bytes());
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    fields.clear();
    fields.extend(parsed.headers.iter().map(|h| Field {
        name: at(h.name.as_bytes()),
        value: at(h.value),
        kind: classify(h.name.as_bytes()),
    }));
    let head = buf.split_to(len).freeze();
    let target = target.0 as usize..(target.0 + target.1) as usize;
    let uri = Uri::from_maybe_shared(head.slice(target))
        .map_err(|_| ProxyError::BadRequest("invalid request target"))?;

    let mut host = None;
    let (mut close, mut keep, mut conn_upgrade, mut listed, mut has_upgrade) =
        (false, false, false, false, false);
    let (mut length, mut bad_length) = (None, false);
    let (mut codings, mut chunked) = (0, false);
    let (mut hosts, mut expect) = (0, false);
    for f in fields.iter() {
        let v = f.value(&head);
        match f.kind {
            Kind::Host => {
                hosts += 1;
                host.get_or_insert(f.value);
            }
            Kind::ContentLength => match content_length(std::iter::once(v)) {
                Ok(Some(n)) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => bad_length = true,
            },
            Kind::TransferEncoding => {
                for c in tokens(v) {
                    codings += 1;
                    chunked = c.eq_ignore_ascii_case(b"chunked");
                }
            }
            Kind::Connection => {
                for t in tokens(v) {
                    if t.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        keep = true;
                    } else if t.eq_ignore_ascii_case(b"upgrade") {
                        conn_upgrade = true;
                    } else {
                        listed = true;
                    }
                }
            }
            Kind::Upgrade => has_upgrade = true,
            Kind::Expect => expect |= v.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
    }
    if hosts > 1 {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    // RFC 9112 §6.3, strictly: both framings, conflicting lengths, or a coding other than plain
    // `chunked` are refused (the classic request-smuggling ambiguities).
    let framing = if codings > 0 {
        if version == Version::HTTP_10 {
            return Err(ProxyError::BadRequest(
                "transfer-encoding in an HTTP/1.0 request",
            ));
        }
        if length.is_some() || bad_length {
            return Err(ProxyError::BadRequest(
                "both content-length and transfer-encoding",
            ));
        }
        if codings != 1 || !chunked {
            return Err(ProxyError::NotImplemented("only chunked is accepted"));
        }
        Framing::Chunked
    } else if bad_length {
        return Err(ProxyError::BadRequest("invalid content-length"));
    } else {
        match length {
            None | Some(0) => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    let http11 = version == Version::HTTP_11;
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    Ok(Some(RequestHead {
        req,
        framing,
        keep_alive: if http11 { !close } else { keep && !close },
        expect_continue: http11 && framing != Framing::None && expect,
        upgrade: http11 && conn_upgrade && has_upgrade,
        listed,
        host,
        raw: head,
    }))
}

impl RequestHead {
    /// Puts the `Host` field in `req`'s header map (for routes with host conditions).
    pub fn insert_host(&mut self) -> Result<(), ProxyError> {
        if let Some(v) = self.host {
            let v = header_value(&self.raw, v)?;
            self.req.headers_mut().insert(HOST, v);
        }
        Ok(())
    }

    /// Puts every field in `req`'s header map (for routes and splits that look at headers).
    pub fn fill_headers(&mut self, fields: &[Field]) -> Result<(), ProxyError> {
        let mut h = HeaderMap::with_capacity(fields.len());
        for f in fields {
            let name = HeaderName::from_bytes(f.name(&self.raw))
                .map_err(|_| ProxyError::BadRequest("invalid header name"))?;
            h.append(name, header_value(&self.raw, f.value)?);
        }
        *self.req.headers_mut() = h;
        Ok(())
    }
}

fn header_value(head: &Bytes, (off, len): (u32, u32)) -> Result<HeaderValue, ProxyError> {
    let r = off as usize..(off + len) as usize;
    HeaderValue::from_maybe_shared(head.slice(r))
        .map_err(|_| ProxyError::BadRequest("invalid header value"))
}

/// The request's id: the client's `x-request-id` when it is a sane token (`false`), else a new
/// one (`true`).
pub fn request_id<R: rand::Rng + ?Sized>(
    head: &RequestHead,
    fields: &[Field],
    rng: &mut R,
) -> (HeaderValue, bool) {
    let theirs = fields
        .iter()
        .find(|f| f.kind == Kind::RequestId)
        .filter(|f| f.value.1 > 0 && f.value.1 <= 200)
        .and_then(|f| header_value(&head.raw, f.value).ok());
    match theirs {
        Some(v) => (v, false),
        None => (crate::proxy::headers::new_request_id(rng), true),
    }
}

/// What the gateway adds to the request it forwards.
#[derive(Debug, Clone, Copy)]
pub struct Additions<'a> {
    /// Path and query to send.
    pub target: &'a str,
    /// `X-Forwarded-*` from this client address (`None`: the policy is off).
    pub forwarded_for: Option<std::net::IpAddr>,
    /// The client connection is TLS.
    pub https: bool,
    /// A request id the gateway generated (the client's own is forwarded as received).
    pub new_request_id: Option<&'a HeaderValue>,
}

/// Writes the upstream request head from the client's, field by field: the received bytes of
/// every end-to-end field, hop-by-hop fields dropped (RFC 9110 §7.6.1), then our framing,
/// forwarding and request-id fields. No header map is built or walked.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    fields: &[Field],
    add: &Additions<'_>,
) -> Result<(), ProxyError> {
    let raw = &head.raw[..];
    let forwarded = add.forwarded_for.is_some();
    out.clear();
    out.extend_from_slice(head.req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(add.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // RFC 9112 §3.2.2: an absolute-form target's authority replaces any `Host` field.
    let authority = head.req.uri().authority().map(|a| a.as_str().as_bytes());
    let mut host = None;
    let mut forwarded_host = false;
    let mut copy = LineCopier::new(raw);
    for f in fields {
        let value = f.value(raw);
        let keep = match f.kind {
            // Only plain fields can be made hop-by-hop by `Connection`: framing and `Host` are
            // not the client's to remove (a listed `Content-Length` would desynchronise us).
            Kind::Other => !(head.listed && listed_in_connection(raw, fields, f.name(raw))),
            Kind::Host if authority.is_some() => false,
            Kind::Host => {
                host = Some(value);
                true
            }
            Kind::ContentLength => true,
            Kind::Connection
            | Kind::KeepAlive
            | Kind::ProxyConnection
            | Kind::Trailer
            | Kind::TransferEncoding => false,
            Kind::Upgrade => head.upgrade,
            // The one TE value allowed end to end (gRPC needs it).
            Kind::Te => value.eq_ignore_ascii_case(b"trailers"),
            Kind::Expect => !head.expect_continue,
            Kind::RequestId => add.new_request_id.is_none(),
            Kind::ForwardedFor | Kind::ForwardedProto => !forwarded,
            Kind::ForwardedHost => {
                forwarded_host = true;
                true
            }
        };
        if keep {
            copy.keep(out, f);
        }
    }
    copy.flush(out);
    let host = match (host, authority) {
        (Some(h), _) => h,
        (None, Some(a)) => {
            put_field(out, b"host", a);
            a
        }
        (None, None) => return Err(ProxyError::BadRequest("missing Host header")),
    };
    if head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    if head.framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(ip) = add.forwarded_for {
        out.extend_from_slice(b"x-forwarded-for: ");
        for f in fields.iter().filter(|f| f.kind == Kind::ForwardedFor) {
            out.extend_from_slice(f.value(raw));
            out.extend_from_slice(b", ");
        }
        let mut ip_buf = [0u8; 64];
        out.extend_from_slice(crate::proxy::headers::format_ip(ip, &mut ip_buf));
        out.extend_from_slice(if add.https {
            b"\r\nx-forwarded-proto: https\r\n"
        } else {
            b"\r\nx-forwarded-proto: http\r\n"
        });
        if !forwarded_host {
            put_field(out, b"x-forwarded-host", host);
        }
    }
    if let Some(id) = add.new_request_id {
        put_field(out, b"x-request-id", id.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
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
        let at = |s: &[u8]| offsets_in(buf, s);
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
            let kind = classify(h.name.as_bytes());
            self.fields.push(Field {
                name: at(h.name.as_bytes()),
                value: at(h.value),
                kind,
            });
            match kind {
                Kind::ContentLength => match content_length(std::iter::once(h.value)) {
                    Ok(Some(n)) if self.content_length.is_none_or(|c| c == n) => {
                        self.content_length = Some(n)
                    }
                    _ => lengths_ok = false,
                },
                Kind::TransferEncoding => {
                    // The final coding decides; empty list elements do not count (RFC 9110
                    // §5.6.1), whichever field they are in.
                    if let Some(last) = tokens(h.value).last() {
                        self.has_te = true;
                        self.chunked = last.eq_ignore_ascii_case(b"chunked");
                    }
                }
                Kind::Connection => {
                    for t in tokens(h.value) {
                        close |= t.eq_ignore_ascii_case(b"close");
                        keep |= t.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                _ => {}
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

/// Copies kept fields as their received lines, each run of consecutive lines in one copy (a
/// line not ending in CRLF is rewritten instead). Call [`flush`] before writing anything else.
///
/// [`flush`]: LineCopier::flush
#[derive(Debug)]
pub struct LineCopier<'a> {
    raw: &'a [u8],
    start: usize,
    end: usize,
}

impl<'a> LineCopier<'a> {
    /// Copies from `raw`, the head the fields point into.
    pub fn new(raw: &'a [u8]) -> Self {
        Self {
            raw,
            start: 0,
            end: 0,
        }
    }

    /// Appends field `f` (after any earlier kept ones).
    pub fn keep(&mut self, out: &mut Vec<u8>, f: &Field) {
        let name_start = f.name.0 as usize;
        let value_end = (f.value.0 + f.value.1) as usize;
        let rest = &self.raw[value_end..];
        let ws = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if rest.get(ws..ws + 2) == Some(&b"\r\n"[..]) {
            if self.end != name_start {
                self.flush(out);
                self.start = name_start;
            }
            self.end = value_end + ws + 2;
        } else {
            self.flush(out);
            put_field(out, f.name(self.raw), f.value(self.raw));
        }
    }

    /// Writes out the pending run.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if self.end > self.start {
            out.extend_from_slice(&self.raw[self.start..self.end]);
        }
        self.start = 0;
        self.end = 0;
    }
}

/// Appends `name: value\r\n`.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
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
        let mut fields = Vec::new();
        let h = parse_request(&mut buf, &mut fields).unwrap().unwrap();
        assert_eq!(h.req.method(), Method::POST);
        assert_eq!(h.req.uri(), "/a?b=1");
        assert_eq!(fields.len(), 4);
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
    fn expect_continue_and_upgrade_are_seen() {
        let h = req(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
        let h = req(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.upgrade);
        assert!(req(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").is_err());
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

    /// Review: RFC 9110 §5.6.1 empty list elements are ignored, as `parse_request` does with
    /// `tokens`; the response side takes the text after the last comma, so a trailing comma or
    /// an empty second field turns a chunked body into a close-delimited one.
    #[test]
    fn response_te_with_empty_list_elements_is_chunked() {
        let mut r = ResponseHead::default();
        assert!(r
            .parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n")
            .unwrap());
        assert_eq!(r.framing(false), Framing::Chunked, "trailing comma");
        assert!(r
            .parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n")
            .unwrap());
        assert_eq!(r.framing(false), Framing::Chunked, "empty second field");
    }

    /// Review: httparse returns a `'static` `""` (not a slice of the buffer) as the reason of
    /// a status line without one (`HTTP/1.1 200`) or with obs-text in it, so the offset
    /// arithmetic in `parse` (`s.as_ptr() - base`) underflows: a panic with overflow checks,
    /// a garbage offset (and a slice panic in `response_head`) without.
    #[test]
    fn status_line_without_a_reason_phrase() {
        for raw in [
            &b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 204 \x80\r\n\r\n",
        ] {
            // On the heap, as the upstream connection's buffer is.
            let buf = BytesMut::from(raw);
            let mut r = ResponseHead::default();
            assert!(r.parse(&buf).unwrap());
            let (o, l) = (r.reason.0 as usize, r.reason.1 as usize);
            assert!(
                o + l <= r.len,
                "reason at {o}+{l} outside a {}-byte head",
                r.len
            );
        }
    }

    fn upstream(raw: &[u8], add: &Additions<'_>) -> String {
        let mut fields = Vec::new();
        let h = parse_request(&mut BytesMut::from(raw), &mut fields)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_upstream_head(&mut out, &h, &fields, add).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn plain(target: &str) -> Additions<'_> {
        Additions {
            target,
            forwarded_for: None,
            https: false,
            new_request_id: None,
        }
    }

    #[test]
    fn upstream_heads_keep_end_to_end_lines_and_drop_hop_by_hop() {
        let cases: [(&[u8], &str); 5] = [
            // `Connection` cannot make framing fields or `TE: trailers` hop-by-hop.
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, te, x-a\r\nContent-Length: 2\r\nTE: trailers\r\nX-A: 1\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTE: trailers\r\n\r\n",
            ),
            // An absolute-form target's authority replaces `Host`.
            (
                b"GET http://b.example/p?q HTTP/1.1\r\nHost: a\r\nX-B: 1\r\n\r\n",
                "GET /p?q HTTP/1.1\r\nX-B: 1\r\nhost: b.example\r\n\r\n",
            ),
            (
                b"POST /x?y HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\nConnection: keep-alive, X-Secret\r\nx-secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
                "POST /x?y HTTP/1.1\r\nHost: a\r\nX-Keep: 1\r\nTE: trailers\r\ntransfer-encoding: chunked\r\n\r\n",
            ),
            (
                b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            ),
            // Runs of lines are copied as received; a bare-LF line is rewritten with CRLF.
            (
                b"GET / HTTP/1.1\r\nHost: a  \r\nX-A: 1\nConnection: x\r\nX-B:2\r\nX-C: 3\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: a  \r\nX-A: 1\r\nX-B:2\r\nX-C: 3\r\n\r\n",
            ),
        ];
        for (raw, want) in cases {
            let line = std::str::from_utf8(raw).unwrap();
            let target: Uri = line.split(' ').nth(1).unwrap().parse().unwrap();
            let target = target.path_and_query().unwrap().as_str();
            assert_eq!(upstream(raw, &plain(target)), want);
        }
    }

    #[test]
    fn adds_forwarding_fields_and_a_new_request_id() {
        let id = HeaderValue::from_static("abc");
        let add = Additions {
            target: "/new",
            forwarded_for: Some("10.1.2.3".parse().unwrap()),
            https: true,
            new_request_id: Some(&id),
        };
        let raw = b"GET http://h.example/old HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: ftp\r\nX-Request-Id: \r\n\r\n";
        assert_eq!(
            upstream(raw, &add),
            "GET /new HTTP/1.1\r\nhost: h.example\r\nx-forwarded-for: 1.1.1.1, 10.1.2.3\r\nx-forwarded-proto: https\r\nx-forwarded-host: h.example\r\nx-request-id: abc\r\n\r\n"
        );
    }

    #[test]
    fn a_request_without_host_is_refused() {
        let mut fields = Vec::new();
        let h = parse_request(
            &mut BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]),
            &mut fields,
        )
        .unwrap()
        .unwrap();
        assert!(write_upstream_head(&mut Vec::new(), &h, &fields, &plain("/")).is_err());
    }

    #[test]
    fn header_map_is_empty_until_filled() {
        let mut fields = Vec::new();
        let mut h = parse_request(
            &mut BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n"[..]),
            &mut fields,
        )
        .unwrap()
        .unwrap();
        assert!(h.req.headers().is_empty());
        h.insert_host().unwrap();
        assert_eq!(h.req.headers().len(), 1);
        h.fill_headers(&fields).unwrap();
        assert_eq!(h.req.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(h.req.headers()["host"], "a");
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        const NAMES: [&str; 16] = [
            "Host",
            "Content-Length",
            "Transfer-Encoding",
            "Connection",
            "Upgrade",
            "TE",
            "Trailer",
            "Keep-Alive",
            "Proxy-Connection",
            "Expect",
            "X-Request-Id",
            "X-Forwarded-For",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
            "X-Other",
            "content-length",
        ];

        fn field() -> impl Strategy<Value = (String, String)> {
            (
                prop::sample::select(&NAMES[..]).prop_map(str::to_string),
                "[ -~]{0,24}",
            )
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
                let _ = parse_request(&mut BytesMut::from(&raw[..]), &mut Vec::new());
                let _ = ResponseHead::default().parse(&raw);
            }

            #[test]
            fn parsed_requests_forward_without_hop_by_hop(
                method in prop::sample::select(&["GET", "POST", "HEAD", "PUT"][..]),
                fields in proptest::collection::vec(field(), 0..12),
                forwarded in any::<bool>(),
            ) {
                let mut raw = format!("{method} /p?q=1 HTTP/1.1\r\n");
                for (n, v) in &fields {
                    raw.push_str(&format!("{n}: {v}\r\n"));
                }
                raw.push_str("\r\n");
                let mut parsed = Vec::new();
                let Ok(Some(head)) = parse_request(&mut BytesMut::from(raw.as_bytes()), &mut parsed)
                else {
                    return Ok(());
                };
                let id = HeaderValue::from_static("id");
                let add = Additions {
                    target: "/p?q=1",
                    forwarded_for: forwarded.then(|| "10.0.0.1".parse().unwrap()),
                    https: false,
                    new_request_id: Some(&id),
                };
                let mut out = Vec::new();
                if write_upstream_head(&mut out, &head, &parsed, &add).is_err() {
                    return Ok(());
                }
                let text = String::from_utf8(out).unwrap();
                prop_assert!(text.ends_with("\r\n\r\n"));
                let lines: Vec<&str> = text.trim_end().split("\r\n").skip(1).collect();
                let count = |name: &str| {
                    lines
                        .iter()
                        .filter(|l| l.split(':').next().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                        .count()
                };
                for hop in ["keep-alive", "proxy-connection", "trailer"] {
                    prop_assert_eq!(count(hop), 0, "{}", text);
                }
                prop_assert_eq!(count("host"), 1, "{}", text);
                prop_assert_eq!(count("x-request-id"), 1, "{}", text);
                prop_assert!(count("content-length") <= 1 || head.framing != Framing::Chunked);
                prop_assert!(count("connection") <= usize::from(head.upgrade), "{}", text);
            }
        }
    }
}
