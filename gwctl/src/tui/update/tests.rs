#![allow(clippy::unwrap_used)]

use gatewayd::admin::model::{ApiError, WeightChange, WeightsChanged};

use super::*;
use crate::error::ClientError;
use crate::test_fixtures;
use crate::tui::testing::{self, answer, feed, loaded, unreachable, NOW};

fn names(m: &Model) -> Vec<String> {
    m.visible_rows()
        .iter()
        .map(|r| r.info.name.clone())
        .collect()
}

#[test]
fn a_tick_refreshes_idle_gateways_once() {
    let mut m = Model::new(&["a".into(), "b".into()]);
    let cmd = update(&mut m, Message::Tick { now: NOW });
    assert_eq!(
        cmd,
        Some(Command::Batch(vec![
            Command::Refresh {
                gateway: 0,
                generation: 1
            },
            Command::Refresh {
                gateway: 1,
                generation: 1
            },
        ]))
    );
    assert_eq!(m.routes_state(), LoadState::Loading);
    // Still in flight: the next tick asks nothing (a slow gateway never piles up requests).
    assert_eq!(update(&mut m, Message::Tick { now: NOW + 1 }), None);
}

#[test]
fn answers_build_merged_rows() {
    let m = loaded();
    assert_eq!(m.routes_state(), LoadState::Loaded);
    assert_eq!(names(&m), ["api", "web", "checkout", "assets"]);
    let api = &m.rows[0];
    assert_eq!(api.agg.as_ref().unwrap().backends.len(), 2);
    assert_eq!(
        api.service_stale,
        Some(42.5),
        "api-green is stale in discovery"
    );
    assert_eq!(m.rows[2].service_stale, None);
    assert_eq!(m.upstreams.len(), 6);
}

#[test]
fn two_gateways_add_up() {
    let mut m = Model::new(&["a".into(), "b".into()]);
    feed(&mut m, NOW, vec![answer(), answer()]);
    let one = loaded();
    let blue = |m: &Model| m.rows[0].agg.as_ref().unwrap().backends[0].requests;
    assert_eq!(blue(&m), 2 * blue(&one));
}

#[test]
fn stale_generations_are_dropped() {
    let mut m = Model::new(&["a".into()]);
    update(&mut m, Message::Tick { now: NOW });
    update(
        &mut m,
        Message::Refreshed {
            gateway: 0,
            generation: 0,
            result: Box::new(answer()),
        },
    );
    assert!(m.rows.is_empty());
    assert!(m.gateways[0].in_flight);
}

#[test]
fn a_failed_refresh_keeps_the_last_data_and_says_so() {
    let mut m = loaded();
    feed(&mut m, NOW + 10, vec![unreachable("http://127.0.0.1:9901")]);
    assert!(matches!(m.gateways[0].state, LoadState::Failed(ref e) if e.contains("refused")));
    assert_eq!(m.rows.len(), 4, "last known rows stay");
    assert_eq!(m.data_age(), Some(10));
    assert_eq!(m.routes_state(), LoadState::Loaded);

    let mut never = Model::new(&["a".into()]);
    feed(&mut never, NOW, vec![unreachable("a")]);
    assert!(matches!(never.routes_state(), LoadState::Failed(_)));
}

#[test]
fn open_loads_the_detail_and_back_returns() {
    let mut m = loaded();
    update(&mut m, Message::Down);
    let cmd = update(&mut m, Message::Open);
    assert_eq!(
        cmd,
        Some(Command::LoadDetail {
            gateway: 0,
            route: "web".into(),
            generation: 1
        })
    );
    assert_eq!(m.screen, Screen::RouteDetail);
    // On the detail screen a tick refreshes the detail too.
    let tick = update(&mut m, Message::Tick { now: NOW + 1 });
    assert!(matches!(tick, Some(Command::Batch(ref c)) if c.len() == 1 || c.len() == 2));
    update(&mut m, Message::Back);
    assert_eq!(m.screen, Screen::Routes);
}

