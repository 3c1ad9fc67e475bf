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

/// One bar encoded on its own (a bar of the database, a filled bar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Start of the interval, Unix seconds.
    pub time: i64,
    /// The close.
    pub close: Decimal,
    /// The bar's JSON object.
    pub json: Bytes,
}

/// Writes a bar's JSON object as poem-openapi writes a
/// [`BarDto`](crate::model::BarDto): its fields in alphabetical order
/// (serde_json's map, without `preserve_order`), decimals normalized, as
/// strings.
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
        r#"{{"close":"{}","closed":{closed},"high":"{}","low":"{}","open":"{}","source":"{source}","time":{time},"trades":{trades},"volume_base":"{}","volume_quote":"{}"}}"#,
        close.normalize(),
        high.normalize(),
        low.normalize(),
        open.normalize(),
        volume_base.normalize(),
        volume_quote.normalize(),
    );
}

/// Writes a stored bar; `now` decides whether it is closed.
fn write_stored(buf: &mut Vec<u8>, b: &StoredBar, now: i64) {
    let bar = &b.bar;
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
        bar.open_time + bar.interval.seconds() <= now,
    );
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

/// Bars encoded together: their JSON objects joined by commas, so that any
/// run of consecutive bars is one slice of the bytes.
#[derive(Debug)]
pub struct Encoded {
    /// Starts, ascending.
    times: Vec<i64>,
    /// Closes.
    closes: Vec<Decimal>,
    /// Where each bar's object starts and ends in `bytes`.
    spans: Vec<(u32, u32)>,
    /// `{bar},{bar},…`.
    bytes: Bytes,
}

impl Encoded {
    /// Encodes `bars` (ascending) at `now`.
    pub fn new(bars: &[StoredBar], now: i64) -> Self {
        let mut buf = Vec::with_capacity(bars.len() * 230);
        let mut spans = Vec::with_capacity(bars.len());
        for (k, b) in bars.iter().enumerate() {
            if k > 0 {
                buf.push(b',');
            }
            let start = buf.len() as u32;
            write_stored(&mut buf, b, now);
            spans.push((start, buf.len() as u32));
        }
        Self {
            times: bars.iter().map(|b| b.bar.open_time).collect(),
            closes: bars.iter().map(|b| b.bar.close).collect(),
            spans,
            bytes: Bytes::from(buf),
        }
    }

    /// How many bars.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The indexes of its bars with `from <= time <= to`.
    pub fn range(&self, from: i64, to: i64) -> std::ops::Range<usize> {
        let lo = self.times.partition_point(|t| *t < from);
        let hi = self.times.partition_point(|t| *t <= to);
        lo..hi.max(lo)
    }

    /// The bytes of bars `lo..hi` (commas between them).
    fn run(&self, lo: usize, hi: usize) -> &[u8] {
        &self.bytes[self.spans[lo].0 as usize..self.spans[hi - 1].1 as usize]
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
    /// The bars.
    pub bars: Arc<Encoded>,
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
        Self {
            version,
            complete_from,
            valid_until,
            bars: Arc::new(Encoded::new(bars, now)),
        }
    }

    /// Whether it can serve the part of `from..=to` in its hour at `now`.
    pub fn serves(&self, hour: i64, from: i64, now: i64) -> bool {
        now < self.valid_until && self.complete_from <= from.max(hour)
    }

    fn weight(&self) -> u64 {
        128 + self.bars.bytes.len() as u64 + self.bars.len() as u64 * 40
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
        entry.weight()
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
    /// of them, and the entries themselves (ascending).
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
                        bars: entry.bars.range(from, to).len(),
                    });
                    entries.push((key.1, entry));
                }
            }
            key.1 += HOUR_SECS;
        }
        (known, entries)
    }

    /// The entries of `instrument`'s hours at `versions` (`(hour,
    /// version)`, ascending; an hour at version 0 has no bars and no entry),
    /// if every one is held at that version and can serve `from..` at `now`.
    pub fn serving(
        &self,
        instrument: &Instrument,
        versions: &[(i64, i64)],
        from: i64,
        now: i64,
    ) -> Option<Vec<Arc<HourEntry>>> {
        let mut key = (instrument.clone(), 0);
        let mut out = Vec::with_capacity(versions.len());
        for &(hour, version) in versions {
            if version == 0 {
                continue;
            }
            key.1 = hour;
            let entry = self
                .cache
                .get(&key)
                .filter(|e| e.version == version && e.serves(hour, from, now))?;
            out.push(entry);
        }
        Some(out)
    }

    /// Keeps an entry (one with no version of the cache, 0, is not kept:
    /// nothing would say when it changes).
    pub fn insert(&self, instrument: &Instrument, hour: i64, entry: Arc<HourEntry>) {
        if entry.version > 0 {
            self.cache.insert((instrument.clone(), hour), entry);
        }
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

/// Part of an answer's bars: a run of encoded bars, or one bar on its own.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Bars `lo..hi` of an encoded set.
    Run(Arc<Encoded>, usize, usize),
    /// One bar.
    Bar(Item),
}

