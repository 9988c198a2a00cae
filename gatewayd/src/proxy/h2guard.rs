//! A frame-level check in front of hyper's HTTP/2 server, for the connection errors the `h2`
//! crate reports with a vaguer code than RFC 9113 asks for.
//!
//! `h2` answers a PING, WINDOW_UPDATE, RST_STREAM, PRIORITY or SETTINGS frame of the wrong size,
//! and a SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1, with `PROTOCOL_ERROR` instead of
//! `FRAME_SIZE_ERROR` / `FLOW_CONTROL_ERROR` (RFC 9113 §4.2, §6.5.2), and frames on a stream the
//! client already ended (END_STREAM or its own RST_STREAM) with `PROTOCOL_ERROR` instead of
//! `STREAM_CLOSED` (§5.1), and is slow to refuse a client's PUSH_PROMISE (§8.4). The guard reads the client's frame headers as they pass (nine bytes a
//! frame; the payload only of SETTINGS), and on such a frame hides it from hyper, sends the
//! GOAWAY with the right code itself, at a boundary between the frames hyper writes, and ends
//! the connection. Everything else, including every other error, stays `h2`'s business.
//!
//! A stream error the RFC allows to be answered with RST_STREAM is answered with a connection
//! error here (allowed by §5.4: "an endpoint MAY treat a stream error as a connection error");
//! a client that sends frames on a stream it ended itself is broken, not unlucky. Frames on a
//! stream the *server* reset are still passed on (h2 ignores them, as §5.4.2 requires: they may
//! have been in flight).
//!
//! A connection that does not start with the HTTP/2 preface (an HTTP/1.1 connection handed to
//! hyper) is passed through untouched.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const PROTOCOL_ERROR: u32 = 0x1;
const FRAME_SIZE_ERROR: u32 = 0x6;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const STREAM_CLOSED: u32 = 0x5;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// Streams whose client half is tracked; a client holding more open at once (h2 refuses
/// beyond `max_concurrent_streams` anyway) turns the stream-state check off for its connection.
const MAX_TRACKED: usize = 256;
/// Runs of stream identifiers a client skipped (never opened, so never "closed"); a client
/// skipping more often turns the stream-state check off.
const MAX_GAPS: usize = 16;

/// The client's side of the connection, parsed as it is read.
#[derive(Debug)]
struct Incoming {
    /// Preface bytes still to match; on a mismatch the guard is off.
    preface: usize,
    off: bool,
    head: [u8; 9],
    head_len: usize,
    /// Payload bytes of the current frame still to pass.
    left: usize,
    kind: u8,
    /// A SETTINGS payload: its current 6-byte entry.
    entry: [u8; 6],
    entry_len: usize,
    /// Highest client stream opened.
    max_stream: u32,
    /// Client streams whose client half is still open.
    open: Vec<u32>,
    /// Identifiers skipped when a stream opened: `(first, last)`, both odd.
    gaps: Vec<(u32, u32)>,
    track: bool,
    /// A header block waiting for CONTINUATION frames.
    in_block: bool,
}

impl Default for Incoming {
    fn default() -> Self {
        Self {
            preface: PREFACE.len(),
            off: false,
            head: [0; 9],
            head_len: 0,
            left: 0,
            kind: 0,
            entry: [0; 6],
            entry_len: 0,
            max_stream: 0,
            open: Vec::new(),
            gaps: Vec::new(),
            track: true,
            in_block: false,
        }
    }
}

impl Incoming {
    /// Reads `buf`; returns the offset of the first byte that must not reach hyper and the
    /// error code to send, when a frame breaks a rule the guard checks.
    fn feed(&mut self, buf: &[u8]) -> Option<(usize, u32)> {
        let mut i = 0;
        while i < buf.len() && !self.off {
            if self.preface > 0 {
                let at = PREFACE.len() - self.preface;
                let n = self.preface.min(buf.len() - i);
                if buf[i..i + n] != PREFACE[at..at + n] {
                    self.off = true;
                    return None;
                }
                self.preface -= n;
                i += n;
            } else if self.left > 0 {
                let n = self.left.min(buf.len() - i);
                if self.kind == SETTINGS {
                    for (k, &b) in buf[i..i + n].iter().enumerate() {
                        self.entry[self.entry_len] = b;
                        self.entry_len += 1;
                        if self.entry_len == 6 {
                            self.entry_len = 0;
                            let id = u16::from_be_bytes([self.entry[0], self.entry[1]]);
                            let v = u32::from_be_bytes([
                                self.entry[2],
                                self.entry[3],
                                self.entry[4],
                                self.entry[5],
                            ]);
                            if id == SETTINGS_INITIAL_WINDOW_SIZE && v > 0x7fff_ffff {
                                // Hide the whole entry (its first bytes may have gone already).
                                return Some(((i + k + 1).saturating_sub(6), FLOW_CONTROL_ERROR));
                            }
                        }
                    }
                }
                self.left -= n;
                i += n;
            } else {
                let n = (9 - self.head_len).min(buf.len() - i);
                self.head[self.head_len..self.head_len + n].copy_from_slice(&buf[i..i + n]);
                self.head_len += n;
                i += n;
                if self.head_len == 9 {
                    self.head_len = 0;
                    let start = i.saturating_sub(9);
                    if let Some(code) = self.frame() {
                        return Some((start, code));
                    }
                }
            }
        }
        None
    }

