//! The console's state: everything `view` draws and `update` changes. No I/O, no clock: time
//! comes in with `Message::Tick`.

use std::collections::VecDeque;

use gatewayd::admin::model::{Event, RouteDetail, RouteInfo, Stats, UpstreamInfo, WeightsUpdate};
use ratatui::widgets::TableState;

use crate::aggregate::{merge_stats, merge_upstreams, RouteAgg};
use crate::rollout::{FlipPreview, Guard, Observed, Weights};

/// Keep at most this many events.
pub const MAX_EVENTS: usize = 500;
/// A gateway whose last good answer is older than this many seconds is shown as stale.
pub const STALE_AFTER_SECS: u64 = 3;
/// Default `+`/`-` step in percentage points.
pub const DEFAULT_STEP: u32 = 10;

/// Which screen is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// All routes.
    Routes,
    /// One route in depth.
    RouteDetail,
    /// Services and endpoints.
    Upstreams,
    /// Live events.
    Events,
}

/// Loading state of a panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadState {
    /// Nothing asked yet.
    Idle,
    /// Asked, no answer yet.
    Loading,
    /// Data is there (possibly old: see the gateway's `last_ok`).
    Loaded,
    /// The last attempt failed, with why.
    Failed(String),
}

/// One gateway (one `--admin` URL) and its latest answers.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Admin URL.
    pub label: String,
    /// State of the last refresh.
    pub state: LoadState,
    /// Unix second of the last successful refresh.
    pub last_ok: Option<u64>,
    /// Generation of the refresh in flight or last sent.
    pub generation: u64,
    /// A refresh is in flight.
    pub in_flight: bool,
    /// Last known routes (kept when a refresh fails).
    pub routes: Vec<RouteInfo>,
    /// Last known stats.
    pub stats: Option<Stats>,
    /// Last known upstreams.
    pub upstreams: Vec<UpstreamInfo>,
    /// The event stream is connected.
    pub events_connected: bool,
}

/// One row of the routes screen: the route merged over gateways.
#[derive(Debug, Clone)]
pub struct RouteRow {
    /// The route as the first answering gateway has it.
    pub info: RouteInfo,
    /// Merged stats (`None`: no gateway has stats for it yet).
    pub agg: Option<RouteAgg>,
    /// Seconds the staleest backend service has been stale in discovery.
    pub service_stale: Option<f64>,
}

/// The route detail screen.
#[derive(Debug, Clone)]
pub struct Detail {
    /// Route shown.
    pub route: String,
    /// Generation of the route being shown; results of older ones are dropped.
    pub generation: u64,
    /// State of the detail fetch.
    pub state: LoadState,
    /// Last detail (history of weight changes).
    pub data: Option<RouteDetail>,
    /// Show the rollback dialog once the detail arrives.
    pub pending_rollback: bool,
}

/// One received event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Index of the gateway that sent it.
    pub gateway: usize,
    /// The event.
    pub event: Event,
}

/// A confirmation dialog.
#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    /// Flip a two-backend route.
    Flip {
        /// What would happen.
        preview: FlipPreview,
        /// Revision the flip is conditional on.
        revision: u64,
    },
    /// Put back the weights before the last change.
    Rollback {
        /// Route name.
        route: String,
        /// The update to send.
        update: WeightsUpdate,
        /// Weights now.
        from: crate::rollout::Weights,
    },
    /// Start a guarded canary.
    CanaryStart(CanaryForm),
    /// Abort the running canary: hold or roll back (Esc keeps it running).
    CanaryAbort {
        /// Quit once decided.
        quit: bool,
    },
}

/// Step presets of the canary dialog (the first is the default).
pub const CANARY_STEPS: [&[u32]; 5] = [
    &[10, 25, 50, 100],
    &[5, 25, 50, 100],
    &[1, 5, 25, 50, 100],
    &[25, 50, 100],
    &[50, 100],
];
/// Interval presets of the canary dialog, in seconds.
pub const CANARY_INTERVALS: [u64; 5] = [10, 30, 60, 120, 300];
/// Default interval: 30 s.
pub const CANARY_INTERVAL_DEFAULT: usize = 1;
/// Max error rate presets of the canary dialog (fractions).
pub const CANARY_ERROR_RATES: [f64; 5] = [0.001, 0.005, 0.01, 0.02, 0.05];
/// Default max error rate: 1%.
pub const CANARY_ERROR_RATE_DEFAULT: usize = 2;
/// Max p99 ratio presets of the canary dialog.
pub const CANARY_P99_RATIOS: [f64; 5] = [1.1, 1.25, 1.5, 2.0, 3.0];
/// Default max p99 ratio: 1.5.
pub const CANARY_P99_RATIO_DEFAULT: usize = 2;
/// Fewest requests each side needs in a window (as `gwctl canary`'s default).
pub const CANARY_MIN_REQUESTS: u64 = 20;
/// Fields of the canary dialog, in order.
pub const CANARY_FIELDS: usize = 5;