impl Piece {
    fn len(&self) -> usize {
        match self {
            Piece::Run(_, lo, hi) => hi - lo,
            Piece::Bar(_) => 1,
        }
    }
}

/// The bars of an answer, in order, as pieces.
#[derive(Debug, Default, Clone)]
pub struct Bars {
    pieces: Vec<Piece>,
    len: usize,
}

impl Bars {
    /// Adds bars `range` of `encoded` (at most what `limit` leaves room for).
    pub fn push_run(
        &mut self,
        encoded: &Arc<Encoded>,
        range: std::ops::Range<usize>,
        limit: usize,
    ) {
        let hi = range.end.min(range.start + limit.saturating_sub(self.len));
        if hi > range.start {
            self.len += hi - range.start;
            self.pieces
                .push(Piece::Run(Arc::clone(encoded), range.start, hi));
        }
    }

    /// Adds one bar.
    pub fn push_bar(&mut self, item: Item) {
        self.len += 1;
        self.pieces.push(Piece::Bar(item));
    }

    /// How many bars.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The start of the last bar.
    pub fn last_time(&self) -> Option<i64> {
        match self.pieces.last()? {
            Piece::Run(e, _, hi) => Some(e.times[hi - 1]),
            Piece::Bar(item) => Some(item.time),
        }
    }

    /// The first `n` bars.
    pub fn truncate(&mut self, n: usize) {
        let mut kept = 0;
        let mut cut = self.pieces.len();
        for (k, p) in self.pieces.iter_mut().enumerate() {
            if kept >= n {
                cut = k;
                break;
            }
            let take = p.len().min(n - kept);
            if let Piece::Run(_, lo, hi) = p {
                *hi = *lo + take;
            }
            kept += take;
        }
        self.pieces.truncate(cut);
        self.len = kept;
    }

    /// Inserts flat bars for the intervals without trades between the first
    /// bar and `to`, at the previous close; stops at `cap` bars (a sparse
    /// range can hold millions of empty minutes: the answer holds `limit`
    /// bars at most, so nothing past that is ever built).
    pub fn fill_gaps(self, step: i64, to: i64, now: i64, cap: usize) -> Bars {
        let mut out = Bars::default();
        let mut prev: Option<(i64, Decimal)> = None;
        'pieces: for piece in &self.pieces {
            let mut k = match piece {
                Piece::Run(_, lo, _) => *lo,
                Piece::Bar(_) => 0,
            };
            // Within a piece, bars are added as runs between gaps.
            let mut run_start = k;
            let bars: Vec<(i64, Decimal)> = match piece {
                Piece::Run(e, lo, hi) => (*lo..*hi).map(|j| (e.times[j], e.closes[j])).collect(),
                Piece::Bar(item) => vec![(item.time, item.close)],
            };
            for (time, close) in bars {
                if let Some((t0, c0)) = prev {
                    let mut t = t0 + step;
                    if t < time {
                        // A gap: what came before in this piece goes first.
                        flush(&mut out, piece, run_start, k, cap);
                        while t < time {
                            if out.len >= cap {
                                break 'pieces;
                            }
                            out.push_bar(filled(t, c0, t + step <= now));
                            t += step;
                        }
                        run_start = k;
                    }
                }
                if out.len + (k - run_start) >= cap {
                    flush(&mut out, piece, run_start, k, cap);
                    break 'pieces;
                }
                prev = Some((time, close));
                k += 1;
            }
            flush(&mut out, piece, run_start, k, cap);
        }
        if out.len < cap {
            if let Some((t0, close)) = prev {
                let mut t = t0 + step;
                while t <= to && t <= now && out.len < cap {
                    out.push_bar(filled(t, close, t + step <= now));
                    t += step;
                }
            }
        }
        out
    }
}

