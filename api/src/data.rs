//! The data endpoints: OHLCV series, instruments, and the live stream.

use std::sync::Arc;

use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{EventStream, Json, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::{ApiResponse, OpenApi};

use candela_actors::datastore::{BarQuery, DataError, Served};
use candela_actors::domain::{Instrument, Interval};

use crate::model::{ErrorBody, InstrumentDto, IntervalParam, OhlcvBody, StreamEvent};
use crate::negotiate::{self, Coding, Compressed};
use crate::series::{self, Bars, Head, HourEntry, HourMemo};
use crate::server::ApiState;
use crate::stream;
use candela_actors::telemetry::{API_MEMO_ANSWERS, API_MEMO_HOURS};

/// The data API.
pub struct DataApi {
    pub(crate) state: Arc<ApiState>,
    /// Encoded hours of 1-minute bars (see [`crate::series`]).
    pub(crate) memo: Arc<HourMemo>,
    /// Compressed answers.
    pub(crate) compressed: Arc<Compressed>,
}

/// The JSON of an [`OhlcvBody`], written from pre-encoded bytes (see
/// [`crate::series`]), in the content coding the client accepted.
pub struct OhlcvJson {
    body: bytes::Bytes,
    coding: Coding,
}

impl Payload for OhlcvJson {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn schema_ref() -> MetaSchemaRef {
        <OhlcvBody as poem_openapi::types::Type>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <OhlcvBody as poem_openapi::types::Type>::register(registry);
    }
}

impl poem::IntoResponse for OhlcvJson {
    fn into_response(self) -> poem::Response {
        let mut resp = poem::Response::builder().content_type(Self::CONTENT_TYPE);
        if let Some(coding) = self.coding.header() {
            resp = resp.header(poem::http::header::CONTENT_ENCODING, coding);
        }
        resp.body(self.body)
    }
}

/// Answer of `GET /api/v1/ohlcv`.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "ohlcv_bad_request")]
pub enum OhlcvResponse {
    /// The series (gzip or brotli when `Accept-Encoding` asks for it).
    #[oai(status = 200)]
    Ok(
        OhlcvJson,
        /// A strong tag of this answer: send it as `If-None-Match` to be
        /// answered 304 while the answer is the same.
        #[oai(header = "ETag")]
        String,
        /// `no-cache`: a stored answer may be used after asking with its tag.
        #[oai(header = "Cache-Control")]
        String,
        /// `Accept-Encoding`.
        #[oai(header = "Vary")]
        String,
    ),
    /// The answer is the one `If-None-Match` names.
    #[oai(status = 304)]
    NotModified(
        /// The tag of the answer.
        #[oai(header = "ETag")]
        String,
        /// `no-cache`.
        #[oai(header = "Cache-Control")]
        String,
        /// `Accept-Encoding`.
        #[oai(header = "Vary")]
        String,
    ),
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

/// Checks a time range; returns them aligned to the
/// interval, with `to` clamped to the interval in progress at `now` (no bar
/// can start later, and no work may depend on how far in the future a caller
/// puts `to`). A range that starts after its end (as asked, or because it
/// starts in the future) is returned as it is: it holds no bars, which is
/// an answer, not an error (the document cannot say "`from` ≤ `to`", so the
/// server does not refuse it either).
pub(crate) fn validate(
    instrument: Instrument,
    interval: Interval,
    from: i64,
    to: Option<i64>,
    now: i64,
) -> Result<(Instrument, i64, i64), String> {
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
    #[allow(clippy::too_many_arguments)] // one per documented parameter
    async fn ohlcv(
        &self,
        /// `MARKET:BASE-QUOTE`, e.g. `Coinbase:BTC-USD`.
        instrument: Query<crate::params::InstrumentParam>,
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
        /// Tags of answers the client holds: the same answer is 304.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
        request: &poem::Request,
    ) -> OhlcvResponse {
        // Read from the request's headers, with every tag it names.
        let _ = if_none_match;
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
            instrument.0 .0,
            interval,
            from.0 .0,
            to.0.map(|t| t.0),
            now_secs(),
        ) {
            Ok(v) => v,
            Err(msg) => return OhlcvResponse::BadRequest(Json(ErrorBody::new("bad_request", msg))),
        };
        let name = instrument.to_string();
        let head = |from, to, truncated, served| Head {
            instrument: &name,
            interval: interval.as_str(),
            from,
            to,
            truncated,
            served,
        };
        if from > to {
            // Nothing can be in it: no store, no source is asked.
            let body = series::body(head(from, to, false, "none"), &Bars::default());
            return self.answer(request, body).await;
        }
        let now = now_secs();
        let limit = limit as usize;
        let fill = fill.0.unwrap_or(false);
        let finish = Finish {
            name: &name,
            interval,
            from,
            to,
            limit,
            fill,
            now,
        };
        let mirror = self
            .state
            .mirror
            .as_ref()
            .filter(|_| interval == Interval::M1);
        // When the cache's events say no hour of the range moved since this
        // node encoded it (every hour, or those that hold the first `limit`
        // bars): the answer is the memo's, with no round trip.
        if let Some((entries, whole)) = mirror
            .and_then(|m| m.known_prefix(&instrument, from, to, std::time::Instant::now()))
            .and_then(|(versions, whole)| {
                Some((self.memo.serving(&instrument, &versions, from, now)?, whole))
            })
        {
            let mut bars = Bars::default();
            for entry in &entries {
                bars.push_run(&entry.bars, entry.bars.range(from, to), limit);
                if bars.len() >= limit {
                    break;
                }
            }
            if whole || bars.len() >= limit {
                metrics::counter!(API_MEMO_ANSWERS, "how" => "memo").increment(1);
                metrics::counter!(API_MEMO_HOURS, "outcome" => "reused")
                    .increment(entries.len() as u64);
                return self.finish(request, finish, bars, "cache").await;
            }
        }
        // The hours this node has encoded already: the cache sends only the
        // others (and those whose version moved).
        let (known, entries) = if interval == Interval::M1 {
            let (known, entries) = self.memo.known(&instrument, from, to, now);
            (Some(known), entries)
        } else {
            (None, Vec::new())
        };
        let query = BarQuery {
            instrument: instrument.clone(),
            interval,
            from,
            to,
            limit,
            fetch: true,
            by_hour: known,
        };
        // Taken before the read: it teaches the mirror only if no event
        // overtook it.
        let ticket = mirror.and_then(|m| m.ticket(&instrument));
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
        if interval == Interval::M1 {
            metrics::counter!(API_MEMO_ANSWERS, "how" => "store").increment(1);
        }
        // One `now` for the whole answer: the entries were chosen as valid
        // at it, and fresh bars are encoded at it.
        let bars: Bars = match &answer.hours {
            Some(range) => {
                let mut bars = Bars::default();
                let (mut reused, mut encoded) = (0u64, 0u64);
                for hour in &range.hours {
                    if hour.bars.is_some() {
                        encoded += 1;
                    } else {
                        reused += 1;
                    }
                    let entry = match &hour.bars {
                        Some(bars) => {
                            let complete_from = hour.hour.max(range.complete_from);
                            let entry =
                                Arc::new(HourEntry::build(hour.version, complete_from, bars, now));
                            self.memo.insert(&instrument, hour.hour, Arc::clone(&entry));
                            entry
                        }
                        None => match entries
                            .iter()
                            .find(|(h, e)| *h == hour.hour && e.version == hour.version)
                        {
                            Some((_, entry)) => Arc::clone(entry),
                            None => {
                                // The cache named a version this request
                                // did not send: a bug, not the client's.
                                tracing::error!(%instrument, hour = hour.hour, "the cache answered an hour as known that was not");
                                return OhlcvResponse::Unavailable(Json(ErrorBody::new(
                                    "unavailable",
                                    "the cache answered inconsistently; ask again",
                                )));
                            }
                        },
                    };
                    bars.push_run(&entry.bars, entry.bars.range(from, to), limit);
                    if bars.len() >= limit {
                        break;
                    }
                }
                if let (Some(mirror), Some(ticket)) = (mirror, ticket) {
                    mirror.learn(&instrument, ticket, range, from, std::time::Instant::now());
                }
                metrics::counter!(API_MEMO_HOURS, "outcome" => "reused").increment(reused);
                metrics::counter!(API_MEMO_HOURS, "outcome" => "encoded").increment(encoded);
                bars
            }
            None => series::bars_of(&answer.bars, now),
        };
        let served = match answer.served {
            Served::Cache => "cache",
            Served::Database => "database",
            Served::Fetched => "fetched",
        };
        self.finish(request, finish, bars, served).await
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
        instrument: Query<crate::params::InstrumentParam>,
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
            match validate(instrument.0 .0, interval, from.0 .0, None, now_secs()) {
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

/// What an answer's bars are finished with: its parameters, checked.
#[derive(Debug, Clone, Copy)]
struct Finish<'a> {
    name: &'a str,
    interval: Interval,
    from: i64,
    to: i64,
    limit: usize,
    fill: bool,
    now: i64,
}

impl DataApi {
    /// The answer of `bars` (at most `limit`, from `from`): says where it
    /// was cut, fills the gaps when asked, and writes it.
    async fn finish(
        &self,
        request: &poem::Request,
        f: Finish<'_>,
        mut bars: Bars,
        served: &str,
    ) -> OhlcvResponse {
        let mut truncated = bars.len() >= f.limit;
        let mut covered_to = match bars.last_time() {
            Some(last) if truncated => last,
            _ => f.to,
        };
        if f.fill {
            // One past the limit, to know that it was truncated.
            bars = bars.fill_gaps(
                f.interval.seconds(),
                covered_to,
                f.now,
                f.limit.saturating_add(1),
            );
            if bars.len() > f.limit {
                bars.truncate(f.limit);
                truncated = true;
                covered_to = bars.last_time().unwrap_or(covered_to);
            }
        }
        let head = Head {
            instrument: f.name,
            interval: f.interval.as_str(),
            from: f.from,
            to: covered_to,
            truncated,
            served,
        };
        self.answer(request, series::body(head, &bars)).await
    }

    /// A 200 with `body` (tagged, compressed as the client accepts), or a
    /// 304 when the client holds it.
    async fn answer(&self, request: &poem::Request, body: bytes::Bytes) -> OhlcvResponse {
        let hash = negotiate::hash(&body);
        let coding = negotiate::coding(request.headers(), body.len());
        let tag = negotiate::tag(hash, coding);
        let (cache_control, vary) = ("no-cache".to_owned(), "Accept-Encoding".to_owned());
        if negotiate::not_modified(request.headers(), hash) {
            return OhlcvResponse::NotModified(tag, cache_control, vary);
        }
        let (body, coding) = self.compressed.get(&body, hash, coding).await;
        let tag = negotiate::tag(hash, coding);
        OhlcvResponse::Ok(OhlcvJson { body, coding }, tag, cache_control, vary)
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

    fn btc() -> Instrument {
        Instrument::new("Coinbase", "BTC", "USD")
    }

    #[test]
    fn validation_says_what_is_wrong() {
        let now = 1_700_000_000;
        // A range that ends before it starts is empty, not wrong.
        let (_, from, to) = validate(btc(), Interval::M1, 120, Some(60), now).unwrap();
        assert!(from > to);
        assert!(validate(btc(), Interval::M1, 1_700_000_000_000, None, now)
            .unwrap_err()
            .contains("Unix seconds"));
        let (_, from, to) = validate(btc(), Interval::M5, 601, Some(1_199), now).unwrap();
        assert_eq!((from, to), (600, 900));
    }

    #[test]
    fn a_far_to_is_clamped_to_the_interval_in_progress() {
        let now = 1_700_000_030;
        let (_, _, to) = validate(btc(), Interval::M1, 0, Some(7_258_118_400), now).unwrap();
        assert_eq!(to, 1_699_999_980);
        assert_eq!(to, Interval::M1.floor(now));
        let (_, _, to) = validate(btc(), Interval::D1, 0, Some(7_258_118_400), now).unwrap();
        assert_eq!(to, Interval::D1.floor(now));
        // A range in the future is empty.
        let (_, from, to) = validate(btc(), Interval::M1, now + 600, Some(now + 900), now).unwrap();
        assert!(from > to);
    }
}
