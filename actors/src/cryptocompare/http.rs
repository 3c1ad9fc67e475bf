//! The history client: OHLCV bars from `/data/v2/histo{minute,hour,day}`
//! over any time range.
//!
//! One request returns at most 2001 bars, so a range is read backwards in
//! pages: the newest page first (`toTs` = the range's last bar), then each
//! next page ends one bar before the earliest bar received, so pages neither
//! overlap nor leave gaps. The result is ascending and holds exactly the bars
//! whose start lies in `[from, to]`.
//!
//! Budget: at most `rest_per_second` and `rest_per_minute` requests (shared
//! by every clone: the backfill, the repair and on-demand fetches), waited
//! for before each request, never refused by the source for going too fast.
//!
//! Retry rule: rate limits (a `Type` 99 body or HTTP 429) are retried with
//! exponential back-off, up to `rest_retries` times; every other error is
//! returned at once. The API key travels only in the `authorization` header.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{debug, warn};

use super::backoff::Backoff;
use super::config::CryptoCompareConfig;
use super::error::{ApiErrorKind, CryptoCompareError};
use super::messages::{HistoBar, Interval};
use super::metrics::{HistoryMetrics, HistoryMetricsSnapshot};
use super::parse::{parse_histo_body, HistoAnswer};
use crate::domain::Instrument;

/// Largest `limit` a history request may ask for (the answer holds `limit + 1`
/// bars).
pub const MAX_LIMIT: i64 = 2_000;

/// Reads OHLCV history. Cheap to clone; clones share connections,
/// counters and the request budget.
#[derive(Debug, Clone)]
pub struct HistoryClient {
    http: reqwest::Client,
    config: Arc<CryptoCompareConfig>,
    metrics: Arc<HistoryMetrics>,
    limits: Arc<Vec<governor::DefaultDirectRateLimiter>>,
}

impl HistoryClient {
    /// A client for `config.rest_url`.
    pub fn new(config: CryptoCompareConfig) -> Result<Self, CryptoCompareError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .timeout(config.request_timeout())
            .tcp_nodelay(true)
            .build()
            .map_err(CryptoCompareError::Transport)?;
        let limits = [
            (
                config.rest_per_second,
                governor::Quota::per_second as fn(std::num::NonZeroU32) -> governor::Quota,
            ),
            (config.rest_per_minute, governor::Quota::per_minute),
        ]
        .into_iter()
        .filter_map(|(n, quota)| std::num::NonZeroU32::new(n).map(quota))
        .map(governor::RateLimiter::direct)
        .collect();
        Ok(Self {
            http,
            config: Arc::new(config),
            metrics: Arc::default(),
            limits: Arc::new(limits),
        })
    }

    /// Waits for this client's turn under `rest_per_second` and
    /// `rest_per_minute` (counted as `throttled` when it had to wait).
    async fn take_turn(&self) {
        let mut waited = false;
        for limit in self.limits.iter() {
            if limit.check().is_err() {
                waited = true;
                limit.until_ready().await;
            }
        }
        if waited {
            metrics::counter!(crate::telemetry::SOURCE_REST_EVENTS, "event" => "throttled")
                .increment(1);
        }
    }

    /// The counters so far.
    pub fn metrics(&self) -> HistoryMetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Counts bars refused by the platform's rules.
    pub(crate) fn count_refused(&self, n: usize) {
        self.metrics
            .refused_bars
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Every bar of `instrument` whose start lies in `[from_ts, to_ts]` (unix
    /// seconds), ascending, read in as many pages as needed.
    pub async fn bars(
        &self,
        interval: Interval,
        instrument: &Instrument,
        from_ts: i64,
        to_ts: i64,
    ) -> Result<Vec<HistoBar>, CryptoCompareError> {
        let result = self.bars_inner(interval, instrument, from_ts, to_ts).await;
        if result.is_err() {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::SOURCE_REST_EVENTS, "event" => "error")
                .increment(1);
        }
        result
    }

    async fn bars_inner(
        &self,
        interval: Interval,
        instrument: &Instrument,
        from_ts: i64,
        to_ts: i64,
    ) -> Result<Vec<HistoBar>, CryptoCompareError> {
        check_range(interval, from_ts, to_ts)?;
        let step = interval.secs();
        let first = from_ts.div_euclid(step) * step
            + if from_ts.rem_euclid(step) == 0 {
                0
            } else {
                step
            };
        let last = to_ts.div_euclid(step) * step;
        let mut pages: Vec<Vec<HistoBar>> = Vec::new();
        let mut to = last;
        while to >= first {
            let limit = ((to - first) / step).clamp(1, MAX_LIMIT);
            let mut page = self.page(interval, instrument, to, limit).await?;
            page.retain(|b| (first..=to).contains(&b.time));
            check_page(&page, step)?;
            let (Some(earliest), Some(newest)) = (page.first(), page.last()) else {
                break; // nothing that far back
            };
            if !pages.is_empty() && newest.time != to {
                return Err(CryptoCompareError::Discontinuity(format!(
                    "asked for bars up to {to}, the page ends at {}",
                    newest.time
                )));
            }
            to = earliest.time - step;
            pages.push(page);
        }
        Ok(pages.into_iter().rev().flatten().collect())
    }

    /// One page: at most `limit + 1` bars ending at or before `to_ts`, as the
    /// server sends them; rate limits retried.
    pub async fn page(
        &self,
        interval: Interval,
        instrument: &Instrument,
        to_ts: i64,
        limit: i64,
    ) -> Result<Vec<HistoBar>, CryptoCompareError> {
        if !(0..=MAX_LIMIT).contains(&limit) {
            return Err(CryptoCompareError::InvalidRequest(format!(
                "limit {limit} is outside 0..={MAX_LIMIT}"
            )));
        }
        let mut backoff =
            Backoff::new(self.config.rest_backoff_ms, self.config.rest_backoff_max_ms);
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.take_turn().await;
            self.metrics.requests.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::SOURCE_REST_EVENTS, "event" => "request")
                .increment(1);
            match self.request(interval, instrument, to_ts, limit).await {
                Err(CryptoCompareError::RateLimited { .. })
                    if attempts <= self.config.rest_retries =>
                {
                    let delay = backoff.next_delay();
                    self.metrics
                        .rate_limited_retries
                        .fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::telemetry::SOURCE_REST_EVENTS, "event" => "rate_limited")
                        .increment(1);
                    warn!(%instrument, ?interval, attempts, delay_ms = delay.as_millis() as u64, "history request rate limited, retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(CryptoCompareError::RateLimited { .. }) => {
                    warn!(%instrument, ?interval, attempts, "history request rate limited, giving up");
                    return Err(CryptoCompareError::RateLimited { attempts });
                }
                Err(e) => {
                    warn!(%instrument, ?interval, error = %e, "history request failed");
                    return Err(e);
                }
                Ok(bars) => return Ok(bars),
            }
        }
    }

    async fn request(
        &self,
        interval: Interval,
        instrument: &Instrument,
        to_ts: i64,
        limit: i64,
    ) -> Result<Vec<HistoBar>, CryptoCompareError> {
        let url = format!(
            "{}{}",
            self.config.rest_url.trim_end_matches('/'),
            interval.path()
        );
        debug!(%instrument, ?interval, to_ts, limit, "history request");
        let mut request = self.http.get(&url).query(&[
            ("fsym", instrument.base.as_str()),
            ("tsym", instrument.quote.as_str()),
            ("e", instrument.market.as_str()),
            ("limit", &limit.to_string()),
            ("toTs", &to_ts.to_string()),
        ]);
        if let Some(key) = &self.config.api_key {
            request = request.header(reqwest::header::AUTHORIZATION, key.header_value()?);
        }
        let response = request
            .send()
            .await
            .map_err(CryptoCompareError::Transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(CryptoCompareError::RateLimited { attempts: 1 });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(CryptoCompareError::Unauthorized(format!(
                "http status {}",
                status.as_u16()
            )));
        }
        let body = read_capped(response).await?;
        let answer = parse_histo_body(&body);
        if !status.is_success() && !matches!(answer, Ok(HistoAnswer::Error(_))) {
            return Err(CryptoCompareError::HttpStatus(status.as_u16()));
        }
        match answer? {
            HistoAnswer::Bars(bars) => Ok(bars),
            HistoAnswer::Error(mut error) => {
                if let Some(key) = &self.config.api_key {
                    error.message = key.redact(&error.message).into_owned();
                }
                Err(match error.kind() {
                    ApiErrorKind::RateLimited => CryptoCompareError::RateLimited { attempts: 1 },
                    ApiErrorKind::Unauthorized => CryptoCompareError::Unauthorized(error.message),
                    _ => CryptoCompareError::Api(error),
                })
            }
        }
    }
}