#[test]
fn detail_answers_for_an_older_route_are_dropped() {
    let mut m = loaded();
    update(&mut m, Message::Open); // api, generation 1
    update(&mut m, Message::Back);
    update(&mut m, Message::Down);
    update(&mut m, Message::Open); // web, generation 2
    update(
        &mut m,
        Message::DetailLoaded {
            generation: 1,
            result: Ok(Box::new(test_fixtures::route_detail())),
        },
    );
    assert!(m.detail.data.is_none());
    assert_eq!(m.detail.state, LoadState::Loading);
}

#[test]
fn cursor_stays_in_bounds() {
    let mut m = loaded();
    update(&mut m, Message::Up);
    assert_eq!(m.routes_table.selected(), Some(0));
    for _ in 0..10 {
        update(&mut m, Message::Down);
    }
    assert_eq!(m.routes_table.selected(), Some(3));
}

#[test]
fn flip_asks_first_then_sends_a_conditional_flip() {
    let mut m = loaded();
    assert_eq!(update(&mut m, Message::Flip), None);
    let Some(Dialog::Flip { preview, revision }) = &m.dialog else {
        panic!("no dialog: {:?}", m.notice)
    };
    assert_eq!(*revision, 7);
    assert_eq!(preview.to.get("green"), Some(&90));
    let cmd = update(&mut m, Message::Confirm).unwrap();
    let Command::Flip { route, request, .. } = cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(route, "api");
    assert_eq!(request.expected_revision, Some(7));
    assert_eq!(request.changed_by.as_deref(), Some("tester@host"));
    assert!(m.writing);
    assert!(m.dialog.is_none());
}

#[test]
fn cancel_closes_the_dialog_without_io() {
    let mut m = loaded();
    update(&mut m, Message::Flip);
    assert_eq!(update(&mut m, Message::Cancel), None);
    assert!(m.dialog.is_none());
    assert!(!m.writing);
}

#[test]
fn flip_of_a_single_backend_route_is_refused() {
    let mut m = loaded();
    update(&mut m, Message::Down);
    update(&mut m, Message::Down);
    update(&mut m, Message::Flip);
    assert!(m.dialog.is_none());
    let n = m.notice.clone().unwrap();
    assert!(n.error && n.text.contains("exactly two backends"), "{n:?}");
}

#[test]
fn plus_moves_the_canary_one_step_conditionally() {
    let mut m = loaded();
    let cmd = update(&mut m, Message::Nudge(1)).unwrap();
    let Command::PutWeights {
        route, update: u, ..
    } = cmd
    else {
        panic!("{cmd:?}")
    };
    assert_eq!(route, "api");
    assert_eq!(u.weights.get("green"), Some(&20));
    assert_eq!(u.weights.get("blue"), Some(&80));
    assert_eq!(u.expected_revision, Some(7));
    // One change at a time.
    assert_eq!(update(&mut m, Message::Nudge(1)), None);
    assert!(m.notice.as_ref().unwrap().error);
}

#[test]
fn rollback_from_the_list_opens_the_history_then_asks() {
    let mut m = loaded();
    let cmd = update(&mut m, Message::Rollback);
    assert!(matches!(cmd, Some(Command::LoadDetail { .. })));
    assert!(m.dialog.is_none());
    let generation = m.detail.generation;
    update(
        &mut m,
        Message::DetailLoaded {
            generation,
            result: Ok(Box::new(test_fixtures::route_detail())),
        },
    );
    let Some(Dialog::Rollback { update: u, .. }) = &m.dialog else {
        panic!("no rollback dialog")
    };
    assert_eq!(u.weights.get("blue"), Some(&100));
    assert_eq!(u.expected_revision, Some(7));
    let cmd = update(&mut m, Message::Confirm);
    assert!(matches!(cmd, Some(Command::PutWeights { .. })));
}

