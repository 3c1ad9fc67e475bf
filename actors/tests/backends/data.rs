//! Test data shared by the contracts: ticks, history bars, and the check of
//! the first and last trade a 1-minute bar keeps (its other fields are
//! compared with the oracle's, `candela_testkit::oracle`).

use candela_actors::domain::{Bar, HistoryBar, Instrument, Interval, Side, Tick, TradeMark};
use candela_testkit::{convert, oracle};
use rust_decimal::Decimal;

pub fn btc() -> Instrument {
    Instrument::new("Coinbase", "BTC", "USD")
}

pub fn eth() -> Instrument {
    Instrument::new("Kraken", "ETH", "EUR")
}

pub fn tick(instrument: &Instrument, id: u64, secs: i64, price: i64, qty: i64) -> Tick {
    Tick {
        instrument: instrument.clone(),
        trade_id: id.to_string(),
        trade_time_ns: secs * 1_000_000_000 + (id as i64 % 1000) * 1000,
        price: Decimal::new(price, 2),
        quantity: Decimal::new(qty, 6),
        side: if id % 2 == 0 { Side::Buy } else { Side::Sell },
        received_ns: 0,
    }
}

/// A deterministic spread of ticks over `minutes` minutes from `start`.
pub fn ticks(instrument: &Instrument, start: i64, minutes: i64, per_minute: u64) -> Vec<Tick> {
    let mut out = Vec::new();
    let mut id = 1_000;
    for m in 0..minutes {
        for k in 0..per_minute {
            id += 1;
            let secs = start + m * 60 + (k as i64 * 7) % 60;
            let price = 3_000_000 + ((id * 7919) % 10_000) as i64;
            out.push(tick(instrument, id, secs, price, 1 + (id % 5_000) as i64));
        }
    }
    out
}

/// A closed minute from history: open 100, low 90, `close`, base volume `vb`.
pub fn history(i: &Instrument, open_time: i64, close: i64, vb: i64) -> HistoryBar {
    HistoryBar {
        instrument: i.clone(),
        open_time,
        open: Decimal::new(100, 0),
        high: Decimal::new(close.max(100) + 5, 0),
        low: Decimal::new(90, 0),
        close: Decimal::new(close, 0),
        volume_base: Decimal::new(vb, 0),
        volume_quote: Decimal::new(vb * 100, 0),
    }
}

/// How a store turns a history bar into a 1-minute row (no trades, first and
/// last at the minute's edges), for independent expectations.
pub fn history_as_bar(h: &HistoryBar) -> Bar {
    Bar {
        instrument: h.instrument.clone(),
        interval: Interval::M1,
        open_time: h.open_time,
        open: h.open,
        high: h.high,
        low: h.low,
        close: h.close,
        volume_base: h.volume_base,
        volume_quote: h.volume_quote,
        trades: 0,
        first: TradeMark {
            time_ns: h.open_time * 1_000_000_000,
            id: String::new(),
        },
        last: TradeMark {
            time_ns: h.open_time * 1_000_000_000 + 59_999_999_999,
            id: String::new(),
        },
    }
}

/// Every 1-minute bar of `bars` keeps the first and the last of its distinct
/// trades among `trades`, as the reference finds them, and there is a bar
/// for every minute with trades.
pub fn assert_marks<'a>(
    what: &str,
    bars: impl IntoIterator<Item = &'a Bar>,
    trades: &[oracle::Trade],
) {
    let want = oracle::first_last(trades, 60);
    let mut seen = 0;
    for b in bars {
        assert_eq!(b.interval, Interval::M1, "{what}");
        let key = (b.instrument.to_string(), b.open_time);
        let marks = want
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: a bar of {key:?} without trades"));
        assert_eq!(
            &convert::marks(b),
            marks,
            "{what}: first and last trade of {key:?}"
        );
        seen += 1;
    }
    assert_eq!(seen, want.len(), "{what}: bars of every minute with trades");
}
