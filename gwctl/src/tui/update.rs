//! `update(&mut Model, Message) -> Option<Command>`: every state change, no I/O.

use gatewayd::admin::model::{FlipRequest, WeightsUpdate};

use super::message::{Command, GatewayAnswer, Message};
use super::model::{
    clamp, upstream_row_count, wrap, AbortChoice, Dialog, EventRow, LoadState, Model, Notice,
    Screen, CANARY_FIELDS, MAX_EVENTS,
};
use crate::rollout::{
    canary_backend, flip_preview, format_weights, nudge, rollback_update, shares, weights_of,
};

/// Applies a message; returns the I/O to perform, if any.
pub fn update(model: &mut Model, msg: Message) -> Option<Command> {
    match msg {
        Message::Tick { now } => tick(model, now),
        Message::Up => {
            move_cursor(model, -1);
            None
        }
        Message::Down => {
            move_cursor(model, 1);
            None
        }
        Message::Open => open(model),
        Message::Back => {
            match model.screen {
                Screen::Routes if !model.filter.is_empty() => model.filter.clear(),
                Screen::Routes => {}
                _ => model.screen = Screen::Routes,
            }
            None
        }
        Message::NextScreen => {
            model.screen = match model.screen {
                Screen::Routes | Screen::RouteDetail => Screen::Upstreams,
                Screen::Upstreams => Screen::Events,
                Screen::Events => Screen::Routes,
            };
            None
        }
        Message::Show(s) => {
            model.screen = s;
            None
        }
        Message::ToggleHelp => {
            model.help = !model.help;
            None
        }
        Message::FilterStart => {
            model.screen = Screen::Routes;
            model.filtering = true;
            None
        }
        Message::FilterInput(c) => {
            model.filter.push(c);
            model.routes_table.select(Some(0));
            None
        }
        Message::FilterBackspace => {
            model.filter.pop();
            None
        }
        Message::FilterDone => {
            model.filtering = false;
            None
        }
        Message::FilterCancel => {
            model.filtering = false;
            model.filter.clear();
            None
        }
        Message::Flip => flip(model),
        Message::Nudge(sign) => nudge_canary(model, sign),
        Message::Rollback => rollback(model),
        Message::CanaryOpen => canary::open(model),
        Message::FormField(delta) => {
            if let Some(Dialog::CanaryStart(form)) = model.dialog.as_mut() {
                form.field = wrap(form.field, delta, CANARY_FIELDS);
            }
            None
        }
        Message::FormAdjust(delta) => {
            if let Some(Dialog::CanaryStart(form)) = model.dialog.as_mut() {
                form.adjust(delta);
            }
            None
        }
        Message::CanaryAbort => canary::abort(model, false),
        Message::CanaryChoice(choice) => canary::choose(model, choice),
        Message::Confirm => confirm(model),
        Message::Cancel => {
            model.dialog = None;
            None
        }
        Message::Quit => {
            // A second quit while the quit question is open quits (Ctrl-C twice).
            let asking = matches!(model.dialog, Some(Dialog::CanaryAbort { quit: true }));
            if model.active_canary().is_some() && !asking {
                return canary::abort(model, true);
            }
            model.quit = true;
            None
        }
        Message::CanaryWrote { generation, result } => canary::wrote(model, generation, result),
        Message::CanarySampled {
            generation,
            samples,
        } => canary::sampled(model, generation, samples),
        Message::Refreshed {
            gateway,
            generation,
            result,
        } => {
            refreshed(model, gateway, generation, *result);
            None
        }
        Message::DetailLoaded { generation, result } => {
            if generation != model.detail.generation {
                return None; // an older route's answer
            }
            match result {
                Ok(d) => {
                    model.detail.data = Some(*d);
                    model.detail.state = LoadState::Loaded;
                    if std::mem::take(&mut model.detail.pending_rollback) {
                        return rollback(model);
                    }
                }
                Err(e) => model.detail.state = LoadState::Failed(e.short()),
            }
            None
        }
        Message::WriteDone { result } => {
            model.writing = false;
            match result {
                Ok(changed) => {
                    let c = &changed.change;
                    notice(
                        model,
                        format!(
                            "{}: {} → {} (revision {})",
                            changed.route.name,
                            format_weights(&c.previous),
                            format_weights(&c.weights),
                            c.revision
                        ),
                        false,
                    );
                }
                Err(e) if e.is_conflict() => notice(
                    model,
                    format!(
                        "conflict: the weights changed meanwhile ({}); refreshed",
                        e.short()
                    ),
                    true,
                ),
                Err(e) => notice(model, format!("change failed: {}", e.short()), true),
            }
            refresh_all(model)
        }
        Message::Event { gateway, event } => {
            let row = EventRow {
                gateway,
                event: *event,
            };
            if !model.events.contains(&row) {
                model.events.push_front(row);
                model.events.truncate(MAX_EVENTS);
            }
            None
        }
        Message::EventStream { gateway, connected } => {
            if let Some(g) = model.gateways.get_mut(gateway) {
                g.events_connected = connected;
            }
            None
        }
    }
}

