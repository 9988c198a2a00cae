//! Upstreams screen: per service a row (source, balance, healthy count, staleness), then its
//! endpoints (health, ejection, in-flight, EWMA latency, requests, failures).

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Row, Table};
use ratatui::Frame;

use super::super::model::Model;
use super::super::theme;
use super::placeholder;
use crate::format;

/// Draws the upstreams table.
pub fn render(model: &Model, frame: &mut Frame<'_>, area: Rect) {
    let title = format!(" Upstreams ({}) ", model.upstreams.len());
    let block = Block::bordered().title(Span::styled(title, theme::TITLE));
    let has = !model.upstreams.is_empty();
    if placeholder(
        frame,
        area,
        block.clone(),
        &model.routes_state(),
        has,
        "no upstream services",
    ) {
        return;
    }
    let wide = area.width >= 120;
    let mut rows = Vec::new();
    for u in &model.upstreams {
        let healthy = u.endpoints.iter().filter(|e| !e.ejected).count();
        let state = if u.stale {
            let mut s = format!("STALE {}", format::age(u.stale_seconds.unwrap_or(0.0)));
            if wide {
                if let Some(why) = &u.stale_reason {
                    s.push_str(&format!(": {why}"));
                }
            }
            Cell::from(s).style(theme::STALE)
        } else {
            let style = if healthy < u.endpoints.len() {
                theme::WARN
            } else {
                theme::OK
            };
            Cell::from(format!("{healthy}/{} up", u.endpoints.len())).style(style)
        };
        rows.push(Row::new(vec![
            Cell::from(u.service.clone()).style(theme::SERVICE),
            Cell::from(u.source.clone()),
            state,
            Cell::from(""),
            Cell::from(if wide {
                u.balance.clone()
            } else {
                String::new()
            }),
            Cell::from(if wide {
                u.protocol.clone()
            } else {
                String::new()
            }),
            Cell::from(""),
        ]));
        for e in &u.endpoints {
            let health_style = match e.health.as_str() {
                "passing" => theme::OK,
                _ => theme::WARN,
            };
            let state = if e.ejected {
                Cell::from(format!(
                    "ejected {}",
                    format::age(e.ejected_seconds.unwrap_or(0.0))
                ))
                .style(theme::ERROR)
            } else {
                Cell::from("in rotation").style(theme::MUTED)
            };
            rows.push(Row::new(vec![
                Cell::from(format!("  {}", e.addr)),
                Cell::from(e.health.clone()).style(health_style),
                state,
                Cell::from(e.in_flight.to_string()),
                Cell::from(format::ms((e.ewma_ms > 0.0).then_some(e.ewma_ms))),
                Cell::from(format::count(e.requests)),
                Cell::from(format::count(e.failures)),
            ]));
        }
    }
    let widths = [
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(if wide { 50 } else { 12 }),
        Constraint::Length(5),
        Constraint::Length(if wide { 17 } else { 8 }),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    let header = Row::new(
        [
            "SERVICE / ENDPOINT",
            "SOURCE",
            "STATE",
            "INFL",
            "EWMA",
            "REQS",
            "FAILS",
        ]
        .map(|h| Cell::from(h).style(theme::HEADER)),
    );
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(theme::SELECTED);
    let mut state = model.upstreams_table.clone();
    frame.render_stateful_widget(table, area, &mut state);
}
