//! Test models built from the admin fixtures.

#![allow(clippy::unwrap_used)]

use super::message::{GatewayAnswer, Message};
use super::model::Model;
use super::update::update;
use crate::error::ClientError;
use crate::test_fixtures;

/// The fixtures' "now": 2025-03-14T09:25:00Z.
pub const NOW: u64 = 1_741_944_300;

/// The fixture answers of one gateway.
pub fn answer() -> GatewayAnswer {
    GatewayAnswer {
        routes: Ok(test_fixtures::routes()),
        stats: Ok(test_fixtures::stats()),
        upstreams: Ok(test_fixtures::upstreams()),
    }
}

/// An unreachable gateway's answers.
pub fn unreachable(url: &str) -> GatewayAnswer {
    let e = ClientError::Unreachable {
        url: url.into(),
        reason: "Connection refused (os error 111)".into(),
    };
    GatewayAnswer {
        routes: Err(e.clone()),
        stats: Err(e.clone()),
        upstreams: Err(e),
    }
}

/// Ticks at `now` and feeds gateway `i` the given answer to the refresh the tick asked for.
pub fn feed(model: &mut Model, now: u64, answers: Vec<GatewayAnswer>) {
    update(model, Message::Tick { now });
    for (i, a) in answers.into_iter().enumerate() {
        let generation = model.gateways[i].generation;
        update(
            model,
            Message::Refreshed {
                gateway: i,
                generation,
                result: Box::new(a),
            },
        );
    }
}

/// One gateway, loaded from the fixtures at [`NOW`].
pub fn loaded() -> Model {
    let mut m = Model::new(&["http://127.0.0.1:9901".to_string()]);
    m.who = "tester@host".into();
    feed(&mut m, NOW, vec![answer()]);
    m
}

/// `loaded()` with the detail of `api` open and its history loaded.
pub fn detail() -> Model {
    let mut m = loaded();
    update(&mut m, Message::Open);
    let generation = m.detail.generation;
    update(
        &mut m,
        Message::DetailLoaded {
            generation,
            result: Ok(Box::new(test_fixtures::route_detail())),
        },
    );
    m
}