/// The largest history answer read: a page of 2001 bars is ~400 KiB; a
/// body past this is refused rather than held in memory.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The body as text, refused past [`MAX_BODY_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<String, CryptoCompareError> {
    let too_big = || {
        CryptoCompareError::InvalidRequest(format!(
            "the history answer is larger than {MAX_BODY_BYTES} bytes"
        ))
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(CryptoCompareError::Transport)?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body)
        .map_err(|_| CryptoCompareError::InvalidRequest("the history answer is not UTF-8".into()))
}

/// A page must be strictly ascending with one bar per step.
/// The most bars one [`HistoryClient::bars`] call reads (30 days of
/// minutes): a larger range is asked for in parts (it would hold every page
/// in memory at once).
pub const MAX_BARS_PER_CALL: i64 = 43_200;

/// A range the client can read: within 2009 … a day from now, at most
/// [`MAX_BARS_PER_CALL`] bars. Keeps the paging arithmetic
/// far from overflow whatever a caller (on another node, say) asks for.
fn check_range(interval: Interval, from_ts: i64, to_ts: i64) -> Result<(), CryptoCompareError> {
    use crate::domain::validate;
    let now = validate::now_secs();
    for (field, ts) in [("from", from_ts), ("to", to_ts)] {
        validate::time_secs(field, ts, now)
            .map_err(|e| CryptoCompareError::InvalidRequest(e.to_string()))?;
    }
    // An empty range (from after to) reads nothing.
    if (to_ts - from_ts) / interval.secs() >= MAX_BARS_PER_CALL {
        return Err(CryptoCompareError::InvalidRequest(format!(
            "{from_ts}..={to_ts} is more than {MAX_BARS_PER_CALL} bars: ask in parts"
        )));
    }
    Ok(())
}

fn check_page(page: &[HistoBar], step: i64) -> Result<(), CryptoCompareError> {
    match page.windows(2).find(|w| w[1].time != w[0].time + step) {
        None => Ok(()),
        Some(w) => Err(CryptoCompareError::Discontinuity(format!(
            "bar at {} follows bar at {}",
            w[1].time, w[0].time
        ))),
    }
}
