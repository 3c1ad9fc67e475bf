//! An independent reference for bars: deliberately naive, written apart from
//! `candela_actors::domain` (it shares no code with it), for tests to compute
//! what the platform must store and serve.
//!
//! The trades are de-duplicated by (instrument, trade id), keeping the first
//! copy; sorted by (trade time, trade id as a number when it is one, else as
//! text); put in buckets of `interval_secs` by their trade time (UTC, floor);
//! and each bucket's fields are computed by hand: open = price of the first
//! trade, close = of the last, high and low, the sum of quantities, the sum of
//! price × quantity, the number of trades.

use std::collections::{BTreeMap, HashSet};

use rust_decimal::Decimal;

/// One trade, as the reference sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// `MARKET:BASE-QUOTE`.
    pub instrument: String,
    /// The trade id.
    pub id: String,
    /// Trade time, ns since the epoch.
    pub time_ns: i64,
    /// Price.
    pub price: Decimal,
    /// Quantity.
    pub quantity: Decimal,
}

/// A reference bar.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefBar {
    /// `MARKET:BASE-QUOTE`.
    pub instrument: String,
    /// Start of the bucket, Unix seconds.
    pub open_time: i64,
    /// First price.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Last price.
    pub close: Decimal,
    /// Σ quantity.
    pub volume_base: Decimal,
    /// Σ price × quantity.
    pub volume_quote: Decimal,
    /// Number of distinct trades.
    pub trades: u64,
}

/// The order of trades within a bucket: time, then id (numbers as numbers).
fn order_key(t: &Trade) -> (i64, u8, u128, String) {
    match t.id.parse::<u128>() {
        Ok(n) => (t.time_ns, 0, n, String::new()),
        Err(_) => (t.time_ns, 1, 0, t.id.clone()),
    }
}

/// The bars of `trades` (any order, duplicates allowed) at `interval_secs`,
/// sorted by instrument and time.
pub fn bars(trades: &[Trade], interval_secs: i64) -> Vec<RefBar> {
    let mut seen = HashSet::new();
    let mut distinct: Vec<&Trade> = trades
        .iter()
        .filter(|t| seen.insert((t.instrument.clone(), t.id.clone())))
        .collect();
    distinct.sort_by_key(|t| order_key(t));
    let mut buckets: BTreeMap<(String, i64), Vec<&Trade>> = BTreeMap::new();
    for t in distinct {
        let secs = t.time_ns.div_euclid(1_000_000_000);
        let start = secs.div_euclid(interval_secs) * interval_secs;
        buckets
            .entry((t.instrument.clone(), start))
            .or_default()
            .push(t);
    }
    buckets
        .into_iter()
        .map(|((instrument, open_time), ts)| {
            let mut high = ts[0].price;
            let mut low = ts[0].price;
            let mut volume_base = Decimal::ZERO;
            let mut volume_quote = Decimal::ZERO;
            for t in &ts {
                if t.price > high {
                    high = t.price;
                }
                if t.price < low {
                    low = t.price;
                }
                volume_base += t.quantity;
                volume_quote += t.price * t.quantity;
            }
            RefBar {
                instrument,
                open_time,
                open: ts[0].price,
                high,
                low,
                close: ts[ts.len() - 1].price,
                volume_base,
                volume_quote,
                trades: ts.len() as u64,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, secs: i64, price: &str, qty: &str) -> Trade {
        Trade {
            instrument: "X:A-B".into(),
            id: id.into(),
            time_ns: secs * 1_000_000_000,
            price: price.parse().unwrap(),
            quantity: qty.parse().unwrap(),
        }
    }

    #[test]
    fn a_minute_by_hand() {
        // Shuffled, with a duplicate, ids 9 and 10 at the same time.
        let trades = [
            t("10", 65, "12", "1"),
            t("9", 65, "11", "2"),
            t("3", 119, "13", "0.5"),
            t("1", 60, "10", "1"),
            t("9", 65, "11", "2"),
            t("4", 120, "20", "1"),
        ];
        let b = bars(&trades, 60);
        assert_eq!(b.len(), 2);
        // Minute 60: 10 (id 1), 11 (id 9), 12 (id 10), 13 (id 3, at 119 s).
        assert_eq!(b[0].open_time, 60);
        assert_eq!(b[0].open, "10".parse().unwrap());
        assert_eq!(b[0].close, "13".parse().unwrap());
        assert_eq!(b[0].high, "13".parse().unwrap());
        assert_eq!(b[0].low, "10".parse().unwrap());
        assert_eq!(b[0].volume_base, "4.5".parse().unwrap());
        // 10×1 + 11×2 + 12×1 + 13×0.5 = 50.5
        assert_eq!(b[0].volume_quote, "50.5".parse().unwrap());
        assert_eq!(b[0].trades, 4);
        assert_eq!((b[1].open_time, b[1].trades), (120, 1));
        // One bucket of five minutes holds them all.
        let five = bars(&trades, 300);
        assert_eq!(five.len(), 1);
        assert_eq!((five[0].open_time, five[0].trades), (0, 5));
        assert_eq!(five[0].close, "20".parse().unwrap());
    }

    #[test]
    fn times_before_1970_floor_down() {
        let b = bars(&[t("1", -1, "1", "1")], 60);
        assert_eq!(b[0].open_time, -60);
    }
}
