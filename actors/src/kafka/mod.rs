//! The Kafka layer: how ticks travel from the producer actor to the consumers.
//!
//! * [`config`]: where the brokers are and how the producer batches;
//! * [`schema`]: the versioned JSON wire format of a tick and its message key
//!   (pure functions, no I/O);
//! * [`admin`]: creating topics idempotently (the fixed `tick-data` topic at
//!   start-up, dynamic topics later);
//! * [`publisher`]: [`TickPublisher`], an idempotent `acks=all` producer that
//!   returns only when every tick of a batch is acknowledged, or says how
//!   many were not.
//!
//! This layer never decides what to do about a failure beyond librdkafka's own
//! retries within the delivery timeout: it reports, and the producer actor
//! decides (re-publish, or reset). It never drops a tick silently.
//!
//! Tested against a real Kafka-compatible broker (tansu) by
//! `actors/tests/kafka.rs`; see `docs/kafka-schema.md` for the wire format.

pub mod admin;
pub mod config;
pub mod publisher;
pub mod schema;

pub use admin::{ensure_topic, topic_partitions, AdminError, EnsuredTopic};
pub use config::{Compression, ConfigError, KafkaConfig, DEFAULT_TICK_TOPIC};
pub use publisher::{PublishError, PublishReport, PublisherStats, TickPublisher};
pub use schema::{
    decode, decode_for_pipeline, decode_record, encode, encode_into, encode_record, DecodeError,
    SCHEMA_VERSION,
};
