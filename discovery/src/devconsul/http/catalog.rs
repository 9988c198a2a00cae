//! `/v1/catalog/*` (consul-api.md §4): reads, and the basic register/deregister writes.

use std::collections::BTreeMap;

use ::http::StatusCode;
use tokio::time::Instant;

use super::agent::{keep, parse_filter};
use super::decode::{self, Invalid, Obj};
use super::health::has_tags;
use super::{decode_failed, json, no_leader, text, Ctx, ReadOpts, Resp};
use crate::devconsul::blocking;
use crate::devconsul::state::{CheckRec, NodeRec, ServiceRec, State, Status};
use crate::devconsul::wire::{CatalogServiceJson, NodeJson};

/// `GET /v1/catalog/service/:service` (flat shape, no health filtering).
pub(crate) async fn service(ctx: &Ctx<'_>, name: &str) -> Resp {
    let opts = match ReadOpts::parse_read(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let filter = match parse_filter(ctx) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let tags: Vec<String> = ctx.params.all("tag").map(str::to_owned).collect();
    let (rows, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        let rows: Vec<(Vec<String>, CatalogServiceJson)> = st
            .catalog
            .instances(name)
            .filter_map(|s| {
                let node = st.catalog.node(&s.node)?;
                Some((
                    s.tags.clone(),
                    CatalogServiceJson::new(node, s, &st.datacenter),
                ))
            })
            .collect();
        (rows, st.observed(st.catalog.service_index(name)))
    })
    .await;
    let kept: Vec<CatalogServiceJson> = rows
        .into_iter()
        .filter(|(t, _)| has_tags(t, &tags))
        .map(|(_, r)| r)
        .filter(|r| keep(filter.as_ref(), r))
        .collect();
    opts.meta(ctx, index, json(StatusCode::OK, &kept))
}

/// `GET /v1/catalog/services`: name → union of tags; the services-table index.
pub(crate) async fn services(ctx: &Ctx<'_>) -> Resp {
    let opts = match ReadOpts::parse_read(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let filter = match parse_filter(ctx) {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    let (names, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        let names = match &filter {
            None => st.catalog.service_names(),
            Some(f) => {
                let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
                for s in st.catalog.services() {
                    let Some(node) = st.catalog.node(&s.node) else {
                        continue;
                    };
                    if keep(Some(f), &CatalogServiceJson::new(node, s, &st.datacenter)) {
                        out.entry(s.name.clone())
                            .or_default()
                            .extend(s.tags.iter().cloned());
                    }
                }
                out
            }
        };
        (names, st.observed(st.catalog.services_table_index()))
    })
    .await;
    opts.meta(ctx, index, json(StatusCode::OK, &names))
}

/// `GET /v1/catalog/nodes`.
pub(crate) async fn nodes(ctx: &Ctx<'_>) -> Resp {
    let opts = match ReadOpts::parse_read(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let (nodes, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        let nodes: Vec<NodeJson> = st
            .catalog
            .nodes()
            .map(|n| NodeJson::new(n, &st.datacenter))
            .collect();
        (nodes, st.observed(st.catalog.nodes_table_index()))
    })
    .await;
    opts.meta(ctx, index, json(StatusCode::OK, &nodes))
}

/// `PUT /v1/catalog/register`: node, optional service, optional checks, in one write.
pub(crate) fn register(ctx: &Ctx<'_>) -> Resp {
    if let Err(resp) = ReadOpts::parse(ctx) {
        return resp;
    }
    let body = match Obj::parse(&ctx.body) {
        Ok(b) => b,
        Err(e) => return decode_failed(&e),
    };
    let reg = match catalog_registration(&body) {
        Ok(r) => r,
        Err(Invalid::Decode(e)) => return decode_failed(&e),
        Err(Invalid::Message(m)) => return text(StatusCode::BAD_REQUEST, &m),
    };
    let result = ctx.shared.write(|st| apply_registration(st, &reg));
    match result {
        Ok(()) => json(StatusCode::OK, &true),
        Err(resp) => resp,
    }
}

/// `PUT /v1/catalog/deregister`: a service, a check, or the whole node.
pub(crate) fn deregister(ctx: &Ctx<'_>) -> Resp {
    let body = match Obj::parse(&ctx.body) {
        Ok(b) => b,
        Err(e) => return decode_failed(&e),
    };
    let Ok(obj) = Obj::of(&body) else {
        return decode_failed("expected a JSON object");
    };
    let field = |names: &[&str]| obj.string(names).ok().flatten().unwrap_or_default();
    let (node, service_id, check_id) =
        (field(&["Node"]), field(&["ServiceID"]), field(&["CheckID"]));
    if node.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Must provide node");
    }
    let result = ctx.shared.write(|st| {
        if st.leader_lost_at.is_some() {
            return Err(no_leader());
        }
        let idx = st.next_index();
        if !service_id.is_empty() {
            st.catalog.remove_service(idx, &node, &service_id);
        }
        if !check_id.is_empty() {
            st.catalog.remove_check(idx, &node, &check_id);
        }
        if service_id.is_empty() && check_id.is_empty() {
            st.catalog.remove_node(idx, &node);
        }
        Ok(())
    });
    match result {
        Ok(()) => json(StatusCode::OK, &true),
        Err(resp) => resp,
    }
}

