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
//! * Processing decodes every message; one that cannot be decoded goes to the
//!   dead-letter topic with the reason, and the batch carries on without it
//!   (`PROCESS_FAILURE` only when the dead-letter publish itself fails).
//! * The cache step writes the stored rows of every minute the batch touched,
//!   including on a redelivery, so a cache left behind by a crash between the
//!   commit and the cache write is healed by the redelivered batch.
//! * An *unreachable* cache is not a failed update: the cache's contract (never
//!   wrong, may miss) is kept by the cache itself, which invalidates what it
//!   holds when it is reachable again (see `store::redis_cache`). The step is
//!   counted as skipped and ingestion goes on, so a Redis outage never stops
//!   the flow into the database. `UPDATE_CACHE_FAILURE` is a write the cache
//!   refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{HistoryBar, Record, Tick};
use crate::fsm::spec::MachineSpec;
use crate::fsm::Fsm;
use crate::machines::{consumer_dynamic, consumer_fixed, ConsumerDynamic, ConsumerFixed};
use crate::ports::{DeadLetters, MessageStream, RawMessage};
use crate::store::{BarCache, BarStore, WriteBatch};

/// Decodes a message payload (the versioned schema of `kafka::schema`).
pub type Decode = fn(&[u8]) -> Result<Record, String>;

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

/// Counters of a consumer, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    /// Batches fully processed and committed.
    pub batches: AtomicU64,
    /// Messages received.
    pub messages: AtomicU64,
    /// Ticks stored for the first time.
    pub new_ticks: AtomicU64,
    /// Ticks already stored (replays, redeliveries).
    pub duplicate_ticks: AtomicU64,
    /// History bars that created or repaired a minute.
    pub history_applied: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Failed cycles (each ends in Error).
    pub failures: AtomicU64,
    /// Offset commits that failed (covered by the next one).
    pub commit_failures: AtomicU64,
    /// Cache updates skipped because the cache was unreachable.
    pub cache_skipped: AtomicU64,
    /// Recent tick visibility latencies in microseconds: from the producer's
    /// receipt of a tick to the end of the cycle that stored and cached it
    /// (from then on every API request sees it).
    pub visibility_us: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

/// How many visibility samples a consumer keeps.
pub const VISIBILITY_SAMPLES: usize = 100_000;

/// A copy of [`ConsumerMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Batches fully processed and committed.
    pub batches: u64,
    /// Messages received.
    pub messages: u64,
    /// Ticks stored for the first time.
    pub new_ticks: u64,
    /// Ticks already stored.
    pub duplicate_ticks: u64,
    /// History bars applied.
    pub history_applied: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
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
            new_ticks: g(&self.new_ticks),
            duplicate_ticks: g(&self.duplicate_ticks),
            history_applied: g(&self.history_applied),
            dead_lettered: g(&self.dead_lettered),
            failures: g(&self.failures),
            commit_failures: g(&self.commit_failures),
            cache_skipped: g(&self.cache_skipped),
            visibility_ms: {
                let samples = self.visibility_us.lock().unwrap_or_else(|e| e.into_inner());
                let mut v: Vec<u64> = samples.iter().copied().collect();
                drop(samples);
                v.sort_unstable();
                (!v.is_empty()).then(|| {
                    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
                    (p(0.5), p(0.99), v.len())
                })
            },
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
    Receive(String),
    /// Dead-lettering undecodable messages failed.
    #[error("process: {0}")]
    Process(String),
    /// The database write failed.
    #[error("write: {0}")]
    Write(String),
    /// The cache update failed.
    #[error("cache: {0}")]
    Cache(String),
    /// The machine refused a step (a bug).
    #[error("machine: {0}")]
    Machine(String),
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
            .map_err(|e| CycleError::Receive(e.to_string()))?;
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

        // Processing Message: decode; undecodable messages to the dead-letter topic.
        let (ticks, history, invalid) = split(&messages, self.decode);
        if !invalid.is_empty() {
            tracing::warn!(count = invalid.len(), first_reason = %invalid[0].1, "dead-lettering undecodable messages");
            if let Err(err) = self.dead_letters.dead_letter(&invalid).await {
                step(fsm, M::PROCESS_FAILURE)?;
                return Err(CycleError::Process(err.to_string()));
            }
            self.metrics
                .dead_lettered
                .fetch_add(invalid.len() as u64, Ordering::Relaxed);
        }
        step(fsm, M::PROCESS_SUCCESS)?;

        // Writing to DB: one transaction.
        let outcome = match self
            .store
            .write(WriteBatch {
                ticks: &ticks,
                history: &history,
            })
            .await
        {
            Ok(o) => o,
            Err(err) => {
                step(fsm, M::WRITE_FAILURE)?;
                return Err(CycleError::Write(err.to_string()));
            }
        };
        step(fsm, M::WRITE_SUCCESS)?;
        self.metrics
            .new_ticks
            .fetch_add(outcome.new_ticks, Ordering::Relaxed);
        self.metrics
            .duplicate_ticks
            .fetch_add(outcome.duplicate_ticks, Ordering::Relaxed);
        self.metrics
            .history_applied
            .fetch_add(outcome.history_applied, Ordering::Relaxed);

        // Updating Redis: the committed rows of every touched minute.
        match self.cache.put(&outcome.touched).await {
            Ok(()) => {}
            Err(err) if err.is_cache_unreachable() => {
                self.metrics.cache_skipped.fetch_add(1, Ordering::Relaxed);
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
        self.record_visibility(&ticks);
        Ok(messages.len())
    }
}

impl<S, D, T, C> Pipeline<S, D, T, C> {
    /// Notes how long each live tick took from receipt to visibility.
    fn record_visibility(&self, ticks: &[Tick]) {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let mut samples = self
            .metrics
            .visibility_us
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for t in ticks.iter().filter(|t| t.received_ns > 0) {
            if samples.len() == VISIBILITY_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(u64::try_from((now_ns - t.received_ns) / 1_000).unwrap_or(0));
        }
    }
}

/// Decodes a batch into ticks, history bars and undecodable messages.
#[allow(clippy::type_complexity)]
fn split(
    messages: &[RawMessage],
    decode: Decode,
) -> (Vec<Tick>, Vec<HistoryBar>, Vec<(RawMessage, String)>) {
    let mut ticks = Vec::with_capacity(messages.len());
    let mut history = Vec::new();
    let mut invalid = Vec::new();
    for m in messages {
        match decode(&m.payload) {
            Ok(Record::Trade(t)) => ticks.push(t),
            Ok(Record::Bar(b)) => history.push(b),
            Err(reason) => invalid.push((m.clone(), reason)),
        }
    }
    (ticks, history, invalid)
}
