//! What both sides of the engine share: the read buffer size and vectored writes.

use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt as _};

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