#[test]
fn write_results_are_reported_and_refresh() {
    let mut m = loaded();
    m.writing = true;
    let conflict = ClientError::Api {
        url: "gw".into(),
        status: 409,
        body: ApiError {
            error: "conflict".into(),
            message: "revision is 8, not 7".into(),
            field: None,
            current_revision: Some(8),
        },
    };
    let cmd = update(
        &mut m,
        Message::WriteDone {
            result: Err(conflict),
        },
    );
    assert!(matches!(cmd, Some(Command::Refresh { .. })));
    assert!(!m.writing);
    let n = m.notice.clone().unwrap();
    assert!(n.error && n.text.starts_with("conflict"), "{n:?}");

    let route = test_fixtures::routes()[0].clone();
    let ok = WeightsChanged {
        route,
        change: WeightChange {
            revision: 8,
            previous: [("blue".to_string(), 90), ("green".to_string(), 10)].into(),
            weights: [("blue".to_string(), 80), ("green".to_string(), 20)].into(),
            changed_by: "me".into(),
            changed_at: "2025-03-14T09:25:00Z".into(),
            reason: "console".into(),
        },
    };
    update(
        &mut m,
        Message::WriteDone {
            result: Ok(Box::new(ok)),
        },
    );
    assert_eq!(
        m.notice.unwrap().text,
        "api: blue=90 green=10 → blue=80 green=20 (revision 8)"
    );
}

#[test]
fn filter_narrows_and_escape_clears() {
    let mut m = loaded();
    update(&mut m, Message::FilterStart);
    for c in "shop".chars() {
        update(&mut m, Message::FilterInput(c));
    }
    assert_eq!(names(&m), ["checkout"], "matches the host too");
    update(&mut m, Message::FilterDone);
    assert!(!m.filtering);
    assert_eq!(names(&m), ["checkout"]);
    update(&mut m, Message::Back);
    assert_eq!(names(&m).len(), 4);
}

#[test]
fn events_are_kept_newest_first_without_duplicates() {
    let mut m = loaded();
    for e in test_fixtures::events() {
        update(
            &mut m,
            Message::Event {
                gateway: 0,
                event: Box::new(e.clone()),
            },
        );
        update(
            &mut m,
            Message::Event {
                gateway: 0,
                event: Box::new(e),
            },
        );
    }
    assert_eq!(m.events.len(), 6);
    assert_eq!(m.events[0].event.id, 106);
    update(
        &mut m,
        Message::EventStream {
            gateway: 0,
            connected: true,
        },
    );
    assert!(m.gateways[0].events_connected);
}

#[test]
fn screens_and_quit() {
    let mut m = testing::loaded();
    update(&mut m, Message::NextScreen);
    assert_eq!(m.screen, Screen::Upstreams);
    update(&mut m, Message::NextScreen);
    assert_eq!(m.screen, Screen::Events);
    update(&mut m, Message::Show(Screen::Routes));
    update(&mut m, Message::ToggleHelp);
    assert!(m.help);
    update(&mut m, Message::Quit);
    assert!(m.quit);
}

// === guarded canary ===

mod canary {
    use super::super::super::model::{
        AbortChoice, CanaryPhase, Dialog, CANARY_INTERVALS, CANARY_STEPS,
    };
    use super::*;
    use crate::tui::testing::{canary_sample, canary_watching, changed, detail};

    /// The generation of the running canary.
    fn generation(m: &Model) -> u64 {
        m.canary.as_ref().unwrap().generation
    }

    fn phase(m: &Model) -> CanaryPhase {
        m.canary.as_ref().unwrap().phase.clone()
    }

    fn put(cmd: Option<Command>) -> WeightsUpdate {
        match cmd {
            Some(Command::CanaryPut { route, update, .. }) => {
                assert_eq!(route, "api");
                update
            }
            other => panic!("expected a canary write, got {other:?}"),
        }
    }

    fn conflict() -> ClientError {
        ClientError::Api {
            url: "fake".into(),
            status: 409,
            body: ApiError {
                error: "conflict".into(),
                message: "revision is 99".into(),
                field: None,
                current_revision: Some(99),
            },
        }
    }

    fn sampled(m: &mut Model, blue: (u64, u64, u64), green: (u64, u64, u64)) -> Option<Command> {
        let generation = generation(m);
        update(
            m,
            Message::CanarySampled {
                generation,
                samples: canary_sample(blue, green),
            },
        )
    }

