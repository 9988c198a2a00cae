//! `/v1/kv/<key>` (consul-api.md §5): GET with `recurse`/`keys`/`raw` presence flags and
//! blocking, PUT with `flags`/`cas`, DELETE with `recurse`/`cas`.

use ::http::header::CONTENT_TYPE;
use ::http::{HeaderValue, Method, Response, StatusCode};
use bytes::Bytes;
use http_body_util::Full;

use super::{json, no_leader, text, Ctx, ReadOpts, Resp, KV_MAX_VALUE_SIZE};
use crate::devconsul::blocking;
use crate::devconsul::wire::KvJson;

/// Dispatches on the method (the router already answered 405 for others).
pub(crate) async fn handle(ctx: &Ctx<'_>, key: &str) -> Resp {
    // Consul parses the query options (consistency, wait, index) for every KV method.
    let opts = match ReadOpts::parse(ctx) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    match ctx.method {
        Method::GET => get(ctx, opts, key).await,
        Method::PUT => put(ctx, key),
        _ => delete(ctx, key),
    }
}

/// 413 for a value above `kv_max_value_size`.
pub(crate) fn too_large(len: &str) -> Resp {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "Request body({len} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes. See \
             https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size."
        ),
    )
}

async fn get(ctx: &Ctx<'_>, opts: ReadOpts, key: &str) -> Resp {
    let p = &ctx.params;
    if !p.has("keys") && !p.has("recurse") && key.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Missing key name");
    }
    if ctx.shared.read(|st| st.leader_lost_at.is_some()) && !p.has("stale") && !p.has("max_stale") {
        return no_leader();
    }
    let not_found = |index| opts.meta(ctx, index, text_empty(StatusCode::NOT_FOUND));
    if p.has("keys") {
        let separator = p.get("separator").map(str::to_owned);
        let (keys, index) = blocking::run(ctx.shared, opts.blocking, |st| {
            let (keys, raw) = st.kv.keys(key, separator.as_deref());
            (keys, st.observed(raw))
        })
        .await;
        if keys.is_empty() && !key.is_empty() {
            return not_found(index);
        }
        return opts.meta(ctx, index, json(StatusCode::OK, &keys));
    }
    if p.has("recurse") {
        let (entries, index) = blocking::run(ctx.shared, opts.blocking, |st| {
            let (entries, raw) = st.kv.list(key);
            let entries: Vec<KvJson> = entries
                .into_iter()
                .map(|(k, e)| KvJson::new(k, e))
                .collect();
            (entries, st.observed(raw))
        })
        .await;
        if entries.is_empty() {
            return not_found(index);
        }
        return opts.meta(ctx, index, json(StatusCode::OK, &entries));
    }
    let (entry, index) = blocking::run(ctx.shared, opts.blocking, |st| {
        let (entry, raw) = st.kv.get(key);
        (
            entry.map(|e| (KvJson::new(key, e), e.value.clone())),
            st.observed(raw),
        )
    })
    .await;
    match entry {
        None => not_found(index),
        Some((_, value)) if p.has("raw") => {
            let mut resp = Response::new(Full::new(Bytes::from(value)));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            opts.meta(ctx, index, resp)
        }
        Some((entry, _)) => opts.meta(ctx, index, json(StatusCode::OK, &[entry])),
    }
}

fn put(ctx: &Ctx<'_>, key: &str) -> Resp {
    let p = &ctx.params;
    if key.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Missing key name");
    }
    if let Some(resp) = conflicting_flags(ctx, &["cas", "acquire", "release"]) {
        return resp;
    }
    let flags = match parse_u64(p.get("flags")) {
        Ok(f) => f.unwrap_or(0),
        Err(resp) => return resp,
    };
    let cas = match parse_u64(p.get("cas")) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if let Some(session) = p.get("acquire").or_else(|| p.get("release")) {
        // Sessions are not implemented: every session id is unknown, as after expiry.
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("invalid session {session:?}"),
        );
    }
    if ctx.body.len() > KV_MAX_VALUE_SIZE {
        return too_large(&ctx.body.len().to_string());
    }
    let value = ctx.body.to_vec();
    let written = ctx.shared.write(|st| {
        if st.leader_lost_at.is_some() {
            return None;
        }
        let idx = st.next_index();
        Some(st.kv.put(idx, key, value, flags, cas))
    });
    match written {
        Some(ok) => json(StatusCode::OK, &ok),
        None => no_leader(),
    }
}

fn delete(ctx: &Ctx<'_>, key: &str) -> Resp {
    let p = &ctx.params;
    if let Some(resp) = conflicting_flags(ctx, &["recurse", "cas"]) {
        return resp;
    }
    let recurse = p.has("recurse");
    if !recurse && key.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Missing key name");
    }
    let cas = match parse_u64(p.get("cas")) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let deleted = ctx.shared.write(|st| {
        if st.leader_lost_at.is_some() {
            return None;
        }
        let idx = st.next_index();
        Some(if recurse {
            st.kv.delete_tree(idx, key)
        } else {
            st.kv.delete(idx, key, cas)
        })
    });
    match deleted {
        Some(ok) => json(StatusCode::OK, &ok),
        None => no_leader(),
    }
}

/// Consul's `conflictingFlags`: 400 `Conflicting flags: <encoded query>`.
fn conflicting_flags(ctx: &Ctx<'_>, flags: &[&str]) -> Option<Resp> {
    let present = flags.iter().filter(|f| ctx.params.has(f)).count();
    (present > 1).then(|| {
        text(
            StatusCode::BAD_REQUEST,
            &format!("Conflicting flags: {}", ctx.params.encode_sorted()),
        )
    })
}

/// Go's `strconv.ParseUint` on a present parameter; Consul returns the raw error (500).
fn parse_u64(value: Option<&str>) -> Result<Option<u64>, Resp> {
    match value {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("strconv.ParseUint: parsing {v:?}: invalid syntax"),
            )
        }),
    }
}

fn text_empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}
