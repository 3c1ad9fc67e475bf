//! The Datastore's messages, queries and answers.

use ractor::RpcReplyPort;
use serde::{Deserialize, Serialize};

use crate::call::{CallError, Failed};
use crate::coordinator::CoordinatorError;
use crate::domain::{Instrument, Interval};
use crate::fsm::RunView;
use crate::store::{HourRange, KnownHour, StoredBar};

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
    /// Whether an instrument the platform does not hold may be fetched on
    /// demand (the Data Not Found path). A live stream's polls say no: only
    /// a client's request for bars asks for an instrument.
    pub fetch: bool,
    /// For a reader that keeps what it built from earlier answers: answer a
    /// 1-minute range the cache holds hour by hour ([`BarAnswer::hours`]),
    /// without the bars of the hours named here at their version. `None`:
    /// answer bars.
    pub by_hour: Option<Vec<KnownHour>>,
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
    /// Bars, ascending by start (empty when the answer is [`Self::hours`]).
    pub bars: Vec<StoredBar>,
    /// Where they came from.
    pub served: Served,
    /// When the query asked `by_hour` and the cache held the range: the
    /// range hour by hour (see [`BarCache::hours`](crate::store::BarCache::hours)).
    pub hours: Option<HourRange>,
}

/// Why a request could not be answered; each variant is one HTTP answer
/// (404, 504, 503, 503, 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DataError {
    /// The platform does not hold the instrument and could not fetch it:
    /// no coordinator, or the coordinator could not arrange it.
    #[error("not available: {0}")]
    NotAvailable(String),
    /// Data asked for on demand did not arrive in time (it may still).
    #[error("timed out: {0}")]
    Timeout(String),
    /// Fetching on demand broke off: the coordinator stopped (or its node
    /// went away) before answering, or could not be reached. Asking again
    /// asks a coordinator again.
    #[error("fetch failed: {0}")]
    FetchFailed(String),
    /// The database could not be queried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The platform serves the most dynamic instruments it may (403).
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// Too many new instruments were asked for lately, or this node fetches
    /// as many as it may at a time: ask again after `retry_after_ms`
    /// (429).
    #[error("too many requests: {message}")]
    RateLimited {
        /// Why.
        message: String,
        /// When to ask again, ms.
        retry_after_ms: u64,
    },
    /// This datastore waits for data fetched on demand and takes no other
    /// request meanwhile (the pool asks another).
    #[error("busy waiting for fetched data")]
    Busy,
    /// The instrument is being fetched on demand (by another request): the
    /// pool waits for it, then asks again.
    #[error("being fetched")]
    Pending,
    /// A bug: the machine refused a step.
    #[error("internal: {0}")]
    Internal(String),
}

/// Why data asked for on demand did not arrive: the [`FetchRequester`]'s
/// error (see [`fetch`](super::fetch)).
///
/// [`FetchRequester`]: super::FetchRequester
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum FetchError {
    /// There is no Coordinator to ask.
    #[error("no coordinator to ask: {0}; is a node with the `coordinator` role connected?")]
    NoCoordinator(CallError),
    /// The call to the Coordinator failed: it could not be reached, did not
    /// answer in time, or stopped before answering.
    #[error(transparent)]
    Call(CallError),
    /// The Coordinator answered that it could not arrange the topic.
    #[error("the coordinator could not arrange it: {0}")]
    Refused(CoordinatorError),
    /// The store could not be read while waiting for the data.
    #[error("reading the store: {reason}")]
    Store {
        /// Why.
        reason: String,
    },
    /// The data did not arrive within the datastore's `fetch_timeout`.
    #[error("the data did not arrive within {secs} s")]
    TimedOut {
        /// The time-out, seconds.
        secs: u64,
    },
    /// This node fetches as many instruments on demand as it may at a time.
    #[error("this node is fetching {max} instruments already; ask again in a moment")]
    Busy {
        /// The limit (`dynamic.max_concurrent_fetches`).
        max: usize,
    },
}

impl From<Failed<CoordinatorError>> for FetchError {
    fn from(failed: Failed<CoordinatorError>) -> Self {
        match failed {
            Failed::Call(err) => FetchError::Call(err),
            Failed::Refused { error, .. } => FetchError::Refused(error),
        }
    }
}

/// Messages to a datastore.
pub enum DatastoreMsg {
    /// `REQUEST_DATA`.
    Request(BarQuery, RpcReplyPort<Result<BarAnswer, DataError>>),
    /// A shared handle on the run.
    View(RpcReplyPort<RunView>),
    /// The wait for data fetched on demand ended (sent by the datastore's
    /// own waiting task): the run goes on from Waiting for Data.
    FetchDone {
        /// The request.
        query: BarQuery,
        /// How the wait ended.
        result: Result<(), FetchError>,
        /// The requester.
        reply: RpcReplyPort<Result<BarAnswer, DataError>>,
    },
}

impl ractor::Message for DatastoreMsg {}
