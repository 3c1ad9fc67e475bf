//! The [`BarCache`] contract: only ranges from the "complete from" mark on
//! are served; a lower row version never replaces a higher one; fill marks
//! (only in the generation it read before its query) and trims to the
//! window, as every put does; invalidation forgets every mark; a range
//! reaching far into the future costs no more than one up to now; every
//! change of an hour's version and of a mark is told to the cache's
//! listeners, in order, and nothing else is.
//!
//! Cases take a function making a fresh, empty cache with a given window
//! (and one attaching a listener to it).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candela_actors::store::watch::{CacheEvent, CacheListener};

use candela_actors::domain::{Bar, Instrument, Interval, TradeMark};
use candela_actors::store::{BarCache, BarStore, KnownHour, Source, StoredBar, WriteBatch};
use rust_decimal::Decimal;

use super::data::{btc, eth, ticks};

/// One `#[tokio::test]` per case: `$make(window_secs).await` makes a fresh
/// cache; `$store().await` a fresh `(guard, store)` for the case that needs
/// one.
#[macro_export]
macro_rules! cache_contract_tests {
    ($make:ident, $store:ident, $listen:ident) => {
        #[tokio::test]
        async fn cache_tells_every_change_in_order() {
            $crate::backends::cache::cache_tells_every_change_in_order($make, $listen).await;
        }

        #[tokio::test]
        async fn cache_a_fill_that_lost_its_mark_never_trims_under_a_valid_one() {
            $crate::backends::cache::cache_a_fill_that_lost_its_mark_never_trims_under_a_valid_one(
                $make,
            )
            .await;
        }

        #[tokio::test]
        async fn cache_tells_a_mark_moved_by_a_trim() {
            $crate::backends::cache::cache_tells_a_mark_moved_by_a_trim($make, $listen).await;
        }

        #[tokio::test]
        async fn cache_serves_only_what_it_holds_and_never_goes_back() {
            let (_guard, store) = $store().await;
            $crate::backends::cache::cache_serves_only_what_it_holds_and_never_goes_back(
                &store, $make,
            )
            .await;
        }

        #[tokio::test]
        async fn cache_versions_marks_and_ranges() {
            $crate::backends::cache::cache_versions_marks_and_ranges($make).await;
        }

        #[tokio::test]
        async fn cache_fill_trims_to_the_window() {
            $crate::backends::cache::cache_fill_trims_to_the_window($make).await;
        }

        #[tokio::test]
        async fn cache_mark_cannot_lie() {
            let (_guard, store) = $store().await;
            $crate::backends::cache::cache_mark_cannot_lie(&store, $make).await;
        }

        #[tokio::test]
        async fn cache_never_serves_minutes_it_trimmed() {
            $crate::backends::cache::cache_never_serves_minutes_it_trimmed($make).await;
        }

        #[tokio::test]
        async fn cache_hours_resend_only_what_changed() {
            $crate::backends::cache::cache_hours_resend_only_what_changed($make).await;
        }

        #[tokio::test]
        async fn cache_hour_in_progress_is_sent_only_when_it_changed() {
            $crate::backends::cache::cache_hour_in_progress_is_sent_only_when_it_changed($make)
                .await;
        }

        #[tokio::test]
        async fn cache_put_trims_and_far_ranges_cost_nothing() {
            $crate::backends::cache::cache_put_trims_and_far_ranges_cost_nothing($make).await;
        }
    };
}

/// Fills as a datastore does: the generation read first, then the fill.
/// Returns whether the mark was set.
pub async fn fill(
    cache: &impl BarCache,
    instrument: &Instrument,
    from: i64,
    bars: &[StoredBar],
) -> bool {
    let generation = cache.generation(instrument).await.unwrap();
    cache
        .fill(instrument, from, bars, generation)
        .await
        .unwrap()
}

