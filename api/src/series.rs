//! The body of `GET /api/v1/ohlcv`, built from bytes encoded once.
//!
//! A closed 1-minute bar never changes except by a correction, and every
//! change of a bar raises its hour's version in the cache
//! ([`BarCache::hours`]). So the JSON of each bar is written once, per hour
//! ([`HourEntry`]), kept in a bounded [`HourMemo`], and an answer is those
//! bytes copied in order: the cache sends only the hours whose version moved
//! (the hour in progress, a corrected hour), which are encoded again. An
//! entry also records until when its `closed` flags hold (the first minute
//! that was still open when it was encoded ends its validity).
//!
//! What must never happen: an answer that differs from the JSON of its
//! [`OhlcvBody`] as poem-openapi writes it (the same fields, in the same
//! order, decimals normalized as strings; checked by the tests against the
//! DTOs), or an entry used for a version, a range or a time it does not hold.
//!
//! [`BarCache::hours`]: candela_actors::store::BarCache::hours
//! [`OhlcvBody`]: crate::model::OhlcvBody

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use rust_decimal::Decimal;

use candela_actors::domain::Instrument;
use candela_actors::store::{hour_of, KnownHour, Source, StoredBar, HOUR_SECS};

/// One bar of an answer: its start, its close (for filling gaps after it),
/// and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Start of the interval, Unix seconds.
    pub time: i64,
    /// The close.
    pub close: Decimal,
    /// The bar's JSON object.
    pub json: Bytes,
}

/// Writes a bar's JSON object, as poem-openapi writes a
/// [`BarDto`](crate::model::BarDto).
#[allow(clippy::too_many_arguments)]
fn write_bar(
    buf: &mut Vec<u8>,
    time: i64,
    [open, high, low, close, volume_base, volume_quote]: [Decimal; 6],
    trades: u64,
    source: &str,
    closed: bool,
) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        buf,
        r#"{{"time":{time},"open":"{}","high":"{}","low":"{}","close":"{}","volume_base":"{}","volume_quote":"{}","trades":{trades},"source":"{source}","closed":{closed}}}"#,
        open.normalize(),
        high.normalize(),
        low.normalize(),
        close.normalize(),
        volume_base.normalize(),
        volume_quote.normalize(),
    );
}

/// Writes a stored bar; `now` decides whether it is closed.
fn write_stored(buf: &mut Vec<u8>, b: &StoredBar, now: i64) -> bool {
    let bar = &b.bar;
    let closed = bar.open_time + bar.interval.seconds() <= now;
    write_bar(
        buf,
        bar.open_time,
        [
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume_base,
            bar.volume_quote,
        ],
        bar.trades,
        match b.source {
            Source::Live => "live",
            Source::History => "history",
        },
        closed,
    );
    closed
}

/// The items of stored bars (an answer of the database), each encoded now.
pub fn items(bars: &[StoredBar], now: i64) -> Vec<Item> {
    let mut buf = Vec::with_capacity(bars.len() * 200);
    let mut ends = Vec::with_capacity(bars.len());
    for b in bars {
        write_stored(&mut buf, b, now);
        ends.push(buf.len());
    }
    let bytes = Bytes::from(buf);
    let mut start = 0;
    bars.iter()
        .zip(ends)
        .map(|(b, end)| {
            let item = Item {
                time: b.bar.open_time,
                close: b.bar.close,
                json: bytes.slice(start..end),
            };
            start = end;
            item
        })
        .collect()
}

/// A flat, zero-volume bar at `price` for an interval without trades.
pub fn filled(time: i64, price: Decimal, closed: bool) -> Item {
    let mut buf = Vec::with_capacity(200);
    write_bar(
        &mut buf,
        time,
        [price, price, price, price, Decimal::ZERO, Decimal::ZERO],
        0,
        "filled",
        closed,
    );
    Item {
        time,
        close: price,
        json: Bytes::from(buf),
    }
}

