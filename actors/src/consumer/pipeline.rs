//! The processing cycle shared by both consumers (fixed and dynamic topics):
//! one batch of messages through the seed's states
//!
//! `MESSAGE_RECEIVED` → Processing Message → `PROCESS_SUCCESS` → Writing to DB
//! → `WRITE_SUCCESS` → Updating Redis → `UPDATE_CACHE_SUCCESS`
//!
//! and only then are the batch's Kafka offsets committed. Exactly-once bars
//! follow from the order: a batch that fails anywhere is not committed, so it
//! is delivered again, and the store ignores ticks it already holds.
//!
//! * Processing decodes every message and checks it against the platform's
//!   rules (`domain::validate`); one that cannot be decoded, or breaks a rule,
//!   becomes a dead letter with the field and the reason, and the batch
//!   carries on without it.
//! * Writing stores the rest in one transaction. When the database refuses
//!   the batch for something *in* it ([`Failure::Data`]: a constraint, a
//!   value out of range, a trigger, a row that cannot be read back), the
//!   batch is split in halves, and halves again, until the refused records
//!   stand alone: each is dead-lettered with the database's message, and
//!   every other record is written exactly once (a record is in exactly one
//!   transaction that commits; ticks already stored change nothing anyway).
//!   The dead letters of the batch are then written, each once however often
//!   the batch is redelivered (the [`DeadLetters`] contract), and only then
//!   does Writing succeed. A failure that is not the batch's fault
//!   ([`Failure::Transient`]: a lost connection, a pool time-out, a
//!   serialization failure; or [`Failure::Fatal`]: a revoked privilege) ends
//!   the cycle in Error without touching the batch, which is delivered again
//!   after the restart; a transient one does not count towards the
//!   supervisor's restart-intensity limit (see `supervisor`).
//! * The cache step writes the stored rows of every minute the batch touched,
//!   including on a redelivery, so a cache left behind by a crash between the
//!   commit and the cache write is healed by the redelivered batch.
//! * An *unreachable* cache is not a failed update: the cache's contract (never
//!   wrong, may miss) is kept by the cache itself, which invalidates what it
//!   holds when it is reachable again (see `store::redis_cache`). The step is
//!   counted as skipped and ingestion goes on, so a Redis outage never stops
//!   the flow into the database. `UPDATE_CACHE_FAILURE` is a write the cache
//!   refused.
//! * The same rows then go to the feed ([`crate::feed::BarSink`]: the live
//!   stream's push), whatever the cache did: they are committed. The feed
//!   never blocks or fails a cycle.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{HistoryBar, Record, Tick};
use crate::feed::BarSink;
use crate::fsm::spec::MachineSpec;
use crate::fsm::Fsm;
use crate::kafka::DecodeError;
use crate::machines::{consumer_dynamic, consumer_fixed, ConsumerDynamic, ConsumerFixed};
use crate::ports::{BusError, DeadLetter, DeadLetters, MessageStream, RawMessage};
use crate::store::{BarCache, BarStore, Failure, StoreError, WriteBatch, WriteOutcome};
use crate::supervisor::Transient;
use crate::telemetry;

/// Decodes a message payload and checks it against the platform's rules
/// (the versioned schema of `kafka::schema`).
pub type Decode = fn(&[u8]) -> Result<Record, DecodeError>;

/// The dead-letter kind of a record the database refused.
pub const DATABASE_REFUSED: &str = "database";

/// The pipeline events of a consumer machine.
pub trait PipelineMachine: MachineSpec {
    /// `MESSAGE_RECEIVED`
    const MESSAGE_RECEIVED: Self::Event;
    /// `PROCESS_SUCCESS`
    const PROCESS_SUCCESS: Self::Event;
    /// `PROCESS_FAILURE`
    const PROCESS_FAILURE: Self::Event;
    /// `WRITE_SUCCESS`
    const WRITE_SUCCESS: Self::Event;
    /// `WRITE_FAILURE`
    const WRITE_FAILURE: Self::Event;
    /// `UPDATE_CACHE_SUCCESS`
    const UPDATE_CACHE_SUCCESS: Self::Event;
    /// `UPDATE_CACHE_FAILURE`
    const UPDATE_CACHE_FAILURE: Self::Event;
}

