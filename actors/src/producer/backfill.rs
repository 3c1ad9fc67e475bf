//! The history backfill: every closed minute of the last N minutes of each
//! configured instrument, asked of a producer a chunk at a time, the
//! instruments concurrently; its progress kept process-wide for the
//! metrics, the terminal and the cluster page ([`progress`]).
//!
//! The producer fetches outside its mailbox (`super`), so chunks of several
//! instruments are in flight together; the history client's rate limit
//! (`cryptocompare::http`, `rest_per_second` / `rest_per_minute`) paces
//! every request to the source, whoever makes it (this backfill, the
//! repair, a dynamic instrument's history). Within one instrument the chunks
//! go oldest first, one at a time.
//!
//! What must never happen: a chunk skipped silently (each is published, or
//! given up after [`Settings::attempts`] with a log line and
//! `candela_backfill_failed_chunks_total`); a request made around the
//! client's rate limit (this module only decides what to ask); a backfill
//! that outlives its owner (dropping the future aborts every instrument's
//! task).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use super::{fetch_history, ProducerMsg, Target};
use crate::call::Failed;
use crate::domain::Instrument;
use crate::telemetry::{
    BACKFILL_ETA_SECONDS, BACKFILL_FAILED_CHUNKS, BACKFILL_MINUTES_DONE, BACKFILL_MINUTES_TOTAL,
};

/// What to fetch: every minute from `first` to `last` (open times, Unix
/// seconds, at minute boundaries), `chunk_minutes` per request to the
/// producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The oldest minute.
    pub first: i64,
    /// The newest minute.
    pub last: i64,
    /// Minutes per request to the producer (at least 1).
    pub chunk_minutes: i64,
}

impl Plan {
    /// The `minutes` minutes up to and including `last`.
    pub fn last_minutes(last: i64, minutes: i64, chunk_minutes: i64) -> Self {
        Plan {
            first: last - (minutes.max(1) - 1) * 60,
            last,
            chunk_minutes: chunk_minutes.max(1),
        }
    }

    /// How many minutes the plan covers.
    pub fn minutes(&self) -> i64 {
        if self.last < self.first {
            0
        } else {
            (self.last - self.first) / 60 + 1
        }
    }

    /// The chunks, oldest first, as `(first, last)` minutes: contiguous,
    /// each at most `chunk_minutes` long, covering the plan exactly.
    pub fn chunks(&self) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut from = self.first;
        while from <= self.last {
            let to = (from + (self.chunk_minutes - 1) * 60).min(self.last);
            out.push((from, to));
            from = to + 60;
        }
        out
    }
}

/// The time left to do `total` when `done` took `elapsed` (at the same
/// pace): `None` before anything is done, zero once everything is.
pub fn eta(elapsed: Duration, done: i64, total: i64) -> Option<Duration> {
    if done >= total {
        return Some(Duration::ZERO);
    }
    if done <= 0 {
        return None;
    }
    Some(elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// How a backfill runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Instruments fetched at once (at least 1).
    pub concurrency: usize,
    /// Attempts per chunk before it is given up (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt (doubled for each further one).
    pub retry_after: Duration,
    /// The longest one chunk's request to the producer may take.
    pub call_timeout: Duration,
    /// How long to wait for the producer to be registered (at start, or
    /// while its supervisor restarts it) before an attempt fails.
    pub producer_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: 8,
            attempts: 3,
            retry_after: Duration::from_secs(2),
            call_timeout: Duration::from_secs(300),
            producer_wait: Duration::from_secs(120),
        }
    }
}

/// One instrument's backfill, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstrumentProgress {
    /// The instrument, `MARKET:BASE-QUOTE`.
    pub instrument: String,
    /// Minutes the backfill covers.
    pub total_minutes: i64,
    /// Minutes fetched and published (or given up) so far.
    pub done_minutes: i64,
    /// Bars published.
    pub bars: u64,
    /// Chunks given up after every attempt failed.
    pub failed_chunks: u32,
    /// Estimated seconds left (`None` before the first chunk is done).
    pub eta_secs: Option<u64>,
    /// Whether this instrument's backfill has ended.
    pub finished: bool,
}

