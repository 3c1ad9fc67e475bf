//! An independent reference for bars: deliberately naive, written apart from
//! `candela_actors::domain` (it shares no code with it, and this file imports
//! nothing of the platform: [`crate::convert`] turns the platform's types into
//! its inputs), for tests to compute what the platform must store and serve.
//!
//! **Trades** ([`bars`]): de-duplicated by (instrument, trade id), keeping the
//! first copy; sorted by trade time, then trade id (shorter id first, then
//! byte by byte: numeric ids compare as numbers); put in buckets of
//! `interval_secs` by their trade time (UTC, floor); and each bucket's fields
//! are computed by hand: open = price of the first trade, close = of the
//! last, high and low, the sum of quantities, the sum of price × quantity,
//! the number of trades. Coarser intervals are bucketed from the trades
//! themselves, never from 1-minute bars.
//!
//! **History and live** ([`reconcile`]): for each (instrument, minute), L is
//! the bar of the distinct live trades of that minute, and H the greatest of
//! the history answers for that minute with a base volume above zero (a
//! history bar without volume is CryptoCompare's flat bar for a minute
//! without trades, and is ignored), greatest in the order of (volume_base,
//! volume_quote, high, low, open, close). The stored minute is H (source
//! history, 0 trades: CryptoCompare's history does not count them) when H
//! exists and either there is no L or H.volume_base > L.volume_base + tol,
//! tol = max(|H.volume_base|, |L.volume_base|) × 10⁻¹²: float noise in the
//! source's volumes (0.30000000000000004 against 0.3) is not "more
//! complete". Otherwise it is L (source live). The result depends only on the
//! sets of trades and history answers.
//!
//! **Coarser intervals of stored minutes** ([`merge_minutes`], [`series`]):
//! the minutes of a bucket in time order, open of the earliest, close of the
//! latest, the highest high, the lowest low, and the sums of both volumes and
//! of the trade counts.
//!
//! **Comparison** ([`assert_same_bars`], [`assert_same_minutes`]): every
//! field, and a readable account of the first bar that differs.

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};

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

/// Where a trade sits in its bucket: (trade time in ns, trade id).
pub type Mark = (i64, String);

/// The order of trades: time, then id (shorter first, then byte by byte).
fn order_key(t: &Trade) -> (i64, usize, &[u8]) {
    (t.time_ns, t.id.len(), t.id.as_bytes())
}

/// The start of the bucket of `interval_secs` holding `secs` (floor).
fn bucket_start(secs: i64, interval_secs: i64) -> i64 {
    assert!(interval_secs > 0, "an interval of {interval_secs} s");
    secs.div_euclid(interval_secs) * interval_secs
}

/// The distinct trades (first copy of each (instrument, id)), in their bucket
/// of `interval_secs`, each bucket in trade order.
fn buckets(trades: &[Trade], interval_secs: i64) -> BTreeMap<(String, i64), Vec<&Trade>> {
    let mut seen = HashSet::new();
    let mut out: BTreeMap<(String, i64), Vec<&Trade>> = BTreeMap::new();
    for t in trades {
        if !seen.insert((t.instrument.as_str(), t.id.as_str())) {
            continue;
        }
        let start = bucket_start(t.time_ns.div_euclid(1_000_000_000), interval_secs);
        out.entry((t.instrument.clone(), start))
            .or_default()
            .push(t);
    }
    for ts in out.values_mut() {
        ts.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    }
    out
}

/// The bars of `trades` (any order, duplicates allowed) at `interval_secs`,
/// sorted by instrument and time.
pub fn bars(trades: &[Trade], interval_secs: i64) -> Vec<RefBar> {
    buckets(trades, interval_secs)
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

/// The first and the last distinct trade of each bucket of `interval_secs`,
/// by (instrument, bucket start).
pub fn first_last(trades: &[Trade], interval_secs: i64) -> BTreeMap<(String, i64), (Mark, Mark)> {
    buckets(trades, interval_secs)
        .into_iter()
        .map(|(key, ts)| {
            let (first, last) = (ts[0], ts[ts.len() - 1]);
            (
                key,
                (
                    (first.time_ns, first.id.clone()),
                    (last.time_ns, last.id.clone()),
                ),
            )
        })
        .collect()
}

/// One answer of the history source for one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryMinute {
    /// `MARKET:BASE-QUOTE`.
    pub instrument: String,
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
    /// Volume in the base currency.
    pub volume_base: Decimal,
    /// Volume in the quote currency.
    pub volume_quote: Decimal,
}