/// A window that keeps test data from 2023.
pub const CENTURY: i64 = 86_400 * 365 * 100;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A synthetic stored 1-minute bar.
pub fn bar(instrument: &Instrument, open_time: i64, version: i64, close: i64) -> StoredBar {
    let d = Decimal::new(close, 1);
    StoredBar {
        bar: Bar {
            instrument: instrument.clone(),
            interval: Interval::M1,
            open_time,
            open: d,
            high: d,
            low: d,
            close: d,
            volume_base: Decimal::new(15, 1),
            volume_quote: d * Decimal::new(15, 1),
            trades: 2,
            first: TradeMark {
                time_ns: open_time * 1_000_000_000 + 1,
                id: format!("{open_time}1"),
            },
            last: TradeMark {
                time_ns: open_time * 1_000_000_000 + 2,
                id: format!("{open_time}2"),
            },
        },
        source: if version % 2 == 0 {
            Source::History
        } else {
            Source::Live
        },
        version,
    }
}

pub async fn cache_serves_only_what_it_holds_and_never_goes_back<S, C, F>(
    store: &S,
    make: impl Fn(i64) -> F,
) where
    S: BarStore,
    C: BarCache,
    F: Future<Output = C>,
{
    let cache = make(CENTURY).await;
    let i = btc();
    let start = 1_700_000_000 - 1_700_000_000 % 60;
    let all = ticks(&i, start, 30, 4);
    store
        .write(WriteBatch {
            ticks: &all[..60],
            history: &[],
        })
        .await
        .unwrap();

    // Nothing filled yet: a miss.
    assert_eq!(cache.get(&i, start, start + 3_600).await.unwrap(), None);

    let stored = store
        .bars(&i, Interval::M1, start, start + 3_600, 10_000)
        .await
        .unwrap();
    fill(&cache, &i, start, &stored).await;
    assert_eq!(
        cache.get(&i, start, start + 3_600).await.unwrap(),
        Some(stored.clone())
    );
    // Before the filled range: a miss.
    assert_eq!(
        cache.get(&i, start - 60, start + 3_600).await.unwrap(),
        None
    );

    // The consumer's put after a commit updates the touched minutes.
    let out = store
        .write(WriteBatch {
            ticks: &all[60..],
            history: &[],
        })
        .await
        .unwrap();
    cache.put(&out.touched).await.unwrap();
    let now_db = store
        .bars(&i, Interval::M1, start, start + 3_600, 10_000)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&i, start, start + 3_600).await.unwrap(),
        Some(now_db.clone())
    );

    // An older version written late does not replace a newer one.
    let old: Vec<StoredBar> = stored
        .iter()
        .filter(|b| b.bar.open_time >= start + 14 * 60)
        .cloned()
        .collect();
    assert!(!old.is_empty());
    cache.put(&old).await.unwrap();
    assert_eq!(
        cache.get(&i, start, start + 3_600).await.unwrap(),
        Some(now_db)
    );

    // Invalidation makes every read a miss until the next fill.
    cache.invalidate_all().await.unwrap();
    assert_eq!(cache.get(&i, start, start + 60).await.unwrap(), None);
}

