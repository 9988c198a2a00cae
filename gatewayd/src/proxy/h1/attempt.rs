//! The engine's upstream exchange as one attempt of the attempts phase (`proxy::attempts`):
//! what a request given back for a retry releases, and what becomes of an answer a retry
//! discards. Here rather than beside the types (`upstream`), so the upstream side does not
//! import the attempts phase, the worker or the pool that owns it.

use bytes::Buf as _;
use tokio::time::Instant;

use super::head::Framing;
use super::upload::Body;
use super::upstream::{Answered, Outgoing};
use crate::proxy::attempts::{Answer, Resend};
use crate::proxy::worker::Worker;
use crate::snapshot::ServiceRuntime;

impl<C> Resend for Outgoing<'_, C> {
    fn settle(self) {
        if let Some(n) = self.buffered {
            self.down.buf.advance(n);
        }
    }
}

impl Answer for Answered {
    fn status(&self) -> u16 {
        self.conn.head.status
    }

    fn discard(self, w: &Worker, svc: &ServiceRuntime) {
        let Self { conn, addr, body } = self;
        let head = &conn.head;
        // Pooled only when the whole answer is already read (a small error body comes with its
        // head): draining more would hold the retry up.
        let drained = match head.framing(false) {
            Framing::Length(n) => (conn.buf.len() - head.len) as u64 == n,
            Framing::None => conn.buf.len() == head.len,
            _ => false,
        };
        if drained && !head.close && matches!(body, Body::Sent) {
            let (max_idle, idle) = (svc.config.max_idle_per_endpoint, svc.config.idle_timeout);
            w.upstreams
                .raw()
                .give_back(addr, conn, max_idle, idle, Instant::now());
        }
    }
}
