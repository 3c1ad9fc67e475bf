//! The node's hub of committed bar changes: the fan-out behind
//! `GET /api/v1/stream`.
//!
//! Changes come in as the rows a consumer committed (in process through
//! [`BarSink`], from other nodes through the Redis feed), once per node
//! whatever the number of clients; each followed (instrument, interval) has
//! one broadcast channel that every stream of it reads. No client ever polls
//! the store:
//!
//! * **1-minute bars** are passed on as they were committed, each bar at most
//!   once per version (the hub remembers the latest version of the recent
//!   minutes it passed on, so a change arriving twice, or an older one after
//!   a newer, goes no further);
//! * **coarser intervals** are recomputed once per change and node: a task per
//!   followed (instrument, interval) reads the buckets the changed minutes
//!   fall in from the store, coalescing what arrives meanwhile, and passes
//!   the buckets on;
//! * **catching up**: a feed can lose messages (a dropped connection, a full
//!   queue, a publisher that failed). Whenever the feed (re)connects, and
//!   every `resync` period as a backstop, the hub asks the store, once per
//!   followed instrument, for every change after the version it had seen at
//!   the previous catch-up (one period of overlap: a change that took its
//!   version before an earlier one committed is not skipped), and passes on
//!   what it had not.
//!
//! Each change carries the store's version: one counter over every row, so a
//! follower's "last version seen" says which changes it has (see
//! `stream.rs`). What must never happen: a client blocking the hub (a slow
//! client lags on its broadcast receiver and catches up from the store on
//! its own), or memory growing with anything but followed instruments.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use candela_actors::domain::{Instrument, Interval};
use candela_actors::feed::BarSink;
use candela_actors::store::{BarStore, StoredBar};

use crate::server::BoxFuture;

