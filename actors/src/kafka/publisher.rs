//! Publishing records to Kafka with an acknowledged, idempotent producer, and
//! dead-lettering the messages a consumer cannot decode.
//!
//! [`KafkaPublisher`] publishes ticks ([`KafkaPublisher::publish`]) and
//! records, trades and history bars alike ([`KafkaPublisher::publish_records`]
//! and the [`RecordBus`] port), keyed by instrument. Each call hands a whole
//! batch to librdkafka at once and
//! then waits for the delivery report of every message: `Ok` means the broker
//! acknowledged all of them with `acks=all`. Transient failures (leader moves,
//! dropped connections, timeouts) are retried inside librdkafka within the
//! delivery timeout, and the idempotent producer keeps those retries free of
//! duplicates and reordering. A message that still fails makes the call an
//! error that says how many failed; nothing is dropped silently. The caller
//! may re-publish the batch: consumers treat ticks as a set (and a repeated
//! history bar as the same minute), so duplicates from a re-publish change
//! nothing.
//!
//! As the [`DeadLetters`] port, the publisher sends each message the platform
//! will not store, unchanged (key and payload bytes), to `{topic}.dlq` with
//! headers naming the reason and the source topic, partition and offset (see
//! `docs/kafka-schema.md`), creating that topic on first use with as many
//! partitions as its source (source partition `p` goes to `p mod n`), and
//! waits for the acknowledgement the same way. A letter already in the
//! dead-letter topic is not written again: [`super::dead_letters`] reads the
//! partition's tail back first.
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

use std::collections::{BTreeMap, HashMap};

use rdkafka::message::{Header, OwnedHeaders};

