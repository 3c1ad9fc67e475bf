//! The data endpoints: OHLCV series, instruments, and the live stream.

use std::sync::Arc;

use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, OpenApi};

use candela_actors::datastore::{BarQuery, DataError, Served};
use candela_actors::domain::{Instrument, Interval};

use crate::model::{BarDto, ErrorBody, InstrumentDto, IntervalParam, OhlcvBody, StreamEvent};
use crate::server::ApiState;
use crate::stream;

/// The data API.
pub struct DataApi {
    pub(crate) state: Arc<ApiState>,
}

/// Answer of `GET /api/v1/ohlcv`.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "ohlcv_bad_request")]
pub enum OhlcvResponse {
    /// The series.
    #[oai(status = 200)]
    Ok(Json<OhlcvBody>),
    /// A parameter is wrong.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The platform may serve no more instruments on demand
    /// (`dynamic.max_instruments`).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The platform does not hold the instrument, and the source does not
    /// list it (or it could not be fetched).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Too many new instruments were asked for lately, or this node is
    /// fetching as many as it may: ask again after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before asking again.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Storage is unreachable, or fetching the instrument on demand broke
    /// off (the coordinator stopped or could not be reached); try again.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// The instrument was not held, and fetching it on demand did not finish
    /// in time; it may still arrive: ask again later.
    #[oai(status = 504)]
    Timeout(Json<ErrorBody>),
}

fn ohlcv_bad_request(err: poem::Error) -> OhlcvResponse {
    OhlcvResponse::BadRequest(Json(ErrorBody::new("bad_request", explain(&err))))
}

/// A parameter the framework refused (against the document's bounds), said
/// for a person: what the parameter must be, then the framework's words.
pub(crate) fn explain(err: &poem::Error) -> String {
    let text = err.to_string();
    let param = text
        .split('`')
        .nth(1)
        .filter(|_| text.starts_with("failed to parse parameter"));
    let rule = match param {
        Some("instrument") => {
            "`instrument` must be MARKET:BASE-QUOTE, e.g. Coinbase:BTC-USD (each part 1 to 32 ASCII letters, digits or `.`)"
        }
        Some("from") | Some("to") => {
            "`from` and `to` must be Unix seconds (0 to 7258118400) or an RFC 3339 time like 2025-01-01T00:00:00Z"
        }
        Some("limit") => "`limit` must be a whole number between 1 and the node's maximum (see the document)",
        Some("interval") => "`interval` must be one of 1m, 5m, 15m, 1h, 1d",
        Some("last_event_id") | Some("Last-Event-ID") => {
            "`Last-Event-ID` must be an id this stream sent (`VERSION-TIME`)"
        }
        _ => return text,
    };
    format!("{rule}: {text}")
}

