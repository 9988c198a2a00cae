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