use super::admin;
use super::config::{ConfigError, KafkaConfig};
use super::schema;
use crate::domain::{Record, Tick};
use crate::ports::{BusError, DeadLetter, DeadLetters, RecordBus};

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
    #[error("{failed} of {total} messages not delivered to `{topic}`: {first_error}")]
    Undelivered {
        /// The topic.
        topic: String,
        /// How many messages failed.
        failed: usize,
        /// How many messages the batch had.
        total: usize,
        /// The first failure's cause.
        first_error: KafkaError,
    },
    /// No delivery report arrived for some messages, even after the delivery
    /// timeout. Their fate is unknown: re-publish them.
    #[error(
        "{outstanding} of {total} messages to `{topic}` without delivery report after {waited:?}"
    )]
    NoReport {
        /// The topic.
        topic: String,
        /// How many messages have no report.
        outstanding: usize,
        /// How many messages the batch had.
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
    /// Messages acknowledged.
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

/// Dead-letter header: why the message is not stored, in words.
pub const DLQ_REASON: &str = "dlq.reason";
/// Dead-letter header: the kind of reason, a short label (the field a record
/// broke, `malformed`, `version`, `type`, `database`).
pub const DLQ_KIND: &str = "dlq.kind";
/// Dead-letter header: the topic the message came from.
pub const DLQ_TOPIC: &str = "dlq.topic";
/// Dead-letter header: its partition there (decimal text).
pub const DLQ_PARTITION: &str = "dlq.partition";
/// Dead-letter header: its offset there (decimal text).
pub const DLQ_OFFSET: &str = "dlq.offset";
/// Partitions of a dead-letter topic when its source's count is unknown (and
/// of the embedded bus's).
pub const DLQ_PARTITIONS: i32 = 1;

/// The dead-letter topic of `topic`: `{topic}.dlq`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// One outgoing message, filled in place for each record of a batch so the
/// buffers are reused.
#[derive(Default)]
struct Outgoing {
    payload: Vec<u8>,
    key: Vec<u8>,
    keyed: bool,
    headers: Option<OwnedHeaders>,
    /// An explicit partition (else the key's).
    partition: Option<i32>,
}

/// Publishes records to Kafka, keyed by instrument, idempotently and with
/// `acks=all`; also the dead-letter publisher. Cheap to share behind an
/// `Arc`; every method may run concurrently.
pub struct KafkaPublisher {
    producer: ThreadedProducer<Context>,
    counters: Arc<Counters>,
    delivery_timeout: Duration,
    config: KafkaConfig,
    /// Dead-letter topics known to exist, with their partition counts.
    dead_letter_topics: Mutex<HashMap<String, i32>>,
}

/// The former name of [`KafkaPublisher`], when it published ticks only.
pub type TickPublisher = KafkaPublisher;

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
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
            config: config.clone(),
            dead_letter_topics: Mutex::new(HashMap::new()),
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
        let mut key = String::with_capacity(64);
        self.send_all(topic, ticks.len(), |i, out| {
            schema::encode_into(&ticks[i], &mut out.payload);
            schema::write_key(&ticks[i].instrument, &mut key);
            out.key.extend_from_slice(key.as_bytes());
            out.keyed = true;
        })
        .await
    }

    /// Sends every record (trade or history bar) of `records` to `topic`,
    /// keyed by instrument, with the same guarantee as [`Self::publish`].
    pub async fn publish_records(
        &self,
        topic: &str,
        records: &[Record],
    ) -> Result<PublishReport, PublishError> {
        let mut key = String::with_capacity(64);
        self.send_all(topic, records.len(), |i, out| {
            schema::encode_record(&records[i], &mut out.payload);
            schema::write_key(records[i].instrument(), &mut key);
            out.key.extend_from_slice(key.as_bytes());
            out.keyed = true;
        })
        .await
    }

    /// Creates the dead-letter topic `dlq` of `source` (with as many
    /// partitions as `source`) unless this publisher already knows it
    /// exists; answers its partition count.
    async fn ensure_dead_letter_topic(&self, dlq: &str, source: &str) -> Result<i32, BusError> {
        let known = self
            .dead_letter_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(dlq)
            .copied();
        if let Some(n) = known {
            return Ok(n);
        }
        let topic_error = |e: admin::AdminError| BusError::Topic {
            topic: dlq.to_owned(),
            reason: e.to_string(),
        };
        let wanted = admin::topic_partitions(&self.config, source)
            .await
            .map_err(topic_error)?
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(DLQ_PARTITIONS)
            .clamp(1, admin::MAX_PARTITIONS);
        let ensured =
            admin::ensure_topic(&self.config, dlq, wanted, self.config.replication_factor)
                .await
                .map_err(topic_error)?;
        let n = i32::try_from(ensured.partitions.max(1)).unwrap_or(1);
        self.dead_letter_topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dlq.to_owned(), n);
        Ok(n)
    }

    /// Enqueues `total` messages, each filled by `fill(i, ..)` into cleared
    /// buffers, and waits for every delivery report.
    async fn send_all(
        &self,
        topic: &str,
        total: usize,
        mut fill: impl FnMut(usize, &mut Outgoing) + Send,
    ) -> Result<PublishReport, PublishError> {
        let started = Instant::now();
        if total == 0 {
            return Ok(PublishReport {
                messages: 0,
                bytes: 0,
                elapsed: started.elapsed(),
            });
        }
        let (done_tx, done_rx) = oneshot::channel();
        let batch = Arc::new(Batch::new(done_tx));
        let mut out = Outgoing {
            payload: Vec::with_capacity(256),
            key: Vec::with_capacity(64),
            ..Outgoing::default()
        };
        let enqueue_deadline = started + self.delivery_timeout;
        for i in 0..total {
            out.payload.clear();
            out.key.clear();
            out.keyed = false;
            out.headers = None;
            out.partition = None;
            fill(i, &mut out);
            loop {
                match self.try_enqueue(topic, &out, &batch) {
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
    fn try_enqueue(&self, topic: &str, out: &Outgoing, batch: &Arc<Batch>) -> Enqueue {
        let mut record =
            BaseRecord::<[u8], [u8], Arc<Batch>>::with_opaque_to(topic, Arc::clone(batch))
                .payload(&out.payload);
        if out.keyed {
            record = record.key(&out.key);
        }
        if let Some(headers) = &out.headers {
            record = record.headers(headers.clone());
        }
        if let Some(partition) = out.partition {
            record = record.partition(partition);
        }
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

impl PublishError {
    /// The port's view of this error, for a batch of `total` messages to `topic`.
    pub fn into_bus_error(self, topic: &str, total: usize) -> BusError {
        match self {
            PublishError::Undelivered {
                topic,
                failed,
                total,
                first_error,
            } => BusError::Undelivered {
                topic,
                failed,
                total,
                reason: first_error.to_string(),
            },
            PublishError::NoReport {
                topic,
                outstanding,
                total,
                waited,
            } => BusError::Undelivered {
                topic,
                failed: outstanding,
                total,
                reason: format!(
                    "no delivery report after {waited:?} (fate unknown: publish again)"
                ),
            },
            other => BusError::Undelivered {
                topic: topic.to_owned(),
                failed: total,
                total,
                reason: other.to_string(),
            },
        }
    }
}

impl RecordBus for KafkaPublisher {
    /// Creates `topic` with the configured replication factor (idempotent).
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), BusError> {
        admin::ensure_topic(
            &self.config,
            topic,
            partitions,
            self.config.replication_factor,
        )
        .await
        .map(|_| ())
        .map_err(|e| BusError::Topic {
            topic: topic.to_owned(),
            reason: e.to_string(),
        })
    }

    async fn publish(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        self.publish_records(topic, records)
            .await
            .map(|_| ())
            .map_err(|e| e.into_bus_error(topic, records.len()))
    }
}

impl DeadLetters for KafkaPublisher {
    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<usize, BusError> {
        // Source topic → source partition → its letters.
        let mut by_source: BTreeMap<&str, BTreeMap<i32, Vec<&DeadLetter>>> = BTreeMap::new();
        for l in letters {
            by_source
                .entry(l.message.topic.as_str())
                .or_default()
                .entry(l.message.partition)
                .or_default()
                .push(l);
        }
        let mut written = 0;
        for (source, partitions) in by_source {
            let dlq = dead_letter_topic(source);
            let n = self.ensure_dead_letter_topic(&dlq, source).await?;
            let mut todo: Vec<(i32, &DeadLetter)> = Vec::new();
            let mut skipped = 0;
            for (partition, mut mine) in partitions {
                mine.sort_by_key(|l| l.message.offset);
                mine.dedup_by_key(|l| l.message.offset);
                let dlq_partition = partition.rem_euclid(n);
                let done = super::dead_letters::written(
                    &self.config,
                    super::dead_letters::Lookup {
                        dlq: dlq.clone(),
                        dlq_partition,
                        source: source.to_owned(),
                        partition,
                        min_offset: mine[0].message.offset,
                    },
                )
                .await?;
                for l in mine {
                    if done.contains(&l.message.offset) {
                        skipped += 1;
                    } else {
                        todo.push((dlq_partition, l));
                    }
                }
            }
            if todo.is_empty() {
                debug!(topic = source, skipped, "dead letters already written");
                continue;
            }
            self.send_all(&dlq, todo.len(), |i, out| {
                let (dlq_partition, l) = todo[i];
                let m = &l.message;
                out.payload.extend_from_slice(&m.payload);
                if let Some(key) = &m.key {
                    out.key.extend_from_slice(key);
                    out.keyed = true;
                }
                out.partition = Some(dlq_partition);
                let partition = m.partition.to_string();
                let offset = m.offset.to_string();
                out.headers = Some(
                    OwnedHeaders::new_with_capacity(5)
                        .insert(Header {
                            key: DLQ_REASON,
                            value: Some(l.reason.as_str()),
                        })
                        .insert(Header {
                            key: DLQ_KIND,
                            value: Some(l.kind.as_str()),
                        })
                        .insert(Header {
                            key: DLQ_TOPIC,
                            value: Some(m.topic.as_str()),
                        })
                        .insert(Header {
                            key: DLQ_PARTITION,
                            value: Some(partition.as_str()),
                        })
                        .insert(Header {
                            key: DLQ_OFFSET,
                            value: Some(offset.as_str()),
                        }),
                );
            })
            .await
            .map_err(|e| e.into_bus_error(&dlq, todo.len()))?;
            written += todo.len();
            warn!(
                topic = source,
                dead_letter_topic = %dlq,
                count = todo.len(),
                skipped,
                "dead-lettered messages"
            );
        }
        Ok(written)
    }
}
