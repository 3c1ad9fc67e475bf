//! The HTTP control surface, so that another process (a demo, a benchmark,
//! a shell) can flip the same fault switches as
//! [`ImitationHandle`](super::ImitationHandle):
//!
//! | request | effect |
//! |---|---|
//! | `POST /_imitation/drop` | close every open WebSocket connection |
//! | `POST /_imitation/silence` | open connections send nothing any more (stale) |
//! | `POST /_imitation/heartbeats?on=false` | stop (`true`: resume) heartbeats |
//! | `POST /_imitation/rate_limit?n=3&style=body` | rate-limit the next n REST requests (`style=http`: HTTP 429) |
//! | `POST /_imitation/rest_delay?ms=500` | delay every REST answer by 500 ms from now on (`ms=0`: no delay) |
//! | `POST /_imitation/malformed?n=5` | each open connection sends n bad frames (malformed, unknown type, price 0, foreign instrument) |
//! | `POST /_imitation/late?n=10` | each open connection sends its next n trades late, shuffled |
//! | `POST /_imitation/replay?n=20` | each open connection resends its last n trades per channel |
//! | `POST /_imitation/refuse_sockets?n=1` | refuse the next n connections with `429` |
//! | `POST /_imitation/api_key` (body: the key, empty for none) | change the required key |
//! | `GET /_imitation/counters` | the counters, as JSON |
//!
//! It has no authentication: the imitation is a local test server only.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Json, Query};
use poem::{get, handler, post, Response, Route};
use serde::Deserialize;

use super::faults::{ImitationCounters, RateLimitStyle};
use super::State;
use crate::cryptocompare::ApiKey;

pub(crate) fn routes() -> Route {
    Route::new()
        .at("/drop", post(drop_handler))
        .at("/silence", post(silence_handler))
        .at("/heartbeats", post(heartbeats_handler))
        .at("/rate_limit", post(rate_limit_handler))
        .at("/rest_delay", post(rest_delay_handler))
        .at("/malformed", post(malformed_handler))
        .at("/late", post(late_handler))
        .at("/replay", post(replay_handler))
        .at("/refuse_sockets", post(refuse_handler))
        .at("/api_key", post(api_key_handler))
        .at("/counters", get(counters_handler))
}

pub(crate) fn drop_connections(state: &State) {
    let next = state.next_connection.load(Ordering::Relaxed);
    state.faults.drop_below.store(next, Ordering::Relaxed);
}

pub(crate) fn silence_connections(state: &State) {
    let next = state.next_connection.load(Ordering::Relaxed);
    state.faults.silent_below.store(next, Ordering::Relaxed);
}

pub(crate) fn rate_limit_next(state: &State, n: u64, style: RateLimitStyle) {
    *state
        .faults
        .rate_limit_style
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = style;
    state.faults.rate_limited.store(n, Ordering::Relaxed);
}

pub(crate) fn set_rest_delay(state: &State, ms: u64) {
    state.faults.rest_delay_ms.store(ms, Ordering::Relaxed);
}

fn ok() -> Response {
    Response::builder().status(StatusCode::OK).body("ok\n")
}

#[derive(Deserialize)]
struct Count {
    n: u64,
}

#[derive(Deserialize)]
struct RateLimit {
    n: u64,
    #[serde(default)]
    style: RateLimitStyle,
}

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

#[derive(Deserialize)]
struct OnOff {
    on: bool,
}

#[handler]
fn drop_handler(Data(state): Data<&Arc<State>>) -> Response {
    drop_connections(state);
    ok()
}

#[handler]
fn silence_handler(Data(state): Data<&Arc<State>>) -> Response {
    silence_connections(state);
    ok()
}

#[handler]
fn heartbeats_handler(Query(q): Query<OnOff>, Data(state): Data<&Arc<State>>) -> Response {
    state
        .faults
        .heartbeats_paused
        .store(!q.on, Ordering::Relaxed);
    ok()
}

#[handler]
fn rate_limit_handler(Query(q): Query<RateLimit>, Data(state): Data<&Arc<State>>) -> Response {
    rate_limit_next(state, q.n, q.style);
    ok()
}

#[handler]
fn rest_delay_handler(Query(q): Query<Millis>, Data(state): Data<&Arc<State>>) -> Response {
    set_rest_delay(state, q.ms);
    ok()
}

#[handler]
fn malformed_handler(Query(q): Query<Count>, Data(state): Data<&Arc<State>>) -> Response {
    state.faults.malformed.issue(q.n);
    ok()
}

#[handler]
fn late_handler(Query(q): Query<Count>, Data(state): Data<&Arc<State>>) -> Response {
    state.faults.late.issue(q.n);
    ok()
}

#[handler]
fn replay_handler(Query(q): Query<Count>, Data(state): Data<&Arc<State>>) -> Response {
    state.faults.replay.issue(q.n);
    ok()
}

#[handler]
fn refuse_handler(Query(q): Query<Count>, Data(state): Data<&Arc<State>>) -> Response {
    state.faults.refuse_sockets.store(q.n, Ordering::Relaxed);
    ok()
}

#[handler]
fn api_key_handler(body: String, Data(state): Data<&Arc<State>>) -> Response {
    let key = body.trim();
    let key = (!key.is_empty()).then(|| ApiKey::new(key));
    *state
        .faults
        .api_key
        .write()
        .unwrap_or_else(|p| p.into_inner()) = key;
    ok()
}

#[handler]
fn counters_handler(Data(state): Data<&Arc<State>>) -> Json<ImitationCounters> {
    Json(state.counters.snapshot())
}
