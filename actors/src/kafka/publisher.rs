//! Publishing ticks to Kafka with an acknowledged, idempotent producer.
//!
//! [`TickPublisher::publish`] hands a whole batch to librdkafka at once and
//! then waits for the delivery report of every message: `Ok` means the broker
//! acknowledged all of them with `acks=all`. Transient failures (leader moves,
//! dropped connections, timeouts) are retried inside librdkafka within the
//! delivery timeout, and the idempotent producer keeps those retries free of
//! duplicates and reordering. A message that still fails makes the call an
//! error that says how many failed; nothing is dropped silently. The caller
//! may re-publish the batch: consumers treat ticks as a set, so duplicates
//! from a re-publish change nothing.
//!
//! Speed: every message of a batch shares one reference-counted tracker as
//! its delivery opaque, so delivery reports need no per-message allocation;
//! payload and key are encoded into buffers reused for the whole batch
//! (librdkafka copies them). rdkafka still builds a C string of the topic name
//! per message, which is the one allocation left.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::config::{ConfigError, KafkaConfig};
use super::schema;
use crate::domain::Tick;

/// Extra time, beyond the delivery timeout, that `publish` waits for the last
/// delivery report before giving up on librdkafka keeping its promise.
const REPORT_SLACK: Duration = Duration::from_secs(5);

/// How often `publish` yields to the runtime while enqueueing a large batch.
const YIELD_EVERY: usize = 1024;

/// A batch was not (entirely) acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The producer could not be created.
    #[error("cannot create kafka producer: {0}")]
    Create(KafkaError),
    /// Some messages were not acknowledged within the delivery timeout, or
    /// were refused outright. The others were acknowledged.
    #[error("{failed} of {total} ticks not delivered to `{topic}`: {first_error}")]
    Undelivered {
        /// The topic.
        topic: String,
        /// How many ticks failed.
        failed: usize,
        /// How many ticks the batch had.
        total: usize,
        /// The first failure's cause.
        first_error: KafkaError,
    },
    /// No delivery report arrived for some messages, even after the delivery
    /// timeout. Their fate is unknown: re-publish them.
    #[error(
        "{outstanding} of {total} ticks to `{topic}` without delivery report after {waited:?}"
    )]
    NoReport {
        /// The topic.
        topic: String,
        /// How many ticks have no report.
        outstanding: usize,
        /// How many ticks the batch had.
        total: usize,
        /// How long we waited.
        waited: Duration,
    },
    /// The idempotent producer hit a fatal error (e.g. the broker fenced it);
    /// it delivers nothing more and must be recreated.
    #[error("kafka producer failed fatally ({code}): {reason}")]
    Fatal {
        /// librdkafka's error code.
        code: RDKafkaErrorCode,
        /// librdkafka's explanation.
        reason: String,
    },
}

/// What an acknowledged batch amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishReport {
    /// Ticks acknowledged.
    pub messages: usize,
    /// Payload and key bytes acknowledged.
    pub bytes: u64,
    /// From the call to the last acknowledgement.
    pub elapsed: Duration,
}

/// Counters since the publisher was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Messages acknowledged by the broker.
    pub published: u64,
    /// Messages that failed (refused, or not acknowledged in time).
    pub failed: u64,
    /// Payload and key bytes acknowledged.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
}

