//! The fixed consumers' partition placement from the cluster's membership.
//!
//! Each node that runs the `consumer` role has an agent in the role group
//! `agents/consumer`, under the cluster name `agent/<node>`. Process groups
//! are synchronised between connected nodes and a node's memberships end
//! when its session does (a crash closes it at once; a hung node is dropped
//! by the heartbeats), so the set of consumer nodes this node can see is the
//! live consumer nodes. [`ConsumerNodes`] turns that set into this node's
//! [`Share`] of the tick topic's partitions (see
//! `candela_actors::kafka::placement`): when gamma dies, beta's next batch
//! takes gamma's partitions from the group's committed offsets, and when
//! gamma comes back it takes them again. No broker group protocol is
//! involved, so this works the same on Kafka, Redpanda and tansu.

use std::collections::{BTreeSet, HashSet};

use candela_actors::coordinator::directory::CONSUMER_AGENTS;
use candela_actors::kafka::{Placement, Share};
use ractor::ActorCell;

use super::names;

/// The prefix of agents' cluster names (`agent/<node>`).
const AGENT_PREFIX: &str = "agent/";

/// The live nodes (by name) that run consumers, as this node sees them now.
pub fn consumer_nodes() -> BTreeSet<String> {
    let consumer_agents: HashSet<_> = names::role_members(CONSUMER_AGENTS)
        .iter()
        .map(ActorCell::get_id)
        .collect();
    names::all()
        .into_iter()
        .filter_map(|(name, holders)| {
            let node = name.strip_prefix(AGENT_PREFIX)?;
            holders
                .iter()
                .any(|id| consumer_agents.contains(id))
                .then(|| node.to_owned())
        })
        .collect()
}

/// This node's share of the fixed topic's partitions among the live consumer
/// nodes.
#[derive(Debug, Clone)]
pub struct ConsumerNodes {
    /// This node's name.
    pub node: String,
}

impl Placement for ConsumerNodes {
    fn share(&self) -> Share {
        Share::of(&self.node, &consumer_nodes())
    }
}