macro_rules! pipeline_events {
    ($machine:ty, $m:ident) => {
        impl PipelineMachine for $machine {
            const MESSAGE_RECEIVED: Self::Event = $m::Event::MessageReceived;
            const PROCESS_SUCCESS: Self::Event = $m::Event::ProcessSuccess;
            const PROCESS_FAILURE: Self::Event = $m::Event::ProcessFailure;
            const WRITE_SUCCESS: Self::Event = $m::Event::WriteSuccess;
            const WRITE_FAILURE: Self::Event = $m::Event::WriteFailure;
            const UPDATE_CACHE_SUCCESS: Self::Event = $m::Event::UpdateCacheSuccess;
            const UPDATE_CACHE_FAILURE: Self::Event = $m::Event::UpdateCacheFailure;
        }
    };
}
pipeline_events!(ConsumerFixed, consumer_fixed);
pipeline_events!(ConsumerDynamic, consumer_dynamic);

/// One consumer instance's own counters: its actor's status (the admin
/// view), the node's watchdog (`batches`, `in_flight`) and the benchmarks
/// read them. The operational view is the Prometheus metrics
/// (`crate::telemetry`), recorded at the same places.
#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    /// Batches fully processed and committed.
    pub batches: AtomicU64,
    /// Messages received.
    pub messages: AtomicU64,
    /// Messages of the batch being processed (0 between batches): a batch
    /// is counted in every other counter once this is back to 0.
    pub in_flight: AtomicU64,
    /// Ticks stored for the first time.
    pub new_ticks: AtomicU64,
    /// Ticks already stored (replays, redeliveries).
    pub duplicate_ticks: AtomicU64,
    /// History bars that created or repaired a minute.
    pub history_applied: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Records the database refused, found by splitting their batch.
    pub quarantined: AtomicU64,
    /// Failed cycles (each ends in Error).
    pub failures: AtomicU64,
    /// Offset commits that failed (covered by the next one).
    pub commit_failures: AtomicU64,
    /// Cache updates skipped because the cache was unreachable.
    pub cache_skipped: AtomicU64,
    /// Recent tick visibility latencies: from the producer's receipt of a
    /// tick to the end of the cycle that stored and cached it (from then on
    /// every API request sees it).
    pub visibility: std::sync::Mutex<RecentLatencies>,
}

/// How many recent visibility samples the percentiles cover: between half
/// this and this many, the newest.
pub const VISIBILITY_SAMPLES: usize = 100_000;

/// Percentiles of the recent samples of a latency, in bounded memory and
/// constant time per sample: two sketches (`metrics_util`'s DDSketch
/// summary, 0.1% relative error), the current one and the one before; when
/// the current one holds half the window it becomes the previous one. The
/// percentiles merge both: the newest `window / 2` to `window` samples.
/// (The node's Prometheus histogram `candela_tick_visibility_seconds` has
/// them all; this is the actor's own view, for the admin endpoint and the
/// benchmarks.)
#[derive(Debug)]
pub struct RecentLatencies {
    window: usize,
    current: metrics_util::storage::Summary,
    previous: metrics_util::storage::Summary,
}

impl Default for RecentLatencies {
    fn default() -> Self {
        Self::new(VISIBILITY_SAMPLES)
    }
}

impl RecentLatencies {
    fn sketch() -> metrics_util::storage::Summary {
        // 0.1% relative error, at most 4,096 buckets (32 KiB), from 1 µs.
        metrics_util::storage::Summary::new(0.001, 4_096, 1e-6)
    }

    /// Percentiles over the newest `window / 2` to `window` samples.
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(2),
            current: Self::sketch(),
            previous: Self::sketch(),
        }
    }

    /// Adds a sample, in seconds.
    pub fn record(&mut self, secs: f64) {
        if self.current.count() >= self.window / 2 {
            self.previous = std::mem::replace(&mut self.current, Self::sketch());
        }
        self.current.add(secs);
    }

    /// `(p50, p99, samples)` of the recent samples, in milliseconds.
    pub fn percentiles_ms(&self) -> Option<(f64, f64, usize)> {
        let mut all = self.previous.clone();
        all.merge(&self.current).ok()?;
        let p = |q: f64| all.quantile(q).map(|s| s * 1e3);
        Some((p(0.5)?, p(0.99)?, all.count()))
    }
}

