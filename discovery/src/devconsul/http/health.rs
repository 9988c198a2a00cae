//! `/v1/health/*` (consul-api.md §3): the service view with `passing`/`tag`/`filter`, and the
//! check lists.

use ::http::StatusCode;

use super::agent::{keep, parse_filter};
use super::params::bool_flag;
use super::{json, text, Ctx, ReadOpts, Resp};
use crate::devconsul::blocking;
use crate::devconsul::state::{CheckRec, ServiceRec, State, Status};
use crate::devconsul::wire::{CheckJson, HealthEntryJson, NodeJson, ServiceJson};

/// `GET /v1/health/service/:service` with `passing`, `tag`, `filter` (applied after blocking,
/// so the index covers the whole service).
pub(crate) async fn health_service(ctx: &Ctx<'_>, name: &str) -> Resp {
    let opts = match ReadOpts::parse_read(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let Ok(passing) = bool_flag(&ctx.params, "passing") else {
        return text(StatusCode::BAD_REQUEST, "Invalid value for ?passing");
    };
    let filter = match parse_filter(ctx) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let tags: Vec<String> = ctx.params.all("tag").map(str::to_owned).collect();
    let (entries, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        (
            health_entries(st, name),
            st.observed(st.catalog.service_index(name)),
        )
    })
    .await;
    let kept: Vec<HealthEntryJson> = entries
        .into_iter()
        .filter(|(svc, _)| has_tags(&svc.tags, &tags))
        .filter(|(_, e)| !passing || e.checks_pass)
        .map(|(_, e)| e.json)
        .filter(|e| keep(filter.as_ref(), e))
        .collect();
    opts.meta(ctx, index, json(StatusCode::OK, &kept))
}

/// `GET /v1/health/state/:state` (`any|passing|warning|critical`): a flat list of checks.
pub(crate) async fn health_state(ctx: &Ctx<'_>, state: &str) -> Resp {
    let opts = match ReadOpts::parse_read(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let wanted = match state {
        "any" => None,
        s => match Status::parse(s) {
            Some(status) => Some(status),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("Invalid check state: {s}"),
                )
            }
        },
    };
    let filter = match parse_filter(ctx) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let (checks, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        let checks: Vec<CheckJson> = st
            .catalog
            .checks()
            .filter(|c| wanted.map_or(true, |w| c.status == w))
            .map(CheckJson::new)
            .collect();
        (checks, st.observed(st.catalog.checks_table_index()))
    })
    .await;
    let kept: Vec<_> = checks
        .into_iter()
        .filter(|c| keep(filter.as_ref(), c))
        .collect();
    opts.meta(ctx, index, json(StatusCode::OK, &kept))
}

/// `GET /v1/health/checks/:service`: the service's own checks.
pub(crate) async fn health_checks(ctx: &Ctx<'_>, name: &str) -> Resp {
    let opts = match ReadOpts::parse_read(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let (checks, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        let checks: Vec<CheckJson> = st
            .catalog
            .checks()
            .filter(|c| c.service_name == name && !c.service_id.is_empty())
            .map(CheckJson::new)
            .collect();
        (checks, st.observed(st.catalog.service_index(name)))
    })
    .await;
    opts.meta(ctx, index, json(StatusCode::OK, &checks))
}

/// `GET /v1/health/node/:node`: every check of a node.
pub(crate) async fn health_node(ctx: &Ctx<'_>, node: &str) -> Resp {
    let opts = match ReadOpts::parse_read(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let (checks, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        let checks: Vec<CheckJson> = st
            .catalog
            .checks()
            .filter(|c| c.node == node)
            .map(CheckJson::new)
            .collect();
        (checks, st.observed(st.catalog.checks_table_index()))
    })
    .await;
    opts.meta(ctx, index, json(StatusCode::OK, &checks))
}

/// A built health entry plus what the post-blocking filters need.
struct Entry {
    json: HealthEntryJson,
    checks_pass: bool,
}

fn health_entries(st: &State, name: &str) -> Vec<(ServiceRec, Entry)> {
    st.catalog
        .instances(name)
        .filter_map(|svc| {
            let node = st.catalog.node(&svc.node)?;
            let checks: Vec<&CheckRec> = st.catalog.checks_for(&svc.node, &svc.id);
            let checks_pass = checks.iter().all(|c| c.status == Status::Passing);
            let entry = Entry {
                json: HealthEntryJson {
                    node: NodeJson::new(node, &st.datacenter),
                    service: ServiceJson::new(svc),
                    checks: checks.into_iter().map(CheckJson::new).collect(),
                },
                checks_pass,
            };
            Some((svc.clone(), entry))
        })
        .collect()
}

/// Every requested tag must be present (case-insensitive, as Consul compares).
pub(crate) fn has_tags(have: &[String], wanted: &[String]) -> bool {
    wanted
        .iter()
        .all(|w| have.iter().any(|h| h.eq_ignore_ascii_case(w)))
}
