//! Route detail: the route's policies with their recent decisions, every backend side by side,
//! the latency histogram with its percentiles, rps and p99 sparklines, and the weight history.

use hdrhistogram::Histogram;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use gatewayd::admin::model::PolicyInfo;

use super::super::model::{LoadState, Model, RouteRow};
use super::super::theme;
use super::placeholder;
use crate::aggregate::{BackendAgg, RouteAgg};
use crate::format;
use crate::rollout::{canary_backend, shares, weights_of};

/// Draws the detail of `model.detail.route`.
pub fn render(model: &Model, frame: &mut Frame<'_>, area: Rect) {
    let name = &model.detail.route;
    let row = model.rows.iter().find(|r| &r.info.name == name);
    let title = match row {
        Some(r) => format!(" {} — {} ", r.info.name, format::route_match(&r.info)),
        None => format!(" {name} "),
    };
    let block = Block::bordered().title(Span::styled(title, theme::TITLE));
    let Some(row) = row else {
        let state = match model.routes_state() {
            LoadState::Loaded => LoadState::Failed(format!("route {name} is gone")),
            s => s,
        };
        placeholder(frame, area, block, &state, false, "");
        return;
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let tall = inner.height >= 30;
    let table_h = if tall { 11 } else { 8 };
    let hist_h = if tall { 12 } else { 4 };
    let policies = model
        .detail
        .data
        .as_ref()
        .filter(|d| &d.route.name == name)
        .map_or(&[][..], |d| d.policies.as_slice());
    // One line a policy (at most 4); a route without policies keeps every line for the rest.
    let policies_h = policies.len().min(if tall { 4 } else { 2 }) as u16;
    let [info, policy_area, table, charts, history] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(policies_h),
        Constraint::Length(table_h),
        Constraint::Min(6),
        Constraint::Length(hist_h),
    ])
    .areas(inner);
    frame.render_widget(info_line(model, row), info);
    if !policies.is_empty() {
        let today = format::date_of(model.now);
        frame.render_widget(Paragraph::new(policy_lines(policies, &today)), policy_area);
    }
    backends_table(row, tall, frame, table);
    let run = model.canary.as_ref().filter(|c| &c.route == name);
    let charts = match run {
        Some(run) => {
            let h = if tall {
                super::canary::PANEL_HEIGHT + 1
            } else {
                super::canary::PANEL_HEIGHT
            };
            let [panel, rest] =
                Layout::vertical([Constraint::Length(h), Constraint::Fill(1)]).areas(charts);
            super::canary::render_panel(model, run, frame, panel);
            if rest.height < 3 {
                history_table(model, frame, history);
                return;
            }
            rest
        }
        None => charts,
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(charts);
    let total = row.agg.as_ref().map(RouteAgg::total);
    latency_chart(total.as_ref(), frame, left);
    sparklines(total.as_ref(), frame, right);
    history_table(model, frame, history);
}

fn info_line<'a>(model: &Model, row: &'a RouteRow) -> Line<'a> {
    let w = &row.info.weights;
    let today = format::date_of(model.now);
    let mut spans = vec![
        Span::styled("weights ", theme::MUTED),
        Span::raw(format!("{} r{}", w.source, w.revision)),
    ];
    if let (Some(by), Some(at)) = (&w.changed_by, &w.changed_at) {
        spans.push(Span::raw(format!(" · {by} {}", format::when(at, &today))));
    }
    if let Some(why) = &w.reason {
        spans.push(Span::styled(format!(" · {why}"), theme::MUTED));
    }
    let last = model
        .detail
        .data
        .as_ref()
        .filter(|d| d.route.name == row.info.name)
        .and_then(|d| d.history.last());
    if let Some(c) = canary_backend(&row.info, last) {
        spans.push(Span::styled(
            format!(" · +/- moves {c} by {}%", model.step),
            theme::KEY,
        ));
    }
    Line::from(spans)
}

