//! The Datastore's machine: answer an application's request for OHLCV data
//! from the cache and the database, or have the data fetched when it is missing.
//!
//! Gaps in the seed, and how they are closed:
//!
//! 1. "Data Found ➔ Returning Data" and "Data Not Found ➔ Requesting Data Fetch"
//!    carry no event (`*` in the drawing). They are *completion* steps: the
//!    event `*` ([`Event::Proceed`]) is fired by the actor itself as soon as it
//!    enters either state, so the run still records the step.
//! 2. The seed lists the state "Requesting Fetch" but draws and uses "Requesting
//!    Data Fetch"; the latter name is used.
//! 3. "Requesting Data Fetch" has no way out when the Coordinator cannot be
//!    reached, which would leave the actor stuck. `DATA_FETCH_FAILED` is also
//!    accepted there and leads to Error, as it does from "Waiting for Data".
//! 4. "Returning Data ➔ Idle" is taken on `RETURN_DATA_SUCCESS` and on
//!    `RETURN_DATA_FAILURE` (the seed's `/` between them means "or").
//!
//! Reading the cache happens inside "Processing Request" (the seed's "Datastore
//! queries Redis first"): a hit still issues `START_DB_QUERY` for the part of
//! the range the cache does not hold, so every answer goes through the same
//! path.

use crate::fsm::spec::{MachineSpec, Transition};

symbols! {
    /// The Datastore's states.
    pub enum State {
        /// Awaiting requests.
        Idle => "Idle",
        /// Validating the request and reading the cache.
        ProcessingRequest => "Processing Request",
        /// Querying the database.
        QueryingDb => "Querying DB",
        /// The database holds the data.
        DataFound => "Data Found",
        /// The database does not hold the data.
        DataNotFound => "Data Not Found",
        /// Asking the Coordinator to have the data fetched.
        RequestingDataFetch => "Requesting Data Fetch",
        /// Waiting for the fetched data to be stored.
        WaitingForData => "Waiting for Data",
        /// Sending the answer.
        ReturningData => "Returning Data",
        /// The query or the fetch failed.
        Error => "Error",
    }
}

symbols! {
    /// The Datastore's events.
    pub enum Event {
        /// An application asked for data.
        RequestData => "REQUEST_DATA",
        /// The database query starts.
        StartDbQuery => "START_DB_QUERY",
        /// The database returned the data.
        DbQuerySuccess => "DB_QUERY_SUCCESS",
        /// The database holds nothing for the request.
        DbQueryEmpty => "DB_QUERY_EMPTY",
        /// The query failed.
        DbQueryFailure => "DB_QUERY_FAILURE",
        /// The seed's unconditional step `*` (gap 1).
        Proceed => "*",
        /// The Coordinator has the fetch request.
        FetchInstructionsSent => "FETCH_INSTRUCTIONS_SENT",
        /// The fetched data is stored.
        DataFetched => "DATA_FETCHED",
        /// The fetch failed or timed out.
        DataFetchFailed => "DATA_FETCH_FAILED",
        /// The answer was delivered.
        ReturnDataSuccess => "RETURN_DATA_SUCCESS",
        /// The answer could not be delivered.
        ReturnDataFailure => "RETURN_DATA_FAILURE",
        /// Back to Idle after an error (a supervisor restart).
        Reset => "RESET",
    }
}

symbols! {
    /// What the Datastore does on a transition.
    pub enum Effect {
        /// Validate the request and read the cache.
        Process => "read the cache",
        /// Query the database.
        Query => "query the database",
        /// Assemble the answer from cache and database.
        Assemble => "assemble the answer",
        /// Note which range the database lacks.
        NoteMissing => "note the missing range",
        /// Ask the Coordinator for the data.
        RequestFetch => "ask the coordinator",
        /// Wait for the data to arrive.
        Wait => "wait for the data",
        /// Send the answer.
        Return => "return the data",
        /// Wait for the next request.
        AwaitRequest => "await the next request",
        /// Log, count and report the failure (and answer the request with it).
        ReportFailure => "report the failure",
        /// Start afresh.
        Restart => "start afresh",
    }
}

/// The Datastore (API Service) Actor's machine.
#[derive(Debug, Clone, Copy)]
pub struct Datastore;

const TABLE: &[Transition<State, Event, Effect>] = {
    use Effect as O;
    use Event as E;
    use State as S;
    &[
        (S::Idle, E::RequestData, S::ProcessingRequest, O::Process),
        (
            S::ProcessingRequest,
            E::StartDbQuery,
            S::QueryingDb,
            O::Query,
        ),
        (S::QueryingDb, E::DbQuerySuccess, S::DataFound, O::Assemble),
        (
            S::QueryingDb,
            E::DbQueryEmpty,
            S::DataNotFound,
            O::NoteMissing,
        ),
        (S::QueryingDb, E::DbQueryFailure, S::Error, O::ReportFailure),
        (S::DataFound, E::Proceed, S::ReturningData, O::Return),
        (
            S::DataNotFound,
            E::Proceed,
            S::RequestingDataFetch,
            O::RequestFetch,
        ),
        (
            S::RequestingDataFetch,
            E::FetchInstructionsSent,
            S::WaitingForData,
            O::Wait,
        ),
        (
            S::RequestingDataFetch,
            E::DataFetchFailed,
            S::Error,
            O::ReportFailure,
        ),
        (
            S::WaitingForData,
            E::DataFetched,
            S::ReturningData,
            O::Return,
        ),
        (
            S::WaitingForData,
            E::DataFetchFailed,
            S::Error,
            O::ReportFailure,
        ),
        (
            S::ReturningData,
            E::ReturnDataSuccess,
            S::Idle,
            O::AwaitRequest,
        ),
        (
            S::ReturningData,
            E::ReturnDataFailure,
            S::Idle,
            O::AwaitRequest,
        ),
        (S::Error, E::Reset, S::Idle, O::Restart),
    ]
};

impl MachineSpec for Datastore {
    type State = State;
    type Event = Event;
    type Effect = Effect;

    const NAME: &'static str = "datastore";
    const TITLE: &'static str = "Datastore (API Service) Actor";
    const COLOUR: (&'static str, &'static str) = ("LightYellow", "#FFFFE0");
    const DECISIONS: &'static [&'static str] = &[
        "the unconditional steps Data Found -> Returning Data and Data Not Found -> Requesting \
         Data Fetch take the completion event `*`, fired by the actor on entering those states",
        "the state the seed lists as Requesting Fetch is named Requesting Data Fetch, as drawn",
        "DATA_FETCH_FAILED is also accepted in Requesting Data Fetch (the coordinator cannot be \
         reached), leading to Error",
        "Returning Data -> Idle is taken on RETURN_DATA_SUCCESS and on RETURN_DATA_FAILURE",
    ];

    fn states() -> &'static [State] {
        State::ALL
    }
    fn events() -> &'static [Event] {
        Event::ALL
    }
    fn initial() -> State {
        State::Idle
    }
    fn error_states() -> &'static [State] {
        &[State::Error]
    }
    fn transitions() -> &'static [Transition<State, Event, Effect>] {
        TABLE
    }
}