/// Answer of `GET /api/v1/instruments`.
#[derive(ApiResponse)]
pub enum InstrumentsResponse {
    /// Every instrument with stored bars.
    #[oai(status = 200)]
    Ok(Json<Vec<InstrumentDto>>),
    /// Storage is unreachable; try again.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

/// Answer of `GET /api/v1/stream`.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "stream_bad_request")]
pub enum StreamResponse {
    /// Server-sent events: what is stored, then every change as it is
    /// committed.
    #[oai(status = 200)]
    Ok(crate::sse::BarEvents),
    /// A parameter (or `Last-Event-ID`) is wrong.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// This node serves as many live streams as it may; try again later or
    /// another node.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn stream_bad_request(err: poem::Error) -> StreamResponse {
    StreamResponse::BadRequest(Json(ErrorBody::new("bad_request", explain(&err))))
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks an instrument and a time range; returns them aligned to the
/// interval, with `to` clamped to the interval in progress at `now` (no bar
/// can start later, and no work may depend on how far in the future a caller
/// puts `to`). A range that starts after its end (as asked, or because it
/// starts in the future) is returned as it is: it holds no bars, which is
/// an answer, not an error (the document cannot say "`from` ≤ `to`", so the
/// server does not refuse it either).
pub(crate) fn validate(
    instrument: &str,
    interval: Interval,
    from: i64,
    to: Option<i64>,
    now: i64,
) -> Result<(Instrument, i64, i64), String> {
    let instrument: Instrument = instrument
        .parse()
        .map_err(|e: candela_actors::domain::tick::InvalidInstrument| e.to_string())?;
    // 1970 .. 2200: anything else is a unit mistake (milliseconds?).
    const MAX: i64 = crate::model::MAX_TIME_SECS;
    let to = to.unwrap_or(now);
    for (name, t) in [("from", from), ("to", to)] {
        if !(0..=MAX).contains(&t) {
            return Err(format!(
                "`{name}` must be Unix seconds between 0 and {MAX}, got {t}"
            ));
        }
    }
    let (from, to) = (
        interval.floor(from),
        interval.floor(to).min(interval.floor(now)),
    );
    Ok((instrument, from, to))
}

/// Inserts flat bars for the intervals without trades between the first bar
/// and `to`, at the previous close; stops at `cap` bars (a sparse range can
/// hold millions of empty minutes: the answer holds `limit` bars at most, so
/// nothing past that is ever built).
fn fill_gaps(bars: Vec<BarDto>, interval: Interval, to: i64, now: i64, cap: usize) -> Vec<BarDto> {
    let step = interval.seconds();
    let mut out: Vec<BarDto> = Vec::with_capacity(bars.len().min(cap));
    for bar in bars {
        if let Some(prev) = out.last() {
            let mut t = prev.time + step;
            let close = prev.close;
            while t < bar.time {
                if out.len() >= cap {
                    return out;
                }
                out.push(BarDto::filled(t, close, t + step <= now));
                t += step;
            }
        }
        if out.len() >= cap {
            return out;
        }
        out.push(bar);
    }
    if let Some(last) = out.last() {
        let (mut t, close) = (last.time + step, last.close);
        while t <= to && t <= now && out.len() < cap {
            out.push(BarDto::filled(t, close, t + step <= now));
            t += step;
        }
    }
    out
}

#[OpenApi(prefix_path = "/api/v1")]
impl DataApi {
    /// OHLCV bars of one instrument and interval.
    ///
    /// History and the live partial bar in one series, in time order, with no
    /// overlap. Intervals without trades are left out, or, with `fill=true`,
    /// given as flat zero-volume bars at the previous close (`source` =
    /// `filled`; none before the first trade of the range). The answer states
    /// the range it covers; when `truncated`, ask again from `to` + interval.
    #[oai(path = "/ohlcv", method = "get")]
    async fn ohlcv(
        &self,
        /// `MARKET:BASE-QUOTE`, e.g. `Coinbase:BTC-USD`.
        #[oai(validator(pattern = r"^[A-Za-z0-9.]{1,32}:[A-Za-z0-9.]{1,32}-[A-Za-z0-9.]{1,32}$"))]
        instrument: Query<String>,
        /// Bar interval.
        interval: Query<Option<IntervalParam>>,
        /// Start: Unix seconds or RFC 3339 (the interval holding it is
        /// included). A range that starts after its end, or in the future,
        /// holds no bars.
        from: Query<crate::time::TimeParam>,
        /// End: Unix seconds or RFC 3339 (default: now).
        to: Query<Option<crate::time::TimeParam>>,
        /// Most bars to return (default 1000; at most the node's
        /// `api.max_limit`, 10000 by default: the document says this node's).
        #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
        limit: Query<Option<u32>>,
        /// Fill intervals without trades with flat bars.
        fill: Query<Option<bool>>,
    ) -> OhlcvResponse {
        let interval: Interval = interval.0.unwrap_or(IntervalParam::M1).into();
        let max = self.state.config.max_limit;
        // The default, within this node's maximum.
        let limit = limit.0.unwrap_or(1_000.min(max));
        if limit == 0 || limit > max {
            return OhlcvResponse::BadRequest(Json(ErrorBody::new(
                "bad_request",
                format!("`limit` must be between 1 and {max}, got {limit}"),
            )));
        }
        let (instrument, from, to) = match validate(
            &instrument.0,
            interval,
            from.0 .0,
            to.0.map(|t| t.0),
            now_secs(),
        ) {
            Ok(v) => v,
            Err(msg) => return OhlcvResponse::BadRequest(Json(ErrorBody::new("bad_request", msg))),
        };
        if from > to {
            // Nothing can be in it: no store, no source is asked.
            return OhlcvResponse::Ok(Json(OhlcvBody {
                instrument: instrument.to_string(),
                interval: interval.as_str().to_owned(),
                from,
                to,
                truncated: false,
                served: "none".to_owned(),
                bars: Vec::new(),
            }));
        }
        let query = BarQuery {
            instrument: instrument.clone(),
            interval,
            from,
            to,
            limit: limit as usize,
            fetch: true,
        };
        let answer = match self.state.datastore.request(query).await {
            Ok(a) => a,
            Err(DataError::NotAvailable(msg)) => {
                return OhlcvResponse::NotFound(Json(ErrorBody::new("not_found", msg)))
            }
            Err(DataError::LimitReached(msg)) => {
                return OhlcvResponse::Forbidden(Json(ErrorBody::new("limit_reached", msg)))
            }
            Err(DataError::RateLimited {
                message,
                retry_after_ms,
            }) => {
                return OhlcvResponse::TooManyRequests(
                    Json(ErrorBody::new("too_many_requests", message)),
                    retry_after_ms.div_ceil(1_000).max(1),
                )
            }
            Err(DataError::Timeout(msg)) => {
                return OhlcvResponse::Timeout(Json(ErrorBody::new("timeout", msg)))
            }
            Err(err) => {
                tracing::warn!(%instrument, error = %err, "ohlcv request failed");
                return OhlcvResponse::Unavailable(Json(ErrorBody::new(
                    "unavailable",
                    err.to_string(),
                )));
            }
        };
        let now = now_secs();
        let limit = limit as usize;
        let mut truncated = answer.bars.len() >= limit;
        let mut covered_to = match answer.bars.last() {
            Some(last) if truncated => last.bar.open_time,
            _ => to,
        };
        let mut bars: Vec<BarDto> = answer
            .bars
            .iter()
            .map(|b| BarDto::from_stored(b, now))
            .collect();
        if fill.0.unwrap_or(false) {
            // One past the limit, to know that it was truncated.
            bars = fill_gaps(bars, interval, covered_to, now, limit.saturating_add(1));
            if bars.len() > limit {
                bars.truncate(limit);
                truncated = true;
                covered_to = bars.last().map_or(covered_to, |b| b.time);
            }
        }
        OhlcvResponse::Ok(Json(OhlcvBody {
            instrument: instrument.to_string(),
            interval: interval.as_str().to_owned(),
            from,
            to: covered_to,
            truncated,
            served: match answer.served {
                Served::Cache => "cache",
                Served::Database => "database",
                Served::Fetched => "fetched",
            }
            .to_owned(),
            bars,
        }))
    }

