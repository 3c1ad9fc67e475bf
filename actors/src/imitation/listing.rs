//! The pairs the imitation lists, per market, as CryptoCompare lists the
//! pairs each exchange trades: history and live trades exist for these
//! only. Anything else is refused as CryptoCompare refuses it: a history
//! request answers `<market> market does not exist for this coin pair
//! (BASE-QUOTE)` (HTTP 200, `Type` 1), a `SubAdd` of its trade channel a
//! `500` `INVALID_SUB` notice.
//!
//! Markets and symbols are matched without regard to case and answered in
//! the listed spelling (`e=coinbase&fsym=btc` is `Coinbase:BTC-USD`).

use std::collections::HashMap;

use super::{valid_symbol, ImitationError};
use crate::domain::Instrument;

/// The default listing: every instrument the repository's configuration,
/// tests, benchmarks and documentation use with the imitation, and a few
/// more that the exchanges really trade. `Kraken:DOGE-EUR` is left out on
/// purpose: the documentation and the API tests use it as the example of an
/// instrument nobody has.
pub const DEFAULT_PAIRS: &[&str] = &[
    // CryptoCompare's aggregate index (`e` absent or `CCCAGG`).
    "CCCAGG:BTC-USD",
    "CCCAGG:ETH-USD",
    "CCCAGG:SOL-USD",
    "CCCAGG:BTC-EUR",
    "CCCAGG:ETH-EUR",
    "Coinbase:BTC-USD",
    "Coinbase:ETH-USD",
    "Coinbase:SOL-USD",
    "Coinbase:LTC-USD",
    "Coinbase:BTC-EUR",
    "Coinbase:ETH-EUR",
    "Coinbase:BTC-USDT",
    "Kraken:BTC-USD",
    "Kraken:ETH-USD",
    "Kraken:SOL-USD",
    "Kraken:BTC-EUR",
    "Kraken:ETH-EUR",
    "Kraken:SOL-EUR",
    "Kraken:XRP-EUR",
    "Binance:BTC-USDT",
    "Binance:ETH-USDT",
    "Binance:SOL-USDT",
    "Binance:BNB-USDT",
    "Binance:XRP-USDT",
    "Bitstamp:BTC-USD",
    "Bitstamp:ETH-USD",
    "Bitstamp:SOL-USD",
    "Bitstamp:BTC-EUR",
    "Bitfinex:BTC-USD",
    "Bitfinex:ETH-USD",
    "Gemini:BTC-USD",
    "Gemini:ETH-USD",
];

/// The listed pairs, looked up without regard to case.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    by_key: HashMap<(String, String, String), Instrument>,
}

fn key(market: &str, base: &str, quote: &str) -> (String, String, String) {
    (
        market.to_ascii_lowercase(),
        base.to_ascii_lowercase(),
        quote.to_ascii_lowercase(),
    )
}

impl Listing {
    /// Parses `MARKET:BASE-QUOTE` entries; a malformed entry, or one listed
    /// twice, is refused naming it.
    pub(crate) fn parse(pairs: &[String]) -> Result<Self, ImitationError> {
        let mut by_key = HashMap::with_capacity(pairs.len());
        for (i, text) in pairs.iter().enumerate() {
            let bad = |reason: String| ImitationError::Config(format!("pairs[{i}]: {reason}"));
            let instrument: Instrument = text.parse().map_err(|e| bad(format!("{e}")))?;
            if !(valid_symbol(&instrument.base) && valid_symbol(&instrument.quote)) {
                return Err(bad(format!(
                    "`{text}`: symbols are 1 to 10 letters, digits or dots"
                )));
            }
            let k = key(&instrument.market, &instrument.base, &instrument.quote);
            if by_key.insert(k, instrument).is_some() {
                return Err(bad(format!("`{text}` is listed twice")));
            }
        }
        Ok(Self { by_key })
    }

    /// The listed instrument (in its listed spelling), if listed.
    pub(crate) fn get(&self, market: &str, base: &str, quote: &str) -> Option<&Instrument> {
        self.by_key.get(&key(market, base, quote))
    }

    /// Every listed instrument, sorted.
    pub(crate) fn instruments(&self) -> Vec<Instrument> {
        let mut all: Vec<Instrument> = self.by_key.values().cloned().collect();
        all.sort_by_key(|i| i.to_string());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_default_listing_parses_and_holds_what_the_repository_uses() {
        let listing = Listing::parse(&strings(DEFAULT_PAIRS)).unwrap();
        assert_eq!(listing.instruments().len(), DEFAULT_PAIRS.len());
        for used in [
            "Coinbase:BTC-USD",
            "Coinbase:ETH-USD",
            "Kraken:BTC-EUR",
            "Kraken:ETH-EUR",
            "Kraken:ETH-USD",
            "Kraken:BTC-USD",
            "Binance:SOL-USDT",
            "Coinbase:BTC-EUR",
        ] {
            let i: Instrument = used.parse().unwrap();
            assert_eq!(
                listing.get(&i.market, &i.base, &i.quote),
                Some(&i),
                "{used}"
            );
        }
        for unlisted in ["Coinbase:FOO-BAR", "Kraken:DOGE-EUR", "Nowhere:BTC-USD"] {
            let i: Instrument = unlisted.parse().unwrap();
            assert_eq!(
                listing.get(&i.market, &i.base, &i.quote),
                None,
                "{unlisted}"
            );
        }
    }

    #[test]
    fn lookups_ignore_case_and_answer_the_listed_spelling() {
        let listing = Listing::parse(&strings(&["Coinbase:BTC-USD"])).unwrap();
        assert_eq!(
            listing.get("coinbase", "btc", "Usd"),
            Some(&Instrument::new("Coinbase", "BTC", "USD"))
        );
        assert_eq!(listing.get("Coinbase", "USD", "BTC"), None);
    }

    #[test]
    fn bad_entries_are_refused_naming_them() {
        for (pairs, needle) in [
            (&["Coinbase:BTC-USD", "BTCUSD"][..], "pairs[1]"),
            (
                &["Coinbase:BTC-USD", "coinbase:btc-usd"][..],
                "listed twice",
            ),
            (&["Coinbase:TOOLONGSYMBOL-USD"][..], "1 to 10"),
        ] {
            let err = Listing::parse(&strings(pairs)).unwrap_err().to_string();
            assert!(err.contains(needle), "{pairs:?}: {err}");
        }
        assert!(Listing::parse(&[]).unwrap().instruments().is_empty());
    }
}