/// Adds bars `lo..hi` of `piece` (index space of the piece) to `out`.
fn flush(out: &mut Bars, piece: &Piece, lo: usize, hi: usize, cap: usize) {
    if hi <= lo {
        return;
    }
    match piece {
        Piece::Run(e, _, _) => out.push_run(e, lo..hi, cap),
        Piece::Bar(item) => {
            if out.len < cap {
                out.push_bar(item.clone())
            }
        }
    }
}

/// The bars of a database answer, encoded now.
pub fn bars_of(stored: &[StoredBar], now: i64) -> Bars {
    let encoded = Arc::new(Encoded::new(stored, now));
    let mut bars = Bars::default();
    bars.push_run(&encoded, 0..encoded.len(), usize::MAX);
    bars
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

/// The JSON of an [`OhlcvBody`](crate::model::OhlcvBody), its fields in
/// alphabetical order as poem-openapi writes them: the bars (copied run by
/// run), then the head.
pub fn body(head: Head<'_>, bars: &Bars) -> Bytes {
    let size = 200
        + bars
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Run(e, lo, hi) => e.run(*lo, *hi).len() + 1,
                Piece::Bar(item) => item.json.len() + 1,
            })
            .sum::<usize>();
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(br#"{"bars":["#);
    for (k, piece) in bars.pieces.iter().enumerate() {
        if k > 0 {
            buf.push(b',');
        }
        match piece {
            Piece::Run(e, lo, hi) => buf.extend_from_slice(e.run(*lo, *hi)),
            Piece::Bar(item) => buf.extend_from_slice(&item.json),
        }
    }
    let _ = write!(buf, r#"],"from":{},"instrument":"#, head.from);
    let _ = serde_json::to_writer(&mut buf, head.instrument);
    buf.extend_from_slice(br#","interval":"#);
    let _ = serde_json::to_writer(&mut buf, head.interval);
    buf.extend_from_slice(br#","served":"#);
    let _ = serde_json::to_writer(&mut buf, head.served);
    let _ = write!(buf, r#","to":{},"truncated":{}}}"#, head.to, head.truncated);
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

    fn dto_bytes(body: OhlcvBody) -> Vec<u8> {
        serde_json::to_vec(&body.to_json().expect("JSON")).unwrap()
    }

    fn head(truncated: bool) -> Head<'static> {
        Head {
            instrument: "Coinbase:BTC-USD",
            interval: "1m",
            from: 1_700_000_000,
            to: 1_700_000_120,
            truncated,
            served: "cache",
        }
    }

    /// The JSON of `bars` as answered.
    fn answered(bars: &Bars) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&body(head(false), bars)).unwrap();
        v["bars"].as_array().unwrap().clone()
    }

    fn times(bars: &Bars) -> Vec<i64> {
        answered(bars)
            .iter()
            .map(|b| b["time"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn the_bytes_are_those_poem_openapi_writes_for_the_dtos() {
        let now = 1_700_000_100;
        let stored = vec![
            stored(1_700_000_000, Decimal::new(3_000_001, 2), Source::Live),
            stored(1_700_000_060, Decimal::new(42, 0), Source::History),
        ];
        let mut bars = bars_of(&stored, now);
        bars.push_bar(filled(1_700_000_120, Decimal::new(5_000, 3), false));
        let got = body(head(true), &bars);
        // The same answer through the DTOs, written by poem-openapi.
        let mut dtos: Vec<BarDto> = stored.iter().map(|b| BarDto::from_stored(b, now)).collect();
        dtos.push(BarDto::filled(1_700_000_120, Decimal::new(5, 0), false));
        let h = head(true);
        let want = dto_bytes(OhlcvBody {
            instrument: h.instrument.into(),
            interval: h.interval.into(),
            from: h.from,
            to: h.to,
            truncated: true,
            served: "cache".into(),
            bars: dtos,
        });
        assert_eq!(
            String::from_utf8(got.to_vec()).unwrap(),
            String::from_utf8(want).unwrap()
        );
        let empty = dto_bytes(OhlcvBody {
            instrument: h.instrument.into(),
            interval: h.interval.into(),
            from: h.from,
            to: h.to,
            truncated: false,
            served: "cache".into(),
            bars: Vec::new(),
        });
        assert_eq!(body(head(false), &Bars::default()).to_vec(), empty);
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
        let want: Vec<i64> = (10..=15)
            .filter(|k| k % 5 != 0)
            .map(|k| hour + k * 60)
            .collect();
        let mut got = Bars::default();
        got.push_run(&entry.bars, entry.bars.range(hour + 600, hour + 900), 100);
        assert_eq!(times(&got), want);
        assert!(entry.bars.range(hour + 3_600, hour + 7_200).is_empty());

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
        // An entry without a version of the cache is not kept.
        memo.insert(
            &i,
            hour + 3_600,
            Arc::new(HourEntry::build(0, hour + 3_600, &[], now)),
        );
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn runs_truncate_and_fill_like_bar_by_bar() {
        // Two hours with gaps, as runs; the same bars one by one.
        let now = 1_700_100_000;
        let stored: Vec<StoredBar> = (0..120)
            .filter(|k| k % 7 != 2 && !(30..40).contains(k))
            .map(|k| stored(1_699_999_200 + k * 60, Decimal::from(k), Source::Live))
            .collect();
        let (first, second) = stored.split_at(
            stored
                .iter()
                .filter(|b| b.bar.open_time < 1_700_002_800)
                .count(),
        );
        let (a, b) = (
            Arc::new(Encoded::new(first, now)),
            Arc::new(Encoded::new(second, now)),
        );
        let mut runs = Bars::default();
        runs.push_run(&a, 0..a.len(), usize::MAX);
        runs.push_run(&b, 0..b.len(), usize::MAX);
        let mut one_by_one = Bars::default();
        for s in &stored {
            let e = Encoded::new(std::slice::from_ref(s), now);
            one_by_one.push_bar(Item {
                time: s.bar.open_time,
                close: s.bar.close,
                json: e.bytes.clone(),
            });
        }
        assert_eq!(answered(&runs), answered(&one_by_one));
        // The expected filled series, by hand: every minute from the first
        // to `to`, a missing one flat at the previous close.
        let to = 1_699_999_200 + 125 * 60;
        let mut want = Vec::new();
        let mut close = Decimal::ZERO;
        for t in (1_699_999_200..=to).step_by(60) {
            match stored.iter().find(|s| s.bar.open_time == t) {
                Some(s) => {
                    close = s.bar.close;
                    want.push((t, "live".to_owned()));
                }
                None => want.push((t, format!("filled {}", close.normalize()))),
            }
        }
        for cap in [1, 2, 3, 29, 30, 31, 35, 60, 61, 119, 126, 500] {
            for (what, bars) in [("runs", runs.clone()), ("bars", one_by_one.clone())] {
                let filled = bars.fill_gaps(60, to, now, cap);
                assert_eq!(filled.len(), cap.min(want.len()), "{what} cap {cap}");
                let got: Vec<(i64, String)> = answered(&filled)
                    .iter()
                    .map(|b| {
                        let t = b["time"].as_i64().unwrap();
                        match b["source"].as_str().unwrap() {
                            "filled" => {
                                assert_eq!(b["volume_base"], "0");
                                (t, format!("filled {}", b["close"].as_str().unwrap()))
                            }
                            s => (t, s.to_owned()),
                        }
                    })
                    .collect();
                assert_eq!(got, want[..cap.min(want.len())], "{what} cap {cap}");
            }
        }
        // Truncation keeps the first bars, across runs.
        for n in [0, 1, 50, first.len(), first.len() + 1, stored.len()] {
            let mut cut = runs.clone();
            cut.truncate(n);
            assert_eq!(cut.len(), n);
            assert_eq!(answered(&cut), answered(&one_by_one)[..n].to_vec());
        }
        // A limit stops a run where it is reached.
        let mut limited = Bars::default();
        limited.push_run(&a, 0..a.len(), 10);
        limited.push_run(&b, 0..b.len(), 10);
        assert_eq!(limited.len(), 10);
        assert_eq!(limited.last_time(), Some(stored[9].bar.open_time));
    }

    #[test]
    fn fill_stops_at_the_cap_whatever_the_range() {
        let far = 7_258_118_400;
        let mut bars = Bars::default();
        bars.push_bar(filled(60, Decimal::ONE, true));
        assert_eq!(bars.clone().fill_gaps(60, far, far, 11).len(), 11);
        bars.push_bar(filled(far, Decimal::ONE, true));
        let got = bars.fill_gaps(60, far, far, 3);
        assert_eq!(times(&got), [60, 120, 180]);
    }
}