impl HistoryMinute {
    /// What an exact history source answers for the minute whose trades make
    /// `bar` (a 1-minute reference bar).
    pub fn exact(bar: &RefBar) -> Self {
        assert_eq!(bar.open_time.rem_euclid(60), 0, "not a minute: {bar:?}");
        Self {
            instrument: bar.instrument.clone(),
            open_time: bar.open_time,
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume_base: bar.volume_base,
            volume_quote: bar.volume_quote,
        }
    }

    /// The minute as a stored bar: no trades counted.
    pub fn as_bar(&self) -> RefBar {
        RefBar {
            instrument: self.instrument.clone(),
            open_time: self.open_time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume_base: self.volume_base,
            volume_quote: self.volume_quote,
            trades: 0,
        }
    }

    /// The order in which the greatest answer for a minute is chosen, and
    /// (for answers equal in value but written with other scales, `5` and
    /// `5.0`) the text, so that the choice depends only on the set.
    fn rank(&self) -> ([Decimal; 6], [String; 6]) {
        let v = [
            self.volume_base,
            self.volume_quote,
            self.high,
            self.low,
            self.open,
            self.close,
        ];
        (v, v.map(|d| d.to_string()))
    }
}

/// Where a stored minute comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The bar of the minute's distinct live trades.
    Live,
    /// A history answer.
    History,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Live => "live",
            Source::History => "history",
        })
    }
}

/// A stored 1-minute bar and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minute {
    /// The bar.
    pub bar: RefBar,
    /// Where it comes from.
    pub source: Source,
}

/// How much more base volume a history answer needs than the live trades of
/// its minute to count as more complete: max(|h|, |l|) × 10⁻¹².
fn tolerance(h: Decimal, l: Decimal) -> Decimal {
    h.abs().max(l.abs()) * Decimal::new(1, 12)
}

/// The stored minutes of `trades` (live, any order, duplicates allowed) and
/// `history` (answers of the history source, any order, repeated or not),
/// sorted by instrument and time, by the rule in this module's doc.
pub fn reconcile(trades: &[Trade], history: &[HistoryMinute]) -> Vec<Minute> {
    let live: BTreeMap<(String, i64), RefBar> = bars(trades, 60)
        .into_iter()
        .map(|b| ((b.instrument.clone(), b.open_time), b))
        .collect();
    let mut best: BTreeMap<(String, i64), &HistoryMinute> = BTreeMap::new();
    for h in history {
        assert_eq!(
            h.open_time.rem_euclid(60),
            0,
            "a history answer that does not start a minute: {h:?}"
        );
        if h.volume_base <= Decimal::ZERO {
            continue;
        }
        let slot = best.entry((h.instrument.clone(), h.open_time)).or_insert(h);
        if h.rank() > slot.rank() {
            *slot = h;
        }
    }
    let mut keys: Vec<&(String, i64)> = live.keys().chain(best.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|key| match (live.get(key), best.get(key)) {
            (Some(l), Some(h))
                if h.volume_base > l.volume_base + tolerance(h.volume_base, l.volume_base) =>
            {
                Minute {
                    bar: h.as_bar(),
                    source: Source::History,
                }
            }
            (Some(l), _) => Minute {
                bar: l.clone(),
                source: Source::Live,
            },
            (None, Some(h)) => Minute {
                bar: h.as_bar(),
                source: Source::History,
            },
            (None, None) => unreachable!("a key of neither map"),
        })
        .collect()
}