/// Applies a catalog registration as one write (one index for every change).
fn apply_registration(st: &mut State, reg: &CatalogRegistration) -> Result<(), Resp> {
    if st.leader_lost_at.is_some() {
        return Err(no_leader());
    }
    let now = Instant::now();
    let idx = st.next_index();
    let mut node = match st.catalog.node(&reg.node) {
        Some(existing) => existing.clone(),
        None if reg.address.is_empty() => {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "Must provide address if SkipNodeUpdate is not set",
            ));
        }
        None => NodeRec::new(
            &reg.node,
            &reg.address,
            crate::devconsul::state::node_id(&reg.node),
        ),
    };
    if !reg.address.is_empty() && node.address != reg.address {
        node = NodeRec::new(&reg.node, &reg.address, node.id.clone());
    }
    if let Some(meta) = reg.node_meta.clone() {
        node.meta = meta;
    }
    st.catalog.upsert_node(idx, node);
    if let Some(mut svc) = reg.service.clone() {
        svc.node = reg.node.clone();
        st.catalog.upsert_service(idx, svc);
    }
    for mut check in reg.checks.clone() {
        check.node = reg.node.clone();
        if !check.service_id.is_empty() {
            let Some(svc) = st.catalog.service(&reg.node, &check.service_id) else {
                return Err(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!(
                        "Unknown service {:?} for check {:?}",
                        check.service_id, check.id
                    ),
                ));
            };
            check.service_name = svc.name.clone();
            check.service_tags = svc.tags.clone();
        }
        st.catalog.upsert_check(idx, check, now);
    }
    Ok(())
}

/// A parsed `/v1/catalog/register` body.
struct CatalogRegistration {
    node: String,
    address: String,
    node_meta: Option<BTreeMap<String, String>>,
    service: Option<ServiceRec>,
    checks: Vec<CheckRec>,
}

fn catalog_registration(body: &serde_json::Value) -> Result<CatalogRegistration, Invalid> {
    let o = Obj::of(body)?;
    let node = o.string(&["Node"])?.unwrap_or_default();
    if node.is_empty() {
        return Err(Invalid::Message("Must provide node".to_owned()));
    }
    let address = o.string(&["Address"])?.unwrap_or_default();
    let service = match o.obj(&["Service"])? {
        Some(s) if !s.is_empty() => {
            let name = s.string(&["Service", "Name"])?.unwrap_or_default();
            if name.is_empty() {
                return Err(Invalid::Message("Must provide service name".to_owned()));
            }
            let id = s
                .string(&["ID"])?
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| name.clone());
            let mut svc = ServiceRec::new(&node, &id, &name, s.int(&["Port"])?.unwrap_or(0));
            svc.tags = s.strings(&["Tags"])?;
            svc.address = s.string(&["Address"])?.unwrap_or_default();
            svc.tagged_addresses = decode::service_addresses(&s)?;
            svc.meta = s.string_map(&["Meta"])?;
            svc.weights = decode::weights(&s)?.unwrap_or(svc.weights);
            svc.enable_tag_override = s.bool(&["EnableTagOverride"])?;
            svc.kind = s.string(&["Kind"])?.unwrap_or_default();
            Some(svc)
        }
        _ => None,
    };
    let mut check_objs = Vec::new();
    if let Some(c) = o.obj(&["Check"])? {
        check_objs.push(c);
    }
    check_objs.extend(o.objs(&["Checks"])?);
    let mut checks = Vec::new();
    for c in check_objs.into_iter().filter(|c| !c.is_empty()) {
        let name = c.string(&["Name"])?.unwrap_or_default();
        let id = c
            .string(&["CheckID", "ID"])?
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| name.clone());
        if id.is_empty() {
            return Err(Invalid::Message("Missing check ID".to_owned()));
        }
        let status = match c.string(&["Status"])?.filter(|s| !s.is_empty()) {
            None => Status::Critical,
            Some(s) => Status::parse(&s)
                .ok_or_else(|| Invalid::Message(format!("Invalid check status: '{s}'")))?,
        };
        let output = c.string(&["Output"])?.unwrap_or_default();
        let mut check = CheckRec::node_check(&node, &id, &name, status, &output);
        check.notes = c.string(&["Notes"])?.unwrap_or_default();
        check.service_id = c.string(&["ServiceID"])?.unwrap_or_default();
        checks.push(check);
    }
    Ok(CatalogRegistration {
        node,
        address,
        node_meta: o.string_map(&["NodeMeta"])?,
        service,
        checks,
    })
}