/// One line a policy: name and kind, decisions of the last minute, the last refusal, decisions
/// since it was compiled (most first: the line may be cut), settings.
fn policy_lines<'a>(policies: &'a [PolicyInfo], today: &str) -> Vec<Line<'a>> {
    let refused = |d: &std::collections::BTreeMap<String, u64>| -> u64 {
        d.iter()
            .filter(|(o, _)| !o.starts_with("allowed") && o.as_str() != "preflight_allowed")
            .map(|(_, n)| n)
            .sum()
    };
    let style = |n: u64| if n > 0 { theme::WARN } else { theme::OK };
    policies
        .iter()
        .map(|p| {
            let mut spans = vec![
                Span::styled("policy ", theme::MUTED),
                Span::styled(format!("{} ", p.name), theme::HEADER),
                Span::raw(format!("{} ", p.kind)),
                Span::styled("1m ", theme::MUTED),
                Span::styled(
                    format::recent_decisions(&p.recent),
                    style(refused(&p.recent.decisions)),
                ),
            ];
            if let Some(r) = p.recent.refusals.first() {
                spans.push(Span::styled(" · last refused ", theme::MUTED));
                spans.push(Span::raw(format!(
                    "{} {} {}",
                    format::when(&r.at, today),
                    r.outcome,
                    r.client
                )));
            }
            spans.extend([
                Span::styled(" · total ", theme::MUTED),
                Span::styled(
                    format::decisions(&p.decisions),
                    style(refused(&p.decisions)),
                ),
                Span::styled(format!(" · {}", p.summary), theme::MUTED),
            ]);
            Line::from(spans)
        })
        .collect()
}