/// A copy of [`ConsumerMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Batches fully processed and committed.
    pub batches: u64,
    /// Messages received.
    pub messages: u64,
    /// Messages of the batch being processed (0 when idle).
    #[serde(default)]
    pub in_flight: u64,
    /// Ticks stored for the first time.
    pub new_ticks: u64,
    /// Ticks already stored.
    pub duplicate_ticks: u64,
    /// History bars applied.
    pub history_applied: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
    /// Records the database refused (dead-lettered too).
    pub quarantined: u64,
    /// Failed cycles.
    pub failures: u64,
    /// Offset commits that failed.
    pub commit_failures: u64,
    /// Cache updates skipped (cache unreachable).
    pub cache_skipped: u64,
    /// Visibility latency percentiles over the recent samples, in ms:
    /// (p50, p99, samples).
    pub visibility_ms: Option<(f64, f64, usize)>,
}

impl ConsumerMetrics {
    /// A copy of the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            batches: g(&self.batches),
            messages: g(&self.messages),
            in_flight: g(&self.in_flight),
            new_ticks: g(&self.new_ticks),
            duplicate_ticks: g(&self.duplicate_ticks),
            history_applied: g(&self.history_applied),
            dead_lettered: g(&self.dead_lettered),
            quarantined: g(&self.quarantined),
            failures: g(&self.failures),
            commit_failures: g(&self.commit_failures),
            cache_skipped: g(&self.cache_skipped),
            visibility_ms: self
                .visibility
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .percentiles_ms(),
        }
    }
}

/// What the cycle talks to.
pub struct Pipeline<S, D, T, C> {
    /// The subscription.
    pub stream: S,
    /// The dead-letter publisher.
    pub dead_letters: Arc<D>,
    /// The system of record.
    pub store: Arc<T>,
    /// The cache.
    pub cache: Arc<C>,
    /// Where the committed rows go next (the live stream's feed).
    pub sink: Arc<dyn BarSink>,
    /// The payload decoder.
    pub decode: Decode,
    /// Counters.
    pub metrics: Arc<ConsumerMetrics>,
}

/// Why a cycle ended in Error.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    /// Receiving from the bus failed.
    #[error("receive: {0}")]
    Receive(BusError),
    /// The database write failed for a reason that is not the batch's.
    #[error("write ({failure:?}): {error}")]
    Write {
        /// Transient or fatal (a data failure is quarantined, never this).
        failure: Failure,
        /// The store's error.
        error: StoreError,
    },
    /// Writing the batch's dead letters failed.
    #[error("dead letters: {0}")]
    DeadLetter(BusError),
    /// The cache update failed.
    #[error("cache: {0}")]
    Cache(String),
    /// The machine refused a step (a bug).
    #[error("machine: {0}")]
    Machine(String),
}

impl CycleError {
    /// The actor's failure for this error: [`Transient`] when the
    /// environment is at fault (the supervisor restarts without counting it).
    pub fn into_failure(self) -> ractor::ActorProcessingErr {
        if self.is_transient() {
            Box::new(Transient(self.to_string()))
        } else {
            Box::new(self)
        }
    }

    /// Whether the failure is the environment's and the same batch will
    /// succeed later (the bus or the database is away): retried after a
    /// back-off, not counted towards the restart-intensity limit.
    pub fn is_transient(&self) -> bool {
        match self {
            CycleError::Receive(_) | CycleError::DeadLetter(_) => true,
            CycleError::Write { failure, .. } => *failure == Failure::Transient,
            CycleError::Cache(_) | CycleError::Machine(_) => false,
        }
    }
}

/// A batch's decoded records, in message order.
#[derive(Debug, Default)]
struct Decoded {
    ticks: Vec<Tick>,
    history: Vec<HistoryBar>,
    /// Message order: each record, with its message's index.
    order: Vec<(Slot, usize)>,
    letters: Vec<DeadLetter>,
}

