//! The tab line at the top and the status bar (gateways, notices, keys) at the bottom.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::super::model::{Dialog, LoadState, Model, Screen, STALE_AFTER_SECS};
use super::super::theme;
use crate::format;

/// Draws the tabs: `meshgate  1 Routes  2 Upstreams  3 Events`.
pub fn render_tabs(model: &Model, frame: &mut Frame<'_>, area: Rect) {
    let mut spans = vec![Span::styled(" meshgate ", theme::TITLE)];
    for (key, name, screen) in [
        ("1", "Routes", Screen::Routes),
        ("2", "Upstreams", Screen::Upstreams),
        ("3", "Events", Screen::Events),
    ] {
        let active = model.screen == screen
            || (screen == Screen::Routes && model.screen == Screen::RouteDetail);
        let style = if active {
            theme::TAB_ACTIVE
        } else {
            theme::MUTED
        };
        spans.push(Span::raw(" "));
        spans.push(Span::styled(format!(" {key} {name} "), style));
    }
    frame.render_widget(Line::from(spans), area);
}

/// Draws the gateways line (or the latest notice) and the keys line.
pub fn render(model: &Model, frame: &mut Frame<'_>, area: Rect) {
    let [top, keys] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let line = match &model.notice {
        Some(n) => Line::styled(
            format!(" {}", n.text),
            if n.error { theme::ERROR } else { theme::OK },
        ),
        None => gateways_line(model),
    };
    frame.render_widget(line, top);
    frame.render_widget(keys_line(model), keys);
}

fn gateways_line(model: &Model) -> Line<'static> {
    let mut spans = Vec::new();
    let n = model.gateways.len();
    for (i, g) in model.gateways.iter().enumerate() {
        let age = g.last_ok.map(|t| model.now.saturating_sub(t));
        let label = if n > 2 {
            format!("#{}", i + 1)
        } else {
            g.label.trim_start_matches("http://").to_string()
        };
        spans.push(Span::raw(format!(" {label} ")));
        let (text, style) = match (&g.state, age) {
            (LoadState::Failed(e), _) => (format!("UNREACHABLE {e}"), theme::ERROR),
            (_, Some(a)) if a > STALE_AFTER_SECS => {
                (format!("stale {}", format::age(a as f64)), theme::STALE)
            }
            (LoadState::Loaded, _) => ("ok".to_string(), theme::OK),
            _ => ("connecting".to_string(), theme::MUTED),
        };
        spans.push(Span::styled(text, style));
        if i + 1 < n {
            spans.push(Span::styled(" │", theme::MUTED));
        }
    }
    Line::from(spans)
}

fn keys_line(model: &Model) -> Line<'static> {
    let keys: &[(&str, &str)] = if model.filtering {
        &[("type", "filter"), ("Enter", "keep"), ("Esc", "clear")]
    } else if let Some(Dialog::CanaryStart(_)) = &model.dialog {
        &[
            ("↑↓", "field"),
            ("←→", "change"),
            ("Enter", "start"),
            ("Esc", "cancel"),
        ]
    } else if let Some(Dialog::CanaryAbort { .. }) = &model.dialog {
        &[("h", "hold"), ("r", "roll back"), ("Esc", "keep running")]
    } else if model.dialog.is_some() {
        &[("y", "confirm"), ("n/Esc", "cancel")]
    } else {
        let running = model.active_canary();
        let on_detail = running.is_some_and(|c| c.route == model.detail.route);
        match model.screen {
            Screen::Routes if running.is_some() => &[
                ("⏎", "open"),
                ("/", "filter"),
                ("b", "flip"),
                ("+-", "nudge"),
                ("x", "abort canary"),
                ("r", "rollback"),
                ("?", "help"),
                ("q", "quit"),
            ],
            Screen::Routes => &[
                ("⏎", "open"),
                ("/", "filter"),
                ("b", "flip"),
                ("+-", "nudge"),
                ("c", "canary"),
                ("r", "rollback"),
                ("?", "help"),
                ("q", "quit"),
            ],
            Screen::RouteDetail if on_detail => &[
                ("x/Esc", "abort canary"),
                ("Tab", "next"),
                ("?", "help"),
                ("q", "quit"),
            ],
            Screen::RouteDetail if running.is_some() => &[
                ("Esc", "back"),
                ("b", "flip"),
                ("+-", "nudge"),
                ("x", "abort canary"),
                ("r", "rollback"),
                ("?", "help"),
                ("q", "quit"),
            ],
            Screen::RouteDetail => &[
                ("Esc", "back"),
                ("b", "flip"),
                ("+-", "nudge"),
                ("c", "canary"),
                ("r", "rollback"),
                ("?", "help"),
                ("q", "quit"),
            ],
            _ => &[
                ("jk", "move"),
                ("Tab", "next"),
                ("Esc", "routes"),
                ("?", "help"),
                ("q", "quit"),
            ],
        }
    };
    let mut spans = Vec::new();
    for (k, what) in keys {
        spans.push(Span::styled(format!(" {k}"), theme::KEY));
        spans.push(Span::styled(format!(" {what} "), theme::MUTED));
    }
    Line::from(spans)
}
