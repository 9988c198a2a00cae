#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;

use gatewayd::admin::model::{ApiError, WeightChange};

use super::*;
use crate::test_fixtures::{self, stats_with};

/// One backend's simulated traffic: cumulative counters and a fixed latency and error rate.
#[derive(Clone, Copy)]
struct Side {
    requests: u64,
    errors: u64,
    error_rate: f64,
    latency_us: u64,
}

/// A scripted world: every `sample` is one poll later, and the route's `per_poll` requests are
/// split by the weights last written; pauses never really wait.
struct Fake {
    detail: RouteDetail,
    weights: Weights,
    per_poll: u64,
    blue: Side,
    green: Side,
    puts: Vec<WeightsUpdate>,
    put_errors: VecDeque<Option<u16>>,
    interrupt_at_pause: Option<usize>,
    pauses: usize,
    choice: Choice,
    said: Vec<String>,
}

impl Fake {
    fn new(green_error_rate: f64, green_latency_us: u64) -> Self {
        let mut detail = test_fixtures::route_detail();
        // Start from blue=100 green=0 at revision 7.
        detail.route.backends[0].weight = 100;
        detail.route.backends[1].weight = 0;
        let side = |error_rate, latency_us| Side {
            requests: 0,
            errors: 0,
            error_rate,
            latency_us,
        };
        Self {
            weights: weights_of(&detail.route),
            detail,
            per_poll: 20,
            blue: side(0.0, 10_000),
            green: side(green_error_rate, green_latency_us),
            puts: Vec::new(),
            put_errors: VecDeque::new(),
            interrupt_at_pause: None,
            pauses: 0,
            choice: Choice::RollBack,
            said: Vec::new(),
        }
    }

    fn advance(&mut self) {
        let total: u32 = self.weights.values().sum();
        for (name, side) in [("blue", &mut self.blue), ("green", &mut self.green)] {
            let w = u64::from(self.weights.get(name).copied().unwrap_or(0));
            let n = self.per_poll * w / u64::from(total.max(1));
            side.requests += n;
            side.errors += (n as f64 * side.error_rate).round() as u64;
        }
    }
}

impl CanaryIo for Fake {
    async fn route(&mut self) -> Result<RouteDetail, ClientError> {
        Ok(self.detail.clone())
    }

    async fn put(&mut self, update: &WeightsUpdate) -> Result<WeightsChanged, ClientError> {
        self.puts.push(update.clone());
        if let Some(Some(status)) = self.put_errors.pop_front() {
            return Err(ClientError::Api {
                url: "fake".into(),
                status,
                body: ApiError {
                    error: "conflict".into(),
                    message: "revision is 99".into(),
                    field: None,
                    current_revision: Some(99),
                },
            });
        }
        self.weights = update.weights.clone();
        let rev = update.expected_revision.unwrap() + 1;
        Ok(WeightsChanged {
            route: self.detail.route.clone(),
            change: WeightChange {
                revision: rev,
                previous: Default::default(),
                weights: update.weights.clone(),
                changed_by: "t".into(),
                changed_at: "now".into(),
                reason: update.reason.clone().unwrap_or_default(),
            },
        })
    }

    async fn sample(&mut self) -> Vec<Option<Stats>> {
        let (b, g) = (self.blue, self.green);
        vec![Some(stats_with(
            "api",
            &[
                ("blue", b.requests, b.errors, &lat(b.requests, b.latency_us)),
                (
                    "green",
                    g.requests,
                    g.errors,
                    &lat(g.requests, g.latency_us),
                ),
            ],
        ))]
    }

    async fn pause(&mut self, _d: Duration) -> Pause {
        self.pauses += 1;
        self.advance();
        if self.interrupt_at_pause == Some(self.pauses) {
            Pause::Interrupted
        } else {
            Pause::Elapsed
        }
    }

    async fn ask(&mut self) -> Choice {
        self.choice
    }

    fn say(&mut self, line: String) {
        self.said.push(line);
    }
}

fn plan(steps: &[u32]) -> Plan {
    Plan {
        route: "api".into(),
        to: "green".into(),
        baseline: None,
        steps: steps.to_vec(),
        // poll = 1s (interval / 6 floored at 1s): 6 polls per interval.
        interval: Duration::from_secs(6),
        guard: Guard {
            max_error_rate: 0.01,
            max_p99_ratio: 1.5,
            min_requests: 20,
        },
        reason: None,
        changed_by: "tester".into(),
    }
}

fn lat(n: u64, us: u64) -> Vec<u64> {
    vec![us; n as usize]
}

fn run_sync(fake: &mut Fake, plan: &Plan) -> (Report, Result<(), CliError>) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(run(fake, plan))
}

