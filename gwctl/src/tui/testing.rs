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

/// What the gateway answers to a canary write of `weights`: the change at `revision`.
pub fn changed(
    revision: u64,
    weights: &crate::rollout::Weights,
) -> Box<gatewayd::admin::model::WeightsChanged> {
    let mut route = test_fixtures::routes().remove(0);
    route.weights.revision = revision;
    Box::new(gatewayd::admin::model::WeightsChanged {
        route,
        change: gatewayd::admin::model::WeightChange {
            revision,
            previous: Default::default(),
            weights: weights.clone(),
            changed_by: "tester@host".into(),
            changed_at: "2025-03-14T09:25:00Z".into(),
            reason: "canary".into(),
        },
    })
}

/// One gateway's stats of `api` with cumulative (requests, 5xx, latency µs) of blue and green.
pub fn canary_sample(
    blue: (u64, u64, u64),
    green: (u64, u64, u64),
) -> Vec<Option<gatewayd::admin::model::Stats>> {
    let lat = |(n, _, us): (u64, u64, u64)| vec![us; n as usize];
    vec![Some(test_fixtures::stats_with(
        "api",
        &[
            ("blue", blue.0, blue.1, &lat(blue)),
            ("green", green.0, green.1, &lat(green)),
        ],
    ))]
}

/// `detail()` with a default canary of `api` (green, 10/25/50/100, 30 s) started: the first
/// step written at revision 8 and its window opened. Returns the model.
pub fn canary_watching() -> Model {
    let mut m = detail();
    update(&mut m, Message::CanaryOpen);
    let Some(super::message::Command::CanaryPut {
        update: first,
        generation,
        ..
    }) = update(&mut m, Message::Confirm)
    else {
        panic!("no first step");
    };
    update(
        &mut m,
        Message::CanaryWrote {
            generation,
            result: Ok(changed(8, &first.weights)),
        },
    );
    update(
        &mut m,
        Message::CanarySampled {
            generation,
            samples: canary_sample((1000, 0, 10_000), (100, 0, 11_000)),
        },
    );
    m
}

/// The run of [`canary_watching`].
pub fn canary_run() -> super::model::CanaryRun {
    canary_watching().canary.unwrap()
}
