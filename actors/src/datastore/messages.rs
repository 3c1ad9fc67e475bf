//! The Datastore's messages, queries and answers.

use ractor::RpcReplyPort;
use serde::Serialize;

use crate::domain::{Instrument, Interval};
use crate::fsm::RunView;
use crate::store::StoredBar;

/// A request for bars: `from <= open_time <= to`, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarQuery {
    /// The instrument.
    pub instrument: Instrument,
    /// The interval.
    pub interval: Interval,
    /// First bar start, Unix seconds.
    pub from: i64,
    /// Last bar start, Unix seconds.
    pub to: i64,
    /// Most bars.
    pub limit: usize,
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Served {
    /// The cache.
    Cache,
    /// The database.
    Database,
    /// The database, after the data was fetched on demand.
    Fetched,
}

/// The bars found, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarAnswer {
    /// Bars, ascending by start.
    pub bars: Vec<StoredBar>,
    /// Where they came from.
    pub served: Served,
}

/// Why a request could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The platform does not hold the instrument and could not fetch it.
    #[error("not available: {0}")]
    NotAvailable(String),
    /// Data asked for on demand did not arrive in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The database could not be queried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug: the machine refused a step.
    #[error("internal: {0}")]
    Internal(String),
}

/// Messages to a datastore.
pub enum DatastoreMsg {
    /// `REQUEST_DATA`.
    Request(BarQuery, RpcReplyPort<Result<BarAnswer, DataError>>),
    /// A shared handle on the run.
    View(RpcReplyPort<RunView>),
}

impl ractor::Message for DatastoreMsg {}