fn tick(model: &mut Model, now: u64) -> Option<Command> {
    model.now = now;
    refresh_all(model)
}

/// Refreshes every gateway that has no refresh in flight, and the detail when it is shown.
fn refresh_all(model: &mut Model) -> Option<Command> {
    let mut cmds = Vec::new();
    for (i, g) in model.gateways.iter_mut().enumerate() {
        if g.in_flight {
            continue;
        }
        g.in_flight = true;
        g.generation += 1;
        if g.state == LoadState::Idle {
            g.state = LoadState::Loading;
        }
        cmds.push(Command::Refresh {
            gateway: i,
            generation: g.generation,
        });
    }
    if model.screen == Screen::RouteDetail {
        cmds.push(load_detail(model));
    }
    batch(cmds)
}

fn batch(mut cmds: Vec<Command>) -> Option<Command> {
    match cmds.len() {
        0 => None,
        1 => cmds.pop(),
        _ => Some(Command::Batch(cmds)),
    }
}

fn load_detail(model: &Model) -> Command {
    Command::LoadDetail {
        gateway: model.writer(),
        route: model.detail.route.clone(),
        generation: model.detail.generation,
    }
}

fn refreshed(model: &mut Model, gateway: usize, generation: u64, answer: GatewayAnswer) {
    let now = model.now;
    let Some(g) = model.gateways.get_mut(gateway) else {
        return;
    };
    if generation != g.generation {
        return; // superseded
    }
    g.in_flight = false;
    let GatewayAnswer {
        routes,
        stats,
        upstreams,
    } = answer;
    let first_err = [
        routes.as_ref().err(),
        stats.as_ref().err(),
        upstreams.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    .next()
    .map(|e| e.short());
    // Keep the last good data of whatever failed: stale beats empty, and the age shows.
    if let Ok(r) = routes {
        g.routes = r;
    }
    if let Ok(s) = stats {
        g.stats = Some(s);
    }
    if let Ok(u) = upstreams {
        g.upstreams = u;
    }
    match first_err {
        None => {
            g.state = LoadState::Loaded;
            g.last_ok = Some(now);
        }
        Some(e) => g.state = LoadState::Failed(e),
    }
    model.rebuild();
}

fn move_cursor(model: &mut Model, delta: i32) {
    let visible = model.visible_rows().len();
    let (table, len) = match model.screen {
        Screen::Routes => (&mut model.routes_table, visible),
        Screen::Upstreams => (
            &mut model.upstreams_table,
            upstream_row_count(&model.upstreams),
        ),
        Screen::Events => (&mut model.events_table, model.events.len()),
        Screen::RouteDetail => return,
    };
    let sel = table.selected().unwrap_or(0) as i64 + i64::from(delta);
    table.select(Some(sel.max(0) as usize));
    clamp(table, len);
}

fn open(model: &mut Model) -> Option<Command> {
    if model.screen != Screen::Routes {
        return None;
    }
    let name = model.selected_route()?.info.name.clone();
    model.filtering = false;
    model.screen = Screen::RouteDetail;
    if model.detail.route != name {
        model.detail.route = name;
        model.detail.data = None;
        model.detail.generation += 1;
    }
    model.detail.state = LoadState::Loading;
    Some(load_detail(model))
}

fn flip(model: &mut Model) -> Option<Command> {
    if canary_owns_selected(model) {
        return None;
    }
    if model.writing {
        notice(model, "a change is already in flight".into(), true);
        return None;
    }
    let Some(row) = model.selected_route() else {
        notice(model, "no route selected".into(), true);
        return None;
    };
    match flip_preview(&row.info, &model.upstreams, row.agg.as_ref()) {
        Ok(preview) => {
            model.dialog = Some(Dialog::Flip {
                revision: row.info.weights.revision,
                preview,
            })
        }
        Err(e) => notice(model, e.to_string(), true),
    }
    None
}

fn nudge_canary(model: &mut Model, sign: i32) -> Option<Command> {
    if canary_owns_selected(model) {
        return None;
    }
    if model.writing {
        notice(model, "a change is already in flight".into(), true);
        return None;
    }
    let Some(row) = model.selected_route() else {
        notice(model, "no route selected".into(), true);
        return None;
    };
    let info = row.info.clone();
    let last = model
        .detail
        .data
        .as_ref()
        .filter(|d| d.route.name == info.name)
        .and_then(|d| d.history.last());
    let Some(canary) = canary_backend(&info, last) else {
        notice(
            model,
            format!("{} has a single backend: no canary to move", info.name),
            true,
        );
        return None;
    };
    let delta = sign.signum() * i32::try_from(model.step).unwrap_or(10);
    match nudge(&info, &canary, delta) {
        Ok(Some(weights)) => {
            let pct = shares(&weights).get(&canary).copied().unwrap_or(0.0);
            model.writing = true;
            notice(model, format!("moving {canary} to {pct:.0}%…"), false);
            Some(Command::PutWeights {
                gateway: model.writer(),
                route: info.name.clone(),
                update: WeightsUpdate {
                    weights,
                    reason: Some(format!("console: {canary} {pct:.0}%")),
                    changed_by: Some(model.who.clone()),
                    expected_revision: Some(info.weights.revision),
                },
            })
        }
        Ok(None) => {
            let end = if sign > 0 { 100 } else { 0 };
            notice(model, format!("{canary} is already at {end}%"), false);
            None
        }
        Err(e) => {
            notice(model, e.to_string(), true);
            None
        }
    }
}

fn rollback(model: &mut Model) -> Option<Command> {
    if canary_owns_selected(model) {
        return None;
    }
    let Some(row) = model.selected_route() else {
        notice(model, "no route selected".into(), true);
        return None;
    };
    let info = row.info.clone();
    let detail = model
        .detail
        .data
        .as_ref()
        .filter(|d| d.route.name == info.name);
    let Some(detail) = detail else {
        // The history is on the detail screen: open it and ask once it is there.
        model.detail.pending_rollback = true;
        if model.screen == Screen::RouteDetail {
            return None;
        }
        return open(model);
    };
    match rollback_update(detail, Some("console rollback".into()), model.who.clone()) {
        Ok(mut update) => {
            update.expected_revision = Some(info.weights.revision);
            model.dialog = Some(Dialog::Rollback {
                route: info.name.clone(),
                from: weights_of(&info),
                update,
            });
        }
        Err(e) => notice(model, e.to_string(), true),
    }
    None
}

/// Refuses manual weight changes to the route a canary is moving (`true`: refused).
fn canary_owns_selected(model: &mut Model) -> bool {
    let Some(run) = model.active_canary() else {
        return false;
    };
    let route = run.route.clone();
    if model.selected_route().is_some_and(|r| r.info.name == route) {
        let text = format!("a canary is moving {route}: x aborts it first");
        notice(model, text, true);
        return true;
    }
    false
}

fn confirm(model: &mut Model) -> Option<Command> {
    match model.dialog.take()? {
        Dialog::CanaryStart(form) => return canary::start(model, form),
        d @ Dialog::CanaryAbort { .. } => {
            model.dialog = Some(d);
            return canary::choose(model, AbortChoice::RollBack);
        }
        d => model.dialog = Some(d),
    }
    let dialog = model.dialog.take()?;
    model.writing = true;
    let gateway = model.writer();
    match dialog {
        Dialog::Flip { preview, revision } => {
            notice(model, format!("flipping {}…", preview.route), false);
            Some(Command::Flip {
                gateway,
                route: preview.route,
                request: FlipRequest {
                    reason: Some("console flip".into()),
                    changed_by: Some(model.who.clone()),
                    expected_revision: Some(revision),
                },
            })
        }
        Dialog::Rollback { route, update, .. } => {
            notice(model, format!("rolling back {route}…"), false);
            Some(Command::PutWeights {
                gateway,
                route,
                update,
            })
        }
        Dialog::CanaryStart(_) | Dialog::CanaryAbort { .. } => {
            model.writing = false;
            None
        }
    }
}

fn notice(model: &mut Model, text: String, error: bool) {
    model.notice = Some(Notice { text, error });
}

mod canary;

#[cfg(test)]
mod tests;
