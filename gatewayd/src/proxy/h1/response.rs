//! Upstream response heads: every slice an offset into the upstream connection's buffer.

use std::mem::MaybeUninit;

use super::head::{
    classify, content_length, offsets_in, tokens, Field, Framing, Kind, MAX_HEAD, MAX_HEADERS,
};

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

// === impl ResponseHead ===

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
