//! Runs Commands off the UI task and sends results back as Messages on a bounded channel; also
//! keeps one `/v1/events` stream per gateway alive (reconnecting with backoff).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::message::{Command, GatewayAnswer, Message};
use crate::client::AdminClient;

/// Silence longer than this on an event stream (the gateway pings more often) means it is dead.
const EVENT_SILENCE: Duration = Duration::from_secs(45);
/// Reconnect backoff bounds of the event streams.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Executes Commands against the gateways.
#[derive(Debug, Clone)]
pub struct Worker {
    clients: Arc<Vec<AdminClient>>,
    tx: mpsc::Sender<Message>,
}

// === impl Worker ===

impl Worker {
    /// A worker sending results on `tx`.
    pub fn new(clients: Vec<AdminClient>, tx: mpsc::Sender<Message>) -> Self {
        Self {
            clients: Arc::new(clients),
            tx,
        }
    }

    /// Starts a command; its result arrives later as a Message (never blocks the caller).
    pub fn run(&self, cmd: Command) {
        if let Command::Batch(cmds) = cmd {
            for c in cmds {
                self.run(c);
            }
            return;
        }
        let clients = Arc::clone(&self.clients);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            if let Some(msg) = execute(&clients, cmd).await {
                // A closed channel means the console is exiting.
                let _ = tx.send(msg).await;
            }
        });
    }

    /// Starts one event stream task per gateway, for the life of the process.
    pub fn watch_events(&self) {
        for gateway in 0..self.clients.len() {
            let clients = Arc::clone(&self.clients);
            let tx = self.tx.clone();
            tokio::spawn(async move { watch(&clients[gateway], gateway, tx).await });
        }
    }
}

async fn execute(clients: &[AdminClient], cmd: Command) -> Option<Message> {
    match cmd {
        Command::Batch(_) => None,
        Command::Refresh {
            gateway,
            generation,
        } => {
            let c = clients.get(gateway)?;
            let (routes, stats, upstreams) =
                futures_util::join!(c.routes(), c.stats(true), c.upstreams());
            Some(Message::Refreshed {
                gateway,
                generation,
                result: Box::new(GatewayAnswer {
                    routes,
                    stats,
                    upstreams,
                }),
            })
        }
        Command::LoadDetail {
            gateway,
            route,
            generation,
        } => {
            let c = clients.get(gateway)?;
            let result = c.route(&route).await.map(Box::new);
            Some(Message::DetailLoaded { generation, result })
        }
        Command::PutWeights {
            gateway,
            route,
            update,
        } => {
            let c = clients.get(gateway)?;
            let result = c.put_weights(&route, &update).await.map(Box::new);
            Some(Message::WriteDone { result })
        }
        Command::CanaryPut {
            gateway,
            route,
            update,
            generation,
        } => {
            let c = clients.get(gateway)?;
            let result = c.put_weights(&route, &update).await.map(Box::new);
            Some(Message::CanaryWrote { generation, result })
        }
        Command::CanarySample {
            delay_secs,
            generation,
        } => {
            if delay_secs > 0 {
                tokio::time::sleep(Duration::from_secs(delay_secs)).await;
            }
            let samples = crate::cli::gather(clients, |c| c.stats(false))
                .await
                .into_iter()
                .map(Result::ok)
                .collect();
            Some(Message::CanarySampled {
                generation,
                samples,
            })
        }
        Command::Flip {
            gateway,
            route,
            request,
        } => {
            let c = clients.get(gateway)?;
            let result = c.flip(&route, &request).await.map(Box::new);
            Some(Message::WriteDone { result })
        }
    }
}

async fn watch(client: &AdminClient, gateway: usize, tx: mpsc::Sender<Message>) {
    let mut last_id = None;
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Ok(mut source) = client.events(last_id).await {
            backoff = BACKOFF_MIN;
            if tx
                .send(Message::EventStream {
                    gateway,
                    connected: true,
                })
                .await
                .is_err()
            {
                return;
            }
            while let Ok(Some(Ok(event))) = tokio::time::timeout(EVENT_SILENCE, source.next()).await
            {
                last_id = Some(event.id);
                let msg = Message::Event {
                    gateway,
                    event: Box::new(event),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
        let msg = Message::EventStream {
            gateway,
            connected: false,
        };
        if tx.send(msg).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
