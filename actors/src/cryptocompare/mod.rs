//! The CryptoCompare adapter: OHLCV history over REST and live trades over
//! WebSocket, speaking the wire protocol of
//! `shared/reference/cryptocompare.md`.
//!
//! * [`HistoryClient`] reads bars of any range, paging and retrying rate
//!   limits ([`http`]).
//! * [`LiveClient`] streams distinct trades as [`Tick`](crate::domain::Tick)s,
//!   reconnecting and deduplicating replays ([`websocket`]).
//! * [`parse`] holds the pure text-to-type functions both use, tested
//!   against recorded frames in `tests/fixtures/cryptocompare/`.
//!
//! Prices and volumes are exact decimals taken digit for digit from the JSON
//! text, never through a float. The API key goes only into the
//! `authorization` header: never into a URL, a log line or an error. Both
//! base addresses are configurable so that tests and demos use
//! [`crate::imitation`] instead of the real service.

mod backoff;
mod config;
mod dedup;
pub mod error;
mod handshake;
pub mod http;
pub mod messages;
mod metrics;
pub mod parse;
pub mod ports;
pub mod websocket;

pub use backoff::Backoff;
pub use config::{ApiKey, CryptoCompareConfig};
pub use dedup::Dedup;
pub use error::{ApiError, ApiErrorKind, CryptoCompareError, ParseError};
pub use http::{HistoryClient, MAX_LIMIT};
pub use messages::{Frame, HistoBar, Interval, Notice, TradeFrame, Welcome};
pub use metrics::{HistoryMetricsSnapshot, LiveMetricsSnapshot};
pub use parse::{parse_frame, parse_histo_body, side_from_flags, HistoAnswer};
pub use ports::LiveFeed;
pub use websocket::{LiveClient, LiveHandle};
