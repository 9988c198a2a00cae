//! `gwctl canary ROUTE --to green --steps 5,25,50,100 --interval 30s …`: a guarded rollout.
//!
//! Each step sets the weights (with the revision we last wrote, so a concurrent change stops
//! us instead of being overwritten), then judges the canary over the interval on the
//! *difference* of the merged counters and histograms between the interval's start and now.
//! The moment a guard fails the starting weights are put back. Ctrl-C asks hold / roll back
//! (without a terminal on stdin: roll back).

use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Args;
use gatewayd::admin::model::{RouteDetail, Stats, WeightsChanged, WeightsUpdate};
use serde::Serialize;

use super::output::print_json;
use super::whoami;
use crate::client::AdminClient;
use crate::error::{CliError, ClientError};
use crate::rollout::{
    canary_baseline, file_weights_of, format_weights, guard_failed, judge, observe, parse_rate,
    parse_steps, poll_period, rollback_conflict, rollback_failed, rollback_to_start, step_conflict,
    step_failed, step_update, weights_of, CanaryAuthor, Guard, Judgement, Observed, Weights,
};

/// Arguments of `gwctl canary`.
#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// Route name.
    pub route: String,
    /// Backend to move traffic to.
    #[arg(long)]
    pub to: String,
    /// Canary percentages, strictly increasing, 1–100.
    #[arg(long, default_value = "5,25,50,100", value_parser = steps_arg)]
    pub steps: Steps,
    /// How long each step is watched before the next.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Highest canary error rate (5xx) tolerated within an interval: `1%` or `0.01`.
    #[arg(long, default_value = "1%", value_parser = rate_arg)]
    pub max_error_rate: f64,
    /// Highest canary p99 / baseline p99 tolerated within an interval.
    #[arg(long, default_value_t = 1.5, value_parser = ratio_arg)]
    pub max_p99_ratio: f64,
    /// Backend to compare with (default: the other backend with the most weight at the start).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Fewest requests each side needs in an interval before it is judged.
    #[arg(long, default_value_t = 20)]
    pub min_requests: u64,
    /// Text added to each change's reason in the history.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Parsed `--steps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steps(pub Vec<u32>);

/// What the user wants after Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    Hold,
    RollBack,
}

/// How a pause ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    Elapsed,
    Interrupted,
}

/// The world the canary acts on; the real one talks to gateways, tests script it.
pub(crate) trait CanaryIo {
    async fn route(&mut self) -> Result<RouteDetail, ClientError>;
    async fn put(&mut self, update: &WeightsUpdate) -> Result<WeightsChanged, ClientError>;
    /// Stats of every gateway (`None` for one that did not answer).
    async fn sample(&mut self) -> Vec<Option<Stats>>;
    async fn pause(&mut self, d: Duration) -> Pause;
    async fn ask(&mut self) -> Choice;
    fn say(&mut self, line: String);
}

/// A canary run, fully decided.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub route: String,
    pub to: String,
    pub baseline: Option<String>,
    pub steps: Vec<u32>,
    pub interval: Duration,
    pub guard: Guard,
    pub reason: Option<String>,
    pub changed_by: String,
}

/// The record of a run (printed with `--json`).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    pub route: String,
    pub to: String,
    pub baseline: String,
    pub start_weights: Weights,
    /// `completed`, `rolled_back`, `held` or `stopped`.
    pub outcome: String,
    pub why: Option<String>,
    pub steps: Vec<StepReport>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StepReport {
    pub percent: u32,
    pub weights: Weights,
    pub revision: u64,
    pub verdict: Option<String>,
}

/// `gwctl canary`.
pub async fn canary(clients: &[AdminClient], args: &CanaryArgs, json: bool) -> anyhow::Result<()> {
    if clients.is_empty() {
        return Err(CliError::Usage("no --admin".into()).into());
    }
    let plan = Plan {
        route: args.route.clone(),
        to: args.to.clone(),
        baseline: args.baseline.clone(),
        steps: args.steps.0.clone(),
        interval: args.interval,
        guard: Guard {
            max_error_rate: args.max_error_rate,
            max_p99_ratio: args.max_p99_ratio,
            min_requests: args.min_requests,
        },
        reason: args.reason.clone(),
        changed_by: whoami(),
    };
    let sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut io = LiveIo {
        clients,
        route: plan.route.clone(),
        writer: 0,
        sigint,
        json,
    };
    let (report, result) = run(&mut io, &plan).await;
    if json {
        print_json(&report)?;
    }
    result.map_err(anyhow::Error::from)
}