    /// The instruments the platform holds, with their first and last bar.
    #[oai(path = "/instruments", method = "get")]
    async fn instruments(&self) -> InstrumentsResponse {
        match (self.state.instruments)().await {
            Ok(list) => InstrumentsResponse::Ok(Json(
                list.into_iter()
                    .map(|s| InstrumentDto {
                        instrument: s.instrument.to_string(),
                        market: s.instrument.market.clone(),
                        base: s.instrument.base.clone(),
                        quote: s.instrument.quote.clone(),
                        first_bar: s.first_open,
                        last_bar: s.last_open,
                        bars: s.bars,
                    })
                    .collect(),
            )),
            Err(err) => InstrumentsResponse::Unavailable(Json(ErrorBody::new("unavailable", err))),
        }
    }

    /// A live stream of bars (server-sent events), from `from` on.
    ///
    /// First what is stored from `from` on, then every change of a bar as it
    /// is committed, pushed. Event types: `partial` (the interval in
    /// progress, whenever it changes), `bar` (an interval that closed, a
    /// grace period after its end: sent closed once), `correction` (a closed
    /// interval already sent, changed by a late trade or a repair: replace it
    /// in place). Each event has an id; reconnecting with `Last-Event-ID` (the
    /// browser's EventSource does it by itself), or `last_event_id`,
    /// resumes: every bar changed since, then the intervals from the last one
    /// closed on, without a gap and without the history again.
    #[oai(path = "/stream", method = "get")]
    async fn stream(
        &self,
        /// `MARKET:BASE-QUOTE`, e.g. `Coinbase:BTC-USD`.
        #[oai(validator(pattern = r"^[A-Za-z0-9.]{1,32}:[A-Za-z0-9.]{1,32}-[A-Za-z0-9.]{1,32}$"))]
        instrument: Query<String>,
        /// Bar interval.
        interval: Query<Option<IntervalParam>>,
        /// Start: Unix seconds or RFC 3339 (in the future: the stream starts
        /// with no history).
        from: Query<crate::time::TimeParam>,
        /// Resume after this event id (as the `Last-Event-ID` header).
        #[oai(validator(pattern = r"^([0-9]{1,18}-[0-9]{1,10})?$"))]
        last_event_id: Query<Option<String>>,
        /// Resume after this event id (sent by EventSource on reconnect).
        #[oai(
            name = "Last-Event-ID",
            validator(pattern = r"^([0-9]{1,18}-[0-9]{1,10})?$")
        )]
        last_event_header: Header<Option<String>>,
        request: &poem::Request,
    ) -> StreamResponse {
        // A `Last-Event-ID` that is not visible ASCII is read as absent by
        // the framework: refuse it here, as the document's pattern does.
        if request
            .headers()
            .get_all("last-event-id")
            .iter()
            .any(|v| v.to_str().is_err())
        {
            return StreamResponse::BadRequest(Json(ErrorBody::new(
                "bad_request",
                "`Last-Event-ID` must be an id this stream sent (`VERSION-TIME`): it is not ASCII",
            )));
        }
        let interval: Interval = interval.0.unwrap_or(IntervalParam::M1).into();
        let (instrument, from, _) =
            match validate(&instrument.0, interval, from.0 .0, None, now_secs()) {
                Ok(v) => v,
                Err(msg) => {
                    return StreamResponse::BadRequest(Json(ErrorBody::new("bad_request", msg)))
                }
            };
        let resume = match last_event_header
            .0
            .filter(|id| !id.is_empty())
            .or(last_event_id.0.filter(|id| !id.is_empty()))
        {
            Some(id) => match stream::Resume::parse(&id) {
                Ok(r) => Some(r),
                Err(msg) => {
                    tracing::warn!(%instrument, error = %msg, "stream resume refused");
                    return StreamResponse::BadRequest(Json(ErrorBody::new("bad_request", msg)));
                }
            },
            None => None,
        };
        let Ok(permit) = Arc::clone(&self.state.streams).try_acquire_owned() else {
            tracing::warn!(%instrument, max = self.state.config.max_streams, "live stream refused: too many");
            return StreamResponse::Unavailable(Json(ErrorBody::new(
                "unavailable",
                format!(
                    "this node serves {} live streams already, its limit (`api.max_streams`); try again later",
                    self.state.config.max_streams
                ),
            )));
        };
        let events = stream::events(
            Arc::clone(&self.state),
            Arc::clone(&self.state.feed),
            instrument,
            interval,
            from,
            resume,
            permit,
        );
        StreamResponse::Ok(crate::sse::BarEvents(
            EventStream::new(events)
                .keep_alive(std::time::Duration::from_secs(15))
                .to_event(|e: StreamEvent| {
                    poem::web::sse::Event::message(
                        serde_json::to_string(&SerEvent::from(&e)).unwrap_or_default(),
                    )
                    .event_type(e.kind.clone())
                    .id(e.id.clone())
                }),
        ))
    }
}