pub async fn cache_versions_marks_and_ranges<C, F>(make: impl Fn(i64) -> F)
where
    C: BarCache,
    F: Future<Output = C>,
{
    let cache = make(CENTURY).await;
    let (a, b) = (btc(), eth());
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let minute = |k: i64| t0 + k * 60;

    // Puts alone are never served: no mark.
    cache
        .put(&[bar(&a, minute(0), 1, 10), bar(&b, minute(0), 1, 10)])
        .await
        .unwrap();
    assert_eq!(cache.get(&a, minute(0), minute(5)).await.unwrap(), None);

    // Fill marks a from minute 2; bars before the mark are not loaded.
    let loaded: Vec<StoredBar> = (0..6).map(|k| bar(&a, minute(k), 3, 20 + k)).collect();
    fill(&cache, &a, minute(2), &loaded).await;
    assert_eq!(
        cache.get(&a, minute(2), minute(5)).await.unwrap(),
        Some(loaded[2..].to_vec())
    );
    assert_eq!(cache.get(&a, minute(1), minute(5)).await.unwrap(), None);
    // Sub-minute bounds: minutes whose start is within [from, to].
    assert_eq!(
        cache.get(&a, minute(2) + 1, minute(4)).await.unwrap(),
        Some(loaded[3..5].to_vec())
    );
    // An empty or reversed range inside the mark is an empty hit.
    assert_eq!(
        cache.get(&a, minute(3), minute(2)).await.unwrap(),
        Some(Vec::new())
    );
    assert_eq!(
        cache.get(&a, minute(100), minute(200)).await.unwrap(),
        Some(Vec::new())
    );
    // Marks are per instrument.
    assert_eq!(cache.get(&b, minute(0), minute(5)).await.unwrap(), None);

    // Versions: lower never replaces, equal or higher does.
    cache.put(&[bar(&a, minute(3), 2, 99)]).await.unwrap();
    cache.put(&[bar(&a, minute(4), 3, 77)]).await.unwrap();
    cache.put(&[bar(&a, minute(5), 4, 55)]).await.unwrap();
    cache.put(&[bar(&a, minute(6), 1, 66)]).await.unwrap();
    let mut want = loaded[2..].to_vec();
    want[2] = bar(&a, minute(4), 3, 77);
    want[3] = bar(&a, minute(5), 4, 55);
    want.push(bar(&a, minute(6), 1, 66));
    assert_eq!(
        cache.get(&a, minute(2), minute(10)).await.unwrap(),
        Some(want.clone())
    );
    // A fill with older rows does not put them back either (an equal
    // version does replace).
    fill(&cache, &a, minute(2), &loaded).await;
    want[2] = loaded[4].clone();
    assert_eq!(
        cache.get(&a, minute(2), minute(10)).await.unwrap(),
        Some(want.clone())
    );

    // Invalidation forgets every mark; the bars come back with the next fill.
    fill(&cache, &b, minute(0), &[]).await;
    assert!(cache.get(&b, minute(0), minute(1)).await.unwrap().is_some());
    cache.invalidate_all().await.unwrap();
    assert_eq!(cache.get(&a, minute(2), minute(10)).await.unwrap(), None);
    assert_eq!(cache.get(&b, minute(0), minute(1)).await.unwrap(), None);
    fill(&cache, &a, minute(2), &[]).await;
    assert_eq!(
        cache.get(&a, minute(2), minute(10)).await.unwrap(),
        Some(want)
    );
}

pub async fn cache_fill_trims_to_the_window<C, F>(make: impl Fn(i64) -> F)
where
    C: BarCache,
    F: Future<Output = C>,
{
    let cache = make(3_600).await;
    let i = btc();
    let end = Interval::M1.floor(now());
    // Two hours of minutes, the first out of the window.
    let bars: Vec<StoredBar> = (0..120)
        .map(|k| bar(&i, end - (119 - k) * 60, 1, k))
        .collect();
    cache.put(&bars).await.unwrap();
    // A fill from half an hour ago trims what left the window (older than
    // min(from, now - window)) ...
    fill(&cache, &i, end - 1_800, &[]).await;
    // ... which a fill from further back then shows.
    fill(&cache, &i, end - 7_200, &[]).await;
    let got = cache.get(&i, end - 7_200, end).await.unwrap().unwrap();
    let horizon = got[0].bar.open_time;
    assert!(
        (end - 3_600 - 60..=end - 3_600 + 60).contains(&horizon),
        "kept from {} s ago",
        end - horizon
    );
    let want: Vec<StoredBar> = bars
        .iter()
        .filter(|b| b.bar.open_time >= horizon)
        .cloned()
        .collect();
    assert_eq!(got, want);
}