/// The start dialog of a guarded canary: each field is an index into its presets.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryForm {
    /// Route name.
    pub route: String,
    /// The route's backends (the target cycles through them).
    pub backends: Vec<String>,
    /// Index into `backends`.
    pub target: usize,
    /// Index into [`CANARY_STEPS`].
    pub steps: usize,
    /// Index into [`CANARY_INTERVALS`].
    pub interval: usize,
    /// Index into [`CANARY_ERROR_RATES`].
    pub max_error_rate: usize,
    /// Index into [`CANARY_P99_RATIOS`].
    pub max_p99_ratio: usize,
    /// Field with the cursor (0 target … 4 p99 ratio).
    pub field: usize,
}

impl CanaryForm {
    /// The target backend.
    pub fn to(&self) -> &str {
        self.backends.get(self.target).map_or("", String::as_str)
    }

    /// The guard thresholds chosen.
    pub fn guard(&self) -> Guard {
        Guard {
            max_error_rate: CANARY_ERROR_RATES[self.max_error_rate],
            max_p99_ratio: CANARY_P99_RATIOS[self.max_p99_ratio],
            min_requests: CANARY_MIN_REQUESTS,
        }
    }

    /// Moves field `field`'s choice by `delta`, wrapping around.
    pub fn adjust(&mut self, delta: i32) {
        let (value, len) = match self.field {
            0 => (&mut self.target, self.backends.len()),
            1 => (&mut self.steps, CANARY_STEPS.len()),
            2 => (&mut self.interval, CANARY_INTERVALS.len()),
            3 => (&mut self.max_error_rate, CANARY_ERROR_RATES.len()),
            _ => (&mut self.max_p99_ratio, CANARY_P99_RATIOS.len()),
        };
        if len > 0 {
            *value = wrap(*value, delta, len);
        }
    }
}

/// `value + delta` modulo `len` (`len` > 0).
pub fn wrap(value: usize, delta: i32, len: usize) -> usize {
    let len = len as i64;
    (((value as i64 + i64::from(delta)) % len + len) % len) as usize
}

/// Where a console canary is.
#[derive(Debug, Clone, PartialEq)]
pub enum CanaryPhase {
    /// The weights of the current step are being written.
    Setting,
    /// Watching the current step: a sample is on its way.
    Watching,
    /// The starting weights are being written back, because of `why`.
    RollingBack {
        /// Why it rolls back.
        why: String,
    },
    /// Every step passed.
    Completed,
    /// Rolled back to the starting weights, because of `why`.
    RolledBack {
        /// Why.
        why: String,
    },
    /// Stopped by the user at the current weights.
    Held,
    /// Stopped without rolling back (conflict or failed rollback), with why.
    Stopped {
        /// Why.
        why: String,
    },
}

/// What the user chose when aborting a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortChoice {
    /// Stop at the current weights.
    Hold,
    /// Put the starting weights back.
    RollBack,
}

