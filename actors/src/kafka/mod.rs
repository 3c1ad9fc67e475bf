//! The Kafka layer: how ticks travel from the producer actor to the consumers.
//!
//! * [`config`]: where the brokers are and how the producer batches;
//! * [`schema`]: the versioned JSON wire format of a tick and its message key
//!   (pure functions, no I/O);
//!
//! This layer never decides what to do about a failure beyond librdkafka's own
//! retries within the delivery timeout: it reports, and the producer actor
//! decides (re-publish, or reset). It never drops a tick silently.
//!
//! Tested against a real Kafka-compatible broker (tansu) by
//! `actors/tests/kafka.rs`; see `docs/kafka-schema.md` for the wire format.

pub mod config;
pub mod schema;

pub use config::{Compression, ConfigError, KafkaConfig, DEFAULT_TICK_TOPIC};
pub use schema::{decode, encode, encode_into, DecodeError, SCHEMA_VERSION};
