//! `view(&Model, &mut Frame)`: pure drawing, one module per screen.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::model::{LoadState, Model, Screen};
use super::theme;

mod canary;
mod dialog;
mod events;
mod help;
mod route_detail;
mod routes;
mod status_bar;
mod upstreams;

/// Draws the whole console.
pub fn view(model: &Model, frame: &mut Frame<'_>) {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(2),
    ])
    .areas(frame.area());
    status_bar::render_tabs(model, frame, tabs);
    match model.screen {
        Screen::Routes => routes::render(model, frame, body),
        Screen::RouteDetail => route_detail::render(model, frame, body),
        Screen::Upstreams => upstreams::render(model, frame, body),
        Screen::Events => events::render(model, frame, body),
    }
    status_bar::render(model, frame, status);
    if let Some(d) = &model.dialog {
        dialog::render(model, d, frame);
    }
    if model.help {
        help::render(frame);
    }
}

/// A rectangle of at most `w`×`h` centred in `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(h.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    r
}

/// Draws a panel's placeholder for a state without data; `true` when it drew one (the caller
/// then draws nothing else). `empty` is shown for a loaded panel with nothing in it.
fn placeholder(
    frame: &mut Frame<'_>,
    area: Rect,
    block: Block<'_>,
    state: &LoadState,
    has_data: bool,
    empty: &str,
) -> bool {
    let text: Line<'_> = match (state, has_data) {
        (_, true) => return false,
        (LoadState::Idle | LoadState::Loading, false) => Line::styled("loading…", theme::MUTED),
        (LoadState::Failed(e), false) => Line::from(vec![
            Span::styled("cannot load: ", theme::ERROR),
            Span::raw(e.clone()),
            Span::styled(" (retrying every second)", theme::MUTED),
        ]),
        (LoadState::Loaded, false) => Line::styled(empty.to_string(), theme::MUTED),
    };
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
        area,
    );
    true
}

#[cfg(test)]
mod tests;
