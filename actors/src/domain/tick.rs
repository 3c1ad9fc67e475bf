//! A tick is one trade on one market. Its identity is (market, base, quote,
//! trade id): CryptoCompare replays recent trades on every subscribe and Kafka
//! delivers at least once, so the same tick is seen more than once and must be
//! recognised.
//!
//! Prices and quantities are exact decimals ([`rust_decimal::Decimal`]), never
//! floats: bars are sums of them, and a sum of floats depends on the order of
//! its terms, which would make bars depend on delivery order.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A traded pair on a market, e.g. `Coinbase:BTC-USD`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Instrument {
    /// The exchange, as CryptoCompare spells it (`Coinbase`, `Kraken`, `CCCAGG`).
    pub market: String,
    /// The base symbol, e.g. `BTC`.
    pub base: String,
    /// The quote symbol, e.g. `USD`.
    pub quote: String,
}

impl Instrument {
    /// An instrument from its three parts.
    pub fn new(
        market: impl Into<String>,
        base: impl Into<String>,
        quote: impl Into<String>,
    ) -> Self {
        Self {
            market: market.into(),
            base: base.into(),
            quote: quote.into(),
        }
    }

    /// The CryptoCompare trade channel, `0~{market}~{base}~{quote}`.
    pub fn trade_channel(&self) -> String {
        format!("0~{}~{}~{}", self.market, self.base, self.quote)
    }
}

impl fmt::Display for Instrument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}-{}", self.market, self.base, self.quote)
    }
}

/// The text is not `MARKET:BASE-QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid instrument `{0}`: expected MARKET:BASE-QUOTE, e.g. Coinbase:BTC-USD")]
pub struct InvalidInstrument(pub String);

impl FromStr for Instrument {
    type Err = InvalidInstrument;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidInstrument(s.to_owned());
        let (market, pair) = s.split_once(':').ok_or_else(bad)?;
        let (base, quote) = pair.split_once('-').ok_or_else(bad)?;
        let ok = super::validate::is_symbol;
        if ok(market) && ok(base) && ok(quote) {
            Ok(Instrument::new(market, base, quote))
        } else {
            Err(bad())
        }
    }
}

/// The aggressor side of a trade (CryptoCompare's `F` bitmask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// `F & 2`.
    Buy,
    /// `F & 1`.
    Sell,
    /// `F & 4`, or no side bit.
    Unknown,
}

/// The identity of a tick: (market, base, quote, trade id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TickKey {
    /// The instrument.
    pub instrument: Instrument,
    /// The trade id, unique per instrument.
    pub trade_id: String,
}

/// One trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// Where it traded.
    pub instrument: Instrument,
    /// The trade id (CryptoCompare `ID`, a string).
    pub trade_id: String,
    /// Trade time, nanoseconds since the Unix epoch (`TS` and `TSNS`).
    pub trade_time_ns: i64,
    /// Price in the quote currency (`P`).
    pub price: Decimal,
    /// Quantity in the base currency (`Q`).
    pub quantity: Decimal,
    /// Aggressor side (`F`).
    pub side: Side,
    /// When the platform received it, nanoseconds since the Unix epoch.
    pub received_ns: i64,
}

impl Tick {
    /// The tick's identity.
    pub fn key(&self) -> TickKey {
        TickKey {
            instrument: self.instrument.clone(),
            trade_id: self.trade_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instrument_round_trips_through_text() {
        let i: Instrument = "Coinbase:BTC-USD".parse().unwrap();
        assert_eq!(i, Instrument::new("Coinbase", "BTC", "USD"));
        assert_eq!(i.to_string(), "Coinbase:BTC-USD");
        assert_eq!(i.trade_channel(), "0~Coinbase~BTC~USD");
        for bad in ["", "BTC-USD", "Coinbase:BTCUSD", "Coinbase:-USD", "a b:C-D"] {
            assert!(bad.parse::<Instrument>().is_err(), "{bad}");
        }
    }
}