/// Where a record of [`Decoded::order`] is.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Tick(usize),
    Bar(usize),
}

impl<S, D, T, C> Pipeline<S, D, T, C>
where
    S: MessageStream,
    D: DeadLetters,
    T: BarStore,
    C: BarCache,
{
    /// Runs one cycle on the next batch; returns how many messages it handled
    /// (0 when none came within `wait`).
    pub async fn cycle<M: PipelineMachine>(
        &mut self,
        fsm: &mut Fsm<M>,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<usize, CycleError> {
        let messages = self
            .stream
            .next_batch(max, wait)
            .await
            .map_err(CycleError::Receive)?;
        if messages.is_empty() {
            return Ok(0);
        }
        let step = |fsm: &mut Fsm<M>, e: M::Event| {
            fsm.fire(e)
                .map(|_| ())
                .map_err(|r| CycleError::Machine(r.to_string()))
        };
        step(fsm, M::MESSAGE_RECEIVED)?;
        self.metrics
            .messages
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        metrics::counter!(telemetry::CONSUMER_MESSAGES).increment(messages.len() as u64);
        // (A predecessor killed mid-batch left its count here: replaced.)
        self.metrics
            .in_flight
            .store(messages.len() as u64, Ordering::Relaxed);

        // Processing Message: decode and check every message.
        let mut decoded = decode_all(&messages, self.decode);
        step(fsm, M::PROCESS_SUCCESS)?;

        // Writing to DB: the records (the refused ones quarantined), then the
        // dead letters.
        let write_started = std::time::Instant::now();
        let outcome =
            match write_quarantined(self.store.as_ref(), &self.metrics, &messages, &mut decoded)
                .await
            {
                Ok(o) => o,
                Err(error) => {
                    step(fsm, M::WRITE_FAILURE)?;
                    return Err(CycleError::Write {
                        failure: error.failure(),
                        error,
                    });
                }
            };
        if !decoded.letters.is_empty() {
            let letters = &decoded.letters;
            let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
            for l in letters {
                *kinds.entry(l.kind.as_str()).or_default() += 1;
            }
            tracing::warn!(
                count = letters.len(),
                kinds = ?kinds,
                first_topic = %letters[0].message.topic,
                first_partition = letters[0].message.partition,
                first_offset = letters[0].message.offset,
                first_reason = %letters[0].reason,
                "refused records: to the dead-letter topic"
            );
            match self.dead_letters.dead_letter(letters).await {
                Ok(written) => {
                    self.metrics
                        .dead_lettered
                        .fetch_add(written as u64, Ordering::Relaxed);
                    for (kind, n) in &kinds {
                        metrics::counter!(telemetry::DEAD_LETTERS, "reason" => (*kind).to_owned())
                            .increment(*n as u64);
                    }
                }
                Err(err) => {
                    step(fsm, M::WRITE_FAILURE)?;
                    return Err(CycleError::DeadLetter(err));
                }
            }
        }
        step(fsm, M::WRITE_SUCCESS)?;
        telemetry::observe(telemetry::BATCH_WRITE_SECONDS, write_started.elapsed());
        metrics::counter!(telemetry::TICKS_STORED).increment(outcome.new_ticks);
        metrics::counter!(telemetry::TICKS_DUPLICATE).increment(outcome.duplicate_ticks);
        metrics::counter!(telemetry::HISTORY_BARS_APPLIED).increment(outcome.history_applied);
        self.metrics
            .new_ticks
            .fetch_add(outcome.new_ticks, Ordering::Relaxed);
        self.metrics
            .duplicate_ticks
            .fetch_add(outcome.duplicate_ticks, Ordering::Relaxed);
        self.metrics
            .history_applied
            .fetch_add(outcome.history_applied, Ordering::Relaxed);

        // Updating Redis: the committed rows of every touched minute; then
        // the feed, whatever the cache did (the rows are committed).
        let cached = self.cache.put(&outcome.touched).await;
        self.sink.publish(&outcome.touched);
        match cached {
            Ok(()) => {}
            Err(err) if err.is_cache_unreachable() => {
                self.metrics.cache_skipped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(telemetry::CACHE_SKIPPED).increment(1);
                tracing::debug!(error = %err, "cache unreachable; update skipped");
            }
            Err(err) => {
                step(fsm, M::UPDATE_CACHE_FAILURE)?;
                return Err(CycleError::Cache(err.to_string()));
            }
        }
        step(fsm, M::UPDATE_CACHE_SUCCESS)?;

        // Only now: the offsets. A failed commit is not fatal: the next commit
        // covers these offsets too, and until then a redelivery changes nothing.
        if let Err(err) = self.stream.commit(&messages).await {
            self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %err, "offset commit failed; the next commit covers it");
        }
        self.metrics.batches.fetch_add(1, Ordering::Relaxed);
        self.metrics.in_flight.store(0, Ordering::Relaxed);
        self.record_visibility(&decoded.ticks);
        let mut per_instrument: std::collections::BTreeMap<&crate::domain::Instrument, u64> =
            Default::default();
        for t in &decoded.ticks {
            *per_instrument.entry(&t.instrument).or_default() += 1;
        }
        for (instrument, n) in per_instrument {
            metrics::counter!(telemetry::CONSUMER_TICKS, "instrument" => instrument.to_string())
                .increment(n);
        }
        Ok(messages.len())
    }
}

