//! The I/O boundaries of the actors, as small traits: where ticks come from
//! (history and live) and where records go (a topic bus).
//!
//! Each has a real implementation (CryptoCompare, Kafka) and may have an
//! embedded one; the actors are written against the traits only.

use std::future::Future;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::domain::{HistoryBar, Instrument, Record, Tick};

/// A failure of the record bus (Kafka, or an embedded bus). A serde type: it
/// crosses nodes inside a producer's or the Coordinator's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BusError {
    /// The client could not be created (an unusable configuration).
    #[error("bus client: {reason}")]
    Client {
        /// Why.
        reason: String,
    },
    /// Some records were not acknowledged within the delivery timeout.
    #[error("{failed} of {total} records were not delivered to `{topic}`: {reason}")]
    Undelivered {
        /// The topic.
        topic: String,
        /// Records that failed.
        failed: usize,
        /// Records in the batch.
        total: usize,
        /// The first failure's reason.
        reason: String,
    },
    /// The topic could not be created or checked.
    #[error("topic `{topic}`: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// A consumer-group member could not be created or subscribed.
    #[error("cannot subscribe group `{group}` to {topics:?}: {reason}")]
    Subscribe {
        /// The consumer group.
        group: String,
        /// The topics.
        topics: Vec<String>,
        /// Why.
        reason: String,
    },
    /// Receiving failed (the consumer is broken, not merely waiting).
    #[error("receive: {reason}")]
    Receive {
        /// Why.
        reason: String,
    },
    /// Committing offsets failed; nothing was lost (the messages are
    /// delivered again, and a redelivery changes nothing).
    #[error("offset commit: {reason}")]
    Commit {
        /// Why.
        reason: String,
    },
}

/// Publishes records and waits until every one is acknowledged.
pub trait RecordBus: Send + Sync + 'static {
    /// Creates `topic` with `partitions` partitions unless it exists.
    fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Publishes `records` to `topic`, keyed by instrument, and returns once the
    /// bus acknowledged all of them (or failed).
    fn publish(
        &self,
        topic: &str,
        records: &[Record],
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// A failure of a data source (crosses nodes inside a producer's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SourceError {
    /// The source does not list this instrument (CryptoCompare answers
    /// "market does not exist for this coin pair"): a definite answer, not
    /// a failure to retry.
    #[error("the source does not list {instrument}: {message}")]
    UnknownPair {
        /// The instrument.
        instrument: String,
        /// The source's message.
        message: String,
    },
    /// Anything else: the source is away or slow, refuses the key, limits
    /// the rate, or answered what the protocol does not explain.
    #[error("{0}")]
    Unavailable(String),
}

impl SourceError {
    /// Whether the source said it does not know the instrument.
    pub fn is_unknown_pair(&self) -> bool {
        matches!(self, SourceError::UnknownPair { .. })
    }
}

/// Closed 1-minute bars from a history API.
pub trait HistorySource: Send + Sync + 'static {
    /// Every minute bar of `instrument` with `from_ts <= open_time <= to_ts`
    /// (Unix seconds), in time order.
    fn minute_bars(
        &self,
        instrument: &Instrument,
        from_ts: i64,
        to_ts: i64,
    ) -> impl Future<Output = Result<Vec<HistoryBar>, SourceError>> + Send;
}

/// Controls a running live feed.
pub trait LiveControl: Send + Sync + Sized + 'static {
    /// Adds an instrument to the feed.
    fn subscribe(&self, instrument: Instrument);
    /// Removes an instrument from the feed.
    fn unsubscribe(&self, instrument: Instrument);
    /// Stops the feed; the tick receiver then ends.
    fn shutdown(self);
}

/// Live trades: distinct ticks in arrival order (duplicates already dropped).
pub trait LiveSource: Send + Sync + 'static {
    /// The control handle of a started feed.
    type Control: LiveControl;

    /// Starts a feed for `instruments`.
    #[allow(clippy::type_complexity)]
    fn start(
        &self,
        instruments: Vec<Instrument>,
    ) -> Result<(Self::Control, mpsc::Receiver<Tick>), SourceError>;
}

/// One message as a bus delivered it, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The topic it came from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The message key (the instrument), if any.
    pub key: Option<Vec<u8>>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A subscription to topics within a consumer group, read in batches, with
/// offsets committed explicitly (never automatically).
pub trait MessageStream: Send + 'static {
    /// Up to `max` messages, waiting at most `wait` for the first one and then
    /// taking only what is already there. Empty when nothing came.
    fn next_batch(
        &mut self,
        max: usize,
        wait: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<RawMessage>, BusError>> + Send;

    /// Commits, per partition, the offset after the last of `messages`.
    fn commit(
        &mut self,
        messages: &[RawMessage],
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// The longest reason a dead letter carries, in bytes (a database's message
/// is cut there).
pub const MAX_REASON_BYTES: usize = 1_024;

/// A message the platform will not store, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message, unchanged.
    pub message: RawMessage,
    /// A short label of the reason, from a bounded set, for metrics and
    /// filtering: the field a record broke (`price`, `ts_ns`…), `malformed`,
    /// `version`, `type`, or `database` (the database refused it).
    pub kind: String,
    /// The reason in words (at most [`MAX_REASON_BYTES`]).
    pub reason: String,
}

impl DeadLetter {
    /// A dead letter for `message`; a long reason is cut at
    /// [`MAX_REASON_BYTES`] (on a character boundary).
    pub fn new(message: RawMessage, kind: &str, reason: &str) -> Self {
        let mut cut = reason.len().min(MAX_REASON_BYTES);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        Self {
            message,
            kind: kind.to_owned(),
            reason: reason[..cut].to_owned(),
        }
    }
}

/// Where messages the platform will not store go: the dead-letter topic of
/// the topic each came from (`{topic}.dlq`), with the reason.
///
/// **Once per message.** A message whose (topic, partition, offset) is
/// already in the dead-letter topic is not written again, however often its
/// batch is redelivered. Callers give each source partition's letters in
/// offset order, and one caller reads a partition at a time (the placement),
/// so the dead-letter topic holds each partition's letters in offset order:
/// an implementation finds what is already written by reading back the tail
/// of the dead-letter topic until it meets a letter of that partition older
/// than the oldest one it is given.
pub trait DeadLetters: Send + Sync + 'static {
    /// Publishes each letter not yet written to the dead-letter topic of the
    /// topic it came from, and waits until all are acknowledged; answers how
    /// many it wrote (the others were there already).
    fn dead_letter(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Result<usize, BusError>> + Send;
}