/// The encoded 1-minute bars of one hour of one instrument, at one version
/// of the cache.
#[derive(Debug)]
pub struct HourEntry {
    /// The hour's version in the cache when it was encoded.
    pub version: i64,
    /// The first minute it holds every bar from (the hour's start, or the
    /// cache's mark within it).
    pub complete_from: i64,
    /// Its `closed` flags hold while the time is before this.
    pub valid_until: i64,
    /// The bars, ascending.
    items: Vec<Item>,
    /// What it weighs in the memo, bytes.
    weight: u64,
}

impl HourEntry {
    /// Encodes the bars of one hour (all the cache holds of it from
    /// `complete_from` on) at `now`.
    pub fn build(version: i64, complete_from: i64, bars: &[StoredBar], now: i64) -> Self {
        let valid_until = bars
            .iter()
            .map(|b| b.bar.open_time + b.bar.interval.seconds())
            .filter(|end| *end > now)
            .min()
            .unwrap_or(i64::MAX);
        let items = items(bars, now);
        let weight = 64 + items.iter().map(|i| i.json.len() as u64 + 48).sum::<u64>();
        Self {
            version,
            complete_from,
            valid_until,
            items,
            weight,
        }
    }

    /// Whether it can serve the part of `from..=to` in its hour at `now`.
    fn serves(&self, hour: i64, from: i64, now: i64) -> bool {
        now < self.valid_until && self.complete_from <= from.max(hour)
    }

    /// Its bars with `from <= time <= to`.
    pub fn slice(&self, from: i64, to: i64) -> &[Item] {
        let lo = self.items.partition_point(|i| i.time < from);
        let hi = self.items.partition_point(|i| i.time <= to);
        &self.items[lo..hi.max(lo)]
    }
}

/// Encoded hours, bounded by the bytes they hold (least recently used go
/// first). Shared by every request of a node.
pub struct HourMemo {
    cache: quick_cache::sync::Cache<(Instrument, i64), Arc<HourEntry>, Weight>,
}

/// Weighs an entry by its bytes.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<(Instrument, i64), Arc<HourEntry>> for Weight {
    fn weight(&self, _key: &(Instrument, i64), entry: &Arc<HourEntry>) -> u64 {
        entry.weight
    }
}

impl std::fmt::Debug for HourMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HourMemo")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

/// The most hours of a range looked up in the memo (a range longer than
/// this is read from the cache for its later hours, as without a memo): a
/// request for a century costs a bounded number of lookups.
pub const MAX_KNOWN_HOURS: usize = 1_000;

impl HourMemo {
    /// A memo holding about `bytes` of encoded bars.
    pub fn new(bytes: u64) -> Self {
        Self {
            cache: quick_cache::sync::Cache::with_weighter(
                (bytes / 12_000).max(16) as usize,
                bytes.max(1),
                Weight,
            ),
        }
    }

    /// The hours of `from..=to` it can serve at `now`, as the cache is told
    /// of them, and the entries themselves.
    pub fn known(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        now: i64,
    ) -> (Vec<KnownHour>, Vec<(i64, Arc<HourEntry>)>) {
        let mut known = Vec::new();
        let mut entries = Vec::new();
        if to < from {
            return (known, entries);
        }
        let mut key = (instrument.clone(), hour_of(from));
        for _ in 0..MAX_KNOWN_HOURS {
            if key.1 > to {
                break;
            }
            if let Some(entry) = self.cache.get(&key) {
                if entry.serves(key.1, from, now) {
                    known.push(KnownHour {
                        hour: key.1,
                        version: entry.version,
                        bars: entry.slice(from, to).len(),
                    });
                    entries.push((key.1, entry));
                }
            }
            key.1 += HOUR_SECS;
        }
        (known, entries)
    }

    /// Keeps an entry.
    pub fn insert(&self, instrument: &Instrument, hour: i64, entry: Arc<HourEntry>) {
        self.cache.insert((instrument.clone(), hour), entry);
    }