#[test]
fn healthy_canary_walks_every_step() {
    let mut fake = Fake::new(0.0, 11_000);
    let (report, result) = run_sync(&mut fake, &plan(&[50, 100]));
    result.unwrap();
    assert_eq!(report.outcome, "completed");
    let weights: Vec<String> = fake
        .puts
        .iter()
        .map(|u| format_weights(&u.weights))
        .collect();
    assert_eq!(weights, ["blue=50 green=50", "blue=0 green=100"]);
    // Each write is conditional on the revision we saw or wrote last.
    let revs: Vec<_> = fake.puts.iter().map(|u| u.expected_revision).collect();
    assert_eq!(revs, [Some(7), Some(8)]);
    assert!(fake.puts[0]
        .reason
        .as_deref()
        .unwrap()
        .starts_with("canary step 1/2"));
    assert_eq!(fake.pauses, 12, "one interval of six polls per step");
    // Step 2 (100%): blue gets no traffic; its window from step 1 is the baseline.
    assert!(report.steps[1]
        .verdict
        .as_deref()
        .unwrap()
        .contains("1.10× blue"));
}

#[test]
fn a_failing_guard_rolls_back_to_the_starting_weights_at_once() {
    let mut fake = Fake::new(0.1, 10_000);
    let (report, result) = run_sync(&mut fake, &plan(&[50, 100]));
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), crate::error::EXIT_FAILED);
    assert!(
        err.to_string()
            .contains("green error rate 10.00% exceeds 1.00%"),
        "{err}"
    );
    assert_eq!(report.outcome, "rolled_back");
    assert_eq!(fake.pauses, 2, "judged as soon as green had 20 requests");
    let last = fake.puts.last().unwrap();
    assert_eq!(format_weights(&last.weights), "blue=100 green=0");
    assert_eq!(last.expected_revision, Some(8));
    assert!(last
        .reason
        .as_deref()
        .unwrap()
        .starts_with("canary rollback: step 1/2"));
}

#[test]
fn the_window_is_the_difference_not_the_totals() {
    // Green failed a lot before the canary (500 of 1000, slow); only the window counts.
    let mut fake = Fake::new(0.0, 10_000);
    fake.green.requests = 1000;
    fake.green.errors = 500;
    let (_, result) = run_sync(&mut fake, &plan(&[50]));
    result.unwrap();
}

#[test]
fn slow_canary_fails_the_p99_ratio() {
    let mut fake = Fake::new(0.0, 20_000);
    let (_, result) = run_sync(&mut fake, &plan(&[50]));
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("green p99 20.0ms is 2.00× blue's 10.0ms"),
        "{err}"
    );
}

#[test]
fn too_little_traffic_waits_then_gives_up() {
    let mut fake = Fake::new(0.0, 10_000);
    fake.per_poll = 10; // 1 green request per poll at 10%
    let (report, result) = run_sync(&mut fake, &plan(&[10]));
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains("green has 18 requests in this window (need 20) after 18s"),
        "{err}"
    );
    assert_eq!(fake.pauses, 18, "three intervals of six polls");
    assert_eq!(report.outcome, "rolled_back");
    assert!(fake.said.iter().any(|l| l.contains("waiting for traffic")));
}

#[test]
fn a_conflict_stops_without_overwriting_the_other_change() {
    let mut fake = Fake::new(0.0, 10_000);
    fake.put_errors = VecDeque::from([Some(409)]);
    let (report, result) = run_sync(&mut fake, &plan(&[10]));
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), crate::error::EXIT_CONFLICT);
    assert_eq!(fake.puts.len(), 1);
    assert_eq!(report.outcome, "stopped");
}

#[test]
fn interrupt_holds_or_rolls_back_as_asked() {
    let mut fake = Fake::new(0.0, 10_000);
    fake.interrupt_at_pause = Some(2);
    fake.choice = Choice::Hold;
    let (report, result) = run_sync(&mut fake, &plan(&[10, 100]));
    assert!(result
        .unwrap_err()
        .to_string()
        .contains("holding at blue=90 green=10"));
    assert_eq!(report.outcome, "held");
    assert_eq!(fake.puts.len(), 1);

    let mut fake = Fake::new(0.0, 10_000);
    fake.interrupt_at_pause = Some(2);
    let (report, result) = run_sync(&mut fake, &plan(&[10, 100]));
    assert!(result
        .unwrap_err()
        .to_string()
        .contains("canary interrupted; rolled back"));
    assert_eq!(report.outcome, "rolled_back");
    assert_eq!(format_weights(&fake.puts[1].weights), "blue=100 green=0");
}

#[test]
fn bad_plans_are_usage_errors_before_any_write() {
    let mut fake = Fake::new(0.0, 10_000);
    let mut p = plan(&[10]);
    p.to = "purple".into();
    let (_, result) = run_sync(&mut fake, &p);
    assert_eq!(result.unwrap_err().exit_code(), crate::error::EXIT_USAGE);
    let mut p = plan(&[10]);
    p.baseline = Some("green".into());
    let (_, result) = run_sync(&mut fake, &p);
    assert_eq!(result.unwrap_err().exit_code(), crate::error::EXIT_USAGE);
    assert!(fake.puts.is_empty());
}
