//! The live console. `run` owns the terminal (ratatui's `init`/`restore`, which also restore on
//! panic) and runs one select loop over key events, worker results, a 1 s tick and SIGTERM; it
//! drains a bounded batch of messages and then draws once, so the idle console wakes once a
//! second and redraws without flicker (ratatui only writes changed cells).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::client::AdminClient;

mod keymap;
mod message;
mod model;
mod theme;
mod update;
mod view;
mod worker;

#[cfg(test)]
mod testing;

use message::Message;
use model::Model;
use worker::Worker;

/// Capacity of the worker → UI channel (workers wait when it is full; the UI never does).
const CHANNEL: usize = 256;
/// Most messages applied between two draws.
const BATCH: usize = 64;
/// Tick period: refresh and redraw cadence.
const TICK: Duration = Duration::from_secs(1);

/// Runs the console until `q`, Ctrl-C or SIGTERM. The terminal is restored on every exit path.
pub async fn run(clients: Vec<AdminClient>) -> anyhow::Result<()> {
    let labels: Vec<String> = clients.iter().map(|c| c.label().to_string()).collect();
    let mut model = Model::new(&labels);
    model.who = crate::cli::whoami();
    let (tx, rx) = mpsc::channel(CHANNEL);
    let worker = Worker::new(clients, tx);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &mut model, &worker, rx, &mut sigterm).await;
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    model: &mut Model,
    worker: &Worker,
    mut rx: mpsc::Receiver<Message>,
    sigterm: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<()> {
    worker.watch_events();
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Message> = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(TermEvent::Key(k))) => {
                    if let Some(m) = keymap::message_for(&k, model) {
                        batch.push(m);
                    }
                }
                // Resize and the rest: just redraw (draw() resizes the buffers).
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("reading the terminal")),
                None => return Ok(()),
            },
            Some(m) = rx.recv() => batch.push(m),
            _ = tick.tick() => batch.push(Message::Tick { now: unix_now() }),
            _ = sigterm.recv() => batch.push(Message::Quit),
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        for m in batch.drain(..) {
            if let Some(cmd) = update::update(model, m) {
                worker.run(cmd);
            }
        }
        if model.quit {
            return Ok(());
        }
        terminal.draw(|f| view::view(model, f))?;
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
