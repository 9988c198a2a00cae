//! A route's compiled policies and the order they run in (see the module above for why).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::{
    is_cors, Claims, Cors, Decision, ForwardAuth, Jwt, RateLimit, Recent, RequestView,
    ResponseHeaders, UpstreamEdits, Verdict,
};
use crate::proxy::Worker;
use crate::snapshot::Snapshot;

/// A route's compiled policies, in the order they run.
#[derive(Debug, Default)]
pub struct RoutePolicies {
    pub(super) cors: Option<Arc<Cors>>,
    pub(super) limits: Vec<Arc<RateLimit>>,
    pub(super) jwt: Option<Arc<Jwt>>,
    pub(super) claim_limits: Vec<Arc<RateLimit>>,
    pub(super) forward_auth: Option<Arc<ForwardAuth>>,
}

/// An answer the chain gives instead of the upstream.
#[derive(Debug)]
pub struct Answer {
    /// 204 (preflight), 403 (refused preflight), 429, 401/400 (token), 503 (no JWKS, auth
    /// service down), or the auth service's own 3xx/4xx.
    pub status: StatusCode,
    /// Machine-readable code of the gateway's JSON body; None: `body` (or nothing) is sent.
    pub code: Option<&'static str>,
    /// The answer's headers (`Retry-After`, `RateLimit*`, CORS, `WWW-Authenticate`, or the
    /// auth service's own).
    pub headers: ResponseHeaders,
    /// The auth service's body, sent as it came.
    pub body: Option<Bytes>,
    /// The policy that answered, and why (set by the chain).
    pub by: Option<Decided>,
}

/// Which policy answered a request instead of the upstream, and why: the access log's
/// `meshgate.policy` and `meshgate.policy_reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The policy's name.
    pub policy: Arc<str>,
    /// Its outcome label (`meshgate_policy_decisions_total`'s): `limited`, `expired`,
    /// `denied`, `failed_closed`, `preflight_refused`, `preflight_allowed`, ...
    pub reason: &'static str,
}

/// What the chain decided.
#[derive(Debug)]
pub enum Gate {
    /// Go on: put these headers on the answer, change the request so.
    Pass(ResponseHeaders, UpstreamEdits),
    /// Answer here; the upstream never sees the request.
    Answer(Answer),
}

impl RoutePolicies {
    /// True when the chain may wait (a forward-auth subrequest); a chain without one never
    /// suspends.
    pub fn awaits(&self) -> bool {
        self.forward_auth.is_some()
    }

    /// Runs the chain for one request. `w` and `snap` serve the forward-auth subrequest.
    pub async fn apply(&self, req: &RequestView<'_>, w: &Worker, snap: &Snapshot) -> Gate {
        let gate = self.check(req);
        match (&self.forward_auth, gate) {
            (Some(fa), Gate::Pass(out, mut edits)) => {
                // Boxed: the subrequest's state is only paid for on routes that make one.
                match Box::pin(fa.check(req, w, snap, &mut edits)).await {
                    Ok(()) => Gate::Pass(out, edits),
                    Err((reason, a)) => self.refuse(a, out, (&fa.recent, reason), req.client),
                }
            }
            (_, gate) => gate,
        }
    }

    /// The chain up to forward auth (CORS, limits, JWT, claim limits): never waits.
    pub fn check(&self, req: &RequestView<'_>) -> Gate {
        let mut out = ResponseHeaders::new();
        let mut edits = UpstreamEdits::default();
        if let Some(c) = &self.cors {
            match c.judge(req.method, req.headers) {
                Verdict::Preflight(h) => {
                    return Gate::Answer(Answer {
                        status: StatusCode::NO_CONTENT,
                        code: None,
                        headers: h,
                        body: None,
                        by: Some(Decided {
                            policy: c.recent.name().clone(),
                            reason: "preflight_allowed",
                        }),
                    })
                }
                Verdict::Refused(h) => {
                    let a = Answer {
                        status: StatusCode::FORBIDDEN,
                        code: Some("cors_refused"),
                        headers: h,
                        body: None,
                        by: None,
                    };
                    return self.refuse(a, out, (&c.recent, "preflight_refused"), req.client);
                }
                Verdict::Actual(h) => out.extend(h),
            }
        }
        if let Some((a, l)) = limit(&self.limits, req, None, &mut out) {
            return self.refuse(a, out, (&l.recent, "limited"), req.client);
        }
        let claims = match &self.jwt {
            None => None,
            Some(j) => match j.check(req.headers) {
                Ok(c) => {
                    j.edits(&c, &mut edits);
                    Some(c)
                }
                Err((o, a)) => return self.refuse(a, out, (&j.recent, o.label()), req.client),
            },
        };
        if let Some((a, l)) = limit(&self.claim_limits, req, claims.as_ref(), &mut out) {
            return self.refuse(a, out, (&l.recent, "limited"), req.client);
        }
        Gate::Pass(out, edits)
    }

    /// A refusal by the policy whose record is `recent`, for `reason`: noted there and logged
    /// at debug, carrying the headers earlier policies produced (CORS first, so a browser reads
    /// it). On a route with a CORS policy an auth service's own `Access-Control-*` are dropped:
    /// the gateway is the CORS authority.
    fn refuse(
        &self,
        mut a: Answer,
        mut out: ResponseHeaders,
        (recent, reason): (&Recent, &'static str),
        client: IpAddr,
    ) -> Gate {
        recent.refused(reason, client);
        tracing::debug!(
            policy = %recent.name(),
            reason,
            status = a.status.as_u16(),
            %client,
            "request refused by policy"
        );
        if self.cors.is_some() {
            a.headers.retain(|(k, _)| !is_cors(k));
        }
        out.append(&mut a.headers);
        a.headers = out;
        a.by = Some(Decided {
            policy: recent.name().clone(),
            reason,
        });
        Gate::Answer(a)
    }
}

/// Runs rate limits; the 429 and the limit that gave it when one is exceeded.
fn limit<'l>(
    limits: &'l [Arc<RateLimit>],
    req: &RequestView<'_>,
    claims: Option<&Claims>,
    out: &mut ResponseHeaders,
) -> Option<(Answer, &'l RateLimit)> {
    for l in limits {
        match l.check(req.client, req.headers, claims) {
            Decision::Allow(h) => out.extend(h),
            Decision::Deny {
                retry_after,
                headers,
            } => {
                let mut h = headers.to_vec();
                h.push((http::header::RETRY_AFTER, HeaderValue::from(retry_after)));
                let a = Answer {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: Some("rate_limited"),
                    headers: h,
                    body: None,
                    by: None,
                };
                return Some((a, l));
            }
        }
    }
    None
}
