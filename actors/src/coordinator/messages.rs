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
    /// History bars published (each a distinct minute in the range).
    pub history_bars: u64,
}

/// What the Coordinator reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorStatus {
    /// Instance name.
    pub instance: String,
    /// The dynamic topics arranged since this instance started.
    pub topics: Vec<DynamicTopic>,
    /// Requests that failed since this instance started.
    pub failures: u64,
    /// The machine's run.
    pub run: RunSnapshot,
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
}

/// Messages to a node's agent (ractor has no remote spawn: the agent starts
/// actors on its own node on request).
#[derive(RactorClusterMessage)]
pub enum AgentMsg {
    /// Start a Consumer for dynamic topics under this node's supervisor;
    /// answers with its cluster name once the name resolves.
    #[rpc]
    StartDynamicConsumer(RpcReplyPort<Result<String, AgentError>>),
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
}
