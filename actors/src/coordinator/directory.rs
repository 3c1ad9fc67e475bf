//! How the Coordinator and the datastore's fetcher find actors by name.
//!
//! Cluster-wide names live in the node crate (`node::cluster::names`, on
//! ractor's process groups); this trait is the little the actors need of them,
//! so this crate does not depend on the node. The node implements it with the
//! real name service; every name below is registered there.

use ractor::ActorCell;

use crate::call::CallError;

/// The Coordinator's cluster name (one per cluster).
pub const COORDINATOR_NAME: &str = "coordinator";
/// The role group of coordinators.
pub const COORDINATORS: &str = "coordinators";
/// The role group of producers (`producer/<node>`).
pub const PRODUCERS: &str = "producers";
/// The role group of Consumers for dynamic topics
/// (`consumer-dynamic/<node>/<n>`).
pub const DYNAMIC_CONSUMERS: &str = "consumers-dynamic";
/// The role group of the agents of nodes that run consumers
/// (`agent/<node>`).
pub const CONSUMER_AGENTS: &str = "agents/consumer";

/// The cluster name of a node's agent.
pub fn agent_name(node: &str) -> String {
    format!("agent/{node}")
}

/// Looks actors up by cluster name or role.
pub trait Directory: Send + Sync + 'static {
    /// The one live actor holding `name`; none, or more than one, is
    /// [`CallError::Unreachable`] saying so (finding the callee is the first
    /// step of a call).
    fn resolve(&self, name: &str) -> Result<ActorCell, CallError>;
    /// Every live actor in the role group `role`, on this node and connected
    /// ones.
    fn members(&self, role: &str) -> Vec<ActorCell>;
    /// Tells `actor` (as `SupervisionEvent::ProcessGroupChanged`) of every
    /// change of the names and roles: an actor joining or leaving, a node
    /// connecting or going away. Nothing by default.
    fn watch(&self, actor: &ActorCell) {
        let _ = actor;
    }
}