    /// Polls (5 s each for a 30 s interval) with healthy traffic until the step passes.
    fn pass_step(m: &mut Model, base: u64) -> Option<Command> {
        let mut last = None;
        for i in 1..=6 {
            let n = base + i * 100;
            last = sampled(m, (10 * n, 0, 10_000), (n, 0, 11_000));
        }
        last
    }

    #[test]
    fn c_opens_the_dialog_with_the_canary_candidate_and_defaults() {
        let mut m = detail();
        assert_eq!(update(&mut m, Message::CanaryOpen), None);
        let Some(Dialog::CanaryStart(form)) = &m.dialog else {
            panic!("{:?}", m.dialog);
        };
        assert_eq!(form.to(), "green", "the candidate rollout.rs computes");
        assert_eq!(CANARY_STEPS[form.steps], [10, 25, 50, 100]);
        assert_eq!(CANARY_INTERVALS[form.interval], 30);
        let g = form.guard();
        assert!((g.max_error_rate - 0.01).abs() < 1e-12);
        assert!((g.max_p99_ratio - 1.5).abs() < 1e-12);
        // ←→ cycle the preset of the field under the cursor; ↓ moves to the next field.
        update(&mut m, Message::FormAdjust(1));
        update(&mut m, Message::FormField(1));
        update(&mut m, Message::FormAdjust(1));
        let Some(Dialog::CanaryStart(form)) = &m.dialog else {
            panic!()
        };
        assert_eq!(form.to(), "blue");
        assert_eq!(CANARY_STEPS[form.steps], [5, 25, 50, 100]);
        // Esc cancels without any I/O.
        assert_eq!(update(&mut m, Message::Cancel), None);
        assert!(m.dialog.is_none() && m.canary.is_none());
    }

    #[test]
    fn single_backend_routes_get_no_dialog() {
        let mut m = loaded();
        update(&mut m, Message::FilterInput('c'));
        update(&mut m, Message::FilterInput('h'));
        assert_eq!(update(&mut m, Message::CanaryOpen), None);
        assert!(m.dialog.is_none());
        assert!(m.notice.as_ref().unwrap().error);
    }

    #[test]
    fn start_writes_the_first_step_conditionally() {
        let mut m = detail();
        update(&mut m, Message::CanaryOpen);
        let u = put(update(&mut m, Message::Confirm));
        assert_eq!(u.expected_revision, Some(7));
        assert_eq!(u.weights.get("green"), Some(&10));
        assert_eq!(u.weights.get("blue"), Some(&90));
        assert_eq!(
            u.reason.as_deref(),
            Some("canary step 1/4: green 10% (console)")
        );
        assert_eq!(u.changed_by.as_deref(), Some("tester@host"));
        assert_eq!(phase(&m), CanaryPhase::Setting);
        assert!(m.dialog.is_none());
        let run = m.canary.as_ref().unwrap();
        assert_eq!(run.baseline, "blue");
        assert_eq!(run.start.get("blue"), Some(&90));
        // The write lands: the window opens with a first sample, right away.
        let generation = generation(&m);
        let cmd = update(
            &mut m,
            Message::CanaryWrote {
                generation,
                result: Ok(changed(8, &u.weights)),
            },
        );
        assert_eq!(
            cmd,
            Some(Command::CanarySample {
                delay_secs: 0,
                generation
            })
        );
        assert_eq!(phase(&m), CanaryPhase::Watching);
        // Then polls every 5 s (a sixth of 30 s).
        let cmd = sampled(&mut m, (1000, 0, 10_000), (100, 0, 11_000));
        assert_eq!(
            cmd,
            Some(Command::CanarySample {
                delay_secs: 5,
                generation
            })
        );
    }

