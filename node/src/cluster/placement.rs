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
//!
//! A node may run several fixed consumers (`consumer.workers`); its agent
//! announces how many by joining the role group `consumer-workers/<n>`. The
//! members are then the pairs (node, worker) of every live consumer node,
//! and worker `k` of this node takes the share of the pair (node, k). A node
//! whose count is not (yet) known counts as one worker.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use candela_actors::coordinator::directory::CONSUMER_AGENTS;
use candela_actors::kafka::{Placement, Share};
use ractor::{pg, ActorCell, ActorId};

use super::names;

/// The prefix of agents' cluster names (`agent/<node>`).
const AGENT_PREFIX: &str = "agent/";

/// The prefix of the role groups that announce a node's worker count.
const WORKERS_PREFIX: &str = "consumer-workers/";

/// The role group an agent joins to announce that its node runs `workers`
/// fixed consumers.
pub fn workers_role(workers: usize) -> String {
    format!("{WORKERS_PREFIX}{workers}")
}

/// The live nodes that run consumers, as this node sees them now, with how
/// many fixed consumers each runs (1 when not announced).
pub fn consumer_nodes() -> BTreeMap<String, usize> {
    let consumer_agents: HashSet<ActorId> = names::role_members(CONSUMER_AGENTS)
        .iter()
        .map(ActorCell::get_id)
        .collect();
    let mut workers: HashMap<ActorId, usize> = HashMap::new();
    for group in pg::which_scoped_groups(&names::ROLES_SCOPE.to_owned()) {
        let Some(n) = group
            .strip_prefix(WORKERS_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        for agent in names::role_members(&group) {
            workers.insert(agent.get_id(), n.max(1));
        }
    }
    names::all()
        .into_iter()
        .filter_map(|(name, holders)| {
            let node = name.strip_prefix(AGENT_PREFIX)?;
            let agent = holders.iter().find(|id| consumer_agents.contains(id))?;
            Some((node.to_owned(), workers.get(agent).copied().unwrap_or(1)))
        })
        .collect()
}

/// The member name of worker `k` of `node` (sorted the same on every node).
fn member(node: &str, k: usize) -> String {
    format!("{node}#{k:03}")
}

/// The share of worker `worker` of `node` (which runs `workers`) among the
/// workers of `nodes`.
pub fn share_among(
    node: &str,
    worker: usize,
    workers: usize,
    nodes: &BTreeMap<String, usize>,
) -> Share {
    let mut members: BTreeSet<String> = nodes
        .iter()
        .filter(|(n, _)| n.as_str() != node)
        .flat_map(|(n, w)| (0..*w).map(move |k| member(n, k)))
        .collect();
    members.extend((0..workers).map(|k| member(node, k)));
    Share::of(&member(node, worker), &members)
}

/// The share of one fixed consumer of this node among the workers of the
/// live consumer nodes.
#[derive(Debug, Clone)]
pub struct ConsumerNodes {
    /// This node's name.
    pub node: String,
    /// This consumer's number on the node, from 0.
    pub worker: usize,
    /// How many fixed consumers this node runs.
    pub workers: usize,
}

impl Placement for ConsumerNodes {
    fn share(&self) -> Share {
        share_among(&self.node, self.worker, self.workers, &consumer_nodes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
        list.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
    }

    #[test]
    fn workers_of_every_node_share_the_partitions_once() {
        let all = nodes(&[("beta", 2), ("gamma", 1), ("delta", 3)]);
        let mut seen = vec![0; 12];
        for (node, w) in &all {
            for k in 0..*w {
                let share = share_among(node, k, *w, &all);
                assert_eq!(share.count, 6);
                for p in share.partitions(12) {
                    seen[p as usize] += 1;
                }
            }
        }
        assert!(seen.iter().all(|n| *n == 1), "{seen:?}");
    }

    #[test]
    fn a_node_alone_or_unseen_counts_its_own_workers() {
        let none = nodes(&[]);
        assert_eq!(
            share_among("beta", 1, 2, &none),
            Share { index: 1, count: 2 }
        );
        // Its own announcement (1 worker, stale) does not override what it runs.
        let stale = nodes(&[("beta", 1)]);
        assert_eq!(
            share_among("beta", 1, 2, &stale),
            Share { index: 1, count: 2 }
        );
        // Two nodes of one worker: sorted by name.
        let two = nodes(&[("beta", 1), ("gamma", 1)]);
        assert_eq!(
            share_among("gamma", 0, 1, &two),
            Share { index: 1, count: 2 }
        );
    }
}
