//! What travels from the Producer to the consumers: a live trade, or a bar of
//! a closed interval fetched from the history API.
//!
//! History arrives as bars, not trades (CryptoCompare's REST history has no
//! trade ids), so the two kinds stay distinct all the way to storage, where a
//! documented rule reconciles them.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::tick::{Instrument, Tick};

/// A 1-minute bar as the history API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryBar {
    /// Where it traded.
    pub instrument: Instrument,
    /// Start of the minute, Unix seconds (a multiple of 60).
    pub open_time: i64,
    /// First price.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Last price.
    pub close: Decimal,
    /// Volume in the base currency (`volumefrom`).
    pub volume_base: Decimal,
    /// Volume in the quote currency (`volumeto`).
    pub volume_quote: Decimal,
}

/// One message on a tick topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A live trade.
    Trade(Tick),
    /// A closed minute from the history API.
    Bar(HistoryBar),
}

impl Record {
    /// The instrument, which is also the Kafka message key.
    pub fn instrument(&self) -> &Instrument {
        match self {
            Record::Trade(t) => &t.instrument,
            Record::Bar(b) => &b.instrument,
        }
    }
}
