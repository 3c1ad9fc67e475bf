//! The machine of the Consumer for fixed topics: ticks from `tick-data` into
//! the database, then into the cache.
//!
//! The seed's machine has no gaps; it is used as given. One cycle
//! (`MESSAGE_RECEIVED` … `UPDATE_CACHE_SUCCESS`) handles one *batch* of Kafka
//! messages (bounded in size and time), so that the database write of the
//! batch is one transaction; Kafka offsets are committed only after the write.

use crate::fsm::spec::{MachineSpec, Transition};

symbols! {
    /// The fixed Consumer's states.
    pub enum State {
        /// Waiting for messages.
        Idle => "Idle",
        /// Parsing ticks and computing the bars they change.
        ProcessingMessage => "Processing Message",
        /// Writing ticks and bars in one transaction.
        WritingToDb => "Writing to DB",
        /// Updating the recent bars in the cache.
        UpdatingRedis => "Updating Redis",
        /// Processing, writing or caching failed.
        Error => "Error",
    }
}

symbols! {
    /// The fixed Consumer's events.
    pub enum Event {
        /// A batch of messages arrived from the fixed topic.
        MessageReceived => "MESSAGE_RECEIVED",
        /// The batch was parsed and aggregated.
        ProcessSuccess => "PROCESS_SUCCESS",
        /// The batch could not be processed.
        ProcessFailure => "PROCESS_FAILURE",
        /// The transaction committed.
        WriteSuccess => "WRITE_SUCCESS",
        /// The transaction failed.
        WriteFailure => "WRITE_FAILURE",
        /// The cache holds the new bars.
        UpdateCacheSuccess => "UPDATE_CACHE_SUCCESS",
        /// The cache could not be updated.
        UpdateCacheFailure => "UPDATE_CACHE_FAILURE",
        /// Back to Idle after an error (a supervisor restart).
        Reset => "RESET",
    }
}

symbols! {
    /// What the fixed Consumer does on a transition.
    pub enum Effect {
        /// Parse the messages and aggregate their ticks.
        Process => "parse and aggregate",
        /// Write ticks and bars in one transaction.
        Write => "write to the database",
        /// Update the cache with the changed bars.
        UpdateCache => "update the cache",
        /// Commit the Kafka offsets and wait for more messages.
        CommitOffsets => "commit offsets",
        /// Log, count and report the failure to the supervisor.
        ReportFailure => "report the failure",
        /// Start afresh from the last committed offsets.
        Restart => "start afresh",
    }
}

/// The Consumer for Fixed Topics Actor's machine.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerFixed;

const TABLE: &[Transition<State, Event, Effect>] = {
    use Effect as O;
    use Event as E;
    use State as S;
    &[
        (
            S::Idle,
            E::MessageReceived,
            S::ProcessingMessage,
            O::Process,
        ),
        (
            S::ProcessingMessage,
            E::ProcessSuccess,
            S::WritingToDb,
            O::Write,
        ),
        (
            S::ProcessingMessage,
            E::ProcessFailure,
            S::Error,
            O::ReportFailure,
        ),
        (
            S::WritingToDb,
            E::WriteSuccess,
            S::UpdatingRedis,
            O::UpdateCache,
        ),
        (S::WritingToDb, E::WriteFailure, S::Error, O::ReportFailure),
        (
            S::UpdatingRedis,
            E::UpdateCacheSuccess,
            S::Idle,
            O::CommitOffsets,
        ),
        (
            S::UpdatingRedis,
            E::UpdateCacheFailure,
            S::Error,
            O::ReportFailure,
        ),
        (S::Error, E::Reset, S::Idle, O::Restart),
    ]
};

impl MachineSpec for ConsumerFixed {
    type State = State;
    type Event = Event;
    type Effect = Effect;

    const NAME: &'static str = "consumer-fixed";
    const TITLE: &'static str = "Consumer for Fixed Topics Actor";
    const COLOUR: (&'static str, &'static str) = ("LightCoral", "#F08080");
    const DECISIONS: &'static [&'static str] = &[
        "MESSAGE_RECEIVED stands for a batch of messages (bounded in size and time), so a \
         batch is written in one transaction",
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