/// Stored 1-minute bars (one per instrument and minute, any order) merged
/// into buckets of `interval_secs`: in each bucket, the minutes in time
/// order, the open of the earliest, the close of the latest, the highest
/// high, the lowest low, and the sums of the volumes and the trade counts.
pub fn merge_minutes(minutes: &[RefBar], interval_secs: i64) -> Vec<RefBar> {
    let mut groups: BTreeMap<(String, i64), Vec<&RefBar>> = BTreeMap::new();
    for m in minutes {
        assert_eq!(m.open_time.rem_euclid(60), 0, "not a minute: {m:?}");
        groups
            .entry((
                m.instrument.clone(),
                bucket_start(m.open_time, interval_secs),
            ))
            .or_default()
            .push(m);
    }
    groups
        .into_iter()
        .map(|((instrument, open_time), mut ms)| {
            ms.sort_by_key(|m| m.open_time);
            for pair in ms.windows(2) {
                assert_ne!(
                    pair[0].open_time, pair[1].open_time,
                    "two bars of {instrument}'s minute {}",
                    pair[0].open_time
                );
            }
            let mut bar = RefBar {
                instrument,
                open_time,
                open: ms[0].open,
                high: ms[0].high,
                low: ms[0].low,
                close: ms[ms.len() - 1].close,
                volume_base: Decimal::ZERO,
                volume_quote: Decimal::ZERO,
                trades: 0,
            };
            for m in &ms {
                if m.high > bar.high {
                    bar.high = m.high;
                }
                if m.low < bar.low {
                    bar.low = m.low;
                }
                bar.volume_base += m.volume_base;
                bar.volume_quote += m.volume_quote;
                bar.trades += m.trades;
            }
            bar
        })
        .collect()
}

/// The bars of `interval_secs` of a series of live `trades` and `history`
/// answers: its stored minutes ([`reconcile`]), merged ([`merge_minutes`]).
pub fn series(trades: &[Trade], history: &[HistoryMinute], interval_secs: i64) -> Vec<RefBar> {
    let minutes: Vec<RefBar> = reconcile(trades, history)
        .into_iter()
        .map(|m| m.bar)
        .collect();
    merge_minutes(&minutes, interval_secs)
}

// ---------------------------------------------------------------- comparison