    #[test]
    fn steps_advance_on_passing_intervals_and_complete() {
        let mut m = canary_watching();
        let mut rev = 8;
        for (step, pct) in [(1, 25), (2, 50), (3, 100)] {
            let u = put(pass_step(&mut m, 100 * step));
            assert_eq!(
                u.expected_revision,
                Some(rev),
                "conditional on our last write"
            );
            assert_eq!(u.weights.get("green"), Some(&pct));
            let run = m.canary.as_ref().unwrap();
            assert_eq!(run.step, step as usize);
            assert!(run.note.as_deref().unwrap().starts_with("ok: green"));
            rev += 1;
            let generation = generation(&m);
            update(
                &mut m,
                Message::CanaryWrote {
                    generation,
                    result: Ok(changed(rev, &u.weights)),
                },
            );
            sampled(&mut m, (1000, 0, 10_000), (100, 0, 11_000));
        }
        assert_eq!(pass_step(&mut m, 900), None);
        assert_eq!(phase(&m), CanaryPhase::Completed);
        assert!(m.notice.as_ref().unwrap().text.contains("completed"));
        assert!(m.active_canary().is_none());
    }

    #[test]
    fn a_failing_guard_rolls_back_to_the_starting_weights_at_once() {
        let mut m = canary_watching();
        // Second poll: green errs 10% of its window — no waiting for the interval's end.
        sampled(&mut m, (2000, 0, 10_000), (200, 0, 11_000));
        let u = put(sampled(&mut m, (3000, 0, 10_000), (300, 10, 11_000)));
        assert_eq!(u.weights.get("blue"), Some(&90));
        assert_eq!(u.weights.get("green"), Some(&10));
        assert_eq!(u.expected_revision, Some(8));
        assert!(u
            .reason
            .as_deref()
            .unwrap()
            .starts_with("canary rollback: step 1/4 (10% green): green error rate"));
        let CanaryPhase::RollingBack { why } = phase(&m) else {
            panic!("{:?}", phase(&m));
        };
        assert!(why.contains("exceeds 1.00%"), "{why}");
        // The rollback lands.
        let generation = generation(&m);
        let cmd = update(
            &mut m,
            Message::CanaryWrote {
                generation,
                result: Ok(changed(9, &u.weights)),
            },
        );
        assert_eq!(cmd, None);
        assert!(
            matches!(phase(&m), CanaryPhase::RolledBack { ref why } if why.contains("error rate"))
        );
        let n = m.notice.as_ref().unwrap();
        assert!(n.error && n.text.contains("rolled back to blue=90 green=10"));
        // A late sample of the finished run is dropped.
        assert_eq!(sampled(&mut m, (1, 0, 1), (1, 0, 1)), None);
    }

    #[test]
    fn a_slow_canary_fails_the_p99_guard() {
        let mut m = canary_watching();
        // The window's 100 green requests took 30 ms each (blue's 10 ms): 3× the baseline.
        let mut green = vec![11_000; 100];
        green.extend([30_000; 100]);
        let generation = generation(&m);
        let stats = test_fixtures::stats_with(
            "api",
            &[
                ("blue", 2000, 0, &[10_000; 2000]),
                ("green", 200, 0, &green),
            ],
        );
        let u = put(update(
            &mut m,
            Message::CanarySampled {
                generation,
                samples: vec![Some(stats)],
            },
        ));
        assert_eq!(u.weights.get("green"), Some(&10));
        assert!(matches!(phase(&m), CanaryPhase::RollingBack { ref why } if why.contains("p99")));
    }

    #[test]
    fn a_conflicting_rollback_stops_without_overwriting() {
        let mut m = canary_watching();
        put(sampled(&mut m, (2000, 0, 10_000), (200, 50, 11_000)));
        let generation = generation(&m);
        update(
            &mut m,
            Message::CanaryWrote {
                generation,
                result: Err(conflict()),
            },
        );
        assert!(
            matches!(phase(&m), CanaryPhase::Stopped { ref why } if why.contains("NOT rolled back"))
        );
    }

    #[test]
    fn a_conflicting_step_stops_without_rolling_back() {
        let mut m = detail();
        update(&mut m, Message::CanaryOpen);
        update(&mut m, Message::Confirm);
        let generation = generation(&m);
        let cmd = update(
            &mut m,
            Message::CanaryWrote {
                generation,
                result: Err(conflict()),
            },
        );
        assert_eq!(cmd, None);
        assert!(
            matches!(phase(&m), CanaryPhase::Stopped { ref why } if why.contains("changed meanwhile"))
        );
    }