struct Entry {
    total: i64,
    done: i64,
    bars: u64,
    failed: u32,
    started: Instant,
    finished: bool,
}

impl Entry {
    fn report(&self, instrument: &str) -> InstrumentProgress {
        InstrumentProgress {
            instrument: instrument.to_owned(),
            total_minutes: self.total,
            done_minutes: self.done,
            bars: self.bars,
            failed_chunks: self.failed,
            eta_secs: eta(self.started.elapsed(), self.done, self.total).map(|d| d.as_secs()),
            finished: self.finished,
        }
    }
}

static PROGRESS: LazyLock<Mutex<BTreeMap<String, Entry>>> = LazyLock::new(Default::default);

fn table() -> std::sync::MutexGuard<'static, BTreeMap<String, Entry>> {
    PROGRESS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The backfills of this process, by instrument (the latest run of each).
pub fn progress() -> Vec<InstrumentProgress> {
    table().iter().map(|(i, e)| e.report(i)).collect()
}

/// What a finished backfill did, per instrument.
pub type Report = Vec<InstrumentProgress>;

/// Backfills `instruments` under `plan` through the producer `producer()`
/// returns (looked up again for every attempt: a producer restarted by its
/// supervisor is a new actor), `settings.concurrency` instruments at once.
/// Ends when every chunk is published or given up.
pub async fn run<F>(
    producer: F,
    instruments: Vec<Instrument>,
    plan: Plan,
    settings: Settings,
) -> Report
where
    F: Fn() -> Option<ActorRef<ProducerMsg>> + Send + Sync + 'static,
{
    let total = plan.minutes();
    for instrument in &instruments {
        let i = instrument.to_string();
        metrics::gauge!(BACKFILL_MINUTES_TOTAL, "instrument" => i.clone()).set(total as f64);
        metrics::gauge!(BACKFILL_MINUTES_DONE, "instrument" => i.clone()).set(0.0);
        table().insert(
            i,
            Entry {
                total,
                done: 0,
                bars: 0,
                failed: 0,
                started: Instant::now(),
                finished: false,
            },
        );
    }
    let producer = Arc::new(producer);
    let settings = Arc::new(settings);
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
    // Dropping the set (this future dropped) aborts every instrument's task.
    let mut tasks = tokio::task::JoinSet::new();
    for instrument in &instruments {
        let instrument = instrument.clone();
        let producer = Arc::clone(&producer);
        let settings = Arc::clone(&settings);
        let permits = Arc::clone(&permits);
        let span = tracing::info_span!("backfill", instrument = %instrument);
        tasks.spawn(
            async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                one(&*producer, &instrument, plan, &settings).await;
            }
            .instrument(span),
        );
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(err) = joined {
            tracing::error!(error = %err, "a backfill task failed");
        }
    }
    let table = table();
    instruments
        .iter()
        .filter_map(|i| {
            let i = i.to_string();
            table.get(&i).map(|e| e.report(&i))
        })
        .collect()
}

