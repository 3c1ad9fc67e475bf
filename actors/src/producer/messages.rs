//! The Producer's messages and reports.

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

use crate::domain::{Instrument, Tick};
use crate::fsm::{RunSnapshot, RunView};

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
    /// Time from request to acknowledged delivery.
    pub elapsed_ms: u64,
}

/// Counters and the run of a producer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
pub enum ProducerMsg {
    /// `FETCH_DATA` for history: the closed minutes of `instrument` with
    /// `from_ts <= open time <= to_ts`, published to `target`.
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
        reply: RpcReplyPort<Result<FetchReport, String>>,
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
    /// `CREATE_DYNAMIC_TOPIC`.
    CreateTopic {
        /// The topic.
        topic: String,
        /// Its partitions.
        partitions: i32,
        /// Done, or the failure.
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// A batch of live ticks from the feed (sent by the forwarder task).
    LiveBatch {
        /// The ticks, in arrival order.
        ticks: Vec<Tick>,
        /// Answered once the batch is acknowledged (or failed).
        reply: RpcReplyPort<()>,
    },
    /// Counters and run.
    Status(RpcReplyPort<ProducerStatus>),
    /// A shared handle on the run.
    View(RpcReplyPort<RunView>),
}

impl ractor::Message for ProducerMsg {}