/// Runs the canary; the report is filled whatever happens.
pub(crate) async fn run<I: CanaryIo>(io: &mut I, plan: &Plan) -> (Report, Result<(), CliError>) {
    let mut report = Report {
        route: plan.route.clone(),
        to: plan.to.clone(),
        ..Report::default()
    };
    let result = drive(io, plan, &mut report).await;
    report.outcome = match (&result, report.outcome.as_str()) {
        (Ok(()), _) => "completed".into(),
        (Err(_), "") => "stopped".into(),
        (Err(_), o) => o.to_string(),
    };
    if let Err(e) = &result {
        report.why = Some(e.to_string());
    }
    (report, result)
}

async fn drive<I: CanaryIo>(io: &mut I, plan: &Plan, report: &mut Report) -> Result<(), CliError> {
    let detail = io.route().await?;
    let route = &detail.route;
    let start = weights_of(route);
    let file = file_weights_of(route);
    let usage = |e: crate::rollout::RolloutError| CliError::Usage(e.to_string());
    // Validates `to` and the baseline before anything changes.
    let baseline = canary_baseline(
        &plan.route,
        &start,
        &file,
        &plan.to,
        plan.steps[0],
        plan.baseline.as_deref(),
    )
    .map_err(usage)?;
    report.baseline = baseline.clone();
    report.start_weights = start.clone();
    io.say(format!(
        "canary {}: moving traffic to {} in steps {:?}, {}s each; baseline {baseline}; start {}",
        plan.route,
        plan.to,
        plan.steps,
        plan.interval.as_secs(),
        format_weights(&start)
    ));
    let author = author(plan);
    let mut rev = route.weights.revision;
    let mut last_baseline: Option<Observed> = None;
    let poll = poll_period(plan.interval);
    let n = plan.steps.len();
    for (i, pct) in plan.steps.iter().copied().enumerate() {
        let update = step_update(
            &plan.route,
            &start,
            &file,
            &plan.to,
            &plan.steps,
            i,
            rev,
            &author,
        )
        .map_err(usage)?;
        let weights = update.weights.clone();
        match io.put(&update).await {
            Ok(changed) => rev = changed.change.revision,
            Err(e) if e.is_conflict() => {
                report.outcome = "stopped".into();
                return Err(CliError::Conflict(step_conflict(&plan.route, &e.short())));
            }
            Err(e) => {
                let why = step_failed(i, &e.short());
                return roll_back(io, plan, report, &start, rev, why).await;
            }
        }
        io.say(format!(
            "step {}/{n}: {} (revision {rev})",
            i + 1,
            format_weights(&weights)
        ));
        report.steps.push(StepReport {
            percent: pct,
            weights,
            revision: rev,
            verdict: None,
        });
        let begin = io.sample().await;
        let mut elapsed = Duration::ZERO;
        let mut said_waiting = false;
        loop {
            if io.pause(poll).await == Pause::Interrupted {
                return interrupted(io, plan, report, &start, rev).await;
            }
            elapsed += poll;
            let now = io.sample().await;
            let canary = observe(&begin, &now, &plan.route, &plan.to);
            let base = observe(&begin, &now, &plan.route, &baseline);
            let judgement = judge(
                &plan.guard,
                &canary,
                base,
                &mut last_baseline,
                i,
                n,
                elapsed,
                plan.interval,
            );
            match judgement {
                Judgement::Fail(why) => {
                    set_verdict(report, &why);
                    let why = guard_failed(i, n, pct, &plan.to, &why);
                    return roll_back(io, plan, report, &start, rev, why).await;
                }
                Judgement::Pass(summary) => {
                    io.say(format!("  ok: {summary}"));
                    set_verdict(report, &summary);
                    break;
                }
                Judgement::GiveUp(why) => {
                    return roll_back(io, plan, report, &start, rev, why).await;
                }
                Judgement::Waiting(why) if !said_waiting => {
                    io.say(format!("  waiting for traffic: {why}"));
                    said_waiting = true;
                }
                Judgement::Waiting(_) | Judgement::Watch => {}
            }
        }
    }
    io.say(format!(
        "canary {} complete: {} at {}%",
        plan.route,
        plan.to,
        plan.steps[n - 1]
    ));
    Ok(())
}

