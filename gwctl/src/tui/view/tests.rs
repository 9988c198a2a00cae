//! One render test per screen and state, at 80×24 and 160×48, from the admin fixtures.

#![allow(clippy::unwrap_used)]

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Style;
use ratatui::Terminal;

use super::super::message::Message;
use super::super::model::{LoadState, Model, Screen};
use super::super::testing::{answer, detail, feed, loaded, unreachable, NOW};
use super::super::theme;
use super::super::update::update;
use super::view;
use crate::test_fixtures;

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

fn draw(model: &Model, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| view(model, f)).unwrap();
    terminal
}

/// Snapshots `model` at both sizes as `<name>_<w>x<h>`.
fn snap(name: &str, model: &Model) {
    for (w, h) in SIZES {
        let terminal = draw(model, w, h);
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), terminal.backend());
        });
    }
}

/// Position of the first cell where `text` starts.
fn find(buf: &Buffer, text: &str) -> (u16, u16) {
    let area = buf.area;
    for y in 0..area.height {
        let line: String = (0..area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        if let Some(byte) = line.find(text) {
            let x = line[..byte].chars().count() as u16;
            return (x, y);
        }
    }
    panic!("{text:?} not on screen");
}

fn style_at(buf: &Buffer, text: &str) -> Style {
    let (x, y) = find(buf, text);
    buf[(x, y)].style()
}

/// `got` has `want`'s colours (where `want` sets them) and modifiers.
fn assert_styled(buf: &Buffer, text: &str, want: Style) {
    let got = style_at(buf, text);
    let ok = want.fg.is_none_or(|c| got.fg == Some(c))
        && want.bg.is_none_or(|c| got.bg == Some(c))
        && got.add_modifier.contains(want.add_modifier);
    assert!(ok, "{text:?}: {got:?}, want {want:?}");
}

fn two_gateways_one_down() -> Model {
    let mut m = Model::new(&["http://10.0.0.1:9901".into(), "http://10.0.0.2:9901".into()]);
    feed(
        &mut m,
        NOW,
        vec![answer(), unreachable("http://10.0.0.2:9901")],
    );
    m
}

#[test]
fn routes_loaded() {
    snap("routes_loaded", &loaded());
}

#[test]
fn routes_loading() {
    let mut m = Model::new(&["http://127.0.0.1:9901".into()]);
    update(&mut m, Message::Tick { now: NOW });
    snap("routes_loading", &m);
}

#[test]
fn routes_unreachable() {
    let mut m = Model::new(&["http://127.0.0.1:9901".into()]);
    feed(&mut m, NOW, vec![unreachable("http://127.0.0.1:9901")]);
    snap("routes_unreachable", &m);
}

#[test]
fn routes_one_of_two_gateways_unreachable() {
    snap("routes_partial", &two_gateways_one_down());
}

#[test]
fn routes_stale() {
    let mut m = loaded();
    feed(&mut m, NOW + 30, vec![unreachable("http://127.0.0.1:9901")]);
    m.notice = None;
    snap("routes_stale", &m);
}

#[test]
fn routes_empty() {
    let mut m = Model::new(&["http://127.0.0.1:9901".into()]);
    let mut a = answer();
    a.routes = Ok(vec![]);
    feed(&mut m, NOW, vec![a]);
    snap("routes_empty", &m);
}

#[test]
fn routes_filtered() {
    let mut m = loaded();
    update(&mut m, Message::FilterStart);
    update(&mut m, Message::FilterInput('w'));
    snap("routes_filtered", &m);
}

#[test]
fn route_detail_loaded() {
    snap("detail_loaded", &detail());
}

#[test]
fn route_detail_with_policies() {
    let mut m = loaded();
    update(&mut m, Message::Open);
    let generation = m.detail.generation;
    let mut d = test_fixtures::route_detail();
    d.policies = serde_json::from_str(test_fixtures::POLICIES).unwrap();
    update(
        &mut m,
        Message::DetailLoaded {
            generation,
            result: Ok(Box::new(d)),
        },
    );
    snap("detail_policies", &m);
    let buf = draw(&m, 160, 48).backend().buffer().clone();
    // A policy that refused requests is drawn in the warning colour, one that did not is not.
    let (x, y) = find(&buf, "limited 7");
    assert_eq!(buf[(x, y)].style().fg, theme::WARN.fg);
    let (x, y) = find(&buf, "preflight_allowed 3");
    assert_eq!(buf[(x, y)].style().fg, theme::OK.fg);
    // The last minute's decisions, and the last refusal (time of day, reason, client).
    let (x, y) = find(&buf, "allowed 18 · limited 2");
    assert_eq!(buf[(x, y)].style().fg, theme::WARN.fg);
    find(&buf, "last refused 09:24:51 limited 203.0.113.9");
}

#[test]
fn route_detail_loading() {
    let mut m = loaded();
    update(&mut m, Message::Open);
    snap("detail_loading", &m);
}

#[test]
fn route_detail_error() {
    let mut m = loaded();
    update(&mut m, Message::Open);
    let generation = m.detail.generation;
    let e = crate::error::ClientError::Api {
        url: "gw".into(),
        status: 401,
        body: gatewayd::admin::model::ApiError {
            error: "unauthorized".into(),
            message: "missing or bad bearer token".into(),
            field: None,
            current_revision: None,
        },
    };
    update(
        &mut m,
        Message::DetailLoaded {
            generation,
            result: Err(e),
        },
    );
    snap("detail_error", &m);
}

#[test]
fn route_detail_without_traffic() {
    let mut m = detail();
    for g in &mut m.gateways {
        g.stats = None;
    }
    m.rebuild();
    snap("detail_no_traffic", &m);
}

#[test]
fn upstreams_loaded() {
    let mut m = loaded();
    update(&mut m, Message::Show(Screen::Upstreams));
    snap("upstreams_loaded", &m);
}

#[test]
fn upstreams_empty_and_unreachable() {
    let mut m = Model::new(&["http://127.0.0.1:9901".into()]);
    let mut a = answer();
    a.upstreams = Ok(vec![]);
    feed(&mut m, NOW, vec![a]);
    update(&mut m, Message::Show(Screen::Upstreams));
    snap("upstreams_empty", &m);
    let mut m = Model::new(&["http://127.0.0.1:9901".into()]);
    feed(&mut m, NOW, vec![unreachable("http://127.0.0.1:9901")]);
    update(&mut m, Message::Show(Screen::Upstreams));
    snap("upstreams_unreachable", &m);
}

#[test]
fn events_live() {
    let mut m = two_gateways_one_down();
    for e in test_fixtures::events() {
        update(
            &mut m,
            Message::Event {
                gateway: 0,
                event: Box::new(e),
            },
        );
    }
    update(
        &mut m,
        Message::EventStream {
            gateway: 0,
            connected: true,
        },
    );
    update(&mut m, Message::Show(Screen::Events));
    snap("events_live", &m);
}

#[test]
fn events_empty_disconnected() {
    let mut m = loaded();
    update(&mut m, Message::Show(Screen::Events));
    snap("events_empty", &m);
}

#[test]
fn help_overlay() {
    let mut m = loaded();
    update(&mut m, Message::ToggleHelp);
    snap("help", &m);
}

#[test]
fn flip_dialog() {
    let mut m = loaded();
    update(&mut m, Message::Flip);
    snap("flip_dialog", &m);
}

#[test]
fn rollback_dialog() {
    let mut m = detail();
    update(&mut m, Message::Rollback);
    snap("rollback_dialog", &m);
}

#[test]
fn colour_carries_meaning() {
    let mut m = loaded();
    update(&mut m, Message::Down); // select web, so api's cells show their own colours
    let t = draw(&m, 80, 24);
    let buf = t.backend().buffer();
    // checkout fails 2.15% of requests: red; api 0.07%: yellow.
    assert_styled(buf, "2.15%", theme::ERROR);
    assert_styled(buf, "0.07%", theme::WARN);
    // api's green service is stale in discovery: the badge.
    assert_styled(buf, "42s", theme::STALE);
    // The selected row is highlighted.
    assert_styled(buf, "web ", theme::SELECTED);

    let mut m = loaded();
    update(&mut m, Message::Show(Screen::Upstreams));
    let t = draw(&m, 80, 24);
    let buf = t.backend().buffer();
    assert_styled(buf, "ejected 17s", theme::ERROR);
    assert_styled(buf, "STALE 42s", theme::STALE);

    let m = two_gateways_one_down();
    let t = draw(&m, 80, 24);
    assert_styled(t.backend().buffer(), "UNREACHABLE", theme::ERROR);
}

#[test]
fn tiny_terminals_do_not_panic() {
    for m in [loaded(), detail(), two_gateways_one_down()] {
        for (w, h) in [(1, 1), (20, 5), (40, 10), (80, 24)] {
            for screen in [
                Screen::Routes,
                Screen::RouteDetail,
                Screen::Upstreams,
                Screen::Events,
            ] {
                let mut m = m.clone();
                m.screen = screen;
                m.help = true;
                draw(&m, w, h);
            }
        }
    }
    assert_eq!(loaded().routes_state(), LoadState::Loaded);
}

fn canary_rolled_back() -> Model {
    use super::super::testing::{canary_sample, canary_watching, changed};
    let mut m = canary_watching();
    let generation = m.canary.as_ref().unwrap().generation;
    update(
        &mut m,
        Message::CanarySampled {
            generation,
            samples: canary_sample((3000, 0, 10_000), (300, 10, 11_000)),
        },
    );
    let start = m.canary.as_ref().unwrap().start.clone();
    update(
        &mut m,
        Message::CanaryWrote {
            generation,
            result: Ok(changed(9, &start)),
        },
    );
    m
}

#[test]
fn canary_start_dialog() {
    let mut m = detail();
    update(&mut m, Message::CanaryOpen);
    update(&mut m, Message::FormField(1));
    snap("canary_dialog", &m);
}

#[test]
fn canary_progress() {
    use super::super::testing::{canary_sample, canary_watching};
    let mut m = canary_watching();
    let generation = m.canary.as_ref().unwrap().generation;
    feed(&mut m, NOW + 7, vec![answer()]);
    update(
        &mut m,
        Message::CanarySampled {
            generation,
            samples: canary_sample((2000, 0, 10_000), (200, 0, 11_000)),
        },
    );
    snap("canary_progress", &m);
    m.screen = Screen::Routes;
    snap("canary_routes", &m);
    update(&mut m, Message::CanaryAbort);
    snap("canary_abort", &m);
}

#[test]
fn canary_rolled_back_view() {
    let m = canary_rolled_back();
    snap("canary_rolled_back", &m);
    let t = draw(&m, 160, 48);
    assert_styled(t.backend().buffer(), "ROLLED BACK", theme::ERROR);
}