/// Writes the decoded records: in one transaction when the database takes
/// them all; else, after a [`Failure::Data`] refusal, by halves until the
/// refused records stand alone, each added to the dead letters. Any other
/// failure ends the write (what was written stays written, and is written
/// again, changing nothing, when the batch comes again).
async fn write_quarantined<T: BarStore>(
    store: &T,
    metrics: &ConsumerMetrics,
    messages: &[RawMessage],
    decoded: &mut Decoded,
) -> Result<WriteOutcome, StoreError> {
    let first = store
        .write(WriteBatch {
            ticks: &decoded.ticks,
            history: &decoded.history,
        })
        .await;
    let err = match first {
        Ok(outcome) => return Ok(outcome),
        Err(err) if err.failure() == Failure::Data => err,
        Err(err) => return Err(err),
    };
    tracing::warn!(
        records = decoded.order.len(),
        error = %err,
        "the database refused the batch; finding the refused records"
    );
    let mut total = WriteOutcome::default();
    let mut pending: VecDeque<Range<usize>> = halves(0..decoded.order.len()).collect();
    let mut writes = 1usize;
    let mut refused = 0usize;
    while let Some(range) = pending.pop_front() {
        let (ticks, history) = decoded.slice(range.clone());
        writes += 1;
        match store
            .write(WriteBatch {
                ticks: &ticks,
                history: &history,
            })
            .await
        {
            Ok(outcome) => {
                total.new_ticks += outcome.new_ticks;
                total.duplicate_ticks += outcome.duplicate_ticks;
                total.history_applied += outcome.history_applied;
                total.touched.extend(outcome.touched);
            }
            Err(err) if err.failure() == Failure::Data => {
                if range.len() == 1 {
                    let (_, index) = decoded.order[range.start];
                    let message = messages[index].clone();
                    tracing::warn!(
                        topic = %message.topic,
                        partition = message.partition,
                        offset = message.offset,
                        error = %err,
                        "the database refused a record: quarantined"
                    );
                    decoded.letters.push(DeadLetter::new(
                        message,
                        DATABASE_REFUSED,
                        &format!("the database refused it: {err}"),
                    ));
                    refused += 1;
                } else {
                    for half in halves(range).rev() {
                        pending.push_front(half);
                    }
                }
            }
            Err(err) => return Err(err),
        }
    }
    metrics
        .quarantined
        .fetch_add(refused as u64, Ordering::Relaxed);
    // The dead letters in offset order, as the dead-letter contract asks.
    decoded
        .letters
        .sort_by_key(|l| (l.message.partition, l.message.offset));
    tracing::info!(
        records = decoded.order.len(),
        refused,
        writes,
        "batch written without its refused records"
    );
    Ok(total)
}

