//! [`MemoryCache`]: the in-process [`BarCache`], with the contract of
//! [`RedisCache`](crate::store::redis_cache::RedisCache).
//!
//! Per instrument, a map from minute (`open_time`) to its [`StoredBar`], and a
//! "complete from" mark (absent = nothing is trusted):
//!
//! * [`BarCache::put`] keeps, per minute, the bar with the highest row version
//!   (an equal version replaces, as in Redis), so a slow writer can never put
//!   an older bar back over a newer one; it trims the minutes older than the
//!   window and moves the mark past them (never back);
//! * [`BarCache::get`] serves a range only from the mark on, anything else is
//!   a miss (`None`);
//! * [`BarCache::fill`] loads the bars from `from` on, sets the mark to `from`
//!   if the generation is still the one the filler read before its query
//!   (compare-and-set), and trims minutes older than `min(from, now -
//!   window)`;
//! * [`BarCache::invalidate_all`] moves the generation on, which voids every
//!   mark (bars stay until trimmed).
//!
//! Memory is bounded by the window: besides the trim on fill, a put trims the
//! minutes of an instrument that are older than the window (a mark older
//! than the window moves up to it: the cache no longer holds what it
//! claimed). The cache lives and dies with the process, so it can never be
//! "unreachable" and never misses a write; it never returns
//! [`StoreError::CacheDown`].
//!
//! Its listeners ([`MemoryCache::listen`]) hear every change of an hour's
//! version and of a mark ([`crate::store::watch`]) under the cache's lock,
//! in the order of the changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::domain::Instrument;
use crate::store::watch::{CacheEvent, CacheListener};
use crate::store::{
    hour_of, BarCache, CachedHour, HourRange, KnownHour, StoreError, StoredBar, HOUR_SECS,
};

/// What the cache holds for one instrument.
#[derive(Debug, Default)]
struct Entry {
    /// Minute → bar.
    bars: BTreeMap<i64, StoredBar>,
    /// Hour → its version (see [`CachedHour::version`]).
    hours: BTreeMap<i64, i64>,
    /// The first minute from which `bars` is complete, and the generation
    /// it was set in (void in any other).
    from: Option<(i64, u64)>,
}

impl Entry {
    /// Drops the minutes before `horizon` (and the versions of the hours
    /// wholly before it).
    fn trim(&mut self, horizon: i64) {
        if self
            .bars
            .first_key_value()
            .is_some_and(|(t, _)| *t < horizon)
        {
            self.bars = self.bars.split_off(&horizon);
            self.hours = self.hours.split_off(&hour_of(horizon));
        }
    }
}

/// An in-process [`BarCache`]. Cloning shares the cache.
#[derive(Debug, Clone)]
pub struct MemoryCache {
    window_secs: i64,
    inner: Arc<Mutex<Inner>>,
}

/// The entries and the generation, under one lock.
#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Instrument, Entry>,
    generation: u64,
    /// The change counter hours take their versions from.
    changes: i64,
    listeners: Listeners,
}

/// Who hears the cache's events.
#[derive(Default)]
struct Listeners(Vec<Arc<dyn CacheListener>>);

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} listeners", self.0.len())
    }
}

impl Listeners {
    fn tell(&self, event: &CacheEvent) {
        for l in &self.0 {
            l.event(event.clone());
        }
    }

    /// The hours of `instrument` in `changed` (hour → new version).
    fn hours(&self, instrument: &Instrument, changed: BTreeMap<i64, i64>) {
        if !changed.is_empty() && !self.0.is_empty() {
            self.tell(&CacheEvent::Hours {
                instrument: instrument.clone(),
                hours: changed.into_iter().collect(),
            });
        }
    }
}

impl MemoryCache {
    /// An empty cache that keeps about `window_secs` of recent minutes (the
    /// node's `redis.window_secs`, e.g. 86 400).
    pub fn new(window_secs: i64) -> Self {
        Self {
            window_secs,
            inner: Arc::default(),
        }
    }

    /// The window, in seconds.
    pub fn window_secs(&self) -> i64 {
        self.window_secs
    }

    /// How many minutes the cache holds, over every instrument.
    pub fn len(&self) -> usize {
        self.lock().entries.values().map(|e| e.bars.len()).sum()
    }