/// The delivery state of one `publish` call, shared by all its messages.
struct Batch {
    /// Messages without report, plus one while enqueueing is under way.
    outstanding: AtomicUsize,
    failed: AtomicUsize,
    bytes: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Batch {
    fn new(done: oneshot::Sender<()>) -> Self {
        Self {
            outstanding: AtomicUsize::new(1),
            failed: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            first_error: Mutex::new(None),
            done: Mutex::new(Some(done)),
        }
    }

    fn fail(&self, error: KafkaError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(error);
    }

    /// One message has its outcome (or enqueueing finished).
    fn settle(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            let done = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    }
}

/// Routes delivery reports to their batch and the publisher's counters.
struct Context {
    counters: Arc<Counters>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Arc<Batch>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Arc<Batch>) {
        match result {
            Ok(msg) => {
                let n = (msg.payload_len() + msg.key().map_or(0, <[u8]>::len)) as u64;
                batch.bytes.fetch_add(n, Ordering::Relaxed);
                self.counters.published.fetch_add(1, Ordering::Relaxed);
                self.counters.bytes.fetch_add(n, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                batch.fail(error.clone());
            }
        }
        batch.settle();
    }
}

enum Enqueue {
    Queued,
    QueueFull,
    Refused(KafkaError),
}

/// Publishes ticks to Kafka, keyed by instrument, idempotently and with
/// `acks=all`. Cheap to share behind an `Arc`; `publish` may run concurrently.
pub struct TickPublisher {
    producer: ThreadedProducer<Context>,
    counters: Arc<Counters>,
    delivery_timeout: Duration,
}

impl std::fmt::Debug for TickPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TickPublisher")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl TickPublisher {
    /// A publisher for `config`'s brokers. Connects lazily: a broker that is
    /// down shows up as a failed `publish`, not here.
    pub fn new(config: &KafkaConfig) -> Result<Self, PublishError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let producer = config
            .producer_config()
            .create_with_context(Context {
                counters: Arc::clone(&counters),
            })
            .map_err(PublishError::Create)?;
        Ok(Self {
            producer,
            counters,
            delivery_timeout: config.delivery_timeout(),
        })
    }

    /// Counters since creation.
    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            published: self.counters.published.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
        }
    }

    /// Sends every tick of `ticks` to `topic`, keyed by instrument, and waits
    /// until the broker has acknowledged all of them. Ticks of one instrument
    /// keep their order in its partition. Returns within the delivery timeout
    /// (plus a few seconds) whatever the broker does.
    pub async fn publish(
        &self,
        topic: &str,
        ticks: &[Tick],
    ) -> Result<PublishReport, PublishError> {
        let started = Instant::now();
        let total = ticks.len();
        if total == 0 {
            return Ok(PublishReport {
                messages: 0,
                bytes: 0,
                elapsed: started.elapsed(),
            });
        }
        let (done_tx, done_rx) = oneshot::channel();
        let batch = Arc::new(Batch::new(done_tx));
        let mut payload = Vec::with_capacity(256);
        let mut key = String::with_capacity(64);
        let enqueue_deadline = started + self.delivery_timeout;
        for (i, tick) in ticks.iter().enumerate() {
            payload.clear();
            schema::encode_into(tick, &mut payload);
            schema::write_key(&tick.instrument, &mut key);
            loop {
                match self.try_enqueue(topic, &key, &payload, &batch) {
                    Enqueue::Queued => break,
                    Enqueue::QueueFull if Instant::now() < enqueue_deadline => {
                        // librdkafka's queue is full: let deliveries drain it.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Enqueue::QueueFull => {
                        batch.fail(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
                        break;
                    }
                    Enqueue::Refused(error) => {
                        batch.fail(error);
                        break;
                    }
                }
            }
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        // Every message is now either in librdkafka or failed: drop the
        // enqueueing guard, so the last report completes the batch.
        batch.settle();
        let report_deadline = tokio::time::Instant::now() + self.delivery_timeout + REPORT_SLACK;
        let reported = tokio::time::timeout_at(report_deadline, done_rx)
            .await
            .is_ok();
        let elapsed = started.elapsed();
        if !reported {
            let outstanding = batch.outstanding.load(Ordering::Acquire);
            warn!(
                topic,
                total,
                outstanding,
                ?elapsed,
                "kafka delivery reports missing"
            );
            return Err(PublishError::NoReport {
                topic: topic.to_owned(),
                outstanding,
                total,
                waited: elapsed,
            });
        }
        let failed = batch.failed.load(Ordering::Acquire);
        if failed > 0 {
            if let Some((code, reason)) = self.producer.client().fatal_error() {
                warn!(topic, total, failed, %code, reason, "kafka producer failed fatally");
                return Err(PublishError::Fatal { code, reason });
            }
            let first_error = batch
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or(KafkaError::Canceled);
            warn!(topic, total, failed, error = %first_error, "kafka publish failed");
            return Err(PublishError::Undelivered {
                topic: topic.to_owned(),
                failed,
                total,
                first_error,
            });
        }
        let bytes = batch.bytes.load(Ordering::Acquire);
        debug!(
            topic,
            messages = total,
            bytes,
            ?elapsed,
            "kafka batch acknowledged"
        );
        Ok(PublishReport {
            messages: total,
            bytes,
            elapsed,
        })
    }

    /// Hands one message to librdkafka. Synchronous, so the record (which is
    /// not `Send`) never lives across an await.
    fn try_enqueue(&self, topic: &str, key: &str, payload: &[u8], batch: &Arc<Batch>) -> Enqueue {
        let record = BaseRecord::with_opaque_to(topic, Arc::clone(batch))
            .key(key)
            .payload(payload);
        batch.outstanding.fetch_add(1, Ordering::AcqRel);
        match self.producer.send(record) {
            Ok(()) => Enqueue::Queued,
            Err((error, _record)) => {
                // Not queued: no report will come for it.
                batch.outstanding.fetch_sub(1, Ordering::AcqRel);
                match error {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                        Enqueue::QueueFull
                    }
                    error => Enqueue::Refused(error),
                }
            }
        }
    }
}
