//! OHLCV bars computed from the synthetic trades, as CryptoCompare does:
//! open/high/low/close of the trades in the bar, `volumefrom` = sum of
//! quantities, `volumeto` = sum of price times quantity, and a flat
//! zero-volume bar carrying the previous close for a bar without trades
//! (all zeros before the first trade ever).
//!
//! Minute aggregates of minutes that are over are cached; hour and day bars
//! are merged from them. Only trades up to `now` count, so the current bar
//! grows as its trades are streamed.

use std::collections::HashMap;
use std::sync::Mutex;

use rust_decimal::Decimal;

use super::model::{InstrumentKey, Trade, TradeModel};
use crate::cryptocompare::HistoBar;
use crate::domain::Instrument;

const NS: i64 = 1_000_000_000;
const CACHE_LIMIT: usize = 2_000_000;

/// Integer OHLCV of a run of trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Agg {
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    volume_micros: i128,
    notional_e8: i128,
}

impl Agg {
    fn of(t: &Trade) -> Self {
        Agg {
            open: t.price_cents,
            high: t.price_cents,
            low: t.price_cents,
            close: t.price_cents,
            volume_micros: t.qty_micros as i128,
            notional_e8: t.notional_e8(),
        }
    }

    /// `self` followed by `later`.
    fn then(self, later: Agg) -> Agg {
        Agg {
            open: self.open,
            high: self.high.max(later.high),
            low: self.low.min(later.low),
            close: later.close,
            volume_micros: self.volume_micros + later.volume_micros,
            notional_e8: self.notional_e8 + later.notional_e8,
        }
    }
}

fn merge(a: Option<Agg>, b: Option<Agg>) -> Option<Agg> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.then(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Computes bars, remembering the minutes that are over.
#[derive(Debug, Default)]
pub struct BarCache {
    minutes: Mutex<HashMap<(InstrumentKey, i64), Option<Agg>>>,
}

impl BarCache {
    /// The bars of `step * aggregate` seconds (aligned to multiples of that
    /// length) that start in `[from_ts, to_ts]`, ascending, counting trades
    /// up to `now_ns` only; no bar starts after `now_ns`.
    pub fn bars(
        &self,
        model: &TradeModel,
        instrument: &Instrument,
        bar_secs: i64,
        from_ts: i64,
        to_ts: i64,
        now_ns: i64,
    ) -> Vec<HistoBar> {
        let key = model.key(instrument);
        let now_s = now_ns.div_euclid(NS);
        let first = from_ts.div_euclid(bar_secs) * bar_secs
            + if from_ts.rem_euclid(bar_secs) == 0 {
                0
            } else {
                bar_secs
            };
        let last = to_ts.min(now_s).div_euclid(bar_secs) * bar_secs;
        let mut prev_close = self.close_before(model, &key, first, now_ns);
        let mut out = Vec::new();
        let mut start = first;
        let mut buf = Vec::new();
        while start <= last {
            let mut agg = None;
            let end = (start + bar_secs).min(now_s + 1);
            let mut minute = start.div_euclid(60) * 60;
            while minute < end {
                agg = merge(agg, self.minute(model, &key, minute, now_ns, &mut buf));
                minute += 60;
            }
            out.push(bar(start, agg, prev_close));
            if let Some(a) = agg {
                prev_close = a.close;
            }
            start += bar_secs;
        }
        out
    }

    /// The close of the last trade before `ts` (0 if none since the start).
    fn close_before(&self, model: &TradeModel, key: &InstrumentKey, ts: i64, now_ns: i64) -> i64 {
        let mut buf = Vec::new();
        let mut minute = ts.div_euclid(60) * 60 - 60;
        while minute + 60 > model.start_ts() {
            if let Some(a) = self.minute(model, key, minute, now_ns, &mut buf) {
                return a.close;
            }
            minute -= 60;
        }
        0
    }

    /// The aggregate of one minute, from its trades up to `now_ns`.
    fn minute(
        &self,
        model: &TradeModel,
        key: &InstrumentKey,
        minute: i64,
        now_ns: i64,
        buf: &mut Vec<Trade>,
    ) -> Option<Agg> {
        if minute + 60 <= model.start_ts() {
            return None;
        }
        let complete = (minute + 60) * NS <= now_ns;
        if complete {
            if let Some(hit) = self.lock().get(&(*key, minute)) {
                return *hit;
            }
        }
        let mut agg = None;
        for second in minute..minute + 60 {
            model.fill_second(key, second, buf);
            for t in buf.iter().filter(|t| t.time_ns <= now_ns) {
                agg = merge(agg, Some(Agg::of(t)));
            }
        }
        if complete {
            let mut cache = self.lock();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert((*key, minute), agg);
        }
        agg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(InstrumentKey, i64), Option<Agg>>> {
        self.minutes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn bar(time: i64, agg: Option<Agg>, prev_close: i64) -> HistoBar {
    let cents = |c: i64| Decimal::new(c, 2);
    match agg {
        Some(a) => HistoBar {
            time,
            open: cents(a.open),
            high: cents(a.high),
            low: cents(a.low),
            close: cents(a.close),
            volume_from: Decimal::from_i128_with_scale(a.volume_micros, 6),
            volume_to: Decimal::from_i128_with_scale(a.notional_e8, 8),
        },
        None => HistoBar {
            time,
            open: cents(prev_close),
            high: cents(prev_close),
            low: cents(prev_close),
            close: cents(prev_close),
            volume_from: Decimal::ZERO,
            volume_to: Decimal::ZERO,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_bars_merge_their_minutes_and_empty_bars_carry_the_close() {
        let model = TradeModel::new(5, 0.01, 1_700_000_000);
        let btc = Instrument::new("Coinbase", "BTC", "USD");
        let cache = BarCache::default();
        let now = 1_700_100_000 * NS;
        let minutes = cache.bars(&model, &btc, 60, 1_700_002_800, 1_700_006_399, now);
        let hours = cache.bars(&model, &btc, 3_600, 1_700_002_800, 1_700_002_800, now);
        assert_eq!(minutes.len(), 60);
        assert_eq!(hours.len(), 1);
        let h = &hours[0];
        assert_eq!(
            h.volume_from,
            minutes.iter().map(|b| b.volume_from).sum::<Decimal>()
        );
        assert_eq!(
            h.volume_to,
            minutes.iter().map(|b| b.volume_to).sum::<Decimal>()
        );
        assert_eq!(h.close, minutes.last().unwrap().close);
        let empty: Vec<_> = minutes
            .windows(2)
            .filter(|w| w[1].volume_from.is_zero())
            .collect();
        assert!(!empty.is_empty(), "a rate of 0.01/s leaves empty minutes");
        for w in empty {
            assert_eq!(
                (w[1].open, w[1].high, w[1].low, w[1].close),
                (w[0].close, w[0].close, w[0].close, w[0].close)
            );
        }
        // Before the first trade ever: zeros.
        let before = cache.bars(&model, &btc, 60, 1_699_990_020, 1_699_990_020, now);
        assert_eq!(before[0].close, Decimal::ZERO);
        // Nothing after now.
        assert!(
            cache
                .bars(&model, &btc, 60, 1_700_099_000, 1_800_000_000, now)
                .last()
                .unwrap()
                .time
                <= 1_700_100_000
        );
    }
}