    /// Whether the cache holds no minute.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a listener of the cache's events; it hears
    /// [`CacheEvent::Live`] at once (the cache never loses one).
    pub fn listen(&self, listener: Arc<dyn CacheListener>) {
        let mut inner = self.lock();
        listener.event(CacheEvent::Live);
        inner.listeners.0.push(listener);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave an entry half-written
        // in a way that breaks the contract (each step is a whole insert).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn window_start(&self) -> i64 {
        now_secs().saturating_sub(self.window_secs)
    }

    /// Keeps `bar` unless a higher version is held; a change gives its hour
    /// a new version (noted in `changed`).
    fn put_into(
        entry: &mut Entry,
        changes: &mut i64,
        bar: &StoredBar,
        changed: &mut BTreeMap<i64, i64>,
    ) {
        match entry.bars.get(&bar.bar.open_time) {
            Some(held) if held.version > bar.version || held == bar => {}
            _ => {
                entry.bars.insert(bar.bar.open_time, bar.clone());
                *changes += 1;
                let hour = hour_of(bar.bar.open_time);
                entry.hours.insert(hour, *changes);
                changed.insert(hour, *changes);
            }
        }
    }
}

impl BarCache for MemoryCache {
    async fn put(&self, bars: &[StoredBar]) -> Result<(), StoreError> {
        let window_start = self.window_start();
        let mut inner = self.lock();
        let Inner {
            entries: map,
            changes,
            listeners,
            ..
        } = &mut *inner;
        let mut changed: BTreeMap<&Instrument, BTreeMap<i64, i64>> = BTreeMap::new();
        for bar in bars.iter().filter(|b| b.bar.open_time >= window_start) {
            let entry = map.entry(bar.bar.instrument.clone()).or_default();
            Self::put_into(
                entry,
                changes,
                bar,
                changed.entry(&bar.bar.instrument).or_default(),
            );
        }
        // Keep memory bounded: minutes out of the window go, and the mark
        // moves past them (it can no longer claim them).
        let mut moved = Vec::new();
        for bar in bars {
            if let Some(entry) = map.get_mut(&bar.bar.instrument) {
                entry.trim(window_start);
                if let Some((from, generation)) = entry.from {
                    if from < window_start {
                        entry.from = Some((window_start, generation));
                        moved.push(&bar.bar.instrument);
                    }
                }
            }
        }
        for (instrument, hours) in changed {
            listeners.hours(instrument, hours);
        }
        for instrument in moved {
            listeners.tell(&CacheEvent::Mark {
                instrument: instrument.clone(),
                from: window_start,
            });
        }
        Ok(())
    }

    async fn get(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<StoredBar>>, StoreError> {
        let inner = self.lock();
        let Some(entry) = inner.entries.get(instrument) else {
            return Ok(None);
        };
        match entry.from {
            Some((start, generation)) if start <= from && generation == inner.generation => {}
            _ => return Ok(None),
        }
        if to < from {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(
            entry
                .bars
                .range(from..=to)
                .map(|(_, b)| b.clone())
                .collect(),
        ))
    }

    async fn generation(&self, _instrument: &Instrument) -> Result<u64, StoreError> {
        Ok(self.lock().generation)
    }

    async fn fill(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
        generation: u64,
    ) -> Result<bool, StoreError> {
        let horizon = from.min(self.window_start());
        let mut inner = self.lock();
        let current = inner.generation;
        let Inner {
            entries,
            changes,
            listeners,
            ..
        } = &mut *inner;
        let entry = entries.entry(instrument.clone()).or_default();
        let mut changed = BTreeMap::new();
        for bar in bars.iter().filter(|b| b.bar.open_time >= from) {
            Self::put_into(entry, changes, bar, &mut changed);
        }
        let marked = generation == current;
        if marked {
            entry.from = Some((from, generation));
        }
        entry.trim(horizon);
        // A mark before what the trim kept moves up to it (a fill that lost
        // its compare-and-set must not leave a valid mark over minutes it
        // dropped), as a put's trim does.
        let mut moved = false;
        if let Some((start, g)) = entry.from {
            if start < horizon {
                entry.from = Some((horizon, g));
                moved = true;
            }
        }
        listeners.hours(instrument, changed);
        if marked {
            listeners.tell(&CacheEvent::Reset(Some(instrument.clone())));
        } else if moved {
            listeners.tell(&CacheEvent::Mark {
                instrument: instrument.clone(),
                from: horizon,
            });
        }
        tracing::debug!(%instrument, from, marked, held = entry.bars.len(), "memory cache filled");
        Ok(marked)
    }

    async fn invalidate_all(&self) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.listeners.tell(&CacheEvent::Reset(None));
        Ok(())
    }