    /// Judges a complete frame header; updates the client's stream states.
    fn frame(&mut self) -> Option<u32> {
        let h = self.head;
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        self.kind = kind;
        self.left = len;
        self.entry_len = 0;
        let size_ok = match kind {
            PING => len == 8,
            WINDOW_UPDATE | RST_STREAM => len == 4,
            PRIORITY => len == 5,
            SETTINGS if flags & ACK != 0 => len == 0,
            SETTINGS => len % 6 == 0,
            GOAWAY => len >= 8,
            _ => true,
        };
        if !size_ok {
            return Some(FRAME_SIZE_ERROR);
        }
        if kind == PUSH_PROMISE {
            // RFC 9113 §8.4: a client cannot push.
            return Some(PROTOCOL_ERROR);
        }
        if self.in_block && kind != CONTINUATION {
            // A header block interrupted: h2's PROTOCOL_ERROR is the right answer, and the
            // stream states are not worth following any further.
            self.track = false;
        }
        if !self.track || stream == 0 || stream.is_multiple_of(2) {
            return None;
        }
        let idle = stream > self.max_stream;
        let open = self.open.iter().position(|&s| s == stream);
        let skipped = self.gaps.iter().any(|&(a, b)| (a..=b).contains(&stream));
        if skipped {
            // Never opened: h2's PROTOCOL_ERROR (§5.1.1) is the right answer.
            return None;
        }
        match kind {
            HEADERS if idle => {
                let first = if self.max_stream == 0 {
                    1
                } else {
                    self.max_stream + 2
                };
                if stream > first {
                    self.gaps.push((first, stream - 2));
                    if self.gaps.len() > MAX_GAPS {
                        self.track = false;
                        return None;
                    }
                }
                self.max_stream = stream;
                if flags & END_STREAM == 0 {
                    self.open.push(stream);
                    if self.open.len() > MAX_TRACKED {
                        self.track = false;
                        self.open = Vec::new();
                    }
                }
                self.in_block = flags & END_HEADERS == 0;
            }
            HEADERS | DATA => match open {
                None if !idle => return Some(STREAM_CLOSED),
                None => {} // DATA on an idle stream: h2's PROTOCOL_ERROR is the right one
                Some(p) => {
                    if flags & END_STREAM != 0 {
                        self.open.swap_remove(p);
                    }
                    if kind == HEADERS {
                        self.in_block = flags & END_HEADERS == 0;
                    }
                }
            },
            CONTINUATION if flags & END_HEADERS != 0 => self.in_block = false,
            RST_STREAM => {
                if let Some(p) = open {
                    self.open.swap_remove(p);
                }
            }
            _ => {}
        }
        None
    }
}

/// Where our own frames are in what hyper writes: a GOAWAY may go out only between two.
#[derive(Debug, Default)]
struct Outgoing {
    head: [u8; 3],
    head_len: usize,
    /// Bytes of the current frame (header included) still to come.
    left: usize,
}

impl Outgoing {
    fn at_boundary(&self) -> bool {
        self.left == 0 && self.head_len == 0
    }

    fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.left > 0 {
                let n = self.left.min(buf.len());
                self.left -= n;
                buf = &buf[n..];
                continue;
            }
            // A frame starts: its first three bytes are the payload length.
            let n = (3 - self.head_len).min(buf.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&buf[..n]);
            self.head_len += n;
            buf = &buf[n..];
            if self.head_len == 3 {
                self.head_len = 0;
                let h = self.head;
                let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                self.left = len + 9 - 3;
            }
        }
    }
}

/// The guard: wraps the client connection hyper serves.
#[derive(Debug)]
pub(crate) struct H2Guard<I> {
    io: I,
    inp: Incoming,
    out: Outgoing,
    /// A GOAWAY to send, and how much of it went.
    goaway: Option<([u8; 17], usize)>,
    /// After the GOAWAY (or when it could not be sent): reads end, writes fail.
    done: bool,
    violated: Arc<AtomicBool>,
}

