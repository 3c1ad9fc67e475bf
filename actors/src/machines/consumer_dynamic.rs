//! The machine of the Consumer for dynamic topics: subscribe to a topic the
//! Coordinator created, then store its ticks like the fixed consumer does.
//!
//! The seed's machine has no gaps; it is used as given. As for the fixed
//! consumer, `MESSAGE_RECEIVED` stands for one bounded batch of messages.
//! `RESET` returns to Idle (not Consuming), so a restarted consumer waits to be
//! told its topic again.

use crate::fsm::spec::{MachineSpec, Transition};

symbols! {
    /// The dynamic Consumer's states.
    pub enum State {
        /// Waiting to be told which topic to consume.
        Idle => "Idle",
        /// Joining the topic's consumer group.
        Subscribing => "Subscribing",
        /// Waiting for messages on the topic.
        Consuming => "Consuming",
        /// Parsing ticks and computing the bars they change.
        ProcessingMessage => "Processing Message",
        /// Writing ticks and bars in one transaction.
        WritingToDb => "Writing to DB",
        /// Updating the recent bars in the cache.
        UpdatingRedis => "Updating Redis",
        /// Subscribing, processing, writing or caching failed.
        Error => "Error",
    }
}

symbols! {
    /// The dynamic Consumer's events.
    pub enum Event {
        /// Subscribe to a newly created topic.
        SubscribeToTopic => "SUBSCRIBE_TO_TOPIC",
        /// The subscription is in place.
        SubscribeSuccess => "SUBSCRIBE_SUCCESS",
        /// The subscription failed.
        SubscribeFailure => "SUBSCRIBE_FAILURE",
        /// A batch of messages arrived from the topic.
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
    /// What the dynamic Consumer does on a transition.
    pub enum Effect {
        /// Join the topic's consumer group.
        Subscribe => "subscribe to the topic",
        /// Poll the topic.
        Consume => "consume",
        /// Parse the messages and aggregate their ticks.
        Process => "parse and aggregate",
        /// Write ticks and bars in one transaction.
        Write => "write to the database",
        /// Update the cache with the changed bars.
        UpdateCache => "update the cache",
        /// Commit the Kafka offsets and poll again.
        CommitOffsets => "commit offsets",
        /// Log, count and report the failure to the supervisor.
        ReportFailure => "report the failure",
        /// Start afresh, without a topic.
        Restart => "start afresh",
    }
}

/// The Consumer for Dynamic Topics Actor's machine.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerDynamic;

const TABLE: &[Transition<State, Event, Effect>] = {
    use Effect as O;
    use Event as E;
    use State as S;
    &[
        (S::Idle, E::SubscribeToTopic, S::Subscribing, O::Subscribe),
        (
            S::Subscribing,
            E::SubscribeSuccess,
            S::Consuming,
            O::Consume,
        ),
        (
            S::Subscribing,
            E::SubscribeFailure,
            S::Error,
            O::ReportFailure,
        ),
        (
            S::Consuming,
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
            S::Consuming,
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

impl MachineSpec for ConsumerDynamic {
    type State = State;
    type Event = Event;
    type Effect = Effect;

    const NAME: &'static str = "consumer-dynamic";
    const TITLE: &'static str = "Consumer for Dynamic Topics Actor";
    const COLOUR: (&'static str, &'static str) = ("LightSeaGreen", "#20B2AA");
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