pub async fn cache_mark_cannot_lie<S, C, F>(store: &S, make: impl Fn(i64) -> F)
where
    S: BarStore,
    C: BarCache,
    F: Future<Output = C>,
{
    // The race: a datastore reads the generation and queries the store (the
    // old bar); a consumer commits a newer bar, its cache write fails, and
    // it invalidates; then the datastore's fill arrives with the old bar.
    let cache = make(CENTURY).await;
    let i = btc();
    let start = 1_700_000_000 - 1_700_000_000 % 60;
    let all = ticks(&i, start, 2, 3);
    store
        .write(WriteBatch {
            ticks: &all[..3],
            history: &[],
        })
        .await
        .unwrap();
    let generation = cache.generation(&i).await.unwrap();
    let snapshot = store
        .bars(&i, Interval::M1, start, start + 600, 100)
        .await
        .unwrap();
    // The consumer: a commit whose cache write never happened, then the
    // invalidation.
    store
        .write(WriteBatch {
            ticks: &all[3..],
            history: &[],
        })
        .await
        .unwrap();
    cache.invalidate_all().await.unwrap();
    // The late fill with the old snapshot must not mark the cache complete.
    let marked = cache.fill(&i, start, &snapshot, generation).await.unwrap();
    assert!(!marked, "a fill older than the invalidation set the mark");
    assert_eq!(
        cache.get(&i, start, start + 600).await.unwrap(),
        None,
        "the cache served a stale window as complete"
    );
    // The next fill, from a query after the invalidation, marks it.
    let fresh = store
        .bars(&i, Interval::M1, start, start + 600, 100)
        .await
        .unwrap();
    assert_ne!(fresh, snapshot);
    assert!(fill(&cache, &i, start, &fresh).await);
    assert_eq!(
        cache.get(&i, start, start + 600).await.unwrap(),
        Some(fresh)
    );
}

pub async fn cache_put_trims_and_far_ranges_cost_nothing<C, F>(make: impl Fn(i64) -> F)
where
    C: BarCache,
    F: Future<Output = C>,
{
    let cache = make(3_600).await;
    let i = btc();
    let end = Interval::M1.floor(now());
    // Puts alone keep only the window: minutes older than it are dropped on
    // the write itself (no fill needed).
    let old: Vec<StoredBar> = (0..120)
        .map(|k| bar(&i, end - 7_200 + k * 60, 1, k))
        .collect();
    cache.put(&old).await.unwrap();
    let recent: Vec<StoredBar> = (0..5).map(|k| bar(&i, end - 240 + k * 60, 1, k)).collect();
    cache.put(&recent).await.unwrap();
    assert!(fill(&cache, &i, end - 7_200, &[]).await);
    let held = cache.get(&i, end - 7_200, end).await.unwrap().unwrap();
    assert!(
        held.iter().all(|b| b.bar.open_time >= end - 3_600 - 60),
        "minutes out of the window are held: first at {} s ago",
        end - held[0].bar.open_time
    );
    assert!(held.len() <= 62, "{} minutes held", held.len());
    // `to` in the year 2200: the same answer as up to now, at once.
    let far = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        cache.get(&i, end - 7_200, 7_258_118_400),
    )
    .await
    .expect("a far `to` answered within the deadline")
    .unwrap();
    assert_eq!(far, Some(held));
}

pub async fn cache_never_serves_minutes_it_trimmed<C, F>(make: impl Fn(i64) -> F)
where
    C: BarCache,
    F: Future<Output = C>,
{
    let cache = make(3_600).await;
    let i = btc();
    let end = Interval::M1.floor(now());
    // Two hours of minutes, filled as complete (a fill keeps what it covers,
    // also before the window).
    let bars: Vec<StoredBar> = (0..120)
        .map(|k| bar(&i, end - (119 - k) * 60, 1, k))
        .collect();
    let first = bars[0].bar.open_time;
    assert!(fill(&cache, &i, first, &bars).await);
    assert_eq!(cache.get(&i, first, end).await.unwrap(), Some(bars.clone()));
    // A write trims what is older than the window ...
    let newer = bar(&i, end, 3, 7);
    cache.put(std::slice::from_ref(&newer)).await.unwrap();
    // ... so the range from the first minute is no longer whole: it must
    // be a miss (asked of the store), never an answer without its first hour.
    let got = cache.get(&i, first, end).await.unwrap();
    assert!(
        got.is_none(),
        "the cache answered a range whose first hour it trimmed: {} of {} bars",
        got.map_or(0, |g| g.len()),
        bars.len()
    );
    assert_eq!(
        cache.hours(&i, first, end, 10_000, &[]).await.unwrap(),
        None
    );
    // Inside the window it still answers, with the newer bar.
    let from = end - 1_800;
    let mut want: Vec<StoredBar> = bars
        .iter()
        .filter(|b| b.bar.open_time >= from)
        .cloned()
        .collect();
    *want.last_mut().unwrap() = newer;
    assert_eq!(cache.get(&i, from, end).await.unwrap(), Some(want));
}

