//! HTTP/1.x request heads, parsed into `http` types without copying header values, and the
//! framing rules of RFC 9112 §6. Upstream response heads are in `response`; the heads the gateway
//! writes upstream are in `forward`.

#[cfg(test)]
mod tests;

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

// === impl Field ===

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

// === impl RequestHead ===

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

/// The kind of the field named `name` (compared by length first, so most names cost one
/// comparison of lengths).
pub fn classify(name: &[u8]) -> Kind {
    macro_rules! is {
        ($lower:literal) => {{
            const F: Folded = Folded::new($lower);
            folded_eq(name, &F)
        }};
    }
    match name.len() {
        2 if name.eq_ignore_ascii_case(b"te") => Kind::Te,
        4 if is!(b"host") => Kind::Host,
        6 if is!(b"expect") => Kind::Expect,
        7 if is!(b"trailer") => Kind::Trailer,
        7 if is!(b"upgrade") => Kind::Upgrade,
        10 if is!(b"connection") => Kind::Connection,
        10 if is!(b"keep-alive") => Kind::KeepAlive,
        12 if is!(b"x-request-id") => Kind::RequestId,
        14 if is!(b"content-length") => Kind::ContentLength,
        15 if is!(b"x-forwarded-for") => Kind::ForwardedFor,
        16 if is!(b"proxy-connection") => Kind::ProxyConnection,
        16 if is!(b"x-forwarded-host") => Kind::ForwardedHost,
        17 if is!(b"transfer-encoding") => Kind::TransferEncoding,
        17 if is!(b"x-forwarded-proto") => Kind::ForwardedProto,
        _ => Kind::Other,
    }
}

/// A lowercase field name (letters, digits and '-') prepared at compile time for
/// [`folded_eq`]: its bytes and case masks as little-endian words, 8 bytes at a time with the
/// last word ending at the name's end (overlapping the one before), or 4 bytes at a time for
/// names of 4 to 7 bytes.
struct Folded {
    len: usize,
    words: [(u64, u64); 3],
}

impl Folded {
    const fn new(lower: &[u8]) -> Self {
        const fn word(b: &[u8], at: usize, width: usize, fold: bool) -> u64 {
            let mut w = 0u64;
            let mut i = 0;
            while i < width {
                let c = b[at + i];
                let byte = if fold {
                    if c.is_ascii_lowercase() {
                        0x20
                    } else {
                        0
                    }
                } else {
                    c
                };
                w |= (byte as u64) << (8 * i);
                i += 1;
            }
            w
        }
        let n = lower.len();
        let mut words = [(0, 0); 3];
        let width = if n >= 8 { 8 } else { 4 };
        let mut k = 0;
        let mut at = 0;
        assert!(n >= 4 && n <= 24);
        loop {
            let a = if at + width > n { n - width } else { at };
            words[k] = (word(lower, a, width, false), word(lower, a, width, true));
            k += 1;
            if a == n - width {
                break;
            }
            at += width;
        }
        // Unused slots repeat the last window.
        while k < 3 {
            words[k] = words[k - 1];
            k += 1;
        }
        Self { len: n, words }
    }
}

/// `name` equals the prepared lowercase name ignoring ASCII case, a word at a time: only the
/// bytes where the name has a letter get 0x20 ORed in, which turns exactly 'A'..='Z' into the
/// letters and changes no other byte that could then match, so it is exact for any input.
#[inline(always)]
fn folded_eq(name: &[u8], f: &Folded) -> bool {
    let n = f.len;
    if name.len() != n {
        return false;
    }
    if n >= 8 {
        let w = |a: usize| u64::from_le_bytes(name[a..a + 8].try_into().unwrap_or([0; 8]));
        let ends = [0, 8.min(n - 8), 16.min(n - 8)];
        (0..3).all(|k| w(ends[k]) | f.words[k].1 == f.words[k].0)
    } else {
        let w = |a: usize| u32::from_le_bytes(name[a..a + 4].try_into().unwrap_or([0; 4]));
        let ends = [0, 4.min(n - 4)];
        (0..2).all(|k| u64::from(w(ends[k])) | f.words[k].1 == f.words[k].0)
    }
}

/// Where `part` lies in `buf`, as (offset, length). httparse hands out slices of the buffer,
/// except for some empty ones (a missing reason phrase is a static `""`): anything outside the
/// buffer is the empty span at 0.
pub(super) fn offsets_in(buf: &[u8], part: &[u8]) -> (u32, u32) {
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

/// Parses a request head from the start of `buf` into `fields` (offsets into the head); a
/// target longer than `max_target` bytes is refused (414). `Ok(None)`: incomplete. On success
/// the head's bytes are split off `buf`, which keeps what follows (body, pipelined requests).
pub fn parse_request(
    buf: &mut BytesMut,
    fields: &mut Vec<Field>,
    max_target: usize,
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
    if target.1 as usize > max_target {
        return Err(ProxyError::UriTooLong(max_target));
    }
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

/// A request's fields seen through [`crate::policy::Headers`]: policies look fields up in the
/// head as received, with no header map built.
pub struct FieldsView<'a> {
    /// The head's bytes.
    pub raw: &'a [u8],
    /// Its fields.
    pub fields: &'a [Field],
}

impl crate::policy::Headers for FieldsView<'_> {
    fn get(&self, name: &http::HeaderName) -> Option<&[u8]> {
        let n = name.as_str().as_bytes();
        self.fields
            .iter()
            .find(|f| f.name(self.raw).eq_ignore_ascii_case(n))
            .map(|f| f.value(self.raw))
    }
}