impl<I> H2Guard<I> {
    /// Wraps `io`; `violated` turns true when the guard ended the connection.
    pub(crate) fn new(io: I, violated: Arc<AtomicBool>) -> Self {
        Self {
            io,
            inp: Incoming::default(),
            out: Outgoing::default(),
            goaway: None,
            done: false,
            violated,
        }
    }

    fn violation(&mut self, code: u32) {
        let mut f = [0u8; 17];
        f[2] = 8;
        f[3] = GOAWAY;
        f[9..13].copy_from_slice(&self.inp.max_stream.to_be_bytes());
        f[13..17].copy_from_slice(&code.to_be_bytes());
        tracing::debug!(
            code,
            "HTTP/2 frame breaks RFC 9113; connection ended with GOAWAY"
        );
        self.goaway = Some((f, 0));
        self.violated.store(true, Ordering::Relaxed);
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> H2Guard<I> {
    /// Sends the pending GOAWAY when our own frames are at a boundary (else gives it up: the
    /// close alone tells the client), then ends the connection for hyper.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((f, sent)) = &mut self.goaway {
            if *sent == 0 && !self.out.at_boundary() {
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            while *sent < f.len() {
                match ready!(Pin::new(&mut self.io).poll_write(cx, &f[*sent..])) {
                    Ok(0) | Err(_) => {
                        self.done = true;
                        return Poll::Ready(Ok(()));
                    }
                    Ok(n) => *sent += n,
                }
            }
            let _ = ready!(Pin::new(&mut self.io).poll_flush(cx));
            self.done = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for H2Guard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.done {
            return Poll::Ready(Ok(()));
        }
        if me.goaway.is_some() {
            return me.poll_goaway(cx);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut me.io).poll_read(cx, buf))?;
        if me.inp.off {
            return Poll::Ready(Ok(()));
        }
        if let Some((at, code)) = me.inp.feed(&buf.filled()[before..]) {
            buf.set_filled(before + at);
            me.violation(code);
            if at == 0 {
                return me.poll_goaway(cx);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H2Guard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.done || me.goaway.is_some_and(|(_, sent)| sent > 0) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = ready!(Pin::new(&mut me.io).poll_write(cx, buf))?;
        if !me.inp.off {
            me.out.feed(&buf[..n]);
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.done || me.goaway.is_some_and(|(_, sent)| sent > 0) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = ready!(Pin::new(&mut me.io).poll_write_vectored(cx, bufs))?;
        if !me.inp.off {
            let mut left = n;
            for b in bufs {
                if left == 0 {
                    break;
                }
                let k = left.min(b.len());
                me.out.feed(&b[..k]);
                left -= k;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn run(frames: &[Vec<u8>]) -> Option<(usize, u32)> {
        let mut bytes = PREFACE.to_vec();
        for f in frames {
            bytes.extend_from_slice(f);
        }
        // Fed one byte at a time and whole: the same verdict at the same offset.
        let whole = Incoming::default().feed(&bytes);
        let mut inc = Incoming::default();
        let mut bytewise = None;
        for (i, b) in bytes.iter().enumerate() {
            if let Some((at, code)) = inc.feed(std::slice::from_ref(b)) {
                bytewise = Some((i + at, code));
                break;
            }
        }
        // A byte at a time, an entry split over reads is hidden from its start in this read.
        if let (Some((w, wc)), Some((b, bc))) = (whole, bytewise) {
            assert_eq!(wc, bc);
            assert!(b >= w, "{b} < {w}");
        } else {
            assert_eq!(whole.is_some(), bytewise.is_some());
        }
        whole
    }

    #[test]
    fn fixed_size_frames_of_the_wrong_size_are_frame_size_errors() {
        let settings = frame(SETTINGS, 0, 0, &[]);
        let at = PREFACE.len() + settings.len();
        for (kind, len) in [
            (PING, 7),
            (WINDOW_UPDATE, 3),
            (RST_STREAM, 5),
            (PRIORITY, 4),
            (GOAWAY, 4),
        ] {
            let stream = if matches!(kind, PING | GOAWAY | WINDOW_UPDATE) {
                0
            } else {
                1
            };
            let bad = frame(kind, 0, stream, &vec![0; len]);
            assert_eq!(
                run(&[settings.clone(), bad]),
                Some((at, FRAME_SIZE_ERROR)),
                "{kind}"
            );
        }
        assert_eq!(
            run(&[settings.clone(), frame(SETTINGS, ACK, 0, &[0; 6])]),
            Some((at, FRAME_SIZE_ERROR))
        );
        assert_eq!(
            run(&[settings.clone(), frame(SETTINGS, 0, 0, &[0; 5])]),
            Some((at, FRAME_SIZE_ERROR))
        );
        assert_eq!(
            run(&[settings, frame(PING, 0, 0, &[0; 8])]),
            None,
            "a right-sized PING passes"
        );
    }

    #[test]
    fn an_initial_window_above_2_31_is_a_flow_control_error() {
        let mut p = vec![0, 3, 0, 0, 0, 100]; // MAX_CONCURRENT_STREAMS 100: fine
        p.extend_from_slice(&[0, 4, 0x80, 0, 0, 0]);
        let at = PREFACE.len() + 9 + 6;
        assert_eq!(
            run(&[frame(SETTINGS, 0, 0, &p)]),
            Some((at, FLOW_CONTROL_ERROR))
        );
        let ok = [0, 4, 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(run(&[frame(SETTINGS, 0, 0, &ok)]), None);
    }

    #[test]
    fn frames_on_a_stream_the_client_ended_are_stream_closed() {
        let s = frame(SETTINGS, 0, 0, &[]);
        let ended = frame(HEADERS, END_STREAM | END_HEADERS, 1, b"x");
        let at = PREFACE.len() + s.len() + ended.len();
        let data = frame(DATA, END_STREAM, 1, b"test");
        assert_eq!(
            run(&[s.clone(), ended.clone(), data.clone()]),
            Some((at, STREAM_CLOSED))
        );
        assert_eq!(
            run(&[s.clone(), ended.clone(), ended.clone()]),
            Some((at, STREAM_CLOSED))
        );
        // After the client's own RST_STREAM.
        let open = frame(HEADERS, END_HEADERS, 1, b"x");
        let rst = frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]);
        let at = PREFACE.len() + s.len() + open.len() + rst.len();
        assert_eq!(
            run(&[s.clone(), open.clone(), rst, ended.clone()]),
            Some((at, STREAM_CLOSED))
        );
        // An open stream takes data, then trailers; a new stream opens; DATA on an idle stream
        // is left to h2.
        assert_eq!(
            run(&[
                s.clone(),
                open.clone(),
                frame(DATA, 0, 1, b"abc"),
                frame(HEADERS, END_STREAM | END_HEADERS, 1, b"t"),
                frame(HEADERS, END_HEADERS, 3, b"x"),
                frame(CONTINUATION, END_HEADERS, 3, b"y"),
                frame(DATA, END_STREAM, 3, b"z"),
                frame(DATA, 0, 7, b"idle"),
            ]),
            None
        );
    }

    #[test]
    fn what_h2_already_answers_right_is_left_to_it() {
        let s = frame(SETTINGS, 0, 0, &[]);
        // A smaller stream identifier than one already opened (never opened itself).
        let five = frame(HEADERS, END_STREAM | END_HEADERS, 5, b"x");
        let three = frame(HEADERS, END_STREAM | END_HEADERS, 3, b"x");
        assert_eq!(run(&[s.clone(), five.clone(), three.clone()]), None);
        assert_eq!(
            run(&[s.clone(), five.clone(), frame(DATA, 0, 1, b"x")]),
            None
        );
        // ... but stream 5 itself was opened and ended.
        let at = PREFACE.len() + s.len() + five.len() + three.len();
        assert_eq!(
            run(&[s.clone(), five.clone(), three, five.clone()]),
            Some((at, STREAM_CLOSED))
        );
        // A header block interrupted by another frame.
        let block = frame(HEADERS, END_STREAM, 1, b"x");
        assert_eq!(
            run(&[s.clone(), block.clone(), frame(DATA, END_STREAM, 1, b"t")]),
            None
        );
        // A client's PUSH_PROMISE is the guard's, though: h2 is slow to refuse it.
        let at = PREFACE.len() + s.len();
        assert_eq!(
            run(&[s, frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2, 0x88])]),
            Some((at, PROTOCOL_ERROR))
        );
    }

    #[test]
    fn a_connection_without_the_preface_is_not_looked_at() {
        let mut inc = Incoming::default();
        assert_eq!(inc.feed(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert!(inc.off);
        assert_eq!(inc.feed(&frame(PING, 0, 0, &[0; 3])), None);
    }

    #[test]
    fn outgoing_boundaries_follow_the_frames_hyper_writes() {
        let mut out = Outgoing::default();
        let f = frame(DATA, 0, 1, b"hello");
        out.feed(&f[..2]);
        assert!(!out.at_boundary());
        out.feed(&f[2..10]);
        assert!(!out.at_boundary());
        out.feed(&f[10..]);
        assert!(out.at_boundary());
        let mut two = frame(SETTINGS, ACK, 0, &[]);
        two.extend(frame(PING, ACK, 0, &[0; 8]));
        out.feed(&two);
        assert!(out.at_boundary());
    }
}