/// The hours of `bars`, grouped by hand (the expected answer).
fn by_hour(bars: &[StoredBar]) -> Vec<(i64, Vec<StoredBar>)> {
    let mut out: Vec<(i64, Vec<StoredBar>)> = Vec::new();
    for b in bars {
        let hour = b.bar.open_time / 3_600 * 3_600;
        match out.last_mut() {
            Some((h, held)) if *h == hour => held.push(b.clone()),
            _ => out.push((hour, vec![b.clone()])),
        }
    }
    out
}

pub async fn cache_hours_resend_only_what_changed<C, F>(make: impl Fn(i64) -> F)
where
    C: BarCache,
    F: Future<Output = C>,
{
    let cache = make(CENTURY).await;
    let i = btc();
    let start = 1_700_000_000 - 1_700_000_000 % 3_600;
    // Three hours, every seventh minute without trades.
    let bars: Vec<StoredBar> = (0..180)
        .filter(|k| k % 7 != 3)
        .map(|k| bar(&i, start + k * 60, 10 + k, k))
        .collect();
    assert!(fill(&cache, &i, start, &bars).await);
    let (from, to) = (start + 30 * 60, start + 150 * 60);
    let in_range = |held: &[StoredBar]| {
        held.iter()
            .filter(|b| (from..=to).contains(&b.bar.open_time))
            .count()
    };
    let want = by_hour(&bars);
    let first = cache
        .hours(&i, from, to, 10_000, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.complete_from, start);
    assert_eq!(first.hours.len(), 3);
    for (got, (hour, held)) in first.hours.iter().zip(&want) {
        assert_eq!(got.hour, *hour);
        assert!(got.version > 0, "{got:?}");
        // The whole hour, also the minutes outside `from..=to`.
        assert_eq!(got.bars.as_ref(), Some(held));
    }
    // A reader that keeps them is sent none again.
    let mut known: Vec<KnownHour> = want
        .iter()
        .zip(&first.hours)
        .map(|((hour, held), got)| KnownHour {
            hour: *hour,
            version: got.version,
            bars: in_range(held),
        })
        .collect();
    let again = cache
        .hours(&i, from, to, 10_000, &known)
        .await
        .unwrap()
        .unwrap();
    assert!(again.hours.iter().all(|h| h.bars.is_none()), "{again:?}");
    assert_eq!(
        again.hours.iter().map(|h| h.version).collect::<Vec<_>>(),
        known.iter().map(|k| k.version).collect::<Vec<_>>()
    );
    // A correction in the middle hour: that hour alone comes back, at a
    // higher version, with the corrected bar.
    let corrected = bar(&i, start + 3_600 + 600, 1_001, 99);
    cache.put(std::slice::from_ref(&corrected)).await.unwrap();
    let third = cache
        .hours(&i, from, to, 10_000, &known)
        .await
        .unwrap()
        .unwrap();
    assert!(third.hours[0].bars.is_none() && third.hours[2].bars.is_none());
    assert_ne!(third.hours[1].version, known[1].version);
    let middle = third.hours[1].bars.as_ref().expect("the corrected hour");
    assert!(middle.contains(&corrected), "{middle:?}");
    assert_eq!(middle.len(), want[1].1.len());
    known[1].version = third.hours[1].version;
    // An older version of a bar, or the same bar again, changes nothing.
    cache
        .put(&[bar(&i, start + 3_600 + 600, 5, 1), corrected.clone()])
        .await
        .unwrap();
    let fourth = cache
        .hours(&i, from, to, 10_000, &known)
        .await
        .unwrap()
        .unwrap();
    assert!(fourth.hours.iter().all(|h| h.bars.is_none()), "{fourth:?}");
    // A new minute whose row version is lower than the hour's others (two
    // writers' commits reaching the cache out of order) still moves the
    // hour: a reader must not keep the hour without it.
    let late = bar(&i, start + 122 * 60, 1, 77);
    assert!(!bars.iter().any(|b| b.bar.open_time == late.bar.open_time));
    cache.put(std::slice::from_ref(&late)).await.unwrap();
    let fifth = cache
        .hours(&i, from, to, 10_000, &known)
        .await
        .unwrap()
        .unwrap();
    assert!(fifth.hours[0].bars.is_none() && fifth.hours[1].bars.is_none());
    let last = fifth.hours[2]
        .bars
        .as_ref()
        .expect("the hour with the late minute");
    assert!(last.contains(&late), "{last:?}");
    known[2].version = fifth.hours[2].version;
    known[2].bars += 1;
    // The limit: hours are sent until they hold `limit` bars of the range.
    let first_hour = in_range(&want[0].1);
    let limited = cache
        .hours(&i, from, to, first_hour, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(limited.hours.len(), 1);
    let limited = cache
        .hours(&i, from, to, first_hour + 1, &known[..1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(limited.hours.len(), 2);
    assert!(limited.hours[0].bars.is_none() && limited.hours[1].bars.is_some());
    // Before the mark: a miss; after an invalidation: a miss.
    assert_eq!(
        cache.hours(&i, start - 60, to, 10, &[]).await.unwrap(),
        None
    );
    cache.invalidate_all().await.unwrap();
    assert_eq!(cache.hours(&i, from, to, 10, &known).await.unwrap(), None);
}

pub async fn cache_hour_in_progress_is_sent_only_when_it_changed<C, F>(make: impl Fn(i64) -> F)
where
    C: BarCache,
    F: Future<Output = C>,
{
    let cache = make(4 * 3_600).await;
    let i = btc();
    let now = Interval::M1.floor(now());
    let hour = now - now.rem_euclid(3_600);
    // The hour before, and the hour in progress up to this minute.
    let bars: Vec<StoredBar> = (hour - 3_600..=now)
        .step_by(60)
        .map(|t| bar(&i, t, 1, t / 60 % 1_000))
        .collect();
    assert!(fill(&cache, &i, hour - 3_600, &bars).await);
    let first = cache
        .hours(&i, hour - 3_600, now, 10_000, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.hours.len(), 2);
    let known: Vec<KnownHour> = first
        .hours
        .iter()
        .map(|h| KnownHour {
            hour: h.hour,
            version: h.version,
            bars: h.bars.as_ref().unwrap().len(),
        })
        .collect();
    // Unchanged: nothing is sent again, the hour in progress included.
    let again = cache
        .hours(&i, hour - 3_600, now, 10_000, &known)
        .await
        .unwrap()
        .unwrap();
    assert!(again.hours.iter().all(|h| h.bars.is_none()), "{again:?}");
    // The minute in progress changes: its hour comes back, with the change.
    let newer = bar(&i, now, 3, 999);
    cache.put(std::slice::from_ref(&newer)).await.unwrap();
    let third = cache
        .hours(&i, hour - 3_600, now, 10_000, &known)
        .await
        .unwrap()
        .unwrap();
    assert!(third.hours[0].bars.is_none());
    let current = third.hours[1].bars.as_ref().expect("the hour in progress");
    assert_eq!(current.last(), Some(&newer));
    assert_ne!(third.hours[1].version, known[1].version);
}

/// A listener that keeps what it hears.
#[derive(Default)]
pub struct Heard {
    events: Mutex<Vec<CacheEvent>>,
    notify: tokio::sync::Notify,
}

impl CacheListener for Heard {
    fn event(&self, event: CacheEvent) {
        self.events.lock().unwrap().push(event);
        self.notify.notify_waiters();
    }
}

impl Heard {
    /// The event after the `seen` first ones (waits for it, 10 s at most).
    pub async fn next(&self, seen: &mut usize) -> CacheEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(e) = self.events.lock().unwrap().get(*seen).cloned() {
                *seen += 1;
                return e;
            }
            assert!(
                tokio::time::timeout_at(deadline, notified).await.is_ok(),
                "no event after the first {seen} within 10 s"
            );
        }
    }
}

/// The versions `hours` answers for `instrument` from `from` on.
async fn versions(
    cache: &impl BarCache,
    instrument: &Instrument,
    from: i64,
    to: i64,
) -> Vec<(i64, i64)> {
    let range = cache
        .hours(instrument, from, to, usize::MAX, &[])
        .await
        .unwrap()
        .expect("the cache holds the range");
    range.hours.iter().map(|h| (h.hour, h.version)).collect()
}

fn sorted(event: CacheEvent) -> CacheEvent {
    match event {
        CacheEvent::Hours {
            instrument,
            mut hours,
        } => {
            hours.sort();
            CacheEvent::Hours { instrument, hours }
        }
        other => other,
    }
}

pub async fn cache_tells_every_change_in_order<C, F, G, L>(
    make: impl Fn(i64) -> F,
    listen: impl Fn(Arc<C>, Arc<dyn CacheListener>) -> L,
) where
    C: BarCache,
    F: Future<Output = C>,
    L: Future<Output = G>,
{
    let cache = Arc::new(make(CENTURY).await);
    let heard = Arc::new(Heard::default());
    let _guard = listen(Arc::clone(&cache), Arc::clone(&heard) as _).await;
    let mut seen = 0;
    assert_eq!(heard.next(&mut seen).await, CacheEvent::Live);
    let (a, b) = (btc(), eth());
    let hour = 1_700_002_800;
    let minute = |k: i64| hour + k * 60;

    // A fill: the versions of the hours it wrote, then its mark.
    let loaded: Vec<StoredBar> = [0, 1, 59, 60, 61]
        .iter()
        .map(|&k| bar(&a, minute(k), 3, 20 + k))
        .collect();
    assert!(fill(cache.as_ref(), &a, minute(0), &loaded).await);
    let v = versions(cache.as_ref(), &a, minute(0), minute(119)).await;
    assert_eq!(v.len(), 2);
    assert_eq!(
        sorted(heard.next(&mut seen).await),
        CacheEvent::Hours {
            instrument: a.clone(),
            hours: v.clone()
        }
    );
    assert_eq!(
        heard.next(&mut seen).await,
        CacheEvent::Reset(Some(a.clone()))
    );

    // A change of one minute: its hour's new version, as read.
    cache.put(&[bar(&a, minute(60), 4, 99)]).await.unwrap();
    let w = versions(cache.as_ref(), &a, minute(0), minute(119)).await;
    assert_eq!(w[0], v[0]);
    assert!(w[1].1 > v[1].1, "{w:?} after {v:?}");
    assert_eq!(
        heard.next(&mut seen).await,
        CacheEvent::Hours {
            instrument: a.clone(),
            hours: vec![w[1]]
        }
    );

    // What changes nothing is not told: the same bar again, an older one.
    cache.put(&[bar(&a, minute(60), 4, 99)]).await.unwrap();
    cache.put(&[bar(&a, minute(1), 1, 7)]).await.unwrap();
    assert_eq!(
        versions(cache.as_ref(), &a, minute(0), minute(119)).await,
        w
    );
    // (the next event is the one of another instrument's write)
    cache.put(&[bar(&b, minute(5), 1, 10)]).await.unwrap();
    match heard.next(&mut seen).await {
        CacheEvent::Hours { instrument, hours } => {
            assert_eq!(instrument, b);
            assert_eq!(hours.len(), 1);
            assert_eq!(hours[0].0, hour);
        }
        other => panic!("expected b's hour, heard {other:?}"),
    }

    // An invalidation: everything.
    cache.invalidate_all().await.unwrap();
    assert_eq!(heard.next(&mut seen).await, CacheEvent::Reset(None));
}

/// A trim that moves a mark is told (the mark no longer claims what it did).
pub async fn cache_tells_a_mark_moved_by_a_trim<C, F, G, L>(
    make: impl Fn(i64) -> F,
    listen: impl Fn(Arc<C>, Arc<dyn CacheListener>) -> L,
) where
    C: BarCache,
    F: Future<Output = C>,
    L: Future<Output = G>,
{
    let window = 7_200;
    let cache = Arc::new(make(window).await);
    let heard = Arc::new(Heard::default());
    let _guard = listen(Arc::clone(&cache), Arc::clone(&heard) as _).await;
    let mut seen = 0;
    assert_eq!(heard.next(&mut seen).await, CacheEvent::Live);
    let a = btc();
    let t = now();
    let start = t - t % 60 - window - 600;
    // A fill keeps what it covers, before the window too.
    assert!(fill(cache.as_ref(), &a, start, &[bar(&a, start, 1, 5)]).await);
    assert!(matches!(
        heard.next(&mut seen).await,
        CacheEvent::Hours { .. }
    ));
    assert_eq!(
        heard.next(&mut seen).await,
        CacheEvent::Reset(Some(a.clone()))
    );
    // A put trims the minutes before the window: the mark moves up (the
    // hours it keeps are as they were).
    let t = now();
    let recent = t - t % 60;
    cache.put(&[bar(&a, recent, 2, 6)]).await.unwrap();
    assert!(matches!(
        heard.next(&mut seen).await,
        CacheEvent::Hours { .. }
    ));
    match heard.next(&mut seen).await {
        CacheEvent::Mark { instrument, from } => {
            assert_eq!(instrument, a);
            assert!(from > start && from <= recent - window + 60, "{from}");
        }
        other => panic!("expected the mark moved, heard {other:?}"),
    }
}

/// A fill whose compare-and-set failed (it read the store before an
/// invalidation) still trims what it does not cover; a valid mark over the
/// minutes it dropped would then claim bars the cache no longer holds.
pub async fn cache_a_fill_that_lost_its_mark_never_trims_under_a_valid_one<C, F>(
    make: impl Fn(i64) -> F,
) where
    C: BarCache,
    F: Future<Output = C>,
{
    let window = 7_200;
    let cache = make(window).await;
    let a = btc();
    let t = now();
    let t = t - t % 60;
    let old = t - window - 1_800;
    let stale = cache.generation(&a).await.unwrap();
    cache.invalidate_all().await.unwrap();
    // A far fill (before the window) marks the cache complete from `old`.
    let bars: Vec<StoredBar> = (0..40).map(|k| bar(&a, old + k * 60, 1, 5 + k)).collect();
    assert!(fill(&cache, &a, old, &bars).await);
    assert_eq!(
        cache.get(&a, old, t).await.unwrap().map(|b| b.len()),
        Some(40)
    );
    // A fill that read the generation before the invalidation: not marked,
    // but it trims before its own start or the window's.
    assert!(!cache
        .fill(&a, t - 600, &[bar(&a, t - 600, 1, 9)], stale)
        .await
        .unwrap());
    // Whatever the cache answers from `old` on holds every bar it held, or
    // it answers nothing (the mark moved up to what it kept).
    match cache.get(&a, old, t).await.unwrap() {
        None => {}
        Some(got) => assert!(
            got.len() >= 40,
            "the cache claims {} bars from {old}, it had 40",
            got.len()
        ),
    }
}
