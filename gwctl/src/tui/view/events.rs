//! Events screen: config reloads, endpoint and weight changes, live from `/v1/events`.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::super::model::Model;
use super::super::theme;
use crate::format;

/// Draws the event list, newest first.
pub fn render(model: &Model, frame: &mut Frame<'_>, area: Rect) {
    let connected = model.gateways.iter().filter(|g| g.events_connected).count();
    let total = model.gateways.len();
    let (text, style) = if connected == total {
        ("live".to_string(), theme::OK)
    } else if connected == 0 {
        ("disconnected, retrying".to_string(), theme::ERROR)
    } else {
        (
            format!("live on {connected} of {total} gateways"),
            theme::WARN,
        )
    };
    let block = Block::bordered().title(Line::from(vec![
        Span::styled(format!(" Events ({}) ", model.events.len()), theme::TITLE),
        Span::styled(format!("{text} "), style),
    ]));
    if model.events.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled("no events yet", theme::MUTED)).block(block),
            area,
        );
        return;
    }
    let today = format::date_of(model.now);
    let many = total > 1;
    let rows: Vec<Row<'_>> = model
        .events
        .iter()
        .map(|r| {
            let e = &r.event;
            let style = match e.kind.as_str() {
                "config_rejected" => theme::ERROR,
                "weights_changed" => theme::MARKER,
                "config_reloaded" => theme::OK,
                _ => theme::WARN,
            };
            let mut cells = vec![Cell::from(format::when(&e.at, &today))];
            if many {
                cells.push(Cell::from(format!("#{}", r.gateway + 1)));
            }
            cells.push(Cell::from(e.kind.clone()).style(style));
            cells.push(Cell::from(e.message.clone()));
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![Constraint::Length(11)];
    let mut header = vec!["WHEN"];
    if many {
        widths.push(Constraint::Length(3));
        header.push("GW");
    }
    widths.extend([Constraint::Length(17), Constraint::Fill(1)]);
    header.extend(["KIND", "MESSAGE"]);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme::HEADER))
        .block(block)
        .row_highlight_style(theme::SELECTED);
    let mut state = model.events_table.clone();
    frame.render_stateful_widget(table, area, &mut state);
}