/// One instrument's chunks, oldest first.
async fn one<F>(producer: &F, instrument: &Instrument, plan: Plan, settings: &Settings)
where
    F: Fn() -> Option<ActorRef<ProducerMsg>>,
{
    let i = instrument.to_string();
    // The clock of its ETA starts now, with its turn (not while it waited
    // for one).
    if let Some(entry) = table().get_mut(&i) {
        entry.started = Instant::now();
    }
    let done_gauge = metrics::gauge!(BACKFILL_MINUTES_DONE, "instrument" => i.clone());
    let eta_gauge = metrics::gauge!(BACKFILL_ETA_SECONDS, "instrument" => i.clone());
    for (from, to) in plan.chunks() {
        let minutes = (to - from) / 60 + 1;
        let mut published = None;
        let mut unknown = false;
        for attempt in 1..=settings.attempts.max(1) {
            match chunk(producer, instrument, from, to, settings).await {
                Ok(bars) => {
                    published = Some(bars);
                    break;
                }
                Err(Failed::Refused { error, .. }) if error.is_unknown_pair() => {
                    tracing::warn!(instrument = %i, %error, "backfill stopped: the source does not list the pair");
                    unknown = true;
                    break;
                }
                Err(err) => {
                    tracing::warn!(instrument = %i, from, to, attempt, error = %err, "backfill chunk failed");
                    if attempt < settings.attempts {
                        tokio::time::sleep(settings.retry_after * 2u32.pow(attempt - 1)).await;
                    }
                }
            }
        }
        if unknown {
            // Said once; the rest of the plan is not the source's to give.
            metrics::counter!(BACKFILL_FAILED_CHUNKS, "instrument" => i.clone()).increment(1);
            if let Some(entry) = table().get_mut(&i) {
                entry.failed += 1;
            }
            break;
        }
        if published.is_none() {
            tracing::error!(instrument = %i, from, to, "backfill chunk given up: these minutes stay missing until a repair covers them");
            metrics::counter!(BACKFILL_FAILED_CHUNKS, "instrument" => i.clone()).increment(1);
        }
        let report = {
            let mut table = table();
            let Some(entry) = table.get_mut(&i) else {
                return;
            };
            entry.done = (entry.done + minutes).min(entry.total);
            match published {
                Some(bars) => entry.bars += bars as u64,
                None => entry.failed += 1,
            }
            entry.report(&i)
        };
        done_gauge.set(report.done_minutes as f64);
        if let Some(eta) = report.eta_secs {
            eta_gauge.set(eta as f64);
        }
        tracing::info!(
            instrument = %i,
            done = report.done_minutes,
            total = report.total_minutes,
            eta_secs = report.eta_secs,
            "backfill progress"
        );
    }
    let report = {
        let mut table = table();
        let Some(entry) = table.get_mut(&i) else {
            return;
        };
        entry.finished = true;
        entry.report(&i)
    };
    eta_gauge.set(0.0);
    tracing::info!(
        instrument = %i,
        bars = report.bars,
        failed_chunks = report.failed_chunks,
        "history backfilled"
    );
}

/// One attempt at one chunk: the bars published.
async fn chunk<F>(
    producer: &F,
    instrument: &Instrument,
    from: i64,
    to: i64,
    settings: &Settings,
) -> Result<usize, Failed<super::ProducerError>>
where
    F: Fn() -> Option<ActorRef<ProducerMsg>>,
{
    let deadline = Instant::now() + settings.producer_wait;
    let actor = loop {
        if let Some(actor) = producer() {
            break actor;
        }
        if Instant::now() > deadline {
            return Err(Failed::Call(crate::call::CallError::Unreachable {
                name: "producer".into(),
                reason: format!(
                    "not registered within {} s",
                    settings.producer_wait.as_secs()
                ),
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    fetch_history(
        &actor,
        instrument.clone(),
        from,
        to,
        Target::Fixed,
        settings.call_timeout,
    )
    .await
    .map(|report| report.bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_plan_exactly_oldest_first() {
        let plan = Plan::last_minutes(1_700_000_040, 25, 10);
        assert_eq!(plan.minutes(), 25);
        let chunks = plan.chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].0, plan.first);
        assert_eq!(chunks.last().unwrap().1, plan.last);
        let mut minutes = 0;
        for w in chunks.windows(2) {
            assert_eq!(w[0].1 + 60, w[1].0, "contiguous");
        }
        for (a, b) in &chunks {
            let n = (b - a) / 60 + 1;
            assert!(n <= 10);
            minutes += n;
        }
        assert_eq!(minutes, 25);
        let one = Plan::last_minutes(600, 1, 10);
        assert_eq!(one.chunks(), vec![(600, 600)]);
    }

    #[test]
    fn eta_is_unknown_before_the_first_chunk_and_zero_at_the_end() {
        assert_eq!(eta(Duration::from_secs(5), 0, 100), None);
        assert_eq!(
            eta(Duration::from_secs(10), 25, 100),
            Some(Duration::from_secs(30))
        );
        assert_eq!(eta(Duration::from_secs(10), 100, 100), Some(Duration::ZERO));
    }
}