    async fn hours(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        limit: usize,
        known: &[KnownHour],
    ) -> Result<Option<HourRange>, StoreError> {
        let inner = self.lock();
        let Some(entry) = inner.entries.get(instrument) else {
            return Ok(None);
        };
        let complete_from = match entry.from {
            Some((start, generation)) if start <= from && generation == inner.generation => start,
            _ => return Ok(None),
        };
        let mut range = HourRange {
            complete_from,
            hours: Vec::new(),
        };
        if to < from {
            return Ok(Some(range));
        }
        // The bars are walked, not the hours: hours without bars cost nothing.
        let lo = hour_of(from).max(complete_from);
        let hi = hour_of(to).saturating_add(HOUR_SECS - 1);
        let mut bars = entry.bars.range(lo..=hi).peekable();
        let mut next_known = known.iter().peekable();
        let mut total = 0usize;
        while let Some((t, _)) = bars.peek() {
            if total >= limit {
                break;
            }
            let hour = hour_of(**t);
            let mut held = Vec::new();
            while let Some((_, b)) = bars.next_if(|(t, _)| hour_of(**t) == hour) {
                held.push(b);
            }
            let version = entry.hours.get(&hour).copied().unwrap_or(0);
            // `known` is ascending: walked alongside.
            while next_known.peek().is_some_and(|k| k.hour < hour) {
                next_known.next();
            }
            match next_known
                .peek()
                .filter(|k| k.hour == hour && k.version == version && version > 0)
            {
                Some(k) => {
                    total += k.bars;
                    range.hours.push(CachedHour {
                        hour,
                        version,
                        bars: None,
                    });
                }
                None => {
                    total += held
                        .iter()
                        .filter(|b| (from..=to).contains(&b.bar.open_time))
                        .count();
                    range.hours.push(CachedHour {
                        hour,
                        version,
                        bars: Some(held.into_iter().cloned().collect()),
                    });
                }
            }
        }
        Ok(Some(range))
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Bar, Interval, TradeMark};
    use crate::store::Source;
    use rust_decimal::Decimal;

    fn bar(open_time: i64, version: i64, close: i64) -> StoredBar {
        let d = Decimal::from(close);
        StoredBar {
            bar: Bar {
                instrument: Instrument::new("Coinbase", "BTC", "USD"),
                interval: Interval::M1,
                open_time,
                open: d,
                high: d,
                low: d,
                close: d,
                volume_base: Decimal::ONE,
                volume_quote: d,
                trades: 1,
                first: TradeMark {
                    time_ns: open_time * 1_000_000_000,
                    id: "1".into(),
                },
                last: TradeMark {
                    time_ns: open_time * 1_000_000_000,
                    id: "1".into(),
                },
            },
            source: Source::Live,
            version,
        }
    }

    #[tokio::test]
    async fn memory_stays_within_the_window() {
        let cache = MemoryCache::new(3_600);
        let now = Interval::M1.floor(now_secs());
        let old: Vec<StoredBar> = (0..100).map(|k| bar(now - 86_400 + k * 60, 1, 1)).collect();
        cache.put(&old).await.unwrap();
        // Out of the window and not covered by a mark: trimmed at once.
        assert_eq!(cache.len(), 0);
        let recent: Vec<StoredBar> = (0..10).map(|k| bar(now - 600 + k * 60, 1, 1)).collect();
        cache.put(&recent).await.unwrap();
        assert_eq!(cache.len(), 10);
        // A fill from before the window keeps what it covers.
        cache
            .fill(&recent[0].bar.instrument, now - 7_200, &old, 0)
            .await
            .unwrap();
        assert_eq!(cache.len(), 10);
    }
}
