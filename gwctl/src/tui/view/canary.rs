//! The guarded canary: its start dialog, its abort question and its progress panel.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::super::model::{
    CanaryForm, CanaryPhase, CanaryRun, Model, CANARY_ERROR_RATES, CANARY_INTERVALS,
    CANARY_P99_RATIOS, CANARY_STEPS,
};
use super::super::theme;
use crate::format;
use crate::rollout::{format_weights, Observed};

/// Lines of the start dialog: one row per field, `‹ value ›` on the one with the cursor.
pub fn form_lines(form: &CanaryForm) -> Vec<Line<'static>> {
    let steps = CANARY_STEPS[form.steps]
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let fields = [
        ("target", form.to().to_string()),
        ("steps %", steps),
        ("interval", format!("{}s", CANARY_INTERVALS[form.interval])),
        (
            "max err%",
            format::pct(CANARY_ERROR_RATES[form.max_error_rate]),
        ),
        (
            "max p99×",
            format!("{:.2}", CANARY_P99_RATIOS[form.max_p99_ratio]),
        ),
    ];
    let mut lines = vec![
        Line::styled(format!("guarded canary on {}", form.route), theme::TITLE),
        Line::raw(""),
    ];
    for (i, (name, value)) in fields.into_iter().enumerate() {
        let on = i == form.field;
        let (l, r, style) = if on {
            ("‹ ", " ›", theme::SELECTED)
        } else {
            ("  ", "  ", ratatui::style::Style::new())
        };
        lines.push(Line::from(vec![
            Span::styled(format!("  {name:<10}"), theme::HEADER),
            Span::styled(format!("{l}{value}{r}"), style),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "rolls back to the current weights the moment a guard fails",
        theme::MUTED,
    ));
    lines.push(Line::from(vec![
        Span::styled(" ↑↓ ", theme::KEY),
        Span::raw("field  "),
        Span::styled(" ←→ ", theme::KEY),
        Span::raw("change  "),
        Span::styled(" Enter ", theme::KEY),
        Span::raw("start  "),
        Span::styled(" Esc ", theme::KEY),
        Span::raw("cancel"),
    ]));
    lines
}

/// Lines of the abort question.
pub fn abort_lines(model: &Model, quit: bool) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    if let Some(run) = &model.canary {
        lines.push(Line::styled(
            format!(
                "{}canary {}: {} at {}% (step {}/{})",
                if quit { "quit during " } else { "abort " },
                run.route,
                run.to,
                run.percent(),
                run.step + 1,
                run.steps.len()
            ),
            theme::TITLE,
        ));
        lines.push(Line::raw(format!(
            "starting weights  {}",
            format_weights(&run.start)
        )));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(" h ", theme::KEY),
        Span::raw("hold at the current weights   "),
        Span::styled(" r/Enter ", theme::KEY),
        Span::raw("roll back"),
    ]));
    lines.push(Line::from(vec![
        Span::styled(" Esc ", theme::KEY),
        Span::raw("keep the canary running"),
    ]));
    lines
}

/// Rows the progress panel needs (borders included).
pub const PANEL_HEIGHT: u16 = 6;

/// Draws the canary's progress (or outcome) in `area`.
pub fn render_panel(model: &Model, run: &CanaryRun, frame: &mut Frame<'_>, area: Rect) {
    let (state, style) = match &run.phase {
        CanaryPhase::Setting => (
            format!(
                "setting {}% (step {}/{})…",
                run.percent(),
                run.step + 1,
                run.steps.len()
            ),
            theme::WARN,
        ),
        CanaryPhase::Watching => (
            format!(
                "step {}/{} at {}% · {}s left",
                run.step + 1,
                run.steps.len(),
                run.percent(),
                run.left(model.now)
            ),
            theme::OK,
        ),
        CanaryPhase::RollingBack { .. } => ("ROLLING BACK…".to_string(), theme::ERROR),
        CanaryPhase::Completed => (
            format!("completed: {} at {}%", run.to, run.percent()),
            theme::OK,
        ),
        CanaryPhase::RolledBack { .. } => (
            format!("ROLLED BACK to {}", format_weights(&run.start)),
            theme::ERROR,
        ),
        CanaryPhase::Held => (
            format!(
                "held at {}% (step {}/{})",
                run.percent(),
                run.step + 1,
                run.steps.len()
            ),
            theme::WARN,
        ),
        CanaryPhase::Stopped { .. } => ("STOPPED".to_string(), theme::ERROR),
    };
    let title = Line::from(vec![
        Span::styled(format!(" canary → {} ", run.to), theme::TITLE),
        Span::styled(format!("{state} "), style),
    ]);
    let mut lines = vec![
        side_line("canary", &run.to, run.canary_seen.as_ref()),
        side_line("baseline", &run.baseline, run.baseline_seen.as_ref()),
    ];
    let why = match &run.phase {
        CanaryPhase::RollingBack { why }
        | CanaryPhase::RolledBack { why }
        | CanaryPhase::Stopped { why } => Some(Line::from(vec![
            Span::styled("why ", theme::ERROR),
            Span::raw(why.clone()),
        ])),
        _ => run
            .note
            .as_ref()
            .map(|n| Line::styled(n.clone(), theme::MUTED)),
    };
    lines.extend(why);
    lines.push(Line::from(vec![
        Span::styled("guards ", theme::HEADER),
        Span::raw(format!(
            "err ≤{} p99 ≤{:.2}× ≥{} req · {}s × {}",
            format::pct(run.guard.max_error_rate),
            run.guard.max_p99_ratio,
            run.guard.min_requests,
            run.interval,
            run.steps
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )),
    ]));
    if run.active() {
        lines.push(Line::styled(
            "x/Esc abort (hold or roll back)",
            theme::MUTED,
        ));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().border_style(style).title(title)),
        area,
    );
}

fn side_line(role: &str, backend: &str, seen: Option<&Observed>) -> Line<'static> {
    let label = Span::styled(format!("{role:<8} {backend:<8} "), theme::HEADER);
    let Some(o) = seen else {
        return Line::from(vec![label, Span::styled("no window yet", theme::MUTED)]);
    };
    Line::from(vec![
        label,
        Span::raw("err "),
        Span::styled(
            format!("{:<7}", format::pct(o.error_rate)),
            theme::error_rate(o.error_rate),
        ),
        Span::raw(format!(
            " p99 {:<8} {} req this interval",
            format::ms(o.p99_ms),
            o.requests
        )),
    ])
}

/// The routes screen's line about a canary: `canary api → green 2/4 25% 12s` (or its outcome).
pub fn summary(model: &Model, run: &CanaryRun) -> String {
    let outcome = match &run.phase {
        CanaryPhase::Setting | CanaryPhase::Watching => format!(
            "{}/{} {}% {}s",
            run.step + 1,
            run.steps.len(),
            run.percent(),
            run.left(model.now)
        ),
        CanaryPhase::RollingBack { .. } => "rolling back".into(),
        CanaryPhase::Completed => "completed".into(),
        CanaryPhase::RolledBack { .. } => "rolled back".into(),
        CanaryPhase::Held => "held".into(),
        CanaryPhase::Stopped { .. } => "stopped".into(),
    };
    format!(" canary {} → {} {outcome} ", run.route, run.to)
}