/// `range` split in two (the first half first); a single element stays whole.
fn halves(range: Range<usize>) -> impl DoubleEndedIterator<Item = Range<usize>> {
    let mid = range.start + range.len() / 2;
    let parts = if range.len() < 2 {
        [range.clone(), range.end..range.end]
    } else {
        [range.start..mid, mid..range.end]
    };
    parts.into_iter().filter(|r| !r.is_empty())
}

impl Decoded {
    /// Copies of the records of `order[range]`.
    fn slice(&self, range: Range<usize>) -> (Vec<Tick>, Vec<HistoryBar>) {
        let mut ticks = Vec::new();
        let mut history = Vec::new();
        for (slot, _) in &self.order[range] {
            match *slot {
                Slot::Tick(i) => ticks.push(self.ticks[i].clone()),
                Slot::Bar(i) => history.push(self.history[i].clone()),
            }
        }
        (ticks, history)
    }
}

impl<S, D, T, C> Pipeline<S, D, T, C> {
    /// Notes how long each live tick took from receipt to visibility.
    fn record_visibility(&self, ticks: &[Tick]) {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let mut recent = self
            .metrics
            .visibility
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let histogram = metrics::histogram!(telemetry::VISIBILITY_SECONDS);
        for t in ticks.iter().filter(|t| t.received_ns > 0) {
            let secs = now_ns.saturating_sub(t.received_ns) as f64 / 1e9;
            histogram.record(secs);
            recent.record(secs);
        }
    }
}

/// Decodes a batch into ticks, history bars and dead letters.
fn decode_all(messages: &[RawMessage], decode: Decode) -> Decoded {
    let mut d = Decoded {
        ticks: Vec::with_capacity(messages.len()),
        order: Vec::with_capacity(messages.len()),
        ..Decoded::default()
    };
    for (index, m) in messages.iter().enumerate() {
        match decode(&m.payload) {
            Ok(Record::Trade(t)) => {
                d.order.push((Slot::Tick(d.ticks.len()), index));
                d.ticks.push(t);
            }
            Ok(Record::Bar(b)) => {
                d.order.push((Slot::Bar(d.history.len()), index));
                d.history.push(b);
            }
            Err(err) => d
                .letters
                .push(DeadLetter::new(m.clone(), err.kind(), &err.to_string())),
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_cover_the_range_in_order() {
        let h: Vec<_> = halves(0..5).collect();
        assert_eq!(h, vec![0..2, 2..5]);
        let h: Vec<_> = halves(3..4).collect();
        assert_eq!(h, vec![3..4]);
        assert_eq!(halves(2..2).count(), 0);
    }

    /// The exact percentile of `v` (nearest rank), the oracle.
    fn exact(v: &[f64], q: f64) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    #[test]
    fn recent_latencies_match_the_exact_percentiles_and_forget_old_samples() {
        let mut r = RecentLatencies::new(10_000);
        assert_eq!(r.percentiles_ms(), None);
        // Old, slow samples: 1 s each.
        for _ in 0..10_000 {
            r.record(1.0);
        }
        // Then 10,000 recent ones from 1 to 50 ms, in a scrambled order.
        let recent: Vec<f64> = (0..10_000u64)
            .map(|k| 0.001 + (k * 7_919 % 10_000) as f64 * 0.049 / 10_000.0)
            .collect();
        for &s in &recent {
            r.record(s);
        }
        let (p50, p99, n) = r.percentiles_ms().unwrap();
        // The window holds the newest half-window to window samples.
        assert!((5_000..=10_000).contains(&n), "{n}");
        // None of the old slow samples is left.
        assert!(p99 < 100.0, "{p99}");
        let newest = &recent[recent.len() - n..];
        let within = |got: f64, want: f64| (got - want).abs() <= want * 0.003 + 1e-6;
        assert!(
            within(p50, exact(newest, 0.5) * 1e3),
            "{p50} vs {}",
            exact(newest, 0.5) * 1e3
        );
        assert!(
            within(p99, exact(newest, 0.99) * 1e3),
            "{p99} vs {}",
            exact(newest, 0.99) * 1e3
        );
    }
}
