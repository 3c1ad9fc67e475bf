//! The cluster status endpoint, on `cluster.status_listen` (off by default).
//!
//! * `GET /cluster/status`: membership's [`ClusterStatus`] (peers with their
//!   state, heartbeat round trip and reconnects; sessions; names);
//! * `GET /cluster/names/{name}`: who holds a cluster-wide name
//!   (200, 404 when nobody, 409 when several);
//! * `POST /cluster/probes/{name}`: starts a [`Probe`] on this node holding
//!   `name`; `GET` calls the holder of `name` by name from this node and
//!   shows its answer; `DELETE` stops this node's probes holding `name` (never another actor).
//!
//! Every request must carry the admin token (`Authorization: Bearer …`, the
//! token from `admin.token_env`, as for `/admin/...`): the probe routes start
//! and stop actors, and the status names every node and actor. Without a
//! configured token every request is refused (401). It should still bind to
//! loopback or a private interface only: it speaks plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use candela_actors::call::CallError;
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json, Path};
use poem::{get, handler, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use ractor::{pg, Actor};
use serde_json::json;

use super::membership::ClusterStatus;
use super::names::{self, NameError, NAMES_SCOPE};
use super::probe::{Probe, ProbeMsg, PROBE_ROLE};

/// Longest wait for a probe's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most probes one node runs (each `POST` starts one).
const MAX_PROBES: usize = 64;

struct Ctx {
    node: String,
}

/// Binds `addr` and serves the endpoint until stopped (the bound address is
/// in the answer: useful with port 0). `token` is the admin token every
/// request must present; `None` refuses every request.
pub async fn serve(
    addr: SocketAddr,
    node: String,
    token: Option<String>,
) -> std::io::Result<crate::ops::Served> {
    if token.is_none() {
        tracing::warn!(addr = %addr, "no admin token configured: the cluster status endpoint refuses every request");
    }
    let token = Arc::new(token);
    let acceptor = match crate::sockets::take("status", addr) {
        Some(handed) => poem::listener::TcpAcceptor::from_std(handed)?,
        None => TcpListener::bind(addr).into_acceptor().await?,
    };
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    let app = Route::new()
        .at("/cluster/status", get(cluster_status))
        .at("/cluster/names/*name", get(name_holders))
        .at(
            "/cluster/probes/*name",
            get(call_probe).post(start_probe).delete(stop_probes),
        )
        .data(Arc::new(Ctx { node }))
        .around(move |ep, req| {
            let token = Arc::clone(&token);
            async move {
                match authorize(&req, token.as_deref()) {
                    Ok(()) => ep.call(req).await.map(IntoResponse::into_response),
                    Err(why) => Ok(error(StatusCode::UNAUTHORIZED, why)),
                }
            }
        });
    let served = crate::ops::Served::spawn(acceptor, app, bound, "cluster status endpoint");
    tracing::info!(addr = %bound, "cluster status endpoint listening");
    Ok(served)
}

/// Checks the request's bearer token against the configured one.
fn authorize(req: &Request, expected: Option<&str>) -> Result<(), &'static str> {
    let Some(expected) = expected else {
        return Err("the cluster status endpoint is disabled: no admin token is configured");
    };
    let given = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("missing `Authorization: Bearer <admin token>`")?;
    if candela_api::admin::token_matches(given.trim(), expected) {
        Ok(())
    } else {
        Err("wrong admin token")
    }
}

fn error(status: StatusCode, err: impl std::fmt::Display) -> Response {
    Json(json!({ "error": err.to_string() }))
        .with_status(status)
        .into_response()
}

fn name_error(err: NameError) -> Response {
    let status = match &err {
        NameError::NotFound { .. } => StatusCode::NOT_FOUND,
        NameError::Duplicate { .. } => StatusCode::CONFLICT,
        NameError::Invalid { .. } | NameError::NotRemotable { .. } => StatusCode::BAD_REQUEST,
        NameError::Call(CallError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
        NameError::Call(_) => StatusCode::BAD_GATEWAY,
    };
    let holders: Vec<String> = match &err {
        NameError::Duplicate { holders, .. } => holders.iter().map(ToString::to_string).collect(),
        _ => vec![],
    };
    Json(json!({ "error": err.to_string(), "holders": holders }))
        .with_status(status)
        .into_response()
}

#[handler]
async fn cluster_status() -> Response {
    match super::status().await {
        Ok(status) => Json::<ClusterStatus>(status).into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err),
    }
}

#[handler]
async fn name_holders(Path(name): Path<String>) -> Response {
    match names::resolve_cell(&name) {
        Ok(cell) => {
            Json(json!({ "name": name, "holders": [cell.get_id().to_string()] })).into_response()
        }
        Err(err) => name_error(err),
    }
}

/// The prefix every probe's name has: the names outside it belong to the
/// platform and the cluster layer (`membership/<node>`, `coordinator`, …),
/// and a probe holding one would take calls meant for them.
pub const PROBE_PREFIX: &str = "probe/";

/// Why a probe may not hold `name`, if it may not.
pub fn refuse_probe_name(name: &str) -> Option<String> {
    match name.strip_prefix(PROBE_PREFIX) {
        Some(rest) if !rest.is_empty() => None,
        _ => Some(format!(
            "a probe's name must be `{PROBE_PREFIX}<something>`; `{}` is not (names outside `{PROBE_PREFIX}` belong to the platform and the cluster layer)",
            candela_actors::domain::validate::shorten(name)
        )),
    }
}

#[handler]
async fn start_probe(Path(name): Path<String>, Data(ctx): Data<&Arc<Ctx>>) -> Response {
    if let Some(why) = refuse_probe_name(&name) {
        tracing::warn!(name = %candela_actors::domain::validate::shorten(&name), "probe refused: not a probe/ name");
        return error(StatusCode::BAD_REQUEST, why);
    }
    let local = names::role_members(PROBE_ROLE)
        .iter()
        .filter(|c| c.get_id().is_local())
        .count();
    if local >= MAX_PROBES {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("this node already runs {MAX_PROBES} probes; DELETE some first"),
        );
    }
    match Actor::spawn(None, Probe, (ctx.node.clone(), name)).await {
        Ok((probe, _)) => Json(json!({ "actor": probe.get_id().to_string() }))
            .with_status(StatusCode::CREATED)
            .into_response(),
        Err(err) => error(StatusCode::BAD_REQUEST, err),
    }
}

#[handler]
async fn call_probe(Path(name): Path<String>) -> Response {
    match names::call_by_name(&name, ProbeMsg::Whoami, PROBE_TIMEOUT).await {
        Ok(reply) => Json(reply).into_response(),
        Err(err) => name_error(err),
    }
}

#[handler]
async fn stop_probes(Path(name): Path<String>) -> Response {
    // Only probes: the name may be held by a real actor too.
    let probes: Vec<_> = names::role_members(PROBE_ROLE)
        .iter()
        .map(|c| c.get_id())
        .collect();
    let local: Vec<_> = pg::get_scoped_local_members(&NAMES_SCOPE.to_owned(), &name)
        .into_iter()
        .filter(|c| probes.contains(&c.get_id()))
        .collect();
    for cell in &local {
        cell.stop(Some("stopped through the status endpoint".into()));
    }
    Json(json!({ "stopped": local.len() })).into_response()
}
