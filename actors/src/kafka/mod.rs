//! The Kafka layer: how records (trades and history bars) travel from the
//! producer actor to the consumers.
//!
//! * [`config`]: where the brokers are and how the producer batches;
//! * [`schema`]: the versioned JSON wire format of a record and its message key
//!   (pure functions, no I/O);
//! * [`admin`]: creating topics idempotently (the fixed `tick-data` topic at
//!   start-up, dynamic topics later);
//! * [`publisher`]: [`KafkaPublisher`], an idempotent `acks=all` producer that
//!   returns only when every record (trade or history bar) of a batch is
//!   acknowledged, or says how many were not; it is also the [`RecordBus`]
//!   and the [`DeadLetters`] (`{topic}.dlq`) of the consumers;
//! * [`consumer`]: [`KafkaStreams`], consumer-group members with explicit
//!   offset commits, the consumers' [`OpenStream`]/[`MessageStream`];
//! * [`placement`]: members given their partitions from the cluster's own
//!   membership rather than the broker's group protocol;
//! * [`lease`]: partition leases in PostgreSQL, so that members whose views
//!   of the membership disagree still leave no partition unread.
//!
//! [`RecordBus`]: crate::ports::RecordBus
//! [`DeadLetters`]: crate::ports::DeadLetters
//! [`MessageStream`]: crate::ports::MessageStream
//! [`OpenStream`]: crate::consumer::OpenStream
//!
//! This layer never decides what to do about a failure beyond librdkafka's own
//! retries within the delivery timeout: it reports, and the producer actor
//! decides (re-publish, or reset). It never drops a record silently.
//!
//! Tested against a real Kafka-compatible broker (tansu) by
//! `actors/tests/kafka.rs`, `actors/tests/kafka_consumer.rs` and
//! `actors/tests/consumer_e2e.rs`; see `docs/kafka-schema.md` for the wire
//! format.

pub mod admin;
pub mod config;
pub mod consumer;
mod dead_letters;
pub mod lease;
pub mod placement;
pub mod publisher;
pub mod schema;

pub use admin::{ensure_topic, topic_partitions, AdminError, EnsuredTopic};
pub use config::{Compression, ConfigError, KafkaConfig, DEFAULT_TICK_TOPIC};
pub use consumer::{KafkaStream, KafkaStreams};
pub use placement::{AllPartitions, Placement, Share};
pub use publisher::{
    dead_letter_topic, KafkaPublisher, PublishError, PublishReport, PublisherStats, TickPublisher,
};
pub use schema::{
    decode, decode_record, decode_record_at, encode, encode_into, encode_record, DecodeError,
    SCHEMA_VERSION,
};
