//! Keys → Messages. The mode decides: typing a filter, a dialog, the help overlay, or normal.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::message::Message;
use super::model::{Model, Screen};

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
