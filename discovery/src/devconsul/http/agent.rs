//! `/v1/agent/*`: local registration, TTL updates and the agent's views (consul-api.md §6).

use std::collections::BTreeMap;

use ::http::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use super::decode::{self, Invalid, Obj};
use super::{decode_failed, empty_ok, json, text, Ctx, Resp};
use crate::devconsul::filter::Filter;
use crate::devconsul::state::{node_id, AgentError, Status};
use crate::devconsul::wire::{AgentServiceJson, CheckJson};

const VERSION: &str = "1.17.0";

/// `GET /v1/agent/self`: minimal but valid.
pub(crate) fn agent_self(ctx: &Ctx<'_>) -> Resp {
    let s = &ctx.shared.settings;
    let id = node_id(&s.node_name);
    json(
        StatusCode::OK,
        &json!({
            "Config": {
                "Datacenter": s.datacenter,
                "PrimaryDatacenter": s.datacenter,
                "NodeName": s.node_name,
                "NodeID": id,
                "Revision": "devconsul",
                "Server": true,
                "Version": VERSION,
                "BuildDate": "2024-01-01T00:00:00Z",
            },
            "DebugConfig": {},
            "Coord": {"Vec": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05},
            "Member": member(ctx),
            "Stats": {},
            "Meta": {"consul-network-segment": ""},
            "xDS": null,
        }),
    )
}

/// `GET /v1/agent/members`.
pub(crate) fn members(ctx: &Ctx<'_>) -> Resp {
    json(StatusCode::OK, &[member(ctx)])
}

fn member(ctx: &Ctx<'_>) -> serde_json::Value {
    let s = &ctx.shared.settings;
    json!({
        "Name": s.node_name,
        "Addr": "127.0.0.1",
        "Port": 8301,
        "Tags": {"dc": s.datacenter, "role": "consul", "build": format!("{VERSION}:devconsul"),
                 "id": node_id(&s.node_name), "port": "8300", "vsn": "2", "bootstrap": "1"},
        "Status": 1,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// `GET /v1/agent/services` (with `?filter`).
pub(crate) fn services(ctx: &Ctx<'_>) -> Resp {
    let filter = match parse_filter(ctx) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let dc = ctx.shared.settings.datacenter.clone();
    let all: BTreeMap<String, AgentServiceJson> = ctx.shared.read(|st| {
        st.catalog
            .services()
            .filter(|s| s.agent_local && s.node == st.node_name)
            .map(|s| (s.id.clone(), AgentServiceJson::new(s, &dc)))
            .collect()
    });
    let kept: BTreeMap<_, _> = all
        .into_iter()
        .filter(|(_, s)| keep(filter.as_ref(), s))
        .collect();
    json(StatusCode::OK, &kept)
}

/// `GET /v1/agent/service/:id`.
pub(crate) fn service(ctx: &Ctx<'_>, id: &str) -> Resp {
    let dc = ctx.shared.settings.datacenter.clone();
    let found = ctx.shared.read(|st| {
        st.catalog
            .service(&st.node_name, id)
            .filter(|s| s.agent_local)
            .map(|s| AgentServiceJson::new(s, &dc))
    });
    match found {
        Some(s) => json(StatusCode::OK, &s),
        None => text(StatusCode::NOT_FOUND, &format!("unknown service ID: {id}")),
    }
}

/// `GET /v1/agent/checks` (with `?filter`).
pub(crate) fn checks(ctx: &Ctx<'_>) -> Resp {
    let filter = match parse_filter(ctx) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let all: BTreeMap<String, CheckJson> = ctx.shared.read(|st| {
        st.catalog
            .checks()
            .filter(|c| c.agent_local && c.node == st.node_name)
            .map(|c| (c.id.clone(), CheckJson::new(c)))
            .collect()
    });
    let kept: BTreeMap<_, _> = all
        .into_iter()
        .filter(|(_, c)| keep(filter.as_ref(), c))
        .collect();
    json(StatusCode::OK, &kept)
}

/// `PUT /v1/agent/service/register[?replace-existing-checks]`.
pub(crate) fn register(ctx: &Ctx<'_>) -> Resp {
    let body = match Obj::parse(&ctx.body) {
        Ok(b) => b,
        Err(e) => return decode_failed(&e),
    };
    let def = match decode::service_definition(&body) {
        Ok(d) => d,
        Err(e) => return invalid(e),
    };
    let replace = match ctx.params.get("replace-existing-checks") {
        None => false,
        Some("") => true,
        Some(v) => super::params::parse_bool(v).unwrap_or(false),
    };
    ctx.shared
        .write(|st| st.agent_register(def, replace, Instant::now()));
    empty_ok()
}

/// `PUT /v1/agent/service/deregister/:id`.
pub(crate) fn deregister(ctx: &Ctx<'_>, id: &str) -> Resp {
    agent_result(ctx.shared.write(|st| st.agent_deregister(id)))
}

/// `PUT /v1/agent/check/register`.
pub(crate) fn register_check(ctx: &Ctx<'_>) -> Resp {
    let body = match Obj::parse(&ctx.body) {
        Ok(b) => b,
        Err(e) => return decode_failed(&e),
    };
    let def = match Obj::of(&body)
        .map_err(Invalid::Decode)
        .and_then(|o| decode::check_definition(&o))
    {
        Ok(Some(d)) => d,
        Ok(None) => return text(StatusCode::BAD_REQUEST, "Missing check name"),
        Err(e) => return invalid(e),
    };
    agent_result(
        ctx.shared
            .write(|st| st.agent_register_check(def, Instant::now())),
    )
}

/// `PUT /v1/agent/check/deregister/:id`.
pub(crate) fn deregister_check(ctx: &Ctx<'_>, id: &str) -> Resp {
    agent_result(ctx.shared.write(|st| st.agent_deregister_check(id)))
}

/// `PUT /v1/agent/check/{pass,warn,fail}/:id[?note=]`.
pub(crate) fn ttl(ctx: &Ctx<'_>, status: &str, id: &str) -> Resp {
    let Some(status) = Status::parse(status) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "bad status");
    };
    let note = ctx.params.get("note").unwrap_or("").to_owned();
    update_ttl(ctx, id, status, &note)
}

/// `PUT /v1/agent/check/update/:id` with `{"Status": "...", "Output": "..."}`.
pub(crate) fn update(ctx: &Ctx<'_>, id: &str) -> Resp {
    let body = match Obj::parse(&ctx.body) {
        Ok(b) => b,
        Err(e) => return decode_failed(&e),
    };
    let Ok(obj) = Obj::of(&body) else {
        return decode_failed("expected a JSON object");
    };
    let status = obj.string(&["Status"]).ok().flatten().unwrap_or_default();
    let output = obj.string(&["Output"]).ok().flatten().unwrap_or_default();
    let Some(status) = Status::parse(&status) else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("Invalid check status: '{status}'"),
        );
    };
    update_ttl(ctx, id, status, &output)
}

