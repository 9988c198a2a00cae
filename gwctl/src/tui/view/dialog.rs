//! Confirmation dialogs: what a flip or rollback would do before it is done.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

use super::super::model::{Dialog, Model};
use super::super::theme;
use super::centered;
use crate::format;
use crate::rollout::{format_weights, shares, FlipPreview};

/// Draws the dialog over the screen.
pub fn render(model: &Model, dialog: &Dialog, frame: &mut Frame<'_>) {
    let (title, lines) = match dialog {
        Dialog::CanaryStart(form) => (" guarded canary ", super::canary::form_lines(form)),
        Dialog::CanaryAbort { quit } => {
            (" abort canary ", super::canary::abort_lines(model, *quit))
        }
        Dialog::Flip { preview, revision } => (" flip ", flip_lines(preview, *revision)),
        Dialog::Rollback {
            route,
            update,
            from,
        } => {
            let to = &update.weights;
            let s = shares(to);
            let mut lines = vec![
                Line::from(vec![
                    Span::styled("roll back ", theme::TITLE),
                    Span::styled(route.clone(), theme::TITLE),
                ]),
                Line::raw(format!("from  {}", format_weights(from))),
                Line::raw(format!("to    {}", format_weights(to))),
                Line::raw(""),
            ];
            for (k, v) in &s {
                lines.push(Line::raw(format!("  {k}: {v:.1}% of traffic")));
            }
            lines.push(Line::raw(""));
            lines.push(confirm_line());
            (" rollback ", lines)
        }
    };
    let h = lines.len() as u16 + 2;
    let area: Rect = centered(frame.area(), 72, h);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .border_style(theme::DIALOG)
                .title(Span::styled(title, theme::TITLE)),
        ),
        area,
    );
}

fn flip_lines(p: &FlipPreview, revision: u64) -> Vec<Line<'static>> {
    let mut lines = vec![
        Line::styled(
            format!("flip {} (at revision {revision})", p.route),
            theme::TITLE,
        ),
        Line::raw(format!("from  {}", format_weights(&p.from))),
        Line::raw(format!("to    {}", format_weights(&p.to))),
        Line::styled("now  side    err%     p99", theme::HEADER),
    ];
    for s in &p.sides {
        let err = s.error_rate.map(format::pct).unwrap_or("-".into());
        let style = theme::error_rate(s.error_rate.unwrap_or(0.0));
        lines.push(Line::from(vec![
            Span::raw(format!("     {:<7} ", s.backend)),
            Span::styled(format!("{err:<8} "), style),
            Span::raw(format::ms(s.p99_ms)),
        ]));
    }
    if p.endpoints.is_empty() {
        lines.push(Line::styled(
            "endpoints unknown (no upstream data)",
            theme::MUTED,
        ));
    } else {
        lines.push(Line::styled(
            "share of traffic per endpoint: now → after",
            theme::HEADER,
        ));
        for e in &p.endpoints {
            let mut spans = vec![Span::raw(format!(
                "  {:<7} {:<21} {:>5.1}% → {:>5.1}%",
                e.backend, e.addr, e.before, e.after
            ))];
            if e.ejected {
                spans.push(Span::styled(" ejected", theme::ERROR));
            }
            lines.push(Line::from(spans));
        }
    }
    lines.push(confirm_line());
    lines
}

fn confirm_line() -> Line<'static> {
    Line::from(vec![
        Span::styled(" y ", theme::KEY),
        Span::raw("confirm   "),
        Span::styled(" n/Esc ", theme::KEY),
        Span::raw("cancel"),
    ])
}