    /// How many hours it holds.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

/// Inserts flat bars for the intervals without trades between the first
/// item and `to`, at the previous close; stops at `cap` items (a sparse
/// range can hold millions of empty minutes: the answer holds `limit` bars
/// at most, so nothing past that is ever built).
pub fn fill_gaps(items: Vec<Item>, step: i64, to: i64, now: i64, cap: usize) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity(items.len().min(cap));
    for item in items {
        if let Some(prev) = out.last() {
            let mut t = prev.time + step;
            let close = prev.close;
            while t < item.time {
                if out.len() >= cap {
                    return out;
                }
                out.push(filled(t, close, t + step <= now));
                t += step;
            }
        }
        if out.len() >= cap {
            return out;
        }
        out.push(item);
    }
    if let Some(last) = out.last() {
        let (mut t, close) = (last.time + step, last.close);
        while t <= to && t <= now && out.len() < cap {
            out.push(filled(t, close, t + step <= now));
            t += step;
        }
    }
    out
}

/// The head of an answer: everything but its bars.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// `MARKET:BASE-QUOTE`.
    pub instrument: &'a str,
    /// The interval (`1m` …).
    pub interval: &'a str,
    /// Start of the first interval covered.
    pub from: i64,
    /// Start of the last interval covered.
    pub to: i64,
    /// Whether the limit cut it short.
    pub truncated: bool,
    /// `cache`, `database`, `fetched` or `none`.
    pub served: &'a str,
}