/// The JSON sent in a stream event (the same fields as [`BarDto`]).
#[derive(serde::Serialize)]
struct SerEvent<'a> {
    time: i64,
    open: String,
    high: String,
    low: String,
    close: String,
    volume_base: String,
    volume_quote: String,
    trades: u64,
    source: &'a str,
    closed: bool,
}

impl<'a> From<&'a StreamEvent> for SerEvent<'a> {
    fn from(e: &'a StreamEvent) -> Self {
        let b = &e.bar;
        Self {
            time: b.time,
            open: b.open.to_string(),
            high: b.high.to_string(),
            low: b.low.to_string(),
            close: b.close.to_string(),
            volume_base: b.volume_base.to_string(),
            volume_quote: b.volume_quote.to_string(),
            trades: b.trades,
            source: &b.source,
            closed: b.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn bar(time: i64, close: i64) -> BarDto {
        BarDto {
            close: Decimal::from(close),
            ..BarDto::filled(time, Decimal::from(close), true)
        }
    }

    #[test]
    fn validation_says_what_is_wrong() {
        let now = 1_700_000_000;
        assert!(validate("BTC-USD", Interval::M1, 0, Some(60), now)
            .unwrap_err()
            .contains("MARKET:BASE-QUOTE"));
        // A range that ends before it starts is empty, not wrong.
        let (_, from, to) = validate("Coinbase:BTC-USD", Interval::M1, 120, Some(60), now).unwrap();
        assert!(from > to);
        assert!(validate(
            "Coinbase:BTC-USD",
            Interval::M1,
            1_700_000_000_000,
            None,
            now
        )
        .unwrap_err()
        .contains("Unix seconds"));
        let (_, from, to) =
            validate("Coinbase:BTC-USD", Interval::M5, 601, Some(1_199), now).unwrap();
        assert_eq!((from, to), (600, 900));
    }

    #[test]
    fn a_far_to_is_clamped_to_the_interval_in_progress() {
        let now = 1_700_000_030;
        let (_, _, to) = validate(
            "Coinbase:BTC-USD",
            Interval::M1,
            0,
            Some(7_258_118_400),
            now,
        )
        .unwrap();
        assert_eq!(to, 1_699_999_980);
        assert_eq!(to, Interval::M1.floor(now));
        let (_, _, to) = validate(
            "Coinbase:BTC-USD",
            Interval::D1,
            0,
            Some(7_258_118_400),
            now,
        )
        .unwrap();
        assert_eq!(to, Interval::D1.floor(now));
        // A range in the future is empty.
        let (_, from, to) = validate(
            "Coinbase:BTC-USD",
            Interval::M1,
            now + 600,
            Some(now + 900),
            now,
        )
        .unwrap();
        assert!(from > to);
    }

    #[test]
    fn fill_inserts_flat_bars_at_the_previous_close() {
        let filled = fill_gaps(vec![bar(60, 5), bar(240, 7)], Interval::M1, 300, 1_000, 100);
        let times: Vec<i64> = filled.iter().map(|b| b.time).collect();
        assert_eq!(times, [60, 120, 180, 240, 300]);
        assert_eq!(filled[1].source, "filled");
        assert_eq!(filled[2].close, Decimal::from(5));
        assert_eq!(filled[4].close, Decimal::from(7));
        assert_eq!(filled[1].volume_base, Decimal::ZERO);
    }

    #[test]
    fn fill_stops_at_the_cap_whatever_the_range() {
        // A bar of 1970 and `to` in 2200: 120 million empty minutes, of which
        // only the first few are ever built.
        let far = 7_258_118_400;
        let filled = fill_gaps(vec![bar(60, 5)], Interval::M1, far, far, 11);
        assert_eq!(filled.len(), 11);
        let filled = fill_gaps(vec![bar(60, 5), bar(far, 7)], Interval::M1, far, far, 3);
        assert_eq!(
            filled.iter().map(|b| b.time).collect::<Vec<_>>(),
            [60, 120, 180]
        );
    }
}
