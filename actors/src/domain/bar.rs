//! OHLCV bars as a pure function of a *set* of distinct ticks.
//!
//! A bar keeps, beside open/high/low/close and volumes, the (time, id) of its
//! first and last trade, so that two partial bars of the same interval merge
//! into exactly the bar of the union of their ticks — in any order, any
//! grouping. Late and out-of-order ticks therefore land correctly by
//! construction. Duplicates must be removed *before* (a tick counted twice
//! would count its volume twice): storage keeps ticks unique by [`TickKey`] and
//! aggregates only ticks it had not seen.
//!
//! Ties: open is the price of the earliest tick, close of the latest, ordered by
//! trade time and then by trade id (numeric ids compare as numbers: shorter id
//! first, then lexicographically).
//!
//! Arithmetic is checked: a product or a sum that does not fit a decimal is a
//! [`BarOverflow`] (the consumer dead-letters the record that caused it),
//! never a panic and never a silently rounded volume.
//!
//! [`TickKey`]: super::TickKey

use std::cmp::Ordering;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::tick::{Instrument, Tick};

/// A bar interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Interval {
    /// One minute.
    #[serde(rename = "1m")]
    M1,
    /// Five minutes.
    #[serde(rename = "5m")]
    M5,
    /// Fifteen minutes.
    #[serde(rename = "15m")]
    M15,
    /// One hour.
    #[serde(rename = "1h")]
    H1,
    /// One day (UTC).
    #[serde(rename = "1d")]
    D1,
}

impl Interval {
    /// Every interval, finest first.
    pub const ALL: [Interval; 5] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::H1,
        Interval::D1,
    ];

    /// Length in seconds.
    pub const fn seconds(self) -> i64 {
        match self {
            Interval::M1 => 60,
            Interval::M5 => 300,
            Interval::M15 => 900,
            Interval::H1 => 3_600,
            Interval::D1 => 86_400,
        }
    }

    /// The API spelling: `1m`, `5m`, `15m`, `1h`, `1d`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::D1 => "1d",
        }
    }

    /// The start (Unix seconds) of the interval holding `unix_secs`.
    pub const fn floor(self, unix_secs: i64) -> i64 {
        unix_secs - unix_secs.rem_euclid(self.seconds())
    }

    /// Parses the API spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == text)
    }
}

/// Where a trade sits in time: (trade time, trade id), ordered as documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeMark {
    /// Trade time, ns since the epoch.
    pub time_ns: i64,
    /// Trade id.
    pub id: String,
}

impl Ord for TradeMark {
    fn cmp(&self, other: &Self) -> Ordering {
        self.time_ns
            .cmp(&other.time_ns)
            .then_with(|| self.id.len().cmp(&other.id.len()))
            .then_with(|| self.id.cmp(&other.id))
    }
}

impl PartialOrd for TradeMark {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A bar's arithmetic does not fit a decimal: a quote volume, a volume sum or
/// a trade count overflowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {field} of {instrument}'s bar at {open_time} overflows")]
pub struct BarOverflow {
    /// The instrument.
    pub instrument: Instrument,
    /// Start of the bar, Unix seconds.
    pub open_time: i64,
    /// Which field.
    pub field: &'static str,
}

/// An OHLCV bar of one instrument and interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    /// The instrument.
    pub instrument: Instrument,
    /// The interval.
    pub interval: Interval,
    /// Start of the interval, Unix seconds.
    pub open_time: i64,
    /// Price of the first trade.
    pub open: Decimal,
    /// Highest price.
    pub high: Decimal,
    /// Lowest price.
    pub low: Decimal,
    /// Price of the last trade.
    pub close: Decimal,
    /// Sum of quantities (base currency).
    pub volume_base: Decimal,
    /// Sum of price × quantity (quote currency).
    pub volume_quote: Decimal,
    /// Number of distinct trades.
    pub trades: u64,
    /// The first trade.
    pub first: TradeMark,
    /// The last trade.
    pub last: TradeMark,
}

impl Bar {
    /// The bar of a single tick.
    pub fn of_tick(tick: &Tick, interval: Interval) -> Result<Self, BarOverflow> {
        let mark = TradeMark {
            time_ns: tick.trade_time_ns,
            id: tick.trade_id.clone(),
        };
        let open_time = interval.floor(tick.trade_time_ns.div_euclid(1_000_000_000));
        let volume_quote = tick
            .price
            .checked_mul(tick.quantity)
            .ok_or_else(|| BarOverflow {
                instrument: tick.instrument.clone(),
                open_time,
                field: "volume_quote",
            })?;
        Ok(Self {
            instrument: tick.instrument.clone(),
            interval,
            open_time,
            open: tick.price,
            high: tick.price,
            low: tick.price,
            close: tick.price,
            volume_base: tick.quantity,
            volume_quote,
            trades: 1,
            first: mark.clone(),
            last: mark,
        })
    }

    fn overflow(&self, field: &'static str) -> BarOverflow {
        BarOverflow {
            instrument: self.instrument.clone(),
            open_time: self.open_time,
            field,
        }
    }

