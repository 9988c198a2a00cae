//! Messages into `update` (user intents and worker results) and Commands out of it (I/O the
//! worker performs).

use gatewayd::admin::model::{
    Event, FlipRequest, RouteDetail, RouteInfo, Stats, UpstreamInfo, WeightsChanged, WeightsUpdate,
};

use super::model::{AbortChoice, Screen};
use crate::error::ClientError;

/// Everything that can change the model.
#[derive(Debug, Clone)]
pub enum Message {
    /// A second passed; `now` is the unix second.
    Tick {
        /// Unix second.
        now: u64,
    },
    /// Cursor up.
    Up,
    /// Cursor down.
    Down,
    /// Open the selected route.
    Open,
    /// Back / close.
    Back,
    /// Switch to the next screen.
    NextScreen,
    /// Switch to a screen.
    Show(Screen),
    /// Toggle the help overlay.
    ToggleHelp,
    /// Start typing a filter.
    FilterStart,
    /// A character typed into the filter.
    FilterInput(char),
    /// Backspace in the filter.
    FilterBackspace,
    /// Keep the filter, stop typing.
    FilterDone,
    /// Clear the filter, stop typing.
    FilterCancel,
    /// Flip blue/green of the selected route (asks first).
    Flip,
    /// Move the canary by `±step` (the sign of the value).
    Nudge(i32),
    /// Roll the selected route back to its previous weights (asks first).
    Rollback,
    /// Open the guarded canary dialog for the selected route.
    CanaryOpen,
    /// Move the cursor of the canary dialog by a field (sign of the value).
    FormField(i32),
    /// Cycle the chosen field's preset (sign of the value).
    FormAdjust(i32),
    /// Abort the running canary (asks hold / roll back).
    CanaryAbort,
    /// The answer to the abort dialog.
    CanaryChoice(AbortChoice),
    /// Yes in a dialog.
    Confirm,
    /// No in a dialog.
    Cancel,
    /// Quit.
    Quit,
    /// A gateway's refresh finished.
    Refreshed {
        /// Gateway index.
        gateway: usize,
        /// Generation of the refresh.
        generation: u64,
        /// What came back.
        result: Box<GatewayAnswer>,
    },
    /// A route detail fetch finished.
    DetailLoaded {
        /// Detail generation it was asked for.
        generation: u64,
        /// What came back.
        result: Result<Box<RouteDetail>, ClientError>,
    },
    /// A weight change finished.
    WriteDone {
        /// What came back.
        result: Result<Box<WeightsChanged>, ClientError>,
    },
    /// A canary's weight write finished.
    CanaryWrote {
        /// Canary generation it belongs to.
        generation: u64,
        /// What came back.
        result: Result<Box<WeightsChanged>, ClientError>,
    },
    /// A canary's stats sample arrived: one entry per gateway (`None`: did not answer).
    CanarySampled {
        /// Canary generation it belongs to.
        generation: u64,
        /// `GET /v1/stats` of every gateway.
        samples: Vec<Option<Stats>>,
    },
    /// An event arrived from a gateway's `/v1/events`.
    Event {
        /// Gateway index.
        gateway: usize,
        /// The event.
        event: Box<Event>,
    },
    /// A gateway's event stream connected or dropped.
    EventStream {
        /// Gateway index.
        gateway: usize,
        /// Connected now.
        connected: bool,
    },
}

/// One gateway's answers to a refresh.
#[derive(Debug, Clone)]
pub struct GatewayAnswer {
    /// `GET /v1/routes`.
    pub routes: Result<Vec<RouteInfo>, ClientError>,
    /// `GET /v1/stats?history=true`.
    pub stats: Result<Stats, ClientError>,
    /// `GET /v1/upstreams`.
    pub upstreams: Result<Vec<UpstreamInfo>, ClientError>,
}

/// I/O for the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Several commands.
    Batch(Vec<Command>),
    /// Fetch routes, stats and upstreams of a gateway.
    Refresh {
        /// Gateway index.
        gateway: usize,
        /// Tag for the answer.
        generation: u64,
    },
    /// Fetch a route's detail.
    LoadDetail {
        /// Gateway index.
        gateway: usize,
        /// Route name.
        route: String,
        /// Tag for the answer.
        generation: u64,
    },
    /// `PUT /v1/routes/{route}/weights`.
    PutWeights {
        /// Gateway index.
        gateway: usize,
        /// Route name.
        route: String,
        /// Body.
        update: WeightsUpdate,
    },
    /// A canary's `PUT /v1/routes/{route}/weights`; answers with `Message::CanaryWrote`.
    CanaryPut {
        /// Gateway index.
        gateway: usize,
        /// Route name.
        route: String,
        /// Body (conditional on the canary's last revision).
        update: WeightsUpdate,
        /// Canary generation.
        generation: u64,
    },
    /// Wait `delay_secs`, then fetch `GET /v1/stats` of every gateway; answers with
    /// `Message::CanarySampled`.
    CanarySample {
        /// Seconds to wait first (the poll period; 0 for a step's first sample).
        delay_secs: u64,
        /// Canary generation.
        generation: u64,
    },
    /// `POST /v1/routes/{route}/flip`.
    Flip {
        /// Gateway index.
        gateway: usize,
        /// Route name.
        route: String,
        /// Body.
        request: FlipRequest,
    },
}
