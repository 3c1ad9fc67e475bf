//! The shapes of CryptoCompare's REST bodies and WebSocket frames.
//!
//! `Wire*` types mirror the JSON as sent and borrow from the text they were
//! parsed from (no copies of strings or numbers); [`parse`](super::parse)
//! turns them into the typed values below. Numbers that become prices or
//! volumes are kept as raw JSON text so that they convert to
//! [`Decimal`] exactly as written.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One OHLCV bar of `histominute`, `histohour` or `histoday`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoBar {
    /// Start of the bar, unix seconds.
    pub time: i64,
    /// First trade price (the previous close for a bar without trades).
    pub open: Decimal,
    /// Highest trade price.
    pub high: Decimal,
    /// Lowest trade price.
    pub low: Decimal,
    /// Last trade price.
    pub close: Decimal,
    /// Volume in the base symbol (sum of quantities).
    pub volume_from: Decimal,
    /// Volume in the quote symbol (sum of price times quantity).
    pub volume_to: Decimal,
}

/// Bar length of a history request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// `histominute`: 60 s bars.
    Minute,
    /// `histohour`: 3600 s bars.
    Hour,
    /// `histoday`: 86400 s bars.
    Day,
}

impl Interval {
    /// Bar length in seconds.
    pub fn secs(self) -> i64 {
        match self {
            Interval::Minute => 60,
            Interval::Hour => 3_600,
            Interval::Day => 86_400,
        }
    }

    /// The REST path, e.g. `/data/v2/histominute`.
    pub fn path(self) -> &'static str {
        match self {
            Interval::Minute => "/data/v2/histominute",
            Interval::Hour => "/data/v2/histohour",
            Interval::Day => "/data/v2/histoday",
        }
    }
}

/// The envelope every history answer has, success or error.
#[derive(Debug, Deserialize)]
pub(crate) struct WireEnvelope<'a> {
    #[serde(rename = "Response", borrow)]
    pub response: Option<Cow<'a, str>>,
    #[serde(rename = "Message", borrow, default)]
    pub message: Option<Cow<'a, str>>,
    #[serde(rename = "Type")]
    pub type_code: Option<i64>,
    #[serde(rename = "ParamWithError", borrow, default)]
    pub param_with_error: Option<Cow<'a, str>>,
    #[serde(rename = "Data", borrow)]
    pub data: Option<&'a RawValue>,
}

/// `Data` of a success answer.
#[derive(Debug, Deserialize)]
pub(crate) struct WireHistoData<'a> {
    #[serde(rename = "Data", borrow)]
    pub bars: Vec<WireBar<'a>>,
}

/// One bar as sent; numbers kept as text.
#[derive(Debug, Deserialize)]
pub(crate) struct WireBar<'a> {
    pub time: i64,
    #[serde(borrow)]
    pub open: &'a RawValue,
    #[serde(borrow)]
    pub high: &'a RawValue,
    #[serde(borrow)]
    pub low: &'a RawValue,
    #[serde(borrow)]
    pub close: &'a RawValue,
    #[serde(borrow)]
    pub volumefrom: &'a RawValue,
    #[serde(borrow)]
    pub volumeto: &'a RawValue,
}

/// Every field any server frame may have; which are present depends on
/// `TYPE`. Unlisted fields (`TOTAL`, `RTS`, `CCSEQ`, ...) are skipped.
#[derive(Debug, Deserialize)]
#[allow(non_snake_case)]
pub(crate) struct WireFrame<'a> {
    #[serde(borrow)]
    pub TYPE: Cow<'a, str>,
    #[serde(borrow, default)]
    pub MESSAGE: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub SUB: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub INFO: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub PARAMETER: Option<Cow<'a, str>>,
    #[serde(default)]
    pub TIMEMS: Option<i64>,
    #[serde(borrow, default)]
    pub SERVER_NAME: Option<Cow<'a, str>>,
    #[serde(default)]
    pub SERVER_TIME_MS: Option<i64>,
    #[serde(default)]
    pub CLIENT_ID: Option<i64>,
    #[serde(default)]
    pub SOCKETS_ACTIVE: Option<i64>,
    #[serde(default)]
    pub SOCKETS_REMAINING: Option<i64>,
    #[serde(borrow, default)]
    pub M: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub FSYM: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub TSYM: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub F: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub ID: Option<&'a RawValue>,
    #[serde(default)]
    pub TS: Option<i64>,
    #[serde(default)]
    pub TSNS: Option<i64>,
    #[serde(borrow, default)]
    pub Q: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub P: Option<&'a RawValue>,
}

/// A server frame, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    /// `20` STREAMERWELCOME: the first frame of every connection.
    Welcome(Welcome<'a>),
    /// `16` SUBSCRIBECOMPLETE for one subscription.
    SubscribeComplete {
        /// The subscription string.
        sub: Cow<'a, str>,
    },
    /// `17` UNSUBSCRIBECOMPLETE for one subscription.
    UnsubscribeComplete {
        /// The subscription string.
        sub: Cow<'a, str>,
    },
    /// `3` LOADCOMPLETE: every subscription of a `SubAdd` is loaded.
    LoadComplete,
    /// `999` HEARTBEAT.
    Heartbeat {
        /// Server time, unix milliseconds.
        time_ms: Option<i64>,
    },
    /// `0` a trade.
    Trade(TradeFrame<'a>),
    /// `401`, `429` or `500`: a refusal or error notice.
    Notice(Notice<'a>),
    /// A `TYPE` this client does not handle (tickers, candles, ...).
    Unknown {
        /// The frame's `TYPE`.
        type_code: Cow<'a, str>,
    },
}

/// The welcome frame's useful fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// `SERVER_NAME`.
    pub server_name: Option<Cow<'a, str>>,
    /// `SERVER_TIME_MS`.
    pub server_time_ms: Option<i64>,
    /// `CLIENT_ID`.
    pub client_id: Option<i64>,
    /// `SOCKETS_ACTIVE`.
    pub sockets_active: Option<i64>,
    /// `SOCKETS_REMAINING`.
    pub sockets_remaining: Option<i64>,
}

/// A `401`, `429` or `500` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice<'a> {
    /// `401`, `429` or `500`.
    pub code: u16,
    /// `MESSAGE`, e.g. `INVALID_SUB`.
    pub message: Cow<'a, str>,
    /// `PARAMETER`, e.g. the refused subscription.
    pub parameter: Option<Cow<'a, str>>,
    /// `INFO`.
    pub info: Option<Cow<'a, str>>,
}

/// A trade frame, with numbers already exact decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeFrame<'a> {
    /// `M`.
    pub market: Cow<'a, str>,
    /// `FSYM`.
    pub base: Cow<'a, str>,
    /// `TSYM`.
    pub quote: Cow<'a, str>,
    /// `F`, the flag bitmask.
    pub flags: u32,
    /// `ID`.
    pub id: Cow<'a, str>,
    /// `TS`, unix seconds.
    pub ts: i64,
    /// `TSNS`, nanosecond part, 0 when absent.
    pub ts_ns: i64,
    /// `P`.
    pub price: Decimal,
    /// `Q`.
    pub quantity: Decimal,
}

/// A client frame: `SubAdd` or `SubRemove`.
#[derive(Debug, Serialize)]
pub(crate) struct SubRequest<'a> {
    pub action: &'static str,
    pub subs: &'a [String],
}