    #[test]
    fn abort_hold_stops_at_the_current_weights() {
        let mut m = canary_watching();
        update(&mut m, Message::CanaryAbort);
        assert_eq!(m.dialog, Some(Dialog::CanaryAbort { quit: false }));
        // Esc keeps it running.
        update(&mut m, Message::Cancel);
        assert!(m.dialog.is_none() && m.active_canary().is_some());
        update(&mut m, Message::CanaryAbort);
        let cmd = update(&mut m, Message::CanaryChoice(AbortChoice::Hold));
        assert_eq!(cmd, None, "holding writes nothing");
        assert_eq!(phase(&m), CanaryPhase::Held);
        assert!(!m.quit);
        assert_eq!(sampled(&mut m, (1, 0, 1), (1, 0, 1)), None);
    }

    #[test]
    fn abort_roll_back_puts_the_starting_weights_back() {
        let mut m = canary_watching();
        update(&mut m, Message::CanaryAbort);
        let u = put(update(&mut m, Message::CanaryChoice(AbortChoice::RollBack)));
        assert_eq!(u.weights.get("blue"), Some(&90));
        assert_eq!(u.expected_revision, Some(8));
        assert!(m.dialog.is_none());
        let generation = generation(&m);
        update(
            &mut m,
            Message::CanaryWrote {
                generation,
                result: Ok(changed(9, &u.weights)),
            },
        );
        assert!(
            matches!(phase(&m), CanaryPhase::RolledBack { ref why } if why.contains("aborted"))
        );
    }

    #[test]
    fn abort_during_a_write_waits_for_its_revision() {
        let mut m = canary_watching();
        let u = put(pass_step(&mut m, 100));
        update(&mut m, Message::CanaryAbort);
        assert_eq!(
            update(&mut m, Message::CanaryChoice(AbortChoice::RollBack)),
            None
        );
        let generation = generation(&m);
        let back = put(update(
            &mut m,
            Message::CanaryWrote {
                generation,
                result: Ok(changed(9, &u.weights)),
            },
        ));
        assert_eq!(back.expected_revision, Some(9));
        assert_eq!(back.weights.get("green"), Some(&10));
    }

    #[test]
    fn quit_during_a_canary_asks_first() {
        let mut m = canary_watching();
        assert_eq!(update(&mut m, Message::Quit), None);
        assert!(!m.quit);
        assert_eq!(m.dialog, Some(Dialog::CanaryAbort { quit: true }));
        // Roll back, then quit once the rollback has landed.
        let u = put(update(&mut m, Message::CanaryChoice(AbortChoice::RollBack)));
        assert!(!m.quit);
        let generation = generation(&m);
        update(
            &mut m,
            Message::CanaryWrote {
                generation,
                result: Ok(changed(9, &u.weights)),
            },
        );
        assert!(m.quit);

        let mut m = canary_watching();
        update(&mut m, Message::Quit);
        update(&mut m, Message::CanaryChoice(AbortChoice::Hold));
        assert!(m.quit);

        // Ctrl-C again while asked: quit.
        let mut m = canary_watching();
        update(&mut m, Message::Quit);
        update(&mut m, Message::Quit);
        assert!(m.quit);
    }

    #[test]
    fn manual_changes_to_the_canary_route_are_refused() {
        let mut m = canary_watching();
        assert_eq!(update(&mut m, Message::Nudge(1)), None);
        assert!(m.notice.as_ref().unwrap().text.contains("x aborts"));
        update(&mut m, Message::CanaryOpen);
        assert!(m.dialog.is_none());
    }

    #[test]
    fn stale_results_of_another_run_are_dropped() {
        let mut m = canary_watching();
        let old = generation(&m);
        update(&mut m, Message::CanaryAbort);
        update(&mut m, Message::CanaryChoice(AbortChoice::Hold));
        update(&mut m, Message::CanaryOpen);
        update(&mut m, Message::Confirm);
        assert_ne!(generation(&m), old);
        let cmd = update(
            &mut m,
            Message::CanaryWrote {
                generation: old,
                result: Err(conflict()),
            },
        );
        assert_eq!(cmd, None);
        assert_eq!(phase(&m), CanaryPhase::Setting);
    }
}