fn backends_table(row: &RouteRow, tall: bool, frame: &mut Frame<'_>, area: Rect) {
    let s = shares(&weights_of(&row.info));
    let aggs: Vec<Option<&BackendAgg>> = row
        .info
        .backends
        .iter()
        .map(|b| row.agg.as_ref().and_then(|a| a.backend(&b.name)))
        .collect();
    let lat = |a: &Option<&BackendAgg>, f: fn(&gatewayd::admin::model::LatencyMs) -> f64| {
        format::ms(a.filter(|a| !a.hist.is_empty()).map(|a| f(&a.latency())))
    };
    let mut metric_rows: Vec<(&str, Vec<Cell<'_>>)> = Vec::new();
    let cells = |f: &dyn Fn(usize, &Option<&BackendAgg>) -> Cell<'static>| -> Vec<Cell<'static>> {
        aggs.iter().enumerate().map(|(i, a)| f(i, a)).collect()
    };
    metric_rows.push((
        "weight",
        cells(&|i, _| {
            let b = &row.info.backends[i];
            Cell::from(format!(
                "{} ({:.0}%)",
                b.weight,
                s.get(&b.name).copied().unwrap_or(0.0)
            ))
        }),
    ));
    metric_rows.push((
        "rps",
        cells(&|_, a| Cell::from(a.map(|a| format::rps(a.rps)).unwrap_or("-".into()))),
    ));
    if tall {
        metric_rows.push((
            "requests",
            cells(&|_, a| Cell::from(a.map(|a| format::count(a.requests)).unwrap_or("-".into()))),
        ));
    }
    metric_rows.push((
        "err%",
        cells(&|_, a| match a {
            Some(a) => {
                Cell::from(format::pct(a.error_rate())).style(theme::error_rate(a.error_rate()))
            }
            None => Cell::from("-"),
        }),
    ));
    metric_rows.push(("p50", cells(&|_, a| Cell::from(lat(a, |l| l.p50)))));
    if tall {
        metric_rows.push(("p90", cells(&|_, a| Cell::from(lat(a, |l| l.p90)))));
    }
    metric_rows.push(("p99", cells(&|_, a| Cell::from(lat(a, |l| l.p99)))));
    metric_rows.push(("p99.9", cells(&|_, a| Cell::from(lat(a, |l| l.p999)))));
    if tall {
        metric_rows.push((
            "in-flight",
            cells(&|_, a| Cell::from(a.map(|a| a.in_flight.to_string()).unwrap_or("-".into()))),
        ));
    }
    metric_rows.push((
        "endpoints",
        cells(&|i, _| {
            let b = &row.info.backends[i];
            let style = if b.healthy_endpoints < b.endpoints {
                theme::WARN
            } else {
                theme::OK
            };
            Cell::from(format!("{}/{}", b.healthy_endpoints, b.endpoints)).style(style)
        }),
    ));
    let mut header = vec![Cell::from("")];
    header.extend(row.info.backends.iter().enumerate().map(|(i, b)| {
        Cell::from(b.name.clone())
            .style(theme::backend(i).add_modifier(ratatui::style::Modifier::BOLD))
    }));
    let rows: Vec<Row<'_>> = metric_rows
        .into_iter()
        .map(|(name, cells)| {
            let mut v = vec![Cell::from(name).style(theme::HEADER)];
            v.extend(cells);
            Row::new(v)
        })
        .collect();
    let mut widths = vec![Constraint::Length(10)];
    widths.extend(row.info.backends.iter().map(|_| Constraint::Length(14)));
    frame.render_widget(Table::new(rows, widths).header(Row::new(header)), area);
}

/// Splits a µs histogram into `n` log-spaced buckets between its smallest and largest value:
/// `(upper bound µs, count)`. Empty histogram or `n == 0`: no bucket.
pub fn latency_buckets(h: &Histogram<u64>, n: usize) -> Vec<(u64, u64)> {
    if h.is_empty() || n == 0 {
        return Vec::new();
    }
    let lo = h.min_nz().max(1) as f64;
    let hi = h.max().max(1) as f64;
    if hi <= lo {
        return vec![(h.max(), h.len())];
    }
    let ratio = (hi / lo).powf(1.0 / n as f64);
    let mut out: Vec<(u64, u64)> = (1..=n)
        .map(|i| ((lo * ratio.powi(i as i32)).round() as u64, 0))
        .collect();
    for v in h.iter_recorded() {
        let val = (v.value_iterated_to() as f64).max(lo);
        let idx = ((val / lo).ln() / ratio.ln()).ceil() as i64 - 1;
        let idx = idx.clamp(0, n as i64 - 1) as usize;
        out[idx].1 += v.count_at_value();
    }
    out
}

fn latency_chart(total: Option<&BackendAgg>, frame: &mut Frame<'_>, area: Rect) {
    let block = Block::bordered().title(Span::styled(" latency (ms, log buckets) ", theme::TITLE));
    let Some(t) = total.filter(|t| !t.hist.is_empty()) else {
        frame.render_widget(
            Paragraph::new(Line::styled("no requests yet", theme::MUTED)).block(block),
            area,
        );
        return;
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [chart, legend] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(inner);
    let n = usize::from(chart.width / 4).max(1);
    let buckets = latency_buckets(&t.hist, n);
    let marks: Vec<u64> = [0.5, 0.9, 0.99, 0.999]
        .iter()
        .map(|q| t.hist.value_at_quantile(*q))
        .collect();
    let bars: Vec<Bar<'_>> = buckets
        .iter()
        .enumerate()
        .map(|(i, (upper, count))| {
            let lower = if i == 0 { 0 } else { buckets[i - 1].0 };
            let mut style = theme::BAR;
            for (k, m) in marks.iter().enumerate() {
                if *m <= *upper && (i == 0 || *m > lower) {
                    style = theme::PERCENTILES[k];
                }
            }
            Bar::default()
                .value(*count)
                .text_value(String::new())
                .label(Line::from(short_ms(*upper)))
                .style(style)
        })
        .collect();
    frame.render_widget(
        BarChart::default()
            .data(BarGroup::default().bars(&bars))
            .bar_width(3)
            .bar_gap(1),
        chart,
    );
    let l = t.latency();
    let spans: Vec<Span<'_>> = [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p99.9", l.p999),
    ]
    .iter()
    .enumerate()
    .map(|(k, (name, v))| {
        Span::styled(
            format!("{name} {} ", format::ms(Some(*v))),
            theme::PERCENTILES[k],
        )
    })
    .collect();
    frame.render_widget(Line::from(spans), legend);
}

/// Bucket label in at most 3 characters: `.4`, `12`, `180`, `2s`.
fn short_ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 1.0 {
        let s = format!("{ms:.1}");
        s.trim_start_matches('0').to_string()
    } else if ms < 999.5 {
        format!("{ms:.0}")
    } else {
        format!("{:.0}s", ms / 1000.0)
    }
}