/// A guarded canary run from the console (at most one at a time).
#[derive(Debug, Clone)]
pub struct CanaryRun {
    /// Tag of the run's worker results; bumped when it stops, so late results are dropped.
    pub generation: u64,
    /// Route name.
    pub route: String,
    /// Backend traffic moves to.
    pub to: String,
    /// Backend the canary is compared with.
    pub baseline: String,
    /// Canary percentages.
    pub steps: Vec<u32>,
    /// Watch time of each step, in seconds.
    pub interval: u64,
    /// Thresholds.
    pub guard: Guard,
    /// Weights before the first step (what a rollback puts back).
    pub start: Weights,
    /// File weights at the start (split fallback).
    pub file: Weights,
    /// Revision of the last write (the next write is conditional on it).
    pub revision: u64,
    /// Index of the current step.
    pub step: usize,
    /// Where it is.
    pub phase: CanaryPhase,
    /// Sample at the start of the current step (`None` until it arrives).
    pub begin: Option<Vec<Option<Stats>>>,
    /// Seconds of polls watched in the current step.
    pub elapsed: u64,
    /// Unix second the current step's window began (for the countdown).
    pub window_started: u64,
    /// The canary's window so far in the current step.
    pub canary_seen: Option<Observed>,
    /// The baseline's window so far in the current step.
    pub baseline_seen: Option<Observed>,
    /// The baseline's latest window with enough requests (across steps).
    pub last_baseline: Option<Observed>,
    /// Latest verdict or waiting note, one line.
    pub note: Option<String>,
    /// An abort chosen while a write was in flight, applied when it lands.
    pub pending_abort: Option<AbortChoice>,
    /// Quit once the run has stopped.
    pub quit_after: bool,
}

impl CanaryRun {
    /// Still changing weights (not completed, rolled back, held or stopped).
    pub fn active(&self) -> bool {
        matches!(
            self.phase,
            CanaryPhase::Setting | CanaryPhase::Watching | CanaryPhase::RollingBack { .. }
        )
    }

    /// Percent of the current step.
    pub fn percent(&self) -> u32 {
        self.steps.get(self.step).copied().unwrap_or(100)
    }

    /// Seconds left in the current step's interval at `now` (0 when over).
    pub fn left(&self, now: u64) -> u64 {
        if self.begin.is_none() {
            return self.interval;
        }
        let watched = self.elapsed.max(now.saturating_sub(self.window_started));
        self.interval.saturating_sub(watched)
    }
}

/// A transient message in the status bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Text.
    pub text: String,
    /// Shown as an error.
    pub error: bool,
}

/// The console's whole state.
#[derive(Debug, Clone)]
pub struct Model {
    /// Current unix second (from the last tick).
    pub now: u64,
    /// Current screen.
    pub screen: Screen,
    /// One per `--admin`.
    pub gateways: Vec<Gateway>,
    /// Routes merged over gateways, filtered rows are chosen in `visible_rows`.
    pub rows: Vec<RouteRow>,
    /// Upstreams merged over gateways.
    pub upstreams: Vec<UpstreamInfo>,
    /// Selection on the routes screen (index into `visible_rows`).
    pub routes_table: TableState,
    /// Selection on the upstreams screen.
    pub upstreams_table: TableState,
    /// Selection on the events screen.
    pub events_table: TableState,
    /// Route filter (substring of name or match).
    pub filter: String,
    /// Typing into the filter.
    pub filtering: bool,
    /// Route detail screen state.
    pub detail: Detail,
    /// Newest first.
    pub events: VecDeque<EventRow>,
    /// Open confirmation dialog.
    pub dialog: Option<Dialog>,
    /// Help overlay shown.
    pub help: bool,
    /// Status bar message.
    pub notice: Option<Notice>,
    /// `+`/`-` step in percentage points.
    pub step: u32,
    /// A weight change is in flight.
    pub writing: bool,
    /// The user asked to quit.
    pub quit: bool,
    /// `changed_by` of the changes made from the console.
    pub who: String,
    /// The console's guarded canary (running or finished, until the next one starts).
    pub canary: Option<CanaryRun>,
    /// Generation of the last canary started.
    pub canary_generation: u64,
}

// === impl Model ===

impl Model {
    /// A model for these admin URLs, before any answer.
    pub fn new(labels: &[String]) -> Self {
        Self {
            now: 0,
            screen: Screen::Routes,
            gateways: labels
                .iter()
                .map(|l| Gateway {
                    label: l.clone(),
                    state: LoadState::Idle,
                    last_ok: None,
                    generation: 0,
                    in_flight: false,
                    routes: Vec::new(),
                    stats: None,
                    upstreams: Vec::new(),
                    events_connected: false,
                })
                .collect(),
            rows: Vec::new(),
            upstreams: Vec::new(),
            routes_table: TableState::default().with_selected(Some(0)),
            upstreams_table: TableState::default().with_selected(Some(0)),
            events_table: TableState::default().with_selected(Some(0)),
            filter: String::new(),
            filtering: false,
            detail: Detail {
                route: String::new(),
                generation: 0,
                state: LoadState::Idle,
                data: None,
                pending_rollback: false,
            },
            events: VecDeque::new(),
            dialog: None,
            help: false,
            notice: None,
            step: DEFAULT_STEP,
            writing: false,
            quit: false,
            who: "gwctl".into(),
            canary: None,
            canary_generation: 0,
        }
    }

