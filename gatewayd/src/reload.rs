//! Config hot reload: file change (notify, debounced) → load → build → swap, or keep the old
//! snapshot and report. SIGHUP and `POST /v1/reload` call [`Control::reload`] directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::{mpsc, watch};

use crate::app::Control;

/// Quiet time after the last file event before reloading: editors write in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches the config file's directory (editors replace files by rename) and reloads on change.
pub fn spawn_watcher(path: PathBuf, control: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let file_name = path.file_name().map(|n| n.to_os_string());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let mut watcher = match notify::recommended_watcher(
        move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if ev.kind.is_access() {
                    return;
                }
                if ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name)
                {
                    let _ = tx.try_send(());
                }
            }
        },
    ) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP or POST /v1/reload");
            return;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; reload with SIGHUP or POST /v1/reload");
        return;
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = crate::proxy::stopped(&mut shutdown) => return,
                got = rx.recv() => if got.is_none() { return },
            }
            // Debounce: wait until events stop for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let c = control.clone();
            let _ = tokio::task::spawn_blocking(move || c.reload()).await;
        }
    });
}
