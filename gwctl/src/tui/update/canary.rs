//! The console's guarded canary: the same steps, windows and guards as `gwctl canary` (shared
//! through `crate::rollout`), driven by worker results instead of awaits. Every write is
//! conditional on the revision the canary last wrote; results of an older run are dropped.

use std::time::Duration;

use gatewayd::admin::model::{Stats, WeightsChanged};

use super::super::message::Command;
use super::super::model::{
    AbortChoice, CanaryForm, CanaryPhase, CanaryRun, Dialog, Model, CANARY_ERROR_RATE_DEFAULT,
    CANARY_INTERVALS, CANARY_INTERVAL_DEFAULT, CANARY_P99_RATIO_DEFAULT, CANARY_STEPS,
};
use super::notice;
use crate::error::ClientError;
use crate::rollout::{
    canary_backend, canary_baseline, file_weights_of, format_weights, guard_failed, judge, observe,
    poll_period, rollback_conflict, rollback_failed, rollback_to_start, step_conflict, step_failed,
    step_update, weights_of, CanaryAuthor, Judgement,
};

/// `c`: opens the start dialog for the selected route.
pub(super) fn open(model: &mut Model) -> Option<Command> {
    if let Some(run) = model.active_canary() {
        let text = format!("a canary is already running on {} (x aborts)", run.route);
        notice(model, text, true);
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
    if info.backends.len() < 2 {
        let text = format!("{} has a single backend: no canary to run", info.name);
        notice(model, text, true);
        return None;
    }
    let last = model
        .detail
        .data
        .as_ref()
        .filter(|d| d.route.name == info.name)
        .and_then(|d| d.history.last());
    let candidate = canary_backend(&info, last);
    let backends: Vec<String> = info.backends.iter().map(|b| b.name.clone()).collect();
    let target = candidate
        .and_then(|c| backends.iter().position(|b| *b == c))
        .unwrap_or(0);
    model.dialog = Some(Dialog::CanaryStart(CanaryForm {
        route: info.name,
        backends,
        target,
        steps: 0,
        interval: CANARY_INTERVAL_DEFAULT,
        max_error_rate: CANARY_ERROR_RATE_DEFAULT,
        max_p99_ratio: CANARY_P99_RATIO_DEFAULT,
        field: 0,
    }));
    None
}

/// Enter in the start dialog: checks the plan like the CLI and writes the first step.
pub(super) fn start(model: &mut Model, form: CanaryForm) -> Option<Command> {
    let Some(row) = model.rows.iter().find(|r| r.info.name == form.route) else {
        notice(model, format!("route {} is gone", form.route), true);
        return None;
    };
    let info = row.info.clone();
    let start = weights_of(&info);
    let file = file_weights_of(&info);
    let steps = CANARY_STEPS[form.steps].to_vec();
    let to = form.to().to_string();
    let baseline = match canary_baseline(&info.name, &start, &file, &to, steps[0], None) {
        Ok(b) => b,
        Err(e) => {
            notice(model, e.to_string(), true);
            return None;
        }
    };
    model.canary_generation += 1;
    let run = CanaryRun {
        generation: model.canary_generation,
        route: info.name.clone(),
        to,
        baseline,
        steps,
        interval: CANARY_INTERVALS[form.interval],
        guard: form.guard(),
        start,
        file,
        revision: info.weights.revision,
        step: 0,
        phase: CanaryPhase::Setting,
        begin: None,
        elapsed: 0,
        window_started: model.now,
        canary_seen: None,
        baseline_seen: None,
        last_baseline: None,
        note: None,
        pending_abort: None,
        quit_after: false,
    };
    model.canary = Some(run);
    put_step(model)
}

/// `x` (or Esc on the progress view): asks hold / roll back.
pub(super) fn abort(model: &mut Model, quit: bool) -> Option<Command> {
    let Some(run) = model.active_canary() else {
        if quit {
            model.quit = true;
        } else {
            notice(model, "no canary is running".into(), true);
        }
        return None;
    };
    if matches!(run.phase, CanaryPhase::RollingBack { .. }) {
        let route = run.route.clone();
        if quit {
            if let Some(run) = model.canary.as_mut() {
                run.quit_after = true;
            }
        }
        let then = if quit { "; quitting when done" } else { "" };
        notice(
            model,
            format!("canary {route} is rolling back{then}"),
            false,
        );
        return None;
    }
    model.dialog = Some(Dialog::CanaryAbort { quit });
    None
}

/// The answer to the abort dialog. A choice made while a step is being written waits for that
/// write (its revision is needed for the rollback to be conditional).
pub(super) fn choose(model: &mut Model, choice: AbortChoice) -> Option<Command> {
    let quit = matches!(
        model.dialog.take(),
        Some(Dialog::CanaryAbort { quit: true })
    );
    let Some(run) = model.canary.as_mut().filter(|r| r.active()) else {
        model.quit |= quit;
        return None;
    };
    run.quit_after |= quit;
    match run.phase {
        CanaryPhase::Setting => {
            run.pending_abort = Some(choice);
            let route = run.route.clone();
            notice(
                model,
                format!("canary {route}: stopping after the current write…"),
                false,
            );
            None
        }
        CanaryPhase::Watching => apply_abort(model, choice),
        _ => None,
    }
}

/// A canary write landed.
pub(super) fn wrote(
    model: &mut Model,
    generation: u64,
    result: Result<Box<WeightsChanged>, ClientError>,
) -> Option<Command> {
    let run = current(model, generation)?;
    match (run.phase.clone(), result) {
        (CanaryPhase::Setting, Ok(changed)) => {
            run.revision = changed.change.revision;
            if let Some(choice) = run.pending_abort.take() {
                return apply_abort(model, choice);
            }
            run.phase = CanaryPhase::Watching;
            run.begin = None;
            run.elapsed = 0;
            run.canary_seen = None;
            run.baseline_seen = None;
            run.note = None;
            let text = format!(
                "canary {}: step {}/{} {} {}% (revision {})",
                run.route,
                run.step + 1,
                run.steps.len(),
                run.to,
                run.percent(),
                run.revision
            );
            let cmd = sample(run, 0);
            notice(model, text, false);
            Some(cmd)
        }
        (CanaryPhase::Setting, Err(e)) if e.is_conflict() => {
            let why = step_conflict(&run.route, &e.short());
            finish(model, CanaryPhase::Stopped { why });
            None
        }
        (CanaryPhase::Setting, Err(e)) => {
            let why = step_failed(run.step, &e.short());
            roll_back(model, why)
        }
        (CanaryPhase::RollingBack { why }, Ok(changed)) => {
            run.revision = changed.change.revision;
            finish(model, CanaryPhase::RolledBack { why });
            None
        }
        (CanaryPhase::RollingBack { why }, Err(e)) if e.is_conflict() => {
            let why = rollback_conflict(&why, &e.short());
            finish(model, CanaryPhase::Stopped { why });
            None
        }
        (CanaryPhase::RollingBack { why }, Err(e)) => {
            let why = rollback_failed(&why, &e.to_string(), &run.route, &run.start);
            finish(model, CanaryPhase::Stopped { why });
            None
        }
        _ => None,
    }
}

/// A canary sample arrived: the step's first one opens the window, later ones are judged.
pub(super) fn sampled(
    model: &mut Model,
    generation: u64,
    samples: Vec<Option<Stats>>,
) -> Option<Command> {
    let now = model.now;
    let run = current(model, generation)?;
    if run.phase != CanaryPhase::Watching {
        return None;
    }
    let interval = Duration::from_secs(run.interval);
    let poll = poll_period(interval);
    let Some(begin) = &run.begin else {
        run.begin = Some(samples);
        run.window_started = now;
        return Some(sample(run, poll.as_secs()));
    };
    run.elapsed += poll.as_secs();
    let canary = observe(begin, &samples, &run.route, &run.to);
    let base = observe(begin, &samples, &run.route, &run.baseline);
    run.canary_seen = Some(canary.clone());
    run.baseline_seen = Some(base.clone());
    let n = run.steps.len();
    let judgement = judge(
        &run.guard,
        &canary,
        base,
        &mut run.last_baseline,
        run.step,
        n,
        Duration::from_secs(run.elapsed),
        interval,
    );
    match judgement {
        Judgement::Watch => Some(sample(run, poll.as_secs())),
        Judgement::Waiting(why) => {
            run.note = Some(format!("waiting for traffic: {why}"));
            Some(sample(run, poll.as_secs()))
        }
        Judgement::Pass(summary) => {
            run.note = Some(format!("ok: {summary}"));
            if run.step + 1 >= n {
                finish(model, CanaryPhase::Completed);
                return None;
            }
            run.step += 1;
            run.phase = CanaryPhase::Setting;
            put_step(model)
        }
        Judgement::Fail(why) => {
            run.note = Some(why.clone());
            let why = guard_failed(run.step, n, run.percent(), &run.to, &why);
            roll_back(model, why)
        }
        Judgement::GiveUp(why) => roll_back(model, why),
    }
}

/// The running canary if `generation` is its own.
fn current(model: &mut Model, generation: u64) -> Option<&mut CanaryRun> {
    model
        .canary
        .as_mut()
        .filter(|r| r.active() && r.generation == generation)
}

fn author(model: &Model) -> CanaryAuthor {
    CanaryAuthor {
        changed_by: model.who.clone(),
        reason: Some("console".into()),
    }
}

fn sample(run: &CanaryRun, delay_secs: u64) -> Command {
    Command::CanarySample {
        delay_secs,
        generation: run.generation,
    }
}

/// Writes the current step.
fn put_step(model: &mut Model) -> Option<Command> {
    let author = author(model);
    let gateway = model.writer();
    let run = model.canary.as_mut()?;
    let update = step_update(
        &run.route,
        &run.start,
        &run.file,
        &run.to,
        &run.steps,
        run.step,
        run.revision,
        &author,
    );
    match update {
        Ok(update) => {
            run.phase = CanaryPhase::Setting;
            let text = format!(
                "canary {}: moving {} to {}% (step {}/{})…",
                run.route,
                run.to,
                run.percent(),
                run.step + 1,
                run.steps.len()
            );
            let cmd = Command::CanaryPut {
                gateway,
                route: run.route.clone(),
                update,
                generation: run.generation,
            };
            notice(model, text, false);
            Some(cmd)
        }
        Err(e) => {
            finish(model, CanaryPhase::Stopped { why: e.to_string() });
            None
        }
    }
}

/// Puts the starting weights back, conditional on the last revision written.
fn roll_back(model: &mut Model, why: String) -> Option<Command> {
    let author = author(model);
    let gateway = model.writer();
    let run = model.canary.as_mut()?;
    let update = rollback_to_start(&run.start, &why, run.revision, &author);
    run.phase = CanaryPhase::RollingBack { why: why.clone() };
    let cmd = Command::CanaryPut {
        gateway,
        route: run.route.clone(),
        update,
        generation: run.generation,
    };
    notice(model, format!("FAILED: {why}; rolling back…"), true);
    Some(cmd)
}

fn apply_abort(model: &mut Model, choice: AbortChoice) -> Option<Command> {
    match choice {
        AbortChoice::Hold => {
            finish(model, CanaryPhase::Held);
            None
        }
        AbortChoice::RollBack => roll_back(model, "canary aborted from the console".into()),
    }
}

/// Ends the run in `phase`, says so, and quits when that was asked.
fn finish(model: &mut Model, phase: CanaryPhase) {
    let Some(run) = model.canary.as_mut() else {
        return;
    };
    run.phase = phase;
    run.pending_abort = None;
    let (text, error) = match &run.phase {
        CanaryPhase::Completed => (
            format!(
                "canary {} completed: {} at {}%",
                run.route,
                run.to,
                run.percent()
            ),
            false,
        ),
        CanaryPhase::RolledBack { why } => (
            format!(
                "canary {}: {why}; rolled back to {} (revision {})",
                run.route,
                format_weights(&run.start),
                run.revision
            ),
            true,
        ),
        CanaryPhase::Held => (
            format!(
                "canary {} held at {} {}% (revision {}); r undoes the last step",
                run.route,
                run.to,
                run.percent(),
                run.revision
            ),
            false,
        ),
        CanaryPhase::Stopped { why } => (format!("canary {}: {why}", run.route), true),
        _ => return,
    };
    let quit = run.quit_after;
    notice(model, text, error);
    model.quit |= quit;
}