/// `secs` as `YYYY-MM-DD hh:mm:ss UTC` (proleptic Gregorian calendar).
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// A bar's fields by name, as text.
fn fields(b: &RefBar) -> [(&'static str, String); 9] {
    [
        ("instrument", b.instrument.clone()),
        (
            "open_time",
            format!("{} ({})", b.open_time, utc(b.open_time)),
        ),
        ("open", b.open.to_string()),
        ("high", b.high.to_string()),
        ("low", b.low.to_string()),
        ("close", b.close.to_string()),
        ("volume_base", b.volume_base.to_string()),
        ("volume_quote", b.volume_quote.to_string()),
        ("trades", b.trades.to_string()),
    ]
}

/// Whether two bars agree in every field (decimals by value: `0.30` = `0.3`).
fn same(a: &RefBar, b: &RefBar) -> bool {
    a == b
}

/// A table of `got` against `want`, field by field, differing fields marked.
fn table(
    got: Option<(&RefBar, Option<Source>)>,
    want: Option<(&RefBar, Option<Source>)>,
) -> String {
    let none = || -> [String; 10] { std::array::from_fn(|_| "(none)".to_owned()) };
    let column = |side: Option<(&RefBar, Option<Source>)>| -> [String; 10] {
        match side {
            None => none(),
            Some((b, source)) => {
                let f = fields(b);
                let mut out = none();
                for (slot, (_, v)) in out.iter_mut().zip(f) {
                    *slot = v;
                }
                out[9] = source.map_or_else(|| "-".to_owned(), |s| s.to_string());
                out
            }
        }
    };
    let names = [
        "instrument",
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume_base",
        "volume_quote",
        "trades",
        "source",
    ];
    let (g, w) = (column(got), column(want));
    // Decimals compare by value: 0.30 and 0.3 are the same field.
    let differs = |i: usize| -> bool {
        match (got, want) {
            (Some((a, sa)), Some((b, sb))) => match i {
                0 => a.instrument != b.instrument,
                1 => a.open_time != b.open_time,
                2 => a.open != b.open,
                3 => a.high != b.high,
                4 => a.low != b.low,
                5 => a.close != b.close,
                6 => a.volume_base != b.volume_base,
                7 => a.volume_quote != b.volume_quote,
                8 => a.trades != b.trades,
                _ => sa.is_some() && sb.is_some() && sa != sb,
            },
            _ => true,
        }
    };
    let width = g.iter().map(String::len).max().unwrap_or(0).max(4);
    let mut out = format!("    {:<14}{:<width$}  want\n", "", "got");
    let with_sources = [got, want]
        .iter()
        .any(|side| side.is_some_and(|(_, source)| source.is_some()));
    for (i, name) in names.iter().enumerate() {
        if i == 9 && !with_sources {
            break;
        }
        let mark = if differs(i) { '*' } else { ' ' };
        let _ = writeln!(out, "  {mark} {name:<14}{:<width$}  {}", g[i], w[i]);
    }
    out
}

/// A readable account of the first bar where `got` and `want` differ, or
/// `None` when they agree in every field.
pub fn bars_difference(got: &[RefBar], want: &[RefBar]) -> Option<String> {
    let got: Vec<(&RefBar, Option<Source>)> = got.iter().map(|b| (b, None)).collect();
    let want: Vec<(&RefBar, Option<Source>)> = want.iter().map(|b| (b, None)).collect();
    difference(&got, &want)
}

/// As [`bars_difference`], for stored minutes (their sources too).
pub fn minutes_difference(got: &[Minute], want: &[Minute]) -> Option<String> {
    let got: Vec<(&RefBar, Option<Source>)> =
        got.iter().map(|m| (&m.bar, Some(m.source))).collect();
    let want: Vec<(&RefBar, Option<Source>)> =
        want.iter().map(|m| (&m.bar, Some(m.source))).collect();
    difference(&got, &want)
}

fn difference(
    got: &[(&RefBar, Option<Source>)],
    want: &[(&RefBar, Option<Source>)],
) -> Option<String> {
    let agree = |a: &(&RefBar, Option<Source>), b: &(&RefBar, Option<Source>)| {
        same(a.0, b.0) && (a.1.is_none() || b.1.is_none() || a.1 == b.1)
    };
    let i = (0..got.len().max(want.len())).find(|&i| match (got.get(i), want.get(i)) {
        (Some(a), Some(b)) => !agree(a, b),
        _ => true,
    })?;
    let mut out = format!(
        "{} bars got, {} expected; the first difference is bar {i}:\n",
        got.len(),
        want.len()
    );
    out.push_str(&table(got.get(i).copied(), want.get(i).copied()));
    // A bar missing on one side shifts the rest: say which side lacks which.
    if let (Some(g), Some(w)) = (got.get(i), want.get(i)) {
        let key = |b: &(&RefBar, Option<Source>)| (b.0.instrument.clone(), b.0.open_time);
        if key(g) != key(w) {
            for (side, bar, other) in [("got", g, want), ("the reference", w, got)] {
                if !other.iter().any(|o| key(o) == key(bar)) {
                    let _ = writeln!(
                        out,
                        "  only {side} has a bar of {} at {}",
                        bar.0.instrument,
                        utc(bar.0.open_time)
                    );
                }
            }
        }
    }
    Some(out)
}

/// Panics, with the first difference, unless `got` and `want` agree in
/// every field.
#[track_caller]
pub fn assert_same_bars(what: impl fmt::Display, got: &[RefBar], want: &[RefBar]) {
    if let Some(d) = bars_difference(got, want) {
        panic!("{what}: the bars differ from the reference: {d}");
    }
}

/// Panics, with the first difference, unless `got` and `want` agree in
/// every field and source.
#[track_caller]
pub fn assert_same_minutes(what: impl fmt::Display, got: &[Minute], want: &[Minute]) {
    if let Some(d) = minutes_difference(got, want) {
        panic!("{what}: the minutes differ from the reference: {d}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn t(id: &str, secs: i64, price: &str, qty: &str) -> Trade {
        Trade {
            instrument: "X:A-B".into(),
            id: id.into(),
            time_ns: secs * 1_000_000_000,
            price: d(price),
            quantity: d(qty),
        }
    }

    /// A history answer of X:A-B: open, high, low, close, base, quote.
    fn h(open_time: i64, v: [&str; 6]) -> HistoryMinute {
        HistoryMinute {
            instrument: "X:A-B".into(),
            open_time,
            open: d(v[0]),
            high: d(v[1]),
            low: d(v[2]),
            close: d(v[3]),
            volume_base: d(v[4]),
            volume_quote: d(v[5]),
        }
    }

    /// A bar of X:A-B by hand: open, high, low, close, base, quote, trades.
    fn bar(open_time: i64, v: [&str; 6], trades: u64) -> RefBar {
        RefBar {
            instrument: "X:A-B".into(),
            open_time,
            open: d(v[0]),
            high: d(v[1]),
            low: d(v[2]),
            close: d(v[3]),
            volume_base: d(v[4]),
            volume_quote: d(v[5]),
            trades,
        }
    }

    fn live(b: RefBar) -> Minute {
        Minute {
            bar: b,
            source: Source::Live,
        }
    }

    fn hist(b: RefBar) -> Minute {
        Minute {
            bar: b,
            source: Source::History,
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
        // Minute 60: 10 (id 1), 11 (id 9), 12 (id 10), 13 (id 3, at 119 s):
        // base 1 + 2 + 1 + 0.5 = 4.5; quote 10×1 + 11×2 + 12×1 + 13×0.5 = 50.5.
        assert_eq!(
            b,
            [
                bar(60, ["10", "13", "10", "13", "4.5", "50.5"], 4),
                bar(120, ["20", "20", "20", "20", "1", "20"], 1),
            ]
        );
        // One bucket of five minutes holds them all, from the trades.
        assert_eq!(
            bars(&trades, 300),
            [bar(0, ["10", "20", "10", "20", "5.5", "70.5"], 5)]
        );
        let marks = first_last(&trades, 60);
        assert_eq!(
            marks[&("X:A-B".to_owned(), 60)],
            ((60_000_000_000, "1".into()), (119_000_000_000, "3".into()))
        );
    }

    #[test]
    fn the_first_copy_of_a_trade_id_counts() {
        // A second copy of id 1 with another price and time changes nothing.
        let trades = [t("1", 60, "10", "1"), t("1", 61, "99", "5")];
        assert_eq!(
            bars(&trades, 60),
            [bar(60, ["10", "10", "10", "10", "1", "10"], 1)]
        );
        // The same id on another instrument is another trade.
        let mut other = t("1", 61, "7", "1");
        other.instrument = "Y:A-B".into();
        assert_eq!(bars(&[trades[0].clone(), other], 60).len(), 2);
    }

    #[test]
    fn ties_in_time_go_by_id_shorter_first() {
        // At the same instant, by length then bytes: "9", "b", "10", "a0"
        // (not "10", "9", "a0", "b" as plain text would have it).
        let trades = [
            t("a0", 5, "4", "1"),
            t("10", 5, "3", "1"),
            t("b", 5, "2", "1"),
            t("9", 5, "1", "1"),
        ];
        let b = &bars(&trades, 60)[0];
        assert_eq!((b.open, b.close), (d("1"), d("4")));
        let marks = &first_last(&trades, 60)[&("X:A-B".to_owned(), 0)];
        assert_eq!((marks.0 .1.as_str(), marks.1 .1.as_str()), ("9", "a0"));
    }

    #[test]
    fn times_before_1970_floor_down() {
        let b = bars(&[t("1", -1, "1", "1")], 60);
        assert_eq!(b[0].open_time, -60);
        assert_eq!(bars(&[t("1", -1, "1", "1")], 86_400)[0].open_time, -86_400);
    }

    #[test]
    fn history_fills_a_minute_without_trades_and_flat_bars_are_ignored() {
        let history = [
            h(60, ["5", "6", "4", "5.5", "2", "11"]),
            // CryptoCompare's flat bar of a minute without trades.
            h(120, ["5.5", "5.5", "5.5", "5.5", "0", "0"]),
        ];
        assert_eq!(
            reconcile(&[], &history),
            [hist(bar(60, ["5", "6", "4", "5.5", "2", "11"], 0))]
        );
    }

    #[test]
    fn history_with_more_volume_repairs_a_live_minute_and_equal_volume_does_not() {
        // Minute 60: live 10×1 + 12×1 (base 2, quote 22).
        let trades = [t("1", 60, "10", "1"), t("2", 70, "12", "1")];
        let l = bar(60, ["10", "12", "10", "12", "2", "22"], 2);
        // History with base 3 > 2: it is the stored minute, 0 trades.
        let more = h(60, ["9", "13", "9", "12", "3", "33"]);
        assert_eq!(
            reconcile(&trades, std::slice::from_ref(&more)),
            [hist(bar(60, ["9", "13", "9", "12", "3", "33"], 0))]
        );
        // History with base 2 (= live, other prices): live stays.
        let equal = h(60, ["1", "99", "1", "50", "2", "100"]);
        assert_eq!(reconcile(&trades, &[equal]), [live(l.clone())]);
        // Less: live stays.
        let less = h(60, ["10", "10", "10", "10", "1", "10"]);
        assert_eq!(reconcile(&trades, &[less]), [live(l)]);
    }

    #[test]
    fn float_noise_in_the_history_volume_is_not_more_complete() {
        // Live: three trades of 0.1 at price 1: base 0.3, quote 0.3.
        let trades = [
            t("1", 60, "1", "0.1"),
            t("2", 61, "1", "0.1"),
            t("3", 62, "1", "0.1"),
        ];
        let l = bar(60, ["1", "1", "1", "1", "0.3", "0.3"], 3);
        // The source summed floats: 0.30000000000000004. The difference,
        // 4×10⁻¹⁷, is below tol = 0.30000000000000004 × 10⁻¹² ≈ 3×10⁻¹³.
        let noisy = h(60, ["1", "1", "1", "1", "0.30000000000000004", "0.3"]);
        assert_eq!(reconcile(&trades, &[noisy]), [live(l.clone())]);
        // A real difference of one trade more (0.4) is above it.
        let more = h(60, ["1", "1", "1", "1", "0.4", "0.4"]);
        assert_eq!(
            reconcile(&trades, &[more]),
            [hist(bar(60, ["1", "1", "1", "1", "0.4", "0.4"], 0))]
        );
        // Just above the tolerance: 0.3 + 3.1×10⁻¹³ > 0.3 + 0.3000000000003×10⁻¹².
        let above = h(60, ["1", "1", "1", "1", "0.30000000000031", "0.3"]);
        assert_eq!(reconcile(&trades, &[above])[0].source, Source::History);
        // Just below: 0.3 + 2.9×10⁻¹³.
        let below = h(60, ["1", "1", "1", "1", "0.30000000000029", "0.3"]);
        assert_eq!(reconcile(&trades, &[below])[0].source, Source::Live);
    }

    #[test]
    fn early_incomplete_history_then_complete_history_the_complete_one_wins() {
        // The source answered while minute 60 was still filling (base 1),
        // then again once it was complete (base 3); live saw two of the
        // three trades (base 2).
        let trades = [t("1", 60, "10", "1"), t("2", 61, "11", "1")];
        let early = h(60, ["10", "10", "10", "10", "1", "10"]);
        let complete = h(60, ["10", "12", "10", "12", "3", "33"]);
        let want = [hist(bar(60, ["10", "12", "10", "12", "3", "33"], 0))];
        // In either order, in one batch or not: the set decides.
        assert_eq!(reconcile(&trades, &[early.clone(), complete.clone()]), want);
        assert_eq!(reconcile(&trades, &[complete.clone(), early.clone()]), want);
        // Without live trades too.
        assert_eq!(
            reconcile(&[], &[early, complete]),
            [hist(bar(60, ["10", "12", "10", "12", "3", "33"], 0))]
        );
    }

    #[test]
    fn the_greatest_history_answer_goes_by_base_then_quote_then_prices() {
        let a = h(60, ["1", "5", "1", "2", "3", "9"]);
        let b = h(60, ["1", "5", "1", "2", "3", "10"]); // more quote
        let c = h(60, ["1", "6", "1", "2", "3", "10"]); // and a higher high
        let e = h(60, ["1", "6", "1", "3", "3", "10"]); // and a later close
        for order in [
            vec![a.clone(), b.clone(), c.clone(), e.clone()],
            vec![e.clone(), c.clone(), b.clone(), a.clone()],
            vec![c.clone(), e.clone(), a.clone(), b.clone()],
        ] {
            assert_eq!(
                reconcile(&[], &order),
                [hist(bar(60, ["1", "6", "1", "3", "3", "10"], 0))]
            );
        }
    }

    #[test]
    fn reconciliation_depends_on_the_set_not_on_order_or_copies() {
        let trades = [
            t("1", 60, "10", "1"),
            t("2", 130, "11", "1"),
            t("3", 131, "12", "2"),
        ];
        let history = [
            h(60, ["10", "10", "10", "10", "1", "10"]), // = live: live stays
            h(120, ["11", "12", "11", "12", "4", "47"]), // more: history
            h(180, ["7", "8", "6", "7", "1", "7"]),     // no live: history
        ];
        let want = [
            live(bar(60, ["10", "10", "10", "10", "1", "10"], 1)),
            hist(bar(120, ["11", "12", "11", "12", "4", "47"], 0)),
            hist(bar(180, ["7", "8", "6", "7", "1", "7"], 0)),
        ];
        assert_eq!(reconcile(&trades, &history), want);
        let mut trades2: Vec<Trade> = trades.iter().rev().cloned().collect();
        trades2.push(trades[0].clone());
        let mut history2: Vec<HistoryMinute> = history.iter().rev().cloned().collect();
        history2.extend(history.iter().cloned());
        assert_eq!(reconcile(&trades2, &history2), want);
    }

    #[test]
    fn coarse_bars_of_mixed_minutes_are_merged_by_hand() {
        // Minutes 0 and 60 live, 120 history (repairing), 240 history only,
        // 300 live (the next 5-minute bucket).
        let trades = [
            t("1", 0, "10", "1"),
            t("2", 30, "14", "1"),
            t("3", 61, "9", "2"),
            t("4", 121, "10", "0.5"),
            t("5", 301, "20", "1"),
        ];
        let history = [
            h(120, ["11", "16", "8", "13", "3", "36"]),
            h(240, ["12", "12", "12", "12", "1", "12"]),
        ];
        let minutes = reconcile(&trades, &history);
        assert_eq!(
            minutes,
            [
                live(bar(0, ["10", "14", "10", "14", "2", "24"], 2)),
                live(bar(60, ["9", "9", "9", "9", "2", "18"], 1)),
                hist(bar(120, ["11", "16", "8", "13", "3", "36"], 0)),
                hist(bar(240, ["12", "12", "12", "12", "1", "12"], 0)),
                live(bar(300, ["20", "20", "20", "20", "1", "20"], 1)),
            ]
        );
        // Bucket 0–299: open 10 (minute 0), close 12 (minute 240), high 16,
        // low 8, base 2 + 2 + 3 + 1 = 8, quote 24 + 18 + 36 + 12 = 90,
        // trades 2 + 1 + 0 + 0 = 3.
        let want5 = [
            bar(0, ["10", "16", "8", "12", "8", "90"], 3),
            bar(300, ["20", "20", "20", "20", "1", "20"], 1),
        ];
        assert_eq!(series(&trades, &history, 300), want5);
        // In any order of the minutes.
        let mut shuffled: Vec<RefBar> = minutes.iter().rev().map(|m| m.bar.clone()).collect();
        shuffled.swap(0, 2);
        assert_eq!(merge_minutes(&shuffled, 300), want5);
        // The hour holds everything.
        assert_eq!(
            series(&trades, &history, 3_600),
            [bar(0, ["10", "20", "8", "20", "9", "110"], 4)]
        );
        // 1-minute series are the minutes themselves.
        assert_eq!(
            series(&trades, &history, 60),
            minutes.into_iter().map(|m| m.bar).collect::<Vec<_>>()
        );
    }

    #[test]
    fn without_history_merged_minutes_are_the_bars_of_the_trades() {
        // Two routes to the same 15-minute bars: bucketing the trades, and
        // merging the minutes.
        let trades: Vec<Trade> = (0..40)
            .map(|k| {
                let price = (100 + (k * 37) % 23).to_string();
                let qty = format!("0.{}", 1 + k % 9);
                t(&k.to_string(), k * 47 % 2_000, &price, &qty)
            })
            .collect();
        for secs in [300, 900, 3_600, 86_400] {
            assert_eq!(series(&trades, &[], secs), bars(&trades, secs), "{secs}");
        }
    }

    #[test]
    fn utc_times_by_hand() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_006_400), "2023-11-15 00:00:00 UTC");
        assert_eq!(utc(951_782_400 + 3_661), "2000-02-29 01:01:01 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn differences_are_told_field_by_field() {
        let a = bar(60, ["10", "12", "10", "12", "2", "22"], 2);
        let mut b = a.clone();
        b.volume_quote = d("23");
        // Decimals by value: 2.0 is 2.
        let mut scaled = a.clone();
        scaled.volume_base = d("2.0");
        assert_eq!(bars_difference(std::slice::from_ref(&a), &[scaled]), None);
        let text = bars_difference(&[a.clone(), a.clone()], &[a.clone(), b]).unwrap();
        assert!(text.contains("the first difference is bar 1"), "{text}");
        assert!(!text.contains("source"), "bars have no source: {text}");
        assert!(text.contains("* volume_quote  22"), "{text}");
        assert!(text.contains("  volume_base   2"), "{text}");
        assert!(text.contains("1970-01-01 00:01:00 UTC"), "{text}");
        let text = bars_difference(std::slice::from_ref(&a), &[]).unwrap();
        assert!(text.contains("1 bars got, 0 expected"), "{text}");
        assert!(text.contains("(none)"), "{text}");
        // Sources of minutes count.
        let text = minutes_difference(&[live(a.clone())], &[hist(a.clone())]).unwrap();
        assert!(text.contains("* source"), "{text}");
        // A bar one side lacks.
        let mut later = a.clone();
        later.open_time = 120;
        let text = bars_difference(&[a.clone(), later.clone()], &[later]).unwrap();
        assert!(
            text.contains("only got has a bar of X:A-B at 1970-01-01 00:01:00 UTC"),
            "{text}"
        );
    }

    #[test]
    #[should_panic(expected = "X:A-B at 1m: the bars differ")]
    fn assert_same_bars_panics_with_the_difference() {
        let a = bar(60, ["10", "12", "10", "12", "2", "22"], 2);
        let mut b = a.clone();
        b.trades = 3;
        assert_same_bars("X:A-B at 1m", &[a], &[b]);
    }

    #[test]
    fn this_file_shares_no_code_with_the_platform() {
        let platform = ["candela", "_actors"].concat();
        for line in include_str!("oracle.rs").lines() {
            let code = line.trim_start();
            assert!(
                code.starts_with("//") || !code.contains(&platform),
                "the oracle uses the platform: {line}"
            );
        }
    }
}