/// What the hub and the streams ask the store.
pub trait FeedStore: Send + Sync + 'static {
    /// Every change of `instrument`'s 1-minute bars with `open_time >= from`
    /// after version `after`, by version, at most `limit`.
    fn changed_since(
        &self,
        instrument: Instrument,
        from: i64,
        after: i64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<StoredBar>, String>>;
    /// The highest version of `instrument`'s bars.
    fn latest_version(&self, instrument: Instrument) -> BoxFuture<Result<i64, String>>;
    /// The bars of `interval` with `from <= open_time <= to`.
    fn bars(
        &self,
        instrument: Instrument,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<StoredBar>, String>>;
}

/// A [`FeedStore`] on a [`BarStore`].
pub struct StoreFeed<T>(pub Arc<T>);

impl<T: BarStore> FeedStore for StoreFeed<T> {
    fn changed_since(
        &self,
        instrument: Instrument,
        from: i64,
        after: i64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<StoredBar>, String>> {
        let store = Arc::clone(&self.0);
        Box::pin(async move {
            store
                .changed_since(&instrument, from, after, limit)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn latest_version(&self, instrument: Instrument) -> BoxFuture<Result<i64, String>> {
        let store = Arc::clone(&self.0);
        Box::pin(async move {
            store
                .latest_version(&instrument)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn bars(
        &self,
        instrument: Instrument,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> BoxFuture<Result<Vec<StoredBar>, String>> {
        let store = Arc::clone(&self.0);
        Box::pin(async move {
            store
                .bars(&instrument, interval, from, to, limit)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Changed bars of one (instrument, interval), as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The bars, in the channel's interval. A coarse bar's version is the
    /// highest version of the minute changes that made it.
    pub bars: Vec<StoredBar>,
}

/// How the hub is set up.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Updates a channel holds for a slow stream before it lags.
    pub capacity: usize,
    /// The backstop catch-up period.
    pub resync: Duration,
    /// How many recent minutes' versions the hub remembers per instrument.
    pub remembered: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            capacity: 1_024,
            resync: Duration::from_secs(10),
            remembered: 4_096,
        }
    }
}

/// Counters of the hub.
#[derive(Debug, Default)]
pub struct HubCounters {
    /// 1-minute bar changes passed on.
    pub passed: AtomicU64,
    /// Bar changes that arrived again (or older than one passed on).
    pub repeated: AtomicU64,
    /// Catch-up queries made.
    pub resyncs: AtomicU64,
    /// Changes found by catch-up queries that the feed had not brought.
    pub caught_up: AtomicU64,
    /// Coarse buckets recomputed.
    pub coarse_queries: AtomicU64,
    /// Store queries that failed.
    pub failures: AtomicU64,
}

/// What the hub keeps per followed instrument.
struct Followed {
    minutes: broadcast::Sender<Arc<Update>>,
    coarse: HashMap<Interval, Coarse>,
    /// Latest version passed on per recent minute (bounded).
    seen: BTreeMap<i64, i64>,
    /// Highest version passed on.
    high_water: i64,
    /// `high_water` at the previous catch-up (the next one starts there).
    resync_from: i64,
}

struct Coarse {
    tx: broadcast::Sender<Arc<Update>>,
    /// Buckets to recompute, with the version that changed them.
    work: mpsc::UnboundedSender<Vec<(i64, i64)>>,
}

/// The hub. Cheap to share (`Arc`).
pub struct BarHub {
    store: Arc<dyn FeedStore>,
    config: HubConfig,
    followed: Mutex<HashMap<Instrument, Followed>>,
    counters: HubCounters,
}

impl BarHub {
    /// A hub that catches up from `store`; its backstop task runs until the
    /// hub is dropped.
    pub fn new(store: Arc<dyn FeedStore>, config: HubConfig) -> Arc<Self> {
        let hub = Arc::new(Self {
            store,
            config,
            followed: Mutex::default(),
            counters: HubCounters::default(),
        });
        let weak = Arc::downgrade(&hub);
        let period = hub.config.resync;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(hub) = weak.upgrade() else { return };
                hub.forget_unfollowed();
                hub.resync_all().await;
            }
        });
        hub
    }

    /// The counters.
    pub fn counters(&self) -> &HubCounters {
        &self.counters
    }

    /// The store the hub catches up from.
    pub fn store(&self) -> &Arc<dyn FeedStore> {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Instrument, Followed>> {
        self.followed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many instruments are followed.
    pub fn followed(&self) -> usize {
        self.lock().len()
    }

    /// Follows `instrument` at `interval`: every change from now on. Call it
    /// *before* reading what is stored, so nothing falls in between.
    pub fn subscribe(
        self: &Arc<Self>,
        instrument: &Instrument,
        interval: Interval,
    ) -> broadcast::Receiver<Arc<Update>> {
        let mut map = self.lock();
        let capacity = self.config.capacity;
        let followed = map.entry(instrument.clone()).or_insert_with(|| Followed {
            minutes: broadcast::channel(capacity).0,
            coarse: HashMap::new(),
            seen: BTreeMap::new(),
            high_water: 0,
            resync_from: 0,
        });
        if interval == Interval::M1 {
            return followed.minutes.subscribe();
        }
        if let Some(c) = followed.coarse.get(&interval) {
            if !c.work.is_closed() {
                return c.tx.subscribe();
            }
        }
        let (tx, rx) = broadcast::channel(capacity);
        let (work, jobs) = mpsc::unbounded_channel();
        tokio::spawn(coarse_task(
            Arc::downgrade(self),
            instrument.clone(),
            interval,
            tx.clone(),
            jobs,
        ));
        followed.coarse.insert(interval, Coarse { tx, work });
        rx
    }

    /// Sets where the first catch-up of a newly followed instrument starts:
    /// `version`, the latest a new stream read from the store (the stream
    /// itself has everything up to it). Until then it is not caught up.
    pub fn anchor(&self, instrument: &Instrument, version: i64) {
        if let Some(f) = self.lock().get_mut(instrument) {
            if f.resync_from == 0 {
                f.resync_from = version.max(1);
            }
        }
    }

    /// Drops what no stream follows any more.
    fn forget_unfollowed(&self) {
        self.lock().retain(|_, f| {
            f.coarse.retain(|_, c| c.tx.receiver_count() > 0);
            f.minutes.receiver_count() > 0 || !f.coarse.is_empty()
        });
    }

    /// Passes on committed changes (from a consumer or the feed).
    pub fn publish_bars(&self, bars: &[StoredBar]) {
        let mut by_instrument: BTreeMap<&Instrument, Vec<&StoredBar>> = BTreeMap::new();
        for b in bars {
            by_instrument.entry(&b.bar.instrument).or_default().push(b);
        }
        let mut map = self.lock();
        for (instrument, bars) in by_instrument {
            let Some(f) = map.get_mut(instrument) else {
                continue; // nobody follows it
            };
            let mut fresh = Vec::new();
            for b in bars {
                let t = b.bar.open_time;
                if f.seen.get(&t).is_some_and(|v| *v >= b.version) {
                    self.counters.repeated.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                f.seen.insert(t, b.version);
                f.high_water = f.high_water.max(b.version);
                fresh.push(b.clone());
            }
            while f.seen.len() > self.config.remembered {
                f.seen.pop_first();
            }
            if fresh.is_empty() {
                continue;
            }
            self.counters
                .passed
                .fetch_add(fresh.len() as u64, Ordering::Relaxed);
            for c in f.coarse.values() {
                let buckets = fresh.iter().map(|b| (b.bar.open_time, b.version)).collect();
                let _ = c.work.send(buckets);
            }
            // No receiver is not an error: the channel stays for coarse ones.
            let _ = f.minutes.send(Arc::new(Update { bars: fresh }));
        }
    }

    /// Catches up every followed instrument from the store.
    pub async fn resync_all(&self) {
        let instruments: Vec<(Instrument, i64, i64)> = self
            .lock()
            .iter()
            // Not anchored yet: its stream is still reading the store.
            .filter(|(_, f)| f.resync_from > 0)
            .map(|(i, f)| (i.clone(), f.resync_from, f.high_water))
            .collect();
        for (instrument, from_version, high_water) in instruments {
            self.resync(&instrument, from_version, high_water).await;
        }
    }

    async fn resync(&self, instrument: &Instrument, after: i64, high_water: i64) {
        self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        let mut after = after;
        loop {
            let page = match self
                .store
                .changed_since(instrument.clone(), i64::MIN / 4, after, 1_000)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%instrument, error = %err, "stream catch-up failed; next period");
                    return;
                }
            };
            let full = page.len() >= 1_000;
            if let Some(last) = page.last() {
                after = last.version;
            }
            let before = self.counters.passed.load(Ordering::Relaxed);
            self.publish_bars(&page);
            let passed = self.counters.passed.load(Ordering::Relaxed) - before;
            if passed > 0 {
                self.counters.caught_up.fetch_add(passed, Ordering::Relaxed);
                tracing::debug!(%instrument, passed, "stream caught up changes the feed had not brought");
            }
            if !full {
                break;
            }
        }
        if let Some(f) = self.lock().get_mut(instrument) {
            f.resync_from = f.resync_from.max(high_water);
        }
    }
}

impl BarSink for BarHub {
    fn publish(&self, bars: &[StoredBar]) {
        self.publish_bars(bars);
    }
}

/// A [`BarSink`] for a hub that may not exist yet (the consumer starts
/// before the API): passes on to the hub once it is set.
#[derive(Default)]
pub struct LateHub(std::sync::OnceLock<Arc<BarHub>>);

impl LateHub {
    /// Sets the hub (once).
    pub fn set(&self, hub: Arc<BarHub>) {
        let _ = self.0.set(hub);
    }
}

impl BarSink for LateHub {
    fn publish(&self, bars: &[StoredBar]) {
        if let Some(hub) = self.0.get() {
            hub.publish_bars(bars);
        }
    }
}

/// Recomputes the buckets of one coarse (instrument, interval) as minute
/// changes arrive, coalescing what arrives during a query.
async fn coarse_task(
    hub: std::sync::Weak<BarHub>,
    instrument: Instrument,
    interval: Interval,
    tx: broadcast::Sender<Arc<Update>>,
    mut jobs: mpsc::UnboundedReceiver<Vec<(i64, i64)>>,
) {
    while let Some(first) = jobs.recv().await {
        if tx.receiver_count() == 0 {
            return; // nobody follows it any more
        }
        let mut buckets: BTreeMap<i64, i64> = BTreeMap::new();
        let mut add = |minutes: Vec<(i64, i64)>| {
            for (t, v) in minutes {
                let e = buckets.entry(interval.floor(t)).or_insert(v);
                *e = (*e).max(v);
            }
        };
        add(first);
        while let Ok(more) = jobs.try_recv() {
            add(more);
        }
        let Some(hub) = hub.upgrade() else { return };
        let (Some((&lo, _)), Some((&hi, _))) =
            (buckets.first_key_value(), buckets.last_key_value())
        else {
            continue;
        };
        hub.counters
            .coarse_queries
            .fetch_add(buckets.len() as u64, Ordering::Relaxed);
        let wanted: BTreeSet<i64> = buckets.keys().copied().collect();
        let bars = match hub
            .store
            .bars(
                instrument.clone(),
                interval,
                lo,
                hi,
                wanted.len().max(1) * 2 + 10_000,
            )
            .await
        {
            Ok(bars) => bars,
            Err(err) => {
                hub.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%instrument, ?interval, error = %err, "coarse bar recompute failed; next change or catch-up");
                continue;
            }
        };
        let bars: Vec<StoredBar> = bars
            .into_iter()
            .filter(|b| wanted.contains(&b.bar.open_time))
            .map(|mut b| {
                b.version = b.version.max(buckets[&b.bar.open_time]);
                b
            })
            .collect();
        if !bars.is_empty() {
            let _ = tx.send(Arc::new(Update { bars }));
        }
    }
}