fn update_ttl(ctx: &Ctx<'_>, id: &str, status: Status, output: &str) -> Resp {
    let result = ctx
        .shared
        .write(|st| st.agent_update_ttl(id, status, output, Instant::now()));
    agent_result(result.map(|_| ()))
}

fn agent_result(result: Result<(), AgentError>) -> Resp {
    match result {
        Ok(()) => empty_ok(),
        Err(e @ (AgentError::UnknownService(_) | AgentError::UnknownCheck(_))) => {
            text(StatusCode::NOT_FOUND, &e.to_string())
        }
        Err(e @ AgentError::NoTtl(_)) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(e @ AgentError::BadRequest(_)) => text(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn invalid(e: Invalid) -> Resp {
    match e {
        Invalid::Decode(reason) => decode_failed(&reason),
        Invalid::Message(msg) => text(StatusCode::BAD_REQUEST, &msg),
    }
}

/// Parses `?filter`; `Err` is the 400 answer.
pub(crate) fn parse_filter(ctx: &Ctx<'_>) -> Result<Option<Filter>, Resp> {
    match ctx.params.get("filter").filter(|f| !f.trim().is_empty()) {
        None => Ok(None),
        Some(src) => Filter::parse(src).map(Some).map_err(|e| {
            text(
                StatusCode::BAD_REQUEST,
                &format!("Failed to create boolean expression evaluator: {e}"),
            )
        }),
    }
}

/// Whether `item` passes the optional filter (evaluated on its JSON form).
pub(crate) fn keep<T: serde::Serialize>(filter: Option<&Filter>, item: &T) -> bool {
    match filter {
        None => true,
        Some(f) => serde_json::to_value(item).is_ok_and(|v| f.matches(&v)),
    }
}
