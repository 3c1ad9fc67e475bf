//! A local imitation of the CryptoCompare API: REST history and the
//! WebSocket streamer on one port, for tests, demos and benchmarks, since
//! the real service cannot be reached from the build machines.
//!
//! It follows `shared/reference/cryptocompare.md`: the same paths, frames,
//! bodies and error conventions (errors in HTTP-200 bodies, `TYPE` as a
//! string, a replay of the latest trades on every subscribe). Its trades are
//! a pure function of (seed, instrument, second) ([`TradeModel`]), so the
//! bars it serves agree exactly with the trades it streams, and a test can
//! recompute both.
//!
//! Like CryptoCompare, it knows only the pairs it lists
//! ([`ImitationConfig::pairs`], by default [`DEFAULT_PAIRS`]): a history
//! request for any other pair answers HTTP 200 with
//! `{"Response":"Error","Message":"<market> market does not exist for this
//! coin pair (BASE-QUOTE)","HasWarning":false,"Type":1,"RateLimit":{},"Data":{},"Cooldown":0}`,
//! and a `SubAdd` of its trade channel a
//! `{"TYPE":"500","MESSAGE":"INVALID_SUB","PARAMETER":"0~<market>~BASE~QUOTE","INFO":"…"}`
//! notice, and nothing is streamed for it.
//!
//! Faults are switched on through [`ImitationHandle`] in-process, or over
//! HTTP (`/_imitation/...`, see [`control`]) from another process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use candela_actors::imitation::{Imitation, ImitationConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let imitation = Imitation::serve(ImitationConfig::default(), listener).await?;
//! println!("{} {}", imitation.rest_url(), imitation.ws_url());
//! imitation.drop_connections();
//! imitation.shutdown().await;
//! # Ok(()) }
//! ```

mod bars;
pub mod control;
mod faults;
pub mod frames;
mod handle;
mod listing;
pub mod model;
mod rest;
#[cfg(test)]
mod tests;
mod ws;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use poem::listener::TcpAcceptor;
use poem::{get, EndpointExt, Route, Server};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use bars::BarCache;
pub use faults::{ImitationCounters, RateLimitStyle};
pub use handle::ImitationHandle;
pub use listing::DEFAULT_PAIRS;
pub use model::{Trade, TradeModel};

use crate::cryptocompare::ApiKey;
use crate::domain::Instrument;
use faults::{Counters, Faults};
use listing::Listing;

/// How the imitation behaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImitationConfig {
    /// Seed of the synthetic trades.
    pub seed: u64,
    /// The key clients must present (header or `api_key`); None: anyone.
    pub api_key: Option<ApiKey>,
    /// Mean trades per second per instrument.
    pub trades_per_sec: f64,
    /// First unix second with trades; None: midnight UTC seven days before
    /// the server starts (like a free key's minute history).
    pub history_start_ts: Option<i64>,
    /// Time between heartbeats on each connection.
    pub heartbeat_interval_ms: u64,
    /// Time between two pushes of new trades to a connection.
    pub stream_interval_ms: u64,
    /// Trades replayed on each subscribe.
    pub replay_count: usize,
    /// How long held-back ("late") trades wait, after the last one is held,
    /// while newer trades flow, before they are sent.
    pub late_release_ms: u64,
    /// The pairs it lists, `MARKET:BASE-QUOTE` (e.g. `Coinbase:BTC-USD`;
    /// `CCCAGG:…` for requests without `e=`), matched without regard to
    /// case: history and live trades exist for these only, every other pair
    /// is refused as CryptoCompare refuses a pair it does not list. Default:
    /// [`DEFAULT_PAIRS`].
    pub pairs: Vec<String>,
    /// Every REST answer is delayed by this many milliseconds (0: none), to
    /// make the source slow; changed at run time by
    /// [`ImitationHandle::set_rest_delay`] or `POST /_imitation/rest_delay`.
    pub rest_delay_ms: u64,
}

impl Default for ImitationConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            api_key: None,
            trades_per_sec: 3.0,
            history_start_ts: None,
            heartbeat_interval_ms: 30_000,
            stream_interval_ms: 20,
            replay_count: 20,
            late_release_ms: 500,
            pairs: DEFAULT_PAIRS.iter().map(|p| (*p).to_owned()).collect(),
            rest_delay_ms: 0,
        }
    }
}

impl ImitationConfig {
    /// A benchmark setting: 60,000 trades per second per instrument (so
    /// three instruments give 180,000/s), pushed every 5 ms. Trades start
    /// when the server starts: history is cheap only while it is short, as
    /// every bar is computed from its trades.
    pub fn firehose() -> Self {
        Self {
            trades_per_sec: 60_000.0,
            stream_interval_ms: 5,
            history_start_ts: Some(unix_now_secs()),
            ..Self::default()
        }
    }