    /// The bar of the union of the (disjoint) tick sets of `self` and `other`.
    ///
    /// Both must be of the same instrument, interval and start; this is
    /// commutative and associative.
    pub fn merge(&self, other: &Bar) -> Result<Bar, BarOverflow> {
        debug_assert_eq!(self.instrument, other.instrument);
        debug_assert_eq!(self.open_time, other.open_time);
        let (first, open) = if other.first < self.first {
            (other.first.clone(), other.open)
        } else {
            (self.first.clone(), self.open)
        };
        let (last, close) = if other.last > self.last {
            (other.last.clone(), other.close)
        } else {
            (self.last.clone(), self.close)
        };
        Ok(Bar {
            instrument: self.instrument.clone(),
            interval: self.interval,
            open_time: self.open_time,
            open,
            high: self.high.max(other.high),
            low: self.low.min(other.low),
            close,
            volume_base: self
                .volume_base
                .checked_add(other.volume_base)
                .ok_or_else(|| self.overflow("volume_base"))?,
            volume_quote: self
                .volume_quote
                .checked_add(other.volume_quote)
                .ok_or_else(|| self.overflow("volume_quote"))?,
            trades: self
                .trades
                .checked_add(other.trades)
                .ok_or_else(|| self.overflow("trades"))?,
            first,
            last,
        })
    }

    /// This bar re-labelled as part of the coarser `interval` (for merging 1m
    /// bars into 5m, 15m, 1h, 1d).
    pub fn widen(&self, interval: Interval) -> Bar {
        Bar {
            interval,
            open_time: interval.floor(self.open_time),
            ..self.clone()
        }
    }
}

/// Aggregates distinct ticks into bars of `interval`, one per (instrument,
/// start), sorted by instrument then time.
///
/// The same as merging the bars of the single ticks ([`Bar::of_tick`],
/// [`Bar::merge`]) in the order given, without building them (the consumer
/// aggregates every batch: a bar per tick costs a dozen allocations).
pub fn aggregate<'a>(
    ticks: impl IntoIterator<Item = &'a Tick>,
    interval: Interval,
) -> Result<Vec<Bar>, BarOverflow> {
    use std::collections::btree_map::Entry;
    let mut bars: std::collections::BTreeMap<(&Instrument, i64), Bar> = Default::default();
    for tick in ticks {
        let open_time = interval.floor(tick.trade_time_ns.div_euclid(1_000_000_000));
        match bars.entry((&tick.instrument, open_time)) {
            Entry::Vacant(e) => {
                e.insert(Bar::of_tick(tick, interval)?);
            }
            Entry::Occupied(mut e) => e.get_mut().absorb(tick)?,
        }
    }
    Ok(bars.into_values().collect())
}

/// `mark` against a tick's (time, id), in [`TradeMark`]'s order.
fn cmp_mark(tick: &Tick, mark: &TradeMark) -> Ordering {
    tick.trade_time_ns
        .cmp(&mark.time_ns)
        .then_with(|| tick.trade_id.len().cmp(&mark.id.len()))
        .then_with(|| tick.trade_id.as_str().cmp(mark.id.as_str()))
}

