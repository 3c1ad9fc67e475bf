//! The Producer's messages and reports.
//!
//! The messages cross nodes (`RactorClusterMessage`, serde payloads): the
//! Coordinator, on any node, tells a producer by its cluster name to serve a
//! dynamic topic. Local senders pay nothing for it (a message to a local actor
//! is never serialised). Run views are read from the process-wide machine
//! registry (`fsm::registry`), not through the mailbox.

use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use crate::domain::{Instrument, Tick};
use crate::fsm::RunSnapshot;
use crate::ports::{BusError, SourceError};

/// Why a producer did not do what it was asked. A serde type: the
/// Coordinator, on any node, gets it back from [`ProducerMsg::ServeDynamic`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ProducerError {
    /// The dynamic topic's name is not one Kafka accepts.
    #[error("`{topic}` is not a valid topic name")]
    InvalidTopic {
        /// The topic.
        topic: String,
    },
    /// The live feed could not be started.
    #[error("live feed: {0}")]
    Live(SourceError),
    /// The history source failed (`FETCH_FAILURE`).
    #[error("history for {instrument}: {error}")]
    History {
        /// The instrument.
        instrument: Instrument,
        /// The source's error.
        error: SourceError,
    },
    /// The bus did not acknowledge the records (`PUBLISH_FAILURE`).
    #[error("{0}")]
    Publish(BusError),
    /// The topic could not be created (`CREATE_TOPIC_FAILURE`).
    #[error("{0}")]
    CreateTopic(BusError),
    /// The machine refused a step (a bug).
    #[error("machine: {0}")]
    Machine(String),
}

impl ProducerError {
    /// Whether the source said it does not list the instrument.
    pub fn is_unknown_pair(&self) -> bool {
        matches!(self, ProducerError::History { error, .. } if error.is_unknown_pair())
    }

    /// Whether the failure is the environment's (the source or the bus is
    /// away): the producer is restarted without counting it towards the
    /// restart-intensity limit.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProducerError::Machine(_))
    }
}

/// Where fetched data is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The fixed topic (`tick-data`).
    Fixed,
    /// A dynamic topic, by name.
    Dynamic(String),
}

/// What a history fetch published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReport {
    /// Bars published.
    pub bars: usize,
    /// Of those, bars of minutes with trades (volume above 0): the minutes a
    /// store will hold (a minute without trades is never stored).
    pub traded_bars: usize,
    /// Time from request to acknowledged delivery.
    pub elapsed_ms: u64,
}

/// Counters and the run of a producer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerStatus {
    /// The instance name.
    pub instance: String,
    /// Instruments streamed live.
    pub live: Vec<String>,
    /// Live trades acknowledged by the bus.
    pub published_trades: u64,
    /// History bars acknowledged by the bus.
    pub published_bars: u64,
    /// History fetches that failed.
    pub failed_fetches: u64,
    /// Publish calls that failed.
    pub failed_batches: u64,
    /// The machine's run.
    pub run: Option<RunSnapshot>,
}

/// What a producer is asked to do.
#[derive(RactorClusterMessage)]
pub enum ProducerMsg {
    /// `FETCH_DATA` for history: the closed minutes of `instrument` with
    /// `from_ts <= open time <= to_ts`, published to `target`.
    #[rpc]
    FetchHistory {
        /// The instrument.
        instrument: Instrument,
        /// First minute, Unix seconds.
        from_ts: i64,
        /// Last minute, Unix seconds.
        to_ts: i64,
        /// Where to publish.
        target: Target,
        /// The report, or the failure.
        reply: RpcReplyPort<Result<FetchReport, ProducerError>>,
    },
    /// Stream `instrument` live to `target`.
    StartLive {
        /// The instrument.
        instrument: Instrument,
        /// Where to publish.
        target: Target,
    },
    /// Stop streaming `instrument`.
    StopLive {
        /// The instrument.
        instrument: Instrument,
    },
    /// The Coordinator's "use this dynamic topic": stream `instrument` live
    /// to `topic` from now on (kept across restarts of the producer), then
    /// publish its history `from_ts..=to_ts` there (`FETCH_DATA` →
    /// `DATA_READY(dynamic)` → Publishing to Dynamic Topics). Answers with the
    /// history published.
    #[rpc]
    ServeDynamic {
        /// The instrument.
        instrument: Instrument,
        /// The dynamic topic (created by the Coordinator).
        topic: String,
        /// First minute of history, Unix seconds.
        from_ts: i64,
        /// Last minute of history, Unix seconds.
        to_ts: i64,
        /// The history report, or the failure.
        reply: RpcReplyPort<Result<FetchReport, ProducerError>>,
    },
    /// Whether the source lists `instrument`: one history call for its last
    /// closed minute, made outside the producer's mailbox and machine (a
    /// question, not a fetch: an unknown pair changes nothing here). Answers
    /// `Ok` when the source answers with data (even an empty minute), the
    /// source's refusal (`ProducerError::History` with
    /// `SourceError::UnknownPair`) when it does not list the pair.
    #[rpc]
    Probe {
        /// The instrument.
        instrument: Instrument,
        /// Listed, or why not.
        reply: RpcReplyPort<Result<(), ProducerError>>,
    },
    /// History fetched outside the mailbox, to publish now (`FETCH_DATA` →
    /// `DATA_READY` → publish): sent by the producer to itself.
    #[rpc]
    PublishFetched {
        /// The instrument.
        instrument: Instrument,
        /// Where to publish.
        target: Target,
        /// The bars.
        bars: Vec<crate::domain::HistoryBar>,
        /// When the request came, ms since the Unix epoch (for the report).
        started_ms: u64,
        /// The report, or the failure.
        reply: RpcReplyPort<Result<FetchReport, ProducerError>>,
    },
    /// A history fetch for the fixed topic failed outside the mailbox
    /// (`FETCH_DATA` → `FETCH_FAILURE` → Error, then RESET): sent by the
    /// producer to itself.
    #[rpc]
    FetchFailed {
        /// The instrument.
        instrument: Instrument,
        /// The source's error.
        error: SourceError,
        /// Answered with the failure.
        reply: RpcReplyPort<Result<FetchReport, ProducerError>>,
    },
    /// `CREATE_DYNAMIC_TOPIC`.
    #[rpc]
    CreateTopic {
        /// The topic.
        topic: String,
        /// Its partitions.
        partitions: i32,
        /// Done, or the failure.
        reply: RpcReplyPort<Result<(), ProducerError>>,
    },
    /// A batch of live ticks from the feed (sent by the forwarder task).
    #[rpc]
    LiveBatch {
        /// The ticks, in arrival order.
        ticks: Vec<Tick>,
        /// Answered once the batch is acknowledged (or failed).
        reply: RpcReplyPort<()>,
    },
    /// Counters and run.
    #[rpc]
    Status(RpcReplyPort<ProducerStatus>),
}
