//! Routes screen: one row per route with its weight split, traffic, latency, markers and
//! staleness.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table};
use ratatui::Frame;

use super::super::model::{Model, RouteRow, STALE_AFTER_SECS};
use super::super::theme;
use super::placeholder;
use crate::format;
use crate::rollout::{shares, weights_of};

/// Draws the routes table.
pub fn render(model: &Model, frame: &mut Frame<'_>, area: Rect) {
    let rows = model.visible_rows();
    let mut title = vec![Span::styled(
        format!(" Routes ({}) ", rows.len()),
        theme::TITLE,
    )];
    if model.filtering || !model.filter.is_empty() {
        let cursor = if model.filtering { "▏" } else { "" };
        title.push(Span::styled(
            format!("/{}{cursor} ", model.filter),
            theme::KEY,
        ));
    }
    if let Some(run) = &model.canary {
        let style = if run.active() {
            theme::MARKER
        } else {
            theme::MUTED
        };
        title.push(Span::styled(super::canary::summary(model, run), style));
    }
    let block = Block::bordered().title(Line::from(title));
    let has = !model.rows.is_empty();
    if placeholder(
        frame,
        area,
        block.clone(),
        &model.routes_state(),
        has,
        "no routes configured",
    ) {
        return;
    }
    let wide = area.width >= 120;
    let bar = if wide { 20 } else { 10 };
    let header = Row::new(
        [
            "ROUTE", "MATCH", "BACKENDS", "RPS", "ERR%", "P50", "P99", "", "STALE",
        ]
        .map(|h| Cell::from(h).style(theme::HEADER)),
    );
    let stale_for = |r: &RouteRow| -> Option<f64> {
        let data = model
            .data_age()
            .filter(|a| *a > STALE_AFTER_SECS)
            .map(|a| a as f64);
        match (r.service_stale, data) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    };
    let table_rows: Vec<Row<'_>> = rows
        .iter()
        .map(|r| {
            let total = r.agg.as_ref().map(|a| a.total());
            let lat = total
                .as_ref()
                .filter(|t| !t.hist.is_empty())
                .map(|t| t.latency());
            let err = total.as_ref().map(|t| t.error_rate()).unwrap_or(0.0);
            Row::new(vec![
                Cell::from(r.info.name.clone()),
                Cell::from(format::route_match(&r.info)),
                Cell::from(weight_bar(r, bar, wide)),
                Cell::from(
                    total
                        .as_ref()
                        .map(|t| format::rps(t.rps))
                        .unwrap_or("-".into()),
                ),
                Cell::from(
                    total
                        .as_ref()
                        .map(|_| format::pct(err))
                        .unwrap_or("-".into()),
                )
                .style(theme::error_rate(err)),
                Cell::from(format::ms(lat.map(|l| l.p50))),
                Cell::from(format::ms(lat.map(|l| l.p99))),
                Cell::from(canary_marker(model, r) + &markers(r)).style(theme::MARKER),
                match stale_for(r) {
                    Some(s) => Cell::from(format::age(s)).style(theme::STALE),
                    None => Cell::from(""),
                },
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(if wide { 14 } else { 9 }),
        Constraint::Fill(1),
        Constraint::Length(if wide { bar + 20 } else { bar + 6 }),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(2),
        Constraint::Length(5),
    ];
    let table = Table::new(table_rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block)
        .row_highlight_style(theme::SELECTED);
    let mut state = model.routes_table.clone();
    frame.render_stateful_widget(table, area, &mut state);
}

/// `K` weights from Consul KV, `S` from the state file (overrides), `C` a canary is running
/// (the split is partial and the last change was a canary step).
pub fn markers(r: &RouteRow) -> String {
    let mut m = String::new();
    match r.info.weights.source.as_str() {
        "consul" => m.push('K'),
        "state_file" => m.push('S'),
        _ => {}
    }
    let live = r.info.backends.iter().filter(|b| b.weight > 0).count();
    let canary_reason = r
        .info
        .weights
        .reason
        .as_deref()
        .is_some_and(|why| why.starts_with("canary") || why.starts_with("console: "));
    if live > 1 && canary_reason {
        m.push('C');
    }
    m
}

/// `▶` on the route the console's canary is moving.
fn canary_marker(model: &Model, r: &RouteRow) -> String {
    match model.active_canary() {
        Some(c) if c.route == r.info.name => "▶".into(),
        _ => String::new(),
    }
}

/// The weight split as a bar (one glyph and colour per backend) and the percentages.
fn weight_bar(r: &RouteRow, width: u16, wide: bool) -> Line<'static> {
    let s = shares(&weights_of(&r.info));
    let mut spans = Vec::new();
    let mut used = 0u16;
    let n = r.info.backends.len();
    for (i, b) in r.info.backends.iter().enumerate() {
        let pct = s.get(&b.name).copied().unwrap_or(0.0);
        let cells = if i + 1 == n {
            width - used
        } else {
            ((pct / 100.0 * f64::from(width)).round() as u16).min(width - used)
        };
        used += cells;
        let glyph = theme::BAR_GLYPHS[i % theme::BAR_GLYPHS.len()];
        let cells = if pct == 0.0 && i + 1 == n { 0 } else { cells };
        spans.push(Span::styled(
            glyph.to_string().repeat(usize::from(cells)),
            theme::backend(i),
        ));
    }
    let pad = width.saturating_sub(spans.iter().map(|s| s.content.chars().count() as u16).sum());
    spans.push(Span::styled("·".repeat(usize::from(pad)), theme::MUTED));
    let text = if wide {
        r.info
            .backends
            .iter()
            .map(|b| format!("{} {:.0}", b.name, s.get(&b.name).copied().unwrap_or(0.0)))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        r.info
            .backends
            .iter()
            .map(|b| format!("{:.0}", s.get(&b.name).copied().unwrap_or(0.0)))
            .collect::<Vec<_>>()
            .join("/")
    };
    spans.push(Span::styled(format!(" {text}"), Style::new()));
    Line::from(spans)
}