    /// Whether the configuration can work: the numbers in range and every
    /// entry of [`pairs`](Self::pairs) a `MARKET:BASE-QUOTE` listed once.
    pub fn validate(&self) -> Result<(), ImitationError> {
        if !(self.trades_per_sec.is_finite() && self.trades_per_sec >= 0.0) {
            return Err(ImitationError::Config(
                "trades_per_sec must be a finite number >= 0".into(),
            ));
        }
        if self.stream_interval_ms == 0 || self.heartbeat_interval_ms == 0 {
            return Err(ImitationError::Config("intervals must be positive".into()));
        }
        Listing::parse(&self.pairs).map(drop)
    }

    /// The instruments it lists, sorted, each once, in the listed spelling.
    pub fn instruments(&self) -> Result<Vec<Instrument>, ImitationError> {
        Ok(Listing::parse(&self.pairs)?.instruments())
    }

    /// Whether it lists `instrument` (without regard to case).
    pub fn lists(&self, instrument: &Instrument) -> Result<bool, ImitationError> {
        Ok(Listing::parse(&self.pairs)?
            .get(&instrument.market, &instrument.base, &instrument.quote)
            .is_some())
    }
}

/// The imitation could not start.
#[derive(Debug, thiserror::Error)]
pub enum ImitationError {
    /// The listener failed.
    #[error("imitation listener: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration cannot work.
    #[error("invalid imitation configuration: {0}")]
    Config(String),
}

/// A listener to serve on: std or tokio.
#[derive(Debug)]
pub enum ImitationListener {
    /// A bound std listener (set non-blocking by `serve`).
    Std(std::net::TcpListener),
    /// A bound tokio listener.
    Tokio(tokio::net::TcpListener),
}

impl From<std::net::TcpListener> for ImitationListener {
    fn from(l: std::net::TcpListener) -> Self {
        Self::Std(l)
    }
}

impl From<tokio::net::TcpListener> for ImitationListener {
    fn from(l: tokio::net::TcpListener) -> Self {
        Self::Tokio(l)
    }
}

/// State shared by every endpoint.
#[derive(Debug)]
pub(crate) struct State {
    pub config: ImitationConfig,
    pub listing: Listing,
    pub model: TradeModel,
    pub bars: BarCache,
    pub faults: Faults,
    pub counters: Counters,
    pub started: Instant,
    pub next_connection: AtomicU64,
    pub shutting_down: AtomicBool,
}

impl State {
    /// The listed instrument (in its listed spelling), if the market lists
    /// the pair.
    pub(crate) fn listed(&self, market: &str, base: &str, quote: &str) -> Option<&Instrument> {
        self.listing.get(market, base, quote)
    }

    /// Whether the request presents an acceptable key.
    pub(crate) fn authorized(
        &self,
        headers: &poem::http::HeaderMap,
        query: &HashMap<String, String>,
    ) -> bool {
        let from_header = headers
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Apikey ")
                    .or_else(|| v.strip_prefix("apikey "))
            });
        let presented = from_header.or(query.get("api_key").map(String::as_str));
        self.faults.key_accepted(presented)
    }
}

/// A symbol CryptoCompare would accept: 1 to 10 letters, digits or dots.
pub(crate) fn valid_symbol(s: &str) -> bool {
    (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

pub(crate) fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn unix_now_secs() -> i64 {
    unix_now_ns() / 1_000_000_000
}

/// Starts imitations.
#[derive(Debug)]
pub struct Imitation;

impl Imitation {
    /// Serves REST and WebSocket on `listener` until
    /// [`ImitationHandle::shutdown`], on the current tokio runtime.
    pub async fn serve(
        config: ImitationConfig,
        listener: impl Into<ImitationListener>,
    ) -> Result<ImitationHandle, ImitationError> {
        config.validate()?;
        let listing = Listing::parse(&config.pairs)?;
        let listener = match listener.into() {
            ImitationListener::Tokio(l) => l,
            ImitationListener::Std(l) => {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)?
            }
        };
        let addr = listener.local_addr()?;
        let start_ts = config
            .history_start_ts
            .unwrap_or_else(|| (unix_now_secs() - 7 * 86_400).div_euclid(86_400) * 86_400);
        let state = Arc::new(State {
            model: TradeModel::new(config.seed, config.trades_per_sec, start_ts),
            faults: Faults {
                api_key: std::sync::RwLock::new(config.api_key.clone()),
                rest_delay_ms: AtomicU64::new(config.rest_delay_ms),
                ..Faults::default()
            },
            config,
            listing,
            bars: BarCache::default(),
            counters: Counters::default(),
            started: Instant::now(),
            next_connection: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
        });
        let app = Route::new()
            .at("/v2", get(ws::streamer))
            .at("/data/v2/histominute", get(rest::histominute))
            .at("/data/v2/histohour", get(rest::histohour))
            .at("/data/v2/histoday", get(rest::histoday))
            .nest("/_imitation", control::routes())
            .data(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?);
        let task = tokio::spawn(async move {
            let signal = async {
                let _ = stopped.await;
            };
            if let Err(e) = server
                .run_with_graceful_shutdown(app, signal, Some(Duration::from_secs(2)))
                .await
            {
                tracing::error!(error = %e, "imitation server failed");
            }
        });
        tracing::info!(%addr, start_ts, pairs = state.listing.instruments().len(), "cryptocompare imitation listening");
        Ok(ImitationHandle {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }
}
