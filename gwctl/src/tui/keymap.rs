//! Keys → Messages. The mode decides: typing a filter, a dialog, the help overlay, or normal.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::message::Message;
use super::model::{AbortChoice, Dialog, Model, Screen};

/// The message for a key press in the model's current mode (`None`: ignored).
pub fn message_for(key: &KeyEvent, model: &Model) -> Option<Message> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c')).then_some(Message::Quit);
    }
    if model.filtering {
        return match key.code {
            KeyCode::Esc => Some(Message::FilterCancel),
            KeyCode::Enter => Some(Message::FilterDone),
            KeyCode::Backspace => Some(Message::FilterBackspace),
            KeyCode::Up => Some(Message::Up),
            KeyCode::Down => Some(Message::Down),
            KeyCode::Char(c) => Some(Message::FilterInput(c)),
            _ => None,
        };
    }
    if let Some(Dialog::CanaryStart(_)) = &model.dialog {
        return match key.code {
            KeyCode::Enter => Some(Message::Confirm),
            KeyCode::Esc | KeyCode::Char('q') => Some(Message::Cancel),
            KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => Some(Message::FormField(-1)),
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => Some(Message::FormField(1)),
            KeyCode::Left | KeyCode::Char('h') => Some(Message::FormAdjust(-1)),
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Char(' ') => {
                Some(Message::FormAdjust(1))
            }
            _ => None,
        };
    }
    if let Some(Dialog::CanaryAbort { .. }) = &model.dialog {
        return match key.code {
            KeyCode::Char('h') | KeyCode::Char('H') => {
                Some(Message::CanaryChoice(AbortChoice::Hold))
            }
            KeyCode::Char('r') | KeyCode::Char('R') | KeyCode::Enter => {
                Some(Message::CanaryChoice(AbortChoice::RollBack))
            }
            KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('c') => Some(Message::Cancel),
            // q again while asked whether to quit: the question stays; Ctrl-C quits.
            _ => None,
        };
    }
    if model.dialog.is_some() {
        return match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Some(Message::Confirm),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {
                Some(Message::Cancel)
            }
            _ => None,
        };
    }
    if model.help {
        return match key.code {
            KeyCode::Char('?') | KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => {
                Some(Message::ToggleHelp)
            }
            _ => None,
        };
    }
    match key.code {
        KeyCode::Char('q') => Some(Message::Quit),
        KeyCode::Char('?') => Some(Message::ToggleHelp),
        KeyCode::Up | KeyCode::Char('k') => Some(Message::Up),
        KeyCode::Down | KeyCode::Char('j') => Some(Message::Down),
        KeyCode::Enter => Some(Message::Open),
        // Esc on the progress view of a running canary aborts it (asks first).
        KeyCode::Esc
            if model.screen == Screen::RouteDetail
                && model
                    .active_canary()
                    .is_some_and(|c| c.route == model.detail.route) =>
        {
            Some(Message::CanaryAbort)
        }
        KeyCode::Esc => Some(Message::Back),
        KeyCode::Tab => Some(Message::NextScreen),
        KeyCode::Char('1') => Some(Message::Show(Screen::Routes)),
        KeyCode::Char('2') => Some(Message::Show(Screen::Upstreams)),
        KeyCode::Char('3') => Some(Message::Show(Screen::Events)),
        KeyCode::Char('/') => Some(Message::FilterStart),
        KeyCode::Char('b') => Some(Message::Flip),
        KeyCode::Char('+') | KeyCode::Char('=') => Some(Message::Nudge(1)),
        KeyCode::Char('-') => Some(Message::Nudge(-1)),
        KeyCode::Char('r') => Some(Message::Rollback),
        KeyCode::Char('c') => Some(Message::CanaryOpen),
        KeyCode::Char('x') => Some(Message::CanaryAbort),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::KeyEventState;

    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn model() -> Model {
        Model::new(&["http://gw".to_string()])
    }

    #[test]
    fn normal_mode_keys() {
        let m = model();
        let cases = [
            (KeyCode::Char('j'), "Down"),
            (KeyCode::Down, "Down"),
            (KeyCode::Char('k'), "Up"),
            (KeyCode::Up, "Up"),
            (KeyCode::Enter, "Open"),
            (KeyCode::Esc, "Back"),
            (KeyCode::Char('/'), "FilterStart"),
            (KeyCode::Char('b'), "Flip"),
            (KeyCode::Char('+'), "Nudge(1)"),
            (KeyCode::Char('-'), "Nudge(-1)"),
            (KeyCode::Char('r'), "Rollback"),
            (KeyCode::Char('?'), "ToggleHelp"),
            (KeyCode::Char('q'), "Quit"),
            (KeyCode::Tab, "NextScreen"),
            (KeyCode::Char('2'), "Show(Upstreams)"),
            (KeyCode::Char('c'), "CanaryOpen"),
            (KeyCode::Char('x'), "CanaryAbort"),
        ];
        for (code, want) in cases {
            let got = message_for(&key(code), &m).map(|m| format!("{m:?}"));
            assert_eq!(got.as_deref(), Some(want), "{code:?}");
        }
        assert!(message_for(&key(KeyCode::Char('z')), &m).is_none());
    }

    #[test]
    fn ctrl_c_quits_in_every_mode() {
        let mut m = model();
        m.filtering = true;
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert!(matches!(message_for(&k, &m), Some(Message::Quit)));
    }

    #[test]
    fn filter_mode_types_letters() {
        let mut m = model();
        m.filtering = true;
        assert!(matches!(
            message_for(&key(KeyCode::Char('q')), &m),
            Some(Message::FilterInput('q'))
        ));
        assert!(matches!(
            message_for(&key(KeyCode::Esc), &m),
            Some(Message::FilterCancel)
        ));
        assert!(matches!(
            message_for(&key(KeyCode::Enter), &m),
            Some(Message::FilterDone)
        ));
    }

    #[test]
    fn dialogs_take_yes_or_no_only() {
        let mut m = model();
        m.dialog = Some(super::super::model::Dialog::Rollback {
            route: "api".into(),
            update: gatewayd::admin::model::WeightsUpdate {
                weights: Default::default(),
                reason: None,
                changed_by: None,
                expected_revision: None,
            },
            from: Default::default(),
        });
        assert!(matches!(
            message_for(&key(KeyCode::Char('y')), &m),
            Some(Message::Confirm)
        ));
        assert!(matches!(
            message_for(&key(KeyCode::Esc), &m),
            Some(Message::Cancel)
        ));
        assert!(message_for(&key(KeyCode::Char('b')), &m).is_none());
    }

    fn form() -> super::super::model::CanaryForm {
        super::super::model::CanaryForm {
            route: "api".into(),
            backends: vec!["blue".into(), "green".into()],
            target: 1,
            steps: 0,
            interval: 1,
            max_error_rate: 2,
            max_p99_ratio: 2,
            field: 0,
        }
    }

    fn msg(m: &Model, code: KeyCode) -> Option<String> {
        message_for(&key(code), m).map(|m| format!("{m:?}"))
    }

    #[test]
    fn canary_dialog_cycles_presets_enter_starts_esc_cancels() {
        let mut m = model();
        m.dialog = Some(Dialog::CanaryStart(form()));
        let cases = [
            (KeyCode::Enter, "Confirm"),
            (KeyCode::Esc, "Cancel"),
            (KeyCode::Up, "FormField(-1)"),
            (KeyCode::Down, "FormField(1)"),
            (KeyCode::Tab, "FormField(1)"),
            (KeyCode::Left, "FormAdjust(-1)"),
            (KeyCode::Right, "FormAdjust(1)"),
        ];
        for (code, want) in cases {
            assert_eq!(msg(&m, code).as_deref(), Some(want), "{code:?}");
        }
        // `c` and `x` mean nothing inside the dialog.
        assert!(msg(&m, KeyCode::Char('c')).is_none());
        assert!(msg(&m, KeyCode::Char('x')).is_none());
    }

    #[test]
    fn abort_dialog_asks_hold_or_roll_back() {
        let mut m = model();
        m.dialog = Some(Dialog::CanaryAbort { quit: true });
        let cases = [
            (KeyCode::Char('h'), "CanaryChoice(Hold)"),
            (KeyCode::Char('r'), "CanaryChoice(RollBack)"),
            (KeyCode::Enter, "CanaryChoice(RollBack)"),
            (KeyCode::Esc, "Cancel"),
        ];
        for (code, want) in cases {
            assert_eq!(msg(&m, code).as_deref(), Some(want), "{code:?}");
        }
        assert!(msg(&m, KeyCode::Char('q')).is_none());
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert!(matches!(message_for(&k, &m), Some(Message::Quit)));
    }

    #[test]
    fn esc_on_the_progress_view_aborts_the_canary() {
        let mut m = super::super::testing::detail();
        assert_eq!(msg(&m, KeyCode::Esc).as_deref(), Some("Back"));
        m.canary = Some(super::super::testing::canary_run());
        assert_eq!(msg(&m, KeyCode::Esc).as_deref(), Some("CanaryAbort"));
        m.screen = Screen::Routes;
        assert_eq!(msg(&m, KeyCode::Esc).as_deref(), Some("Back"));
        assert_eq!(msg(&m, KeyCode::Char('x')).as_deref(), Some("CanaryAbort"));
    }

    #[test]
    fn releases_are_ignored() {
        let m = model();
        let k = KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        };
        assert!(message_for(&k, &m).is_none());
    }
}
