//! Every style of the console, as consts (colour carries meaning: red = failing, yellow =
//! degraded or stale, green = healthy).

use ratatui::style::{Color, Modifier, Style};

/// Table headers.
pub const HEADER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
/// Panel titles.
pub const TITLE: Style = Style::new().add_modifier(Modifier::BOLD);
/// The selected row.
pub const SELECTED: Style = Style::new()
    .bg(Color::DarkGray)
    .add_modifier(Modifier::BOLD);
/// Secondary text.
pub const MUTED: Style = Style::new().fg(Color::DarkGray);
/// Healthy.
pub const OK: Style = Style::new().fg(Color::Green);
/// Degraded (some errors, warning health).
pub const WARN: Style = Style::new().fg(Color::Yellow);
/// Failing (error rate over 1%, ejected, unreachable).
pub const ERROR: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
/// Staleness badge.
pub const STALE: Style = Style::new().fg(Color::Black).bg(Color::Yellow);
/// Override / canary markers.
pub const MARKER: Style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
/// Key names in the footer and help.
pub const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
/// The active tab.
pub const TAB_ACTIVE: Style = Style::new()
    .fg(Color::Black)
    .bg(Color::Cyan)
    .add_modifier(Modifier::BOLD);
/// Service rows of the upstreams table.
pub const SERVICE: Style = Style::new().add_modifier(Modifier::BOLD);
/// Backend colours, in route order (the weight bar and the side-by-side columns).
pub const BACKENDS: [Style; 4] = [
    Style::new().fg(Color::Blue),
    Style::new().fg(Color::Green),
    Style::new().fg(Color::Magenta),
    Style::new().fg(Color::Yellow),
];
/// Bar glyphs per backend, so the split reads without colour too.
pub const BAR_GLYPHS: [char; 4] = ['█', '▒', '░', '▓'];
/// Histogram bars holding p50, p90, p99, p99.9.
pub const PERCENTILES: [Style; 4] = [
    Style::new().fg(Color::Green),
    Style::new().fg(Color::Yellow),
    Style::new().fg(Color::Red),
    Style::new().fg(Color::Magenta),
];
/// Other histogram bars.
pub const BAR: Style = Style::new().fg(Color::Gray);
/// Dialog border.
pub const DIALOG: Style = Style::new().fg(Color::Yellow);

/// Style for an error rate: red above 1%, yellow above 0.
pub fn error_rate(rate: f64) -> Style {
    if rate > 0.01 {
        ERROR
    } else if rate > 0.0 {
        WARN
    } else {
        Style::new()
    }
}

/// Colour of the i-th backend.
pub fn backend(i: usize) -> Style {
    BACKENDS[i % BACKENDS.len()]
}
