//! The chunked transfer coding (RFC 9112 §7.1), scanned incrementally: where a chunked body ends
//! and where its data lies, without copying. Strict: CRLF only, at most 16 hex digits per size,
//! bounded extensions and trailers (request smuggling lives in lenient chunk parsers).

use std::ops::Range;

/// Longest chunk extension or trailer section accepted.
const MAX_META: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// A malformed chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// Incremental scanner of one chunked body.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    remaining: u64,
    meta: usize,
}

impl Chunked {
    /// True once the last chunk and the trailer section have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `input`; calls `on_data` with the ranges of `input` that are chunk data. Returns how
    /// many bytes belong to the body (all of `input` unless the body ended inside it).
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                on_data(i..i + take);
                i += take;
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if self.digits == 16 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.digits += 1;
                        self.size = self.size * 16 + u64::from(hex(b));
                        State::Size
                    }
                    _ if self.digits == 0 => return Err(ChunkError("missing chunk size")),
                    b';' | b' ' | b'\t' => State::Ext,
                    b'\r' => State::SizeLf,
                    _ => return Err(ChunkError("invalid chunk size")),
                },
                State::Ext => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(ChunkError("bare LF in chunk extension")),
                    _ => {
                        self.meta += 1;
                        if self.meta > MAX_META {
                            return Err(ChunkError("chunk extension too long"));
                        }
                        State::Ext
                    }
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError("expected LF after chunk size"));
                    }
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        self.remaining = size;
                        State::Data
                    }
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size,
                State::DataCr | State::DataLf => {
                    return Err(ChunkError("expected CRLF after chunk data"))
                }
                State::TrailerStart if b == b'\r' => State::EndLf,
                State::TrailerStart | State::TrailerLine => {
                    self.meta += 1;
                    if self.meta > MAX_META {
                        return Err(ChunkError("trailer section too long"));
                    }
                    match b {
                        b'\r' => State::TrailerLf,
                        b'\n' => return Err(ChunkError("bare LF in trailer")),
                        _ => State::TrailerLine,
                    }
                }
                State::TrailerLf if b == b'\n' => State::TrailerStart,
                State::TrailerLf => return Err(ChunkError("expected LF in trailer")),
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok(i);
                }
                State::EndLf => return Err(ChunkError("expected LF at end of body")),
                State::Data | State::Done => return Ok(i - 1),
            };
        }
        Ok(i)
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decode(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut used = 0;
        for part in input.chunks(step) {
            if c.is_done() {
                break;
            }
            let n = c.feed(part, |r| out.extend_from_slice(&part[r]))?;
            used += n;
        }
        Ok((out, used, c.is_done()))
    }

    #[test]
    fn decodes_whole_and_byte_by_byte() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, body.len()] {
            let (data, used, done) = decode(body, step).unwrap();
            assert_eq!(data, b"hello world", "step {step}");
            assert!(done);
            assert_eq!(used, body.len() - 4, "stops before the next message");
        }
    }

    #[test]
    fn upper_case_hex_and_empty_body() {
        let (data, _, done) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!(data, b"0123456789");
        assert!(done);
        let (data, used, done) = decode(b"0\r\n\r\n", 1).unwrap();
        assert!(data.is_empty() && done);
        assert_eq!(used, 5);
    }

    #[test]
    fn incomplete_is_not_done() {
        let (data, used, done) = decode(b"5\r\nhel", 100).unwrap();
        assert_eq!((data.as_slice(), used, done), (&b"hel"[..], 6, false));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nx\n\r\n",
            b"-1\r\n",
        ] {
            assert!(
                decode(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn any_split_decodes_the_same(
                chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..8),
                step in 1usize..64,
                next in proptest::collection::vec(any::<u8>(), 0..16),
            ) {
                let mut body = Vec::new();
                let mut want = Vec::new();
                for c in &chunks {
                    body.extend_from_slice(format!("{:X}\r\n", c.len()).as_bytes());
                    body.extend_from_slice(c);
                    body.extend_from_slice(b"\r\n");
                    want.extend_from_slice(c);
                }
                body.extend_from_slice(b"0\r\n\r\n");
                let len = body.len();
                body.extend_from_slice(&next);
                let (data, used, done) = decode(&body, step).unwrap();
                prop_assert!(done);
                prop_assert_eq!(used, len);
                prop_assert_eq!(data, want);
            }

            #[test]
            fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = decode(&raw, 7);
            }
        }
    }
}