impl Bar {
    /// `*self = self.merge(&Bar::of_tick(tick, self.interval))`, in place:
    /// the same operations in the same order, so the same bar to the last
    /// digit and scale.
    fn absorb(&mut self, tick: &Tick) -> Result<(), BarOverflow> {
        // The sums first: a bar that overflows is left as it was.
        let volume_quote = tick
            .price
            .checked_mul(tick.quantity)
            .and_then(|v| self.volume_quote.checked_add(v))
            .ok_or_else(|| self.overflow("volume_quote"))?;
        let volume_base = self
            .volume_base
            .checked_add(tick.quantity)
            .ok_or_else(|| self.overflow("volume_base"))?;
        let trades = self
            .trades
            .checked_add(1)
            .ok_or_else(|| self.overflow("trades"))?;
        if cmp_mark(tick, &self.first) == Ordering::Less {
            self.first = TradeMark {
                time_ns: tick.trade_time_ns,
                id: tick.trade_id.clone(),
            };
            self.open = tick.price;
        }
        if cmp_mark(tick, &self.last) == Ordering::Greater {
            self.last = TradeMark {
                time_ns: tick.trade_time_ns,
                id: tick.trade_id.clone(),
            };
            self.close = tick.price;
        }
        self.high = self.high.max(tick.price);
        self.low = self.low.min(tick.price);
        self.volume_base = volume_base;
        self.volume_quote = volume_quote;
        self.trades = trades;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Side;
    use proptest::prelude::*;

    fn tick(id: u32, secs: i64, price: i64, qty: i64) -> Tick {
        Tick {
            instrument: Instrument::new("Coinbase", "BTC", "USD"),
            trade_id: id.to_string(),
            trade_time_ns: secs * 1_000_000_000,
            price: Decimal::new(price, 2),
            quantity: Decimal::new(qty, 4),
            side: Side::Buy,
            received_ns: 0,
        }
    }

    #[test]
    fn one_minute_by_hand() {
        let ticks = [
            tick(3, 61, 10_500, 1),
            tick(1, 60, 10_000, 2),
            tick(2, 61, 9_900, 3),
            tick(4, 119, 10_100, 4),
        ];
        let bars = aggregate(&ticks, Interval::M1).unwrap();
        assert_eq!(bars.len(), 1);
        let b = &bars[0];
        assert_eq!(b.open_time, 60);
        assert_eq!(
            (b.open, b.high, b.low, b.close),
            (
                Decimal::new(10_000, 2),
                Decimal::new(10_500, 2),
                Decimal::new(9_900, 2),
                Decimal::new(10_100, 2)
            )
        );
        assert_eq!(b.volume_base, Decimal::new(10, 4));
        assert_eq!(b.trades, 4);
        // Same time 61: id 2 comes before id 3.
        assert_eq!(b.first.id, "1");
        assert_eq!(b.last.id, "4");
    }

    #[test]
    fn numeric_ids_order_as_numbers() {
        let a = TradeMark {
            time_ns: 5,
            id: "9".into(),
        };
        let b = TradeMark {
            time_ns: 5,
            id: "10".into(),
        };
        assert!(a < b);
    }

    #[test]
    fn intervals_floor_and_parse() {
        assert_eq!(Interval::M5.floor(899), 600);
        assert_eq!(Interval::D1.floor(86_399), 0);
        assert_eq!(Interval::M1.floor(-1), -60);
        assert_eq!(Interval::parse("15m"), Some(Interval::M15));
        assert_eq!(Interval::parse("2m"), None);
    }

    #[test]
    fn overflows_are_errors_not_panics() {
        let huge = Decimal::MAX;
        let mut t = tick(1, 60, 100, 1);
        t.price = huge;
        t.quantity = Decimal::new(2, 0);
        let err = Bar::of_tick(&t, Interval::M1).unwrap_err();
        assert_eq!(err.field, "volume_quote");
        assert!(aggregate([&t], Interval::M1).is_err());

        // Each tick fits; their sum does not.
        let mut a = tick(1, 60, 100, 1);
        a.price = Decimal::ONE;
        a.quantity = huge;
        let mut b = a.clone();
        b.trade_id = "2".into();
        let err = aggregate([&a, &b], Interval::M1).unwrap_err();
        assert_eq!((err.field, err.open_time), ("volume_quote", 60));
        let one = Bar::of_tick(&a, Interval::M1).unwrap();
        let other = Bar::of_tick(&b, Interval::M1).unwrap();
        assert!(one.merge(&other).is_err());
    }

    fn ticks_strategy() -> impl Strategy<Value = Vec<Tick>> {
        prop::collection::vec((0i64..600, 1i64..1_000_000, 1i64..10_0000), 1..80).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (secs, p, q))| tick(i as u32, secs, p, q))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn aggregate_is_the_fold_of_single_tick_bars(ticks in ticks_strategy()) {
            for interval in Interval::ALL {
                let mut folded: std::collections::BTreeMap<(Instrument, i64), Bar> = Default::default();
                for tick in &ticks {
                    let bar = Bar::of_tick(tick, interval).unwrap();
                    folded
                        .entry((bar.instrument.clone(), bar.open_time))
                        .and_modify(|b| *b = b.merge(&bar).unwrap())
                        .or_insert(bar);
                }
                prop_assert_eq!(aggregate(&ticks, interval).unwrap(), folded.into_values().collect::<Vec<_>>());
            }
        }

        #[test]
        fn any_order_gives_the_same_bars(ticks in ticks_strategy(), seed in any::<u64>()) {
            let mut shuffled = ticks.clone();
            // Deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            for interval in Interval::ALL {
                prop_assert_eq!(aggregate(&ticks, interval).unwrap(), aggregate(&shuffled, interval).unwrap());
            }
        }

        #[test]
        fn merging_partial_bars_equals_aggregating_all(ticks in ticks_strategy(), split in 0usize..80) {
            let split = split.min(ticks.len());
            let (a, b) = ticks.split_at(split);
            let mut merged: std::collections::BTreeMap<i64, Bar> = Default::default();
            for bar in aggregate(a, Interval::M1).unwrap().into_iter().chain(aggregate(b, Interval::M1).unwrap()) {
                merged.entry(bar.open_time).and_modify(|m| *m = m.merge(&bar).unwrap()).or_insert(bar);
            }
            prop_assert_eq!(merged.into_values().collect::<Vec<_>>(), aggregate(&ticks, Interval::M1).unwrap());
        }

        #[test]
        fn coarse_bars_are_merged_minute_bars(ticks in ticks_strategy()) {
            for interval in [Interval::M5, Interval::M15, Interval::H1, Interval::D1] {
                let mut merged: std::collections::BTreeMap<i64, Bar> = Default::default();
                for bar in aggregate(&ticks, Interval::M1).unwrap() {
                    let wide = bar.widen(interval);
                    merged.entry(wide.open_time).and_modify(|m| *m = m.merge(&wide).unwrap()).or_insert(wide);
                }
                prop_assert_eq!(merged.into_values().collect::<Vec<_>>(), aggregate(&ticks, interval).unwrap());
            }
        }
    }
}
