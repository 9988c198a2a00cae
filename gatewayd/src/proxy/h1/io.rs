//! What both sides of the engine share: the read buffer size, vectored writes, and the field
//! lines of the heads it writes (the upstream's in `forward`, the client's in `respond`).

use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::head::Field;

/// Read buffer size of a connection (grown while a head does not fit).
pub const READ_BUF: usize = 16 * 1024;

/// `write_all` for several buffers, with as few system calls as the socket allows.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut parts: [IoSlice<'_>; 2],
) -> std::io::Result<()> {
    let mut slices = &mut parts[..];
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    // A TLS stream may keep the last record buffered; on a TcpStream this is a no-op.
    w.flush().await
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

// === impl LineCopier ===

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
