//! The JSON shapes of the data API.

use poem_openapi::{Enum, Object};
use rust_decimal::Decimal;

use candela_actors::domain::Interval;
use candela_actors::store::{Source, StoredBar};

/// A bar interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum IntervalParam {
    /// One minute.
    #[oai(rename = "1m")]
    M1,
    /// Five minutes.
    #[oai(rename = "5m")]
    M5,
    /// Fifteen minutes.
    #[oai(rename = "15m")]
    M15,
    /// One hour.
    #[oai(rename = "1h")]
    H1,
    /// One day (UTC).
    #[oai(rename = "1d")]
    D1,
}

/// The pattern of an instrument, `MARKET:BASE-QUOTE` (each part 1 to 32
/// ASCII letters, digits or `.`): what `Instrument::from_str` accepts.
pub const INSTRUMENT_PATTERN: &str = r"^[A-Za-z0-9.]{1,32}:[A-Za-z0-9.]{1,32}-[A-Za-z0-9.]{1,32}$";

/// The latest time a request may name, Unix seconds (2200-01-01): anything
/// later is a unit mistake (milliseconds?).
pub const MAX_TIME_SECS: i64 = 7_258_118_400;

/// The format of a state-machine diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum DiagramFormat {
    /// Graphviz DOT.
    Dot,
    /// SVG, drawn by Graphviz.
    Svg,
    /// Mermaid.
    Mermaid,
    /// TikZ (LaTeX).
    Tikz,
}

impl From<IntervalParam> for Interval {
    fn from(p: IntervalParam) -> Self {
        match p {
            IntervalParam::M1 => Interval::M1,
            IntervalParam::M5 => Interval::M5,
            IntervalParam::M15 => Interval::M15,
            IntervalParam::H1 => Interval::H1,
            IntervalParam::D1 => Interval::D1,
        }
    }
}

/// One OHLCV bar.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct BarDto {
    /// Start of the interval, Unix seconds (UTC).
    pub time: i64,
    /// First trade's price.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Last trade's price.
    pub close: Decimal,
    /// Volume in the base currency.
    pub volume_base: Decimal,
    /// Volume in the quote currency.
    pub volume_quote: Decimal,
    /// Number of trades (0 for minutes taken from CryptoCompare's history,
    /// which does not count them, and for filled bars).
    pub trades: u64,
    /// `live` (built from trades), `history` (CryptoCompare's history) or
    /// `filled` (no trade in the interval: a flat bar at the previous close).
    pub source: String,
    /// False for the interval still in progress (the live partial bar).
    pub closed: bool,
}

impl BarDto {
    /// The API form of a stored bar; `now` decides whether it is closed.
    pub fn from_stored(b: &StoredBar, now: i64) -> Self {
        let bar = &b.bar;
        Self {
            time: bar.open_time,
            open: bar.open.normalize(),
            high: bar.high.normalize(),
            low: bar.low.normalize(),
            close: bar.close.normalize(),
            volume_base: bar.volume_base.normalize(),
            volume_quote: bar.volume_quote.normalize(),
            trades: bar.trades,
            source: match b.source {
                Source::Live => "live",
                Source::History => "history",
            }
            .to_owned(),
            closed: bar.open_time + bar.interval.seconds() <= now,
        }
    }

    /// A flat, zero-volume bar at `price` for an interval without trades.
    pub fn filled(time: i64, price: Decimal, closed: bool) -> Self {
        Self {
            time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume_base: Decimal::ZERO,
            volume_quote: Decimal::ZERO,
            trades: 0,
            source: "filled".to_owned(),
            closed,
        }
    }
}

/// An OHLCV series.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct OhlcvBody {
    /// The instrument, `MARKET:BASE-QUOTE`.
    pub instrument: String,
    /// The interval.
    pub interval: String,
    /// Start of the first interval the answer covers (Unix seconds).
    pub from: i64,
    /// Start of the last interval the answer covers (Unix seconds); when the
    /// limit cut the series short, the last bar returned.
    pub to: i64,
    /// Whether `limit` cut the series short (ask again from `to` + interval).
    pub truncated: bool,
    /// `cache`, `database` or `fetched`; `none` for a range that holds no
    /// interval (`from` after `to`: it starts after its end, or in the
    /// future).
    pub served: String,
    /// The bars, in time order, without gaps or overlaps.
    pub bars: Vec<BarDto>,
}

/// An instrument the platform holds.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct InstrumentDto {
    /// `MARKET:BASE-QUOTE`.
    pub instrument: String,
    /// The market (exchange).
    pub market: String,
    /// Base symbol.
    pub base: String,
    /// Quote symbol.
    pub quote: String,
    /// Start of its first 1-minute bar (Unix seconds).
    pub first_bar: i64,
    /// Start of its last 1-minute bar (Unix seconds).
    pub last_bar: i64,
    /// Number of 1-minute bars.
    pub bars: i64,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ErrorBody {
    /// A short code: `bad_request`, `not_found`, `unavailable`, `timeout`.
    pub error: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl ErrorBody {
    /// An error body.
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.to_owned(),
            message: message.into(),
        }
    }
}

/// One event of the live stream.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct StreamEvent {
    /// `partial` (the interval in progress, sent again whenever it changes),
    /// `bar` (an interval that closed, the first time this stream sends it
    /// closed) or `correction` (a closed interval already sent, changed:
    /// replace it).
    pub kind: String,
    /// The bar.
    pub bar: BarDto,
    /// The event id (`VERSION-TIME`): send it back as `Last-Event-ID` to
    /// resume.
    pub id: String,
}