fn set_verdict(report: &mut Report, text: &str) {
    if let Some(s) = report.steps.last_mut() {
        s.verdict = Some(text.to_string());
    }
}

fn author(plan: &Plan) -> CanaryAuthor {
    CanaryAuthor {
        changed_by: plan.changed_by.clone(),
        reason: plan.reason.clone(),
    }
}

async fn interrupted<I: CanaryIo>(
    io: &mut I,
    plan: &Plan,
    report: &mut Report,
    start: &Weights,
    rev: u64,
) -> Result<(), CliError> {
    match io.ask().await {
        Choice::Hold => {
            report.outcome = "held".into();
            let at = report
                .steps
                .last()
                .map(|s| format_weights(&s.weights))
                .unwrap_or_default();
            Err(CliError::Failed(format!(
                "canary interrupted; holding at {at} (revision {rev}); `gwctl rollback {}` undoes \
                 the last step",
                plan.route
            )))
        }
        Choice::RollBack => {
            roll_back(io, plan, report, start, rev, "canary interrupted".into()).await
        }
    }
}

async fn roll_back<I: CanaryIo>(
    io: &mut I,
    plan: &Plan,
    report: &mut Report,
    start: &Weights,
    rev: u64,
    why: String,
) -> Result<(), CliError> {
    io.say(format!("FAILED: {why}"));
    let update = rollback_to_start(start, &why, rev, &author(plan));
    match io.put(&update).await {
        Ok(changed) => {
            report.outcome = "rolled_back".into();
            io.say(format!(
                "rolled back to {} (revision {})",
                format_weights(start),
                changed.change.revision
            ));
            Err(CliError::Failed(format!(
                "{why}; rolled back to {}",
                format_weights(start)
            )))
        }
        Err(e) if e.is_conflict() => {
            report.outcome = "stopped".into();
            Err(CliError::Conflict(rollback_conflict(&why, &e.short())))
        }
        Err(e) => {
            report.outcome = "stopped".into();
            Err(CliError::Failed(rollback_failed(
                &why,
                &e.to_string(),
                &plan.route,
                start,
            )))
        }
    }
}

fn steps_arg(s: &str) -> Result<Steps, String> {
    parse_steps(s).map(Steps).map_err(|e| e.to_string())
}

fn rate_arg(s: &str) -> Result<f64, String> {
    parse_rate(s).map_err(|e| e.to_string())
}

fn ratio_arg(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v >= 1.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?}: expected a ratio ≥ 1, e.g. 1.5")),
    }
}

// === impl LiveIo ===

struct LiveIo<'a> {
    clients: &'a [AdminClient],
    route: String,
    /// Index of the gateway writes go to (the first that answered).
    writer: usize,
    sigint: tokio::signal::unix::Signal,
    json: bool,
}

impl CanaryIo for LiveIo<'_> {
    async fn route(&mut self) -> Result<RouteDetail, ClientError> {
        let mut last = None;
        for (i, c) in self.clients.iter().enumerate() {
            match c.route(&self.route).await {
                Ok(d) => {
                    self.writer = i;
                    return Ok(d);
                }
                Err(e) if e.is_unreachable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ClientError::BadUrl {
            url: String::new(),
            reason: "no admin".into(),
        }))
    }

    async fn put(&mut self, update: &WeightsUpdate) -> Result<WeightsChanged, ClientError> {
        let route = self.route.clone();
        self.clients[self.writer].put_weights(&route, update).await
    }

    async fn sample(&mut self) -> Vec<Option<Stats>> {
        super::gather(self.clients, |c| c.stats(false))
            .await
            .into_iter()
            .map(Result::ok)
            .collect()
    }

    async fn pause(&mut self, d: Duration) -> Pause {
        tokio::select! {
            _ = tokio::time::sleep(d) => Pause::Elapsed,
            _ = self.sigint.recv() => Pause::Interrupted,
        }
    }

    async fn ask(&mut self) -> Choice {
        if !std::io::stdin().is_terminal() {
            self.say("interrupted; stdin is not a terminal: rolling back".into());
            return Choice::RollBack;
        }
        eprint!("\ncanary interrupted: [h]old at the current weights or [r]oll back? [r] ");
        let answer = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await;
        match answer {
            Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("h") => Choice::Hold,
            _ => Choice::RollBack,
        }
    }

    fn say(&mut self, line: String) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests;
