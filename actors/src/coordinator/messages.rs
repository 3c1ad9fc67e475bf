//! The messages of the Coordinator and of the per-node agents. Both cross
//! nodes (`RactorClusterMessage`, serde payloads): the datastore on one node
//! asks the Coordinator on another, which asks an agent on a third.

use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use super::CoordinatorError;
use crate::call::CallError;
use crate::domain::Instrument;
use crate::fsm::RunSnapshot;
use crate::store::dynamic::DynamicRecord;

/// What the Coordinator arranged for an instrument: its dynamic topic, who
/// consumes it, and the history the producer published there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicTopic {
    /// The instrument.
    pub instrument: Instrument,
    /// The dynamic topic.
    pub topic: String,
    /// The cluster name of the dynamic consumer subscribed to it.
    pub consumer: String,
    /// The cluster name of the producer streaming to it.
    pub producer: String,
    /// First minute of the published history, Unix seconds.
    pub history_from: i64,
    /// Last minute of the published history, Unix seconds.
    pub history_to: i64,
    /// Minutes with trades among the published history (the minutes a
    /// store will hold: a minute without trades is never stored).
    pub history_bars: u64,
}

/// What the Coordinator reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorStatus {
    /// Instance name.
    pub instance: String,
    /// The dynamic topics arranged since this instance started.
    pub topics: Vec<DynamicTopic>,
    /// The dynamic instruments of the registry.
    pub instruments: Vec<DynamicRecord>,
    /// The instrument being arranged now, if any.
    pub creating: Option<Instrument>,
    /// Requests for other instruments waiting their turn.
    pub queued: usize,
    /// Requests that failed since this instance started.
    pub failures: u64,
    /// The last reconciliation.
    pub last_reconcile: Option<ReconcileReport>,
    /// The machine's run.
    pub run: RunSnapshot,
}

/// A step of the creation in progress, reported by its task to the actor,
/// which fires it on the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// The source lists the pair (`Ok`: the machine's run starts), or not.
    Probed {
        /// The instrument.
        instrument: Instrument,
        /// Listed, or why not.
        result: Result<(), CoordinatorError>,
    },
    /// The durable record and the topic exist, or not.
    TopicCreated {
        /// The instrument.
        instrument: Instrument,
        /// Done, or why not.
        result: Result<(), CoordinatorError>,
    },
    /// The consumer and the producer were told, or not (what was set up
    /// was undone).
    Done {
        /// The instrument.
        instrument: Instrument,
        /// The arrangement, or why not.
        result: Result<DynamicTopic, CoordinatorError>,
    },
}

impl Step {
    /// The instrument it is about.
    pub fn instrument(&self) -> &Instrument {
        match self {
            Step::Probed { instrument, .. }
            | Step::TopicCreated { instrument, .. }
            | Step::Done { instrument, .. } => instrument,
        }
    }
}

/// What a reconciliation found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Not done: this coordinator is not the active one (or the registry
    /// could not be read).
    pub skipped: bool,
    /// The registry as read.
    pub instruments: Vec<DynamicRecord>,
    /// Consumers started or re-subscribed (instrument → consumer).
    pub consumers_placed: Vec<(String, String)>,
    /// Producers told again (instrument → producer).
    pub producers_told: Vec<(String, String)>,
    /// What could not be fixed now (tried again at the next one).
    pub problems: Vec<String>,
    /// When it ended, Unix seconds.
    pub at: i64,
}

/// Messages to the Coordinator.
#[derive(RactorClusterMessage)]
pub enum CoordinatorMsg {
    /// `REQUEST_CREATE_TOPIC`: arrange a dynamic topic for an instrument the
    /// platform does not hold; answered when the producer has published its
    /// history and a consumer is subscribed (or with the failure).
    #[rpc]
    RequestCreateTopic(
        Instrument,
        RpcReplyPort<Result<DynamicTopic, CoordinatorError>>,
    ),
    /// Topics and run.
    #[rpc]
    Status(RpcReplyPort<CoordinatorStatus>),
    /// The dynamic instruments of the registry.
    #[rpc]
    List(RpcReplyPort<Result<Vec<DynamicRecord>, CoordinatorError>>),
    /// Remove a dynamic instrument (an admin's request): its producer stops
    /// streaming it, its consumer stops, its record goes; its stored bars
    /// stay. Answers whether it was there.
    #[rpc]
    Remove(Instrument, RpcReplyPort<Result<bool, CoordinatorError>>),
    /// A step of the creation in progress (from its task).
    Step(Step),
    /// Reconcile the registry with the running actors (also sent on
    /// membership changes and every `reconcile_every`).
    Reconcile,
    /// A reconciliation ended (from its task).
    Reconciled(ReconcileReport),
}

/// Messages to a node's agent (ractor has no remote spawn: the agent starts
/// actors on its own node on request).
#[derive(RactorClusterMessage)]
pub enum AgentMsg {
    /// Start a Consumer for dynamic topics under this node's supervisor;
    /// answers with its cluster name once the name resolves.
    #[rpc]
    StartDynamicConsumer(RpcReplyPort<Result<String, AgentError>>),
    /// Stop the named Consumer for dynamic topics of this node and forget it
    /// (a dynamic instrument removed, or a set-up undone); answers whether
    /// it was there.
    #[rpc]
    StopDynamicConsumer(String, RpcReplyPort<Result<bool, AgentError>>),
}

/// Why an agent did not start a dynamic consumer (crosses nodes: the
/// Coordinator asks the agent of another node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AgentError {
    /// Its node does not run consumers.
    #[error("node `{node}` does not have the `consumer` role")]
    NotAConsumerNode {
        /// The node.
        node: String,
    },
    /// The node's dynamic supervisor did not add the consumer (its refusal
    /// flattened to text: it is local to that node).
    #[error(transparent)]
    Supervisor(CallError),
    /// Every candidate name is taken.
    #[error("node `{node}` has no free dynamic consumer name")]
    NoFreeName {
        /// The node.
        node: String,
    },
    /// The node runs as many dynamic consumers as it may.
    #[error("node `{node}` runs {max} dynamic consumers, the most it may")]
    Full {
        /// The node.
        node: String,
        /// Its limit.
        max: usize,
    },
    /// The name is not one of this node's dynamic consumers.
    #[error("`{name}` is not a dynamic consumer of node `{node}`")]
    NotMine {
        /// The node.
        node: String,
        /// The name asked for.
        name: String,
    },
}
