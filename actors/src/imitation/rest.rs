//! `GET /data/v2/histominute|histohour|histoday`: OHLCV history.
//!
//! Errors are answered as CryptoCompare does, in an HTTP-200 body with
//! `"Response":"Error"`: `Type` 2 for a missing or invalid parameter, `Type`
//! 1 for a refused key or a pair the market does not list (an unknown market
//! included), `Type` 99 for a rate limit (optionally with HTTP 429). A pair
//! that is not listed gets exactly CryptoCompare's body:
//!
//! ```json
//! {"Response":"Error","Message":"Kraken market does not exist for this coin pair (FOO-EUR)","HasWarning":false,"Type":1,"RateLimit":{},"Data":{},"Cooldown":0}
//! ```
//!
//! (the market as the request spells it, `CCCAGG` without `e=`). The delay
//! switch holds every answer back before anything else is decided.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use poem::http::{HeaderMap, StatusCode};
use poem::web::{Data, Query};
use poem::{handler, Response};

use super::faults::{add, Faults, RateLimitStyle};
use super::{frames, unix_now_ns, valid_symbol, State};
use crate::cryptocompare::{Interval, MAX_LIMIT};
use crate::domain::Instrument;

#[handler]
pub(crate) async fn histominute(
    Query(q): Query<HashMap<String, String>>,
    headers: &HeaderMap,
    Data(state): Data<&Arc<State>>,
) -> Response {
    histo(state.clone(), Interval::Minute, q, headers).await
}

#[handler]
pub(crate) async fn histohour(
    Query(q): Query<HashMap<String, String>>,
    headers: &HeaderMap,
    Data(state): Data<&Arc<State>>,
) -> Response {
    histo(state.clone(), Interval::Hour, q, headers).await
}

#[handler]
pub(crate) async fn histoday(
    Query(q): Query<HashMap<String, String>>,
    headers: &HeaderMap,
    Data(state): Data<&Arc<State>>,
) -> Response {
    histo(state.clone(), Interval::Day, q, headers).await
}

fn json(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=UTF-8")
        .body(body)
}

/// A request the imitation refuses.
struct Refusal {
    code: i64,
    message: String,
    param: Option<&'static str>,
    /// The pair is not listed (counted apart).
    unknown_pair: bool,
}

fn invalid(name: &'static str, message: String) -> Refusal {
    Refusal {
        code: 2,
        message,
        param: Some(name),
        unknown_pair: false,
    }
}

struct HistoRequest {
    instrument: Instrument,
    limit: i64,
    to_ts: i64,
    aggregate: i64,
}

/// A REST request being answered: counted in flight until dropped.
struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.counters.rest_done();
    }
}

async fn histo(
    state: Arc<State>,
    interval: Interval,
    q: HashMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    add(&state.counters.rest_requests, 1);
    state.counters.rest_arrived(state.started.elapsed());
    let _in_flight = InFlight(Arc::clone(&state));
    let delay_ms = state.faults.rest_delay_ms.load(Ordering::Relaxed);
    if delay_ms > 0 {
        add(&state.counters.rest_delayed, 1);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if !state.authorized(headers, &q) {
        add(&state.counters.rest_errors, 1);
        tracing::info!(
            path = interval.path(),
            "history request without a valid api key"
        );
        let body = frames::histo_error(
            1,
            "You need a valid auth key or api key to access this endpoint",
            None,
        );
        return json(StatusCode::OK, body);
    }
    if Faults::take_one(&state.faults.rate_limited) {
        add(&state.counters.rest_rate_limited, 1);
        let style = *state
            .faults
            .rate_limit_style
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let status = match style {
            RateLimitStyle::Body => StatusCode::OK,
            RateLimitStyle::Http => StatusCode::TOO_MANY_REQUESTS,
        };
        let body = frames::histo_error(
            99,
            "You are over your rate limit please upgrade your account!",
            None,
        );
        return json(status, body);
    }
    let request = match validate(&state, &q) {
        Ok(r) => r,
        Err(refusal) => {
            add(&state.counters.rest_errors, 1);
            if refusal.unknown_pair {
                add(&state.counters.rest_unknown_pairs, 1);
                tracing::info!(
                    path = interval.path(),
                    message = %refusal.message,
                    "history request for a pair the imitation does not list"
                );
            }
            let body = frames::histo_error(refusal.code, &refusal.message, refusal.param);
            return json(StatusCode::OK, body);
        }
    };
    let bar_secs = interval.secs() * request.aggregate;
    let body = tokio::task::spawn_blocking(move || {
        let now_ns = unix_now_ns();
        let newest = request
            .to_ts
            .min(now_ns / 1_000_000_000)
            .div_euclid(bar_secs)
            * bar_secs;
        let oldest = newest - request.limit * bar_secs;
        let bars = state.bars.bars(
            &state.model,
            &request.instrument,
            bar_secs,
            oldest,
            newest,
            now_ns,
        );
        frames::histo_success(&bars, request.aggregate > 1)
    })
    .await;
    match body {
        Ok(body) => json(StatusCode::OK, body),
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            frames::histo_error(0, "internal error", None),
        ),
    }
}

fn validate(state: &State, q: &HashMap<String, String>) -> Result<HistoRequest, Refusal> {
    let symbol = |name: &'static str| -> Result<String, Refusal> {
        match q.get(name) {
            None => Err(invalid(name, format!("{name} param seems to be missing."))),
            Some(s) if !valid_symbol(s) => Err(invalid(
                name,
                format!("{name} param is not a valid symbol (at most 10 characters)."),
            )),
            Some(s) => Ok(s.clone()),
        }
    };
    let number = |name: &'static str,
                  default: i64,
                  range: std::ops::RangeInclusive<i64>|
     -> Result<i64, Refusal> {
        match q.get(name) {
            None => Ok(default),
            Some(s) => match s.parse::<i64>() {
                Ok(n) if range.contains(&n) => Ok(n),
                _ => Err(invalid(
                    name,
                    format!(
                        "{name} param is not valid, it must be between {} and {}.",
                        range.start(),
                        range.end()
                    ),
                )),
            },
        }
    };
    let base = symbol("fsym")?;
    let quote = symbol("tsym")?;
    let market_param = q.get("e").map_or("CCCAGG", String::as_str);
    let Some(instrument) = state.listed(market_param, &base, &quote) else {
        return Err(Refusal {
            code: 1,
            message: frames::unknown_pair_message(market_param, &base, &quote),
            param: None,
            unknown_pair: true,
        });
    };
    let now_s = unix_now_ns() / 1_000_000_000;
    Ok(HistoRequest {
        instrument: instrument.clone(),
        limit: number("limit", 30, 0..=MAX_LIMIT)?,
        to_ts: number("toTs", now_s, 0..=i64::MAX / 4)?,
        aggregate: number("aggregate", 1, 1..=30)?,
    })
}
