//! The fixed consumers' partition placement from the cluster's membership.
//!
//! Each node that runs the `consumer` role has an agent, under the cluster
//! name `agent/<node>`, that announces how many fixed consumers the node runs
//! and for which consumer group by joining the role group
//! `consumer-workers/<group>/<n>`. Process groups are synchronised between
//! connected nodes and a node's memberships end when its session does (a
//! crash closes it at once; a hung node is dropped by the heartbeats), so the
//! nodes this node sees in those groups are the live consumer nodes of the
//! group. (Scoping by group also keeps apart several platforms in one
//! process, as in the tests, which share one process-group registry.)
//! [`ConsumerNodes`] turns that set into this node's
//! [`Share`] of the tick topic's partitions (see
//! `candela_actors::kafka::placement`): when gamma dies, beta's next batch
//! takes gamma's partitions from the group's committed offsets, and when
//! gamma comes back it takes them again. No broker group protocol is
//! involved, so this works the same on Kafka, Redpanda and tansu.
//!
//! A node may run several fixed consumers (`consumer.workers`). The members
//! are the pairs (node, worker) of every live consumer node, and worker `k`
//! of this node takes the share of the pair (node, k).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use candela_actors::kafka::{Placement, Share};
use ractor::{pg, ActorId};

use super::names;

/// The prefix of agents' cluster names (`agent/<node>`).
const AGENT_PREFIX: &str = "agent/";

/// The prefix of the role groups that announce a node's worker count.
const WORKERS_PREFIX: &str = "consumer-workers/";

/// The role group an agent joins to announce that its node runs `workers`
/// fixed consumers in the consumer group `group`.
pub fn workers_role(group: &str, workers: usize) -> String {
    format!("{WORKERS_PREFIX}{group}/{workers}")
}

/// The live nodes that run fixed consumers in `group`, as this node sees
/// them now, with how many each runs.
pub fn consumer_nodes(group: &str) -> BTreeMap<String, usize> {
    let prefix = format!("{WORKERS_PREFIX}{group}/");
    let mut workers: HashMap<ActorId, usize> = HashMap::new();
    for role in pg::which_scoped_groups(&names::ROLES_SCOPE.to_owned()) {
        let Some(n) = role
            .strip_prefix(&prefix)
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        for agent in names::role_members(&role) {
            workers.insert(agent.get_id(), n.max(1));
        }
    }
    names::all()
        .into_iter()
        .filter_map(|(name, holders)| {
            let node = name.strip_prefix(AGENT_PREFIX)?;
            let n = holders.iter().find_map(|id| workers.get(id))?;
            Some((node.to_owned(), *n))
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
    /// The consumer group.
    pub group: String,
    /// This consumer's number on the node, from 0.
    pub worker: usize,
    /// How many fixed consumers this node runs.
    pub workers: usize,
}

impl Placement for ConsumerNodes {
    fn share(&self) -> Share {
        share_among(
            &self.node,
            self.worker,
            self.workers,
            &consumer_nodes(&self.group),
        )
    }

    fn member(&self) -> String {
        member(&self.node, self.worker)
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