fn sparklines(total: Option<&BackendAgg>, frame: &mut Frame<'_>, area: Rect) {
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let width = usize::from(area.width.saturating_sub(2));
    let secs: Vec<_> = total
        .map(|t| t.per_second.values().copied().collect())
        .unwrap_or_default();
    let recent = &secs[secs.len().saturating_sub(width)..];
    let rps: Vec<u64> = recent.iter().map(|s| s.requests).collect();
    let p99: Vec<u64> = recent
        .iter()
        .map(|s| (s.p99_ms * 10.0).round() as u64)
        .collect();
    let span = if recent.is_empty() {
        "no history".to_string()
    } else {
        format!("{}s", recent.len())
    };
    let rps_title = format!(
        " rps {} · {span} ",
        recent
            .last()
            .map(|s| s.requests.to_string())
            .unwrap_or("-".into())
    );
    let p99_title = format!(
        " p99 {} · {span} ",
        format::ms(recent.last().map(|s| s.p99_ms))
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(Span::styled(rps_title, theme::TITLE)))
            .data(&rps)
            .style(theme::OK),
        top,
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(Span::styled(p99_title, theme::TITLE)))
            .data(&p99)
            .style(theme::WARN),
        bottom,
    );
}

fn history_table(model: &Model, frame: &mut Frame<'_>, area: Rect) {
    let block = Block::bordered().title(Span::styled(" weight history ", theme::TITLE));
    let data = model
        .detail
        .data
        .as_ref()
        .filter(|d| d.route.name == model.detail.route);
    let has = data.is_some_and(|d| !d.history.is_empty());
    if placeholder(
        frame,
        area,
        block.clone(),
        &model.detail.state,
        has,
        "no change yet: file weights",
    ) {
        return;
    }
    let Some(d) = data else { return };
    let today = format::date_of(model.now);
    let rows: Vec<Row<'_>> = d
        .history
        .iter()
        .rev()
        .map(|c| {
            let change = c
                .weights
                .iter()
                .map(|(k, v)| format!("{k} {}→{v}", c.previous.get(k).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(" ");
            Row::new(vec![
                Cell::from(format!("r{}", c.revision)),
                Cell::from(format::when(&c.changed_at, &today)),
                Cell::from(c.changed_by.clone()),
                Cell::from(change),
                Cell::from(c.reason.clone()).style(theme::MUTED),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(4),
        Constraint::Length(11),
        Constraint::Length(12),
        Constraint::Length(24),
        Constraint::Fill(1),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(Row::new(["REV", "WHEN", "WHO", "CHANGE", "WHY"]).style(theme::HEADER))
            .block(block),
        area,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::aggregate::empty_histogram;

    #[test]
    fn buckets_hold_every_value_once() {
        let mut h = empty_histogram();
        for v in [100u64, 200, 400, 800, 1_600, 3_200, 6_400, 12_800] {
            h.record_n(v, 3).unwrap();
        }
        let b = latency_buckets(&h, 7);
        assert_eq!(b.len(), 7);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), h.len());
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(b[0].1, 6, "100 and 200 share the first doubling bucket");
        assert!(latency_buckets(&empty_histogram(), 5).is_empty());
        let mut one = empty_histogram();
        one.record(500).unwrap();
        assert_eq!(latency_buckets(&one, 5), vec![(500, 1)]);
    }

    #[test]
    fn short_labels() {
        assert_eq!(short_ms(400), ".4");
        assert_eq!(short_ms(12_345), "12");
        assert_eq!(short_ms(180_000), "180");
        assert_eq!(short_ms(2_400_000), "2s");
    }
}
