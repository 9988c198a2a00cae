//! Operator-visible events (reloads, weight and endpoint changes) for `GET /v1/events`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::admin::model::Event;
use crate::weights::rfc3339;

/// Events kept for clients that connect late (`Last-Event-ID`).
pub const RECENT: usize = 200;

/// Event fan-out with a short replay buffer.
#[derive(Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    next: AtomicU64,
    recent: Mutex<VecDeque<Event>>,
}

impl Events {
    /// An empty event log.
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
            next: AtomicU64::new(1),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Publishes an event.
    pub fn emit(
        &self,
        kind: &str,
        route: Option<String>,
        service: Option<String>,
        message: String,
    ) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let e = Event {
            id: self.next.fetch_add(1, Relaxed),
            at: rfc3339(SystemTime::now()),
            kind: kind.to_string(),
            route,
            service,
            message,
        };
        recent.push_back(e.clone());
        while recent.len() > RECENT {
            recent.pop_front();
        }
        let _ = self.tx.send(e);
    }

    /// A receiver of future events plus the recent ones with an id above `after`.
    pub fn subscribe(&self, after: u64) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        (
            recent.iter().filter(|e| e.id > after).cloned().collect(),
            rx,
        )
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}