/// The JSON of an [`OhlcvBody`](crate::model::OhlcvBody): the head, then
/// the items' bytes.
pub fn body(head: Head<'_>, items: &[Item]) -> Bytes {
    let size = 160 + items.iter().map(|i| i.json.len() + 1).sum::<usize>();
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(br#"{"instrument":"#);
    let _ = serde_json::to_writer(&mut buf, head.instrument);
    buf.extend_from_slice(br#","interval":"#);
    let _ = serde_json::to_writer(&mut buf, head.interval);
    let _ = write!(
        buf,
        r#","from":{},"to":{},"truncated":{},"served":"#,
        head.from, head.to, head.truncated
    );
    let _ = serde_json::to_writer(&mut buf, head.served);
    buf.extend_from_slice(br#","bars":["#);
    for (k, item) in items.iter().enumerate() {
        if k > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(&item.json);
    }
    buf.extend_from_slice(b"]}");
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BarDto, OhlcvBody};
    use candela_actors::domain::{Bar, Interval, TradeMark};
    use poem_openapi::types::ToJSON;

    fn stored(open_time: i64, price: Decimal, source: Source) -> StoredBar {
        StoredBar {
            bar: Bar {
                instrument: Instrument::new("Coinbase", "BTC", "USD"),
                interval: Interval::M1,
                open_time,
                open: price,
                high: price * Decimal::new(11, 1),
                low: price - Decimal::new(5, 3),
                close: Decimal::new(123_450_000, 4),
                volume_base: Decimal::new(1_000, 3),
                volume_quote: Decimal::new(-25, 1),
                trades: 7,
                first: TradeMark {
                    time_ns: open_time * 1_000_000_000,
                    id: "a".into(),
                },
                last: TradeMark {
                    time_ns: open_time * 1_000_000_000,
                    id: "b".into(),
                },
            },
            source,
            version: 1,
        }
    }

    fn dto_json(body: OhlcvBody) -> serde_json::Value {
        body.to_json().expect("JSON")
    }

    #[test]
    fn the_bytes_are_the_json_of_the_dtos() {
        let now = 1_700_000_100;
        let bars = vec![
            stored(1_700_000_000, Decimal::new(3_000_001, 2), Source::Live),
            stored(1_700_000_060, Decimal::new(42, 0), Source::History),
        ];
        let mut got_items = items(&bars, now);
        got_items.push(filled(1_700_000_120, Decimal::new(5_000, 3), false));
        let head = Head {
            instrument: "Coinbase:BTC-USD",
            interval: "1m",
            from: 1_700_000_000,
            to: 1_700_000_120,
            truncated: true,
            served: "cache",
        };
        let got = body(head, &got_items);
        // The same answer through the DTOs, written by poem-openapi.
        let mut dtos: Vec<BarDto> = bars.iter().map(|b| BarDto::from_stored(b, now)).collect();
        dtos.push(BarDto::filled(1_700_000_120, Decimal::new(5, 0), false));
        let want = dto_json(OhlcvBody {
            instrument: head.instrument.into(),
            interval: head.interval.into(),
            from: head.from,
            to: head.to,
            truncated: true,
            served: "cache".into(),
            bars: dtos,
        });
        let got: serde_json::Value = serde_json::from_slice(&got).expect("valid JSON");
        assert_eq!(got, want);
        // In the same order of fields, too.
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
        let empty: serde_json::Value = serde_json::from_slice(&body(head, &[])).unwrap();
        assert_eq!(empty["bars"], serde_json::json!([]));
    }

    #[test]
    fn an_entry_serves_only_its_version_range_and_time() {
        let hour = 1_699_999_200;
        let bars: Vec<StoredBar> = (0..60)
            .filter(|k| k % 5 != 0)
            .map(|k| stored(hour + k * 60, Decimal::ONE, Source::Live))
            .collect();
        // Encoded while minute 59 is in progress.
        let now = hour + 59 * 60 + 10;
        let entry = HourEntry::build(9, hour + 120, &bars[1..], now);
        assert_eq!(entry.valid_until, hour + 3_600);
        assert!(entry.serves(hour, hour + 120, now));
        assert!(!entry.serves(hour, hour + 60, now), "before what it holds");
        assert!(
            !entry.serves(hour, hour + 120, hour + 3_600),
            "its flags ran out"
        );
        let slice = entry.slice(hour + 600, hour + 900);
        let times: Vec<i64> = slice.iter().map(|i| i.time).collect();
        let want: Vec<i64> = (10..=15)
            .filter(|k| k % 5 != 0)
            .map(|k| hour + k * 60)
            .collect();
        assert_eq!(times, want);
        assert!(entry.slice(hour + 3_600, hour + 7_200).is_empty());

        let memo = HourMemo::new(1 << 20);
        let i = Instrument::new("Coinbase", "BTC", "USD");
        memo.insert(&i, hour, Arc::new(entry));
        let (known, entries) = memo.known(&i, hour + 600, hour + 900, now);
        assert_eq!(
            known,
            vec![KnownHour {
                hour,
                version: 9,
                bars: want.len()
            }]
        );
        assert_eq!(entries.len(), 1);
        // A far range costs a bounded number of lookups.
        let (known, _) = memo.known(&i, 0, 7_258_118_400, now);
        assert!(known.is_empty());
    }

    #[test]
    fn fill_inserts_flat_bars_at_the_previous_close() {
        let bar = |t: i64, close: i64| filled(t, Decimal::from(close), true);
        let got = fill_gaps(vec![bar(60, 5), bar(240, 7)], 60, 300, 1_000, 100);
        let times: Vec<i64> = got.iter().map(|b| b.time).collect();
        assert_eq!(times, [60, 120, 180, 240, 300]);
        let json: serde_json::Value = serde_json::from_slice(&got[2].json).unwrap();
        assert_eq!(json["source"], "filled");
        assert_eq!(json["close"], "5");
        assert_eq!(json["volume_base"], "0");
        assert_eq!(got[4].close, Decimal::from(7));
    }

    #[test]
    fn fill_stops_at_the_cap_whatever_the_range() {
        let bar = |t: i64| filled(t, Decimal::ONE, true);
        let far = 7_258_118_400;
        assert_eq!(fill_gaps(vec![bar(60)], 60, far, far, 11).len(), 11);
        let got = fill_gaps(vec![bar(60), bar(far)], 60, far, far, 3);
        assert_eq!(
            got.iter().map(|b| b.time).collect::<Vec<_>>(),
            [60, 120, 180]
        );
    }
}
