//! The Producer's machine: fetch from CryptoCompare, publish to Kafka.
//!
//! Gaps in the seed, and how they are closed:
//!
//! 1. No transition enters "Publishing to Dynamic Topics". The seed's single
//!    event `DATA_READY` is refined by the fetch's target: `DATA_READY(fixed)`
//!    leads to "Publishing to Fixed Topics" (the seed's drawn edge) and
//!    `DATA_READY(dynamic)` to "Publishing to Dynamic Topics". A deterministic
//!    machine cannot send one event to two states, so the target is part of the
//!    symbol; the `FETCH_DATA` command that started the fetch decides it.
//! 2. `FETCH_FAILURE` is used by "Fetching Data ➔ Error" but missing from the
//!    seed's event list; it is an event here.

use crate::fsm::spec::{MachineSpec, Transition};

symbols! {
    /// The Producer's states, as the seed names them.
    pub enum State {
        /// Awaiting a command.
        Idle => "Idle",
        /// Retrieving history or live trades from CryptoCompare.
        FetchingData => "Fetching Data",
        /// Publishing to the fixed topic `tick-data`.
        PublishingFixed => "Publishing to Fixed Topics",
        /// Publishing to a dynamic topic.
        PublishingDynamic => "Publishing to Dynamic Topics",
        /// Creating a dynamic topic.
        CreatingDynamicTopic => "Creating Dynamic Topic",
        /// A fetch, publish or topic creation failed.
        Error => "Error",
    }
}

symbols! {
    /// The Producer's events.
    pub enum Event {
        /// Start retrieving data (a history range or a live subscription).
        FetchData => "FETCH_DATA",
        /// Create a dynamic topic.
        CreateDynamicTopic => "CREATE_DYNAMIC_TOPIC",
        /// Data retrieved, for the fixed topic (seed: `DATA_READY`).
        DataReadyFixed => "DATA_READY(fixed)",
        /// Data retrieved, for a dynamic topic (gap 1).
        DataReadyDynamic => "DATA_READY(dynamic)",
        /// Retrieval failed (gap 2).
        FetchFailure => "FETCH_FAILURE",
        /// Every message of the batch was acknowledged by the broker.
        PublishSuccess => "PUBLISH_SUCCESS",
        /// Publishing failed after its retries.
        PublishFailure => "PUBLISH_FAILURE",
        /// The dynamic topic exists.
        CreateTopicSuccess => "CREATE_TOPIC_SUCCESS",
        /// The dynamic topic could not be created.
        CreateTopicFailure => "CREATE_TOPIC_FAILURE",
        /// Back to Idle after an error (a supervisor restart).
        Reset => "RESET",
    }
}

symbols! {
    /// What the Producer does on a transition.
    pub enum Effect {
        /// Call CryptoCompare (REST history or WebSocket trades).
        Fetch => "fetch from CryptoCompare",
        /// Ask the broker for a new topic.
        CreateTopic => "create the topic",
        /// Send the fetched ticks to `tick-data` and wait for delivery reports.
        PublishFixed => "publish to tick-data",
        /// Send the fetched ticks to the dynamic topic and wait for delivery reports.
        PublishDynamic => "publish to the dynamic topic",
        /// Wait for the next command.
        AwaitCommand => "await the next command",
        /// Log, count and report the failure to the supervisor.
        ReportFailure => "report the failure",
        /// Start afresh.
        Restart => "start afresh",
    }
}

/// The Producer Actor's machine.
#[derive(Debug, Clone, Copy)]
pub struct Producer;

const TABLE: &[Transition<State, Event, Effect>] = {
    use Effect as O;
    use Event as E;
    use State as S;
    &[
        (S::Idle, E::FetchData, S::FetchingData, O::Fetch),
        (
            S::Idle,
            E::CreateDynamicTopic,
            S::CreatingDynamicTopic,
            O::CreateTopic,
        ),
        (
            S::FetchingData,
            E::DataReadyFixed,
            S::PublishingFixed,
            O::PublishFixed,
        ),
        (
            S::FetchingData,
            E::DataReadyDynamic,
            S::PublishingDynamic,
            O::PublishDynamic,
        ),
        (S::FetchingData, E::FetchFailure, S::Error, O::ReportFailure),
        (
            S::PublishingFixed,
            E::PublishSuccess,
            S::Idle,
            O::AwaitCommand,
        ),
        (
            S::PublishingFixed,
            E::PublishFailure,
            S::Error,
            O::ReportFailure,
        ),
        (
            S::PublishingDynamic,
            E::PublishSuccess,
            S::Idle,
            O::AwaitCommand,
        ),
        (
            S::PublishingDynamic,
            E::PublishFailure,
            S::Error,
            O::ReportFailure,
        ),
        (
            S::CreatingDynamicTopic,
            E::CreateTopicSuccess,
            S::Idle,
            O::AwaitCommand,
        ),
        (
            S::CreatingDynamicTopic,
            E::CreateTopicFailure,
            S::Error,
            O::ReportFailure,
        ),
        (S::Error, E::Reset, S::Idle, O::Restart),
    ]
};

impl MachineSpec for Producer {
    type State = State;
    type Event = Event;
    type Effect = Effect;

    const NAME: &'static str = "producer";
    const TITLE: &'static str = "Producer Actor";
    const COLOUR: (&'static str, &'static str) = ("LightBlue", "#ADD8E6");
    const DECISIONS: &'static [&'static str] = &[
        "DATA_READY is refined by the fetch's target: DATA_READY(fixed) enters Publishing to \
         Fixed Topics, DATA_READY(dynamic) enters Publishing to Dynamic Topics (the seed has no \
         transition into the latter)",
        "FETCH_FAILURE, used by Fetching Data -> Error, is an event (the seed's list omits it)",
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
