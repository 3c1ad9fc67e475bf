//! The Coordinator's machine: create a dynamic topic, then tell the producer and
//! a dynamic consumer (by name) to use it.
//!
//! The seed's machine has no gaps; it is used as given. A request that arrives
//! while a creation is in progress waits in the actor's mailbox.

use crate::fsm::spec::{MachineSpec, Transition};

symbols! {
    /// The Coordinator's states.
    pub enum State {
        /// Ready for requests.
        Active => "Active",
        /// Creating the requested topic on the broker.
        ProcessingCreateTopic => "Processing Create Topic",
        /// Telling the producer and a dynamic consumer about the topic.
        NotifyingActors => "Notifying Actors",
        /// Creation or notification failed.
        Error => "Error",
    }
}

symbols! {
    /// The Coordinator's events.
    pub enum Event {
        /// An instrument needs a dynamic topic.
        RequestCreateTopic => "REQUEST_CREATE_TOPIC",
        /// The topic exists.
        CreateTopicSuccess => "CREATE_TOPIC_SUCCESS",
        /// The topic could not be created.
        CreateTopicFailure => "CREATE_TOPIC_FAILURE",
        /// Producer and consumer acknowledged.
        NotifySuccess => "NOTIFY_SUCCESS",
        /// An actor could not be reached or refused.
        NotifyFailure => "NOTIFY_FAILURE",
        /// Back to Active after an error (a supervisor restart).
        Reset => "RESET",
    }
}

symbols! {
    /// What the Coordinator does on a transition.
    pub enum Effect {
        /// Create the topic on the broker.
        CreateTopic => "create the topic",
        /// Notify the producer and a dynamic consumer by name.
        Notify => "notify producer and consumer",
        /// Answer the requester and wait for the next request.
        AwaitRequest => "await the next request",
        /// Log, count and report the failure to the supervisor.
        ReportFailure => "report the failure",
        /// Start afresh.
        Restart => "start afresh",
    }
}

/// The Coordinator Actor's machine.
#[derive(Debug, Clone, Copy)]
pub struct Coordinator;

const TABLE: &[Transition<State, Event, Effect>] = {
    use Effect as O;
    use Event as E;
    use State as S;
    &[
        (
            S::Active,
            E::RequestCreateTopic,
            S::ProcessingCreateTopic,
            O::CreateTopic,
        ),
        (
            S::ProcessingCreateTopic,
            E::CreateTopicSuccess,
            S::NotifyingActors,
            O::Notify,
        ),
        (
            S::ProcessingCreateTopic,
            E::CreateTopicFailure,
            S::Error,
            O::ReportFailure,
        ),
        (
            S::NotifyingActors,
            E::NotifySuccess,
            S::Active,
            O::AwaitRequest,
        ),
        (
            S::NotifyingActors,
            E::NotifyFailure,
            S::Error,
            O::ReportFailure,
        ),
        (S::Error, E::Reset, S::Active, O::Restart),
    ]
};

impl MachineSpec for Coordinator {
    type State = State;
    type Event = Event;
    type Effect = Effect;

    const NAME: &'static str = "coordinator";
    const TITLE: &'static str = "Coordinator Actor";
    const COLOUR: (&'static str, &'static str) = ("LightGreen", "#90EE90");
    const DECISIONS: &'static [&'static str] = &[];

    fn states() -> &'static [State] {
        State::ALL
    }
    fn events() -> &'static [Event] {
        Event::ALL
    }
    fn initial() -> State {
        State::Active
    }
    fn error_states() -> &'static [State] {
        &[State::Error]
    }
    fn transitions() -> &'static [Transition<State, Event, Effect>] {
        TABLE
    }
}