    /// Overall state of the route data: loaded when any gateway has answered once, failed
    /// (with the first error) when none has and one failed, loading otherwise.
    pub fn routes_state(&self) -> LoadState {
        if self.gateways.iter().any(|g| g.last_ok.is_some()) {
            return LoadState::Loaded;
        }
        if let Some(LoadState::Failed(e)) = self
            .gateways
            .iter()
            .map(|g| &g.state)
            .find(|s| matches!(s, LoadState::Failed(_)))
        {
            return LoadState::Failed(e.clone());
        }
        if self.gateways.iter().all(|g| g.state == LoadState::Idle) {
            LoadState::Idle
        } else {
            LoadState::Loading
        }
    }

    /// Rows matching the filter, in order.
    pub fn visible_rows(&self) -> Vec<&RouteRow> {
        let f = self.filter.to_lowercase();
        self.rows
            .iter()
            .filter(|r| {
                f.is_empty()
                    || r.info.name.to_lowercase().contains(&f)
                    || crate::format::route_match(&r.info)
                        .to_lowercase()
                        .contains(&f)
            })
            .collect()
    }

    /// The route under the cursor (routes screen) or shown (detail screen).
    pub fn selected_route(&self) -> Option<&RouteRow> {
        match self.screen {
            Screen::RouteDetail => self.rows.iter().find(|r| r.info.name == self.detail.route),
            _ => {
                let rows = self.visible_rows();
                let i = self.routes_table.selected().unwrap_or(0);
                rows.get(i).copied()
            }
        }
    }

    /// Seconds since the freshest gateway answered (`None` before any answer).
    pub fn data_age(&self) -> Option<u64> {
        self.gateways
            .iter()
            .filter_map(|g| g.last_ok)
            .max()
            .map(|t| self.now.saturating_sub(t))
    }

    /// The canary when it is still changing weights.
    pub fn active_canary(&self) -> Option<&CanaryRun> {
        self.canary.as_ref().filter(|c| c.active())
    }

    /// Index of the gateway writes go to: the first whose last refresh succeeded, else 0.
    pub fn writer(&self) -> usize {
        self.gateways
            .iter()
            .position(|g| g.state == LoadState::Loaded)
            .unwrap_or(0)
    }

    /// Rebuilds the merged rows and upstreams from the gateways' latest answers.
    pub fn rebuild(&mut self) {
        let stats: Vec<&Stats> = self
            .gateways
            .iter()
            .filter_map(|g| g.stats.as_ref())
            .collect();
        let merged = merge_stats(stats);
        let lists: Vec<&[UpstreamInfo]> = self
            .gateways
            .iter()
            .map(|g| g.upstreams.as_slice())
            .collect();
        self.upstreams = merge_upstreams(&lists);
        let source = self
            .gateways
            .iter()
            .filter(|g| !g.routes.is_empty())
            .min_by_key(|g| g.state != LoadState::Loaded);
        let routes = source.map(|g| g.routes.clone()).unwrap_or_default();
        self.rows = routes
            .into_iter()
            .map(|info| {
                let service_stale = info
                    .backends
                    .iter()
                    .filter_map(|b| self.upstreams.iter().find(|u| u.service == b.service))
                    .filter(|u| u.stale)
                    .map(|u| u.stale_seconds.unwrap_or(0.0))
                    .reduce(f64::max);
                RouteRow {
                    agg: merged.iter().find(|r| r.route == info.name).cloned(),
                    info,
                    service_stale,
                }
            })
            .collect();
        let visible = self.visible_rows().len();
        clamp(&mut self.routes_table, visible);
        clamp(
            &mut self.upstreams_table,
            upstream_row_count(&self.upstreams),
        );
    }
}

/// Rows of the upstreams table: one per service plus one per endpoint.
pub fn upstream_row_count(ups: &[UpstreamInfo]) -> usize {
    ups.iter().map(|u| 1 + u.endpoints.len()).sum()
}

/// Keeps a selection inside `0..len`.
pub fn clamp(t: &mut TableState, len: usize) {
    let sel = t.selected().unwrap_or(0);
    t.select(Some(sel.min(len.saturating_sub(1))));
}
