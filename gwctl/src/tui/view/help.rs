//! The `?` help overlay.

use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::super::theme;
use super::centered;

const KEYS: [(&str, &str); 19] = [
    ("↑ ↓  j k", "move"),
    ("Enter", "open the route"),
    ("Esc", "back / clear the filter"),
    ("Tab 1 2 3", "routes / upstreams / events"),
    ("/", "filter routes by name or match"),
    ("b", "flip blue/green (asks first)"),
    ("+  -", "move the canary by a step"),
    ("r", "roll back to the previous weights"),
    ("c", "guarded canary (dialog; Enter starts)"),
    ("x", "abort the canary: hold or roll back"),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
    ("", ""),
    ("markers", ""),
    ("K", "weights from Consul KV"),
    ("S", "weights from the state file"),
    ("C", "a canary is running"),
    ("▶", "the console's canary is moving it"),
    ("STALE", "data older than 3 s or discovery stale"),
];

/// Draws the help overlay in the middle of the screen.
pub fn render(frame: &mut Frame<'_>) {
    let area = centered(frame.area(), 54, KEYS.len() as u16 + 2);
    let lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<11}"), theme::KEY),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(Span::styled(" help ", theme::TITLE))),
        area,
    );
}
