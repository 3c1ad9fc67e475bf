//! The fixed consumers' partition placement from the cluster's membership.
//!
//! Each node that runs the `consumer` role has an agent, under the cluster
//! name `agent/<node>`, that announces which of the node's fixed consumers
//! are *running* — their stream is open and they read — by joining the role
//! group `consumer-worker/<group>/<k>` for each running worker `k`, and
//! leaving it when that consumer stops or fails (the consumers tell
//! [`RunningWorkers`] as their streams open and close; the agent follows it).
//! A consumer in a crash loop, between its restarts, and every consumer of a
//! node whose data plane gave up, are therefore not announced, and their
//! partitions go to the others. Process groups are synchronised between
//! connected nodes and a node's memberships end when its session does (a
//! crash closes it at once; a hung node is dropped by the heartbeats), so
//! the members this node sees in those groups are the running consumers of
//! the group. (Scoping by group also keeps apart several platforms in one
//! process, as in the tests, which share one process-group registry.)
//! [`ConsumerNodes`] turns that set into this consumer's [`Share`] of the
//! tick topic's partitions (see `candela_actors::kafka::placement`): when
//! gamma dies, beta's next batch takes gamma's partitions from the group's
//! committed offsets, and when gamma comes back it takes them again. No
//! broker group protocol is involved, so this works the same on Kafka,
//! Redpanda and tansu. With PostgreSQL the platform wraps this placement in
//! partition leases (`candela_actors::kafka::lease`): the share says which
//! leases a consumer wants, and it reads what it holds (gamma's partitions
//! then move to beta once gamma's leases lapse), so views that stay
//! different leave no partition unread.
//!
//! The members are the pairs (node, worker) of every running consumer, and
//! worker `k` of this node takes the share of the pair (node, k) (it counts
//! itself whether or not its announcement has gone out yet).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use candela_actors::kafka::{Placement, Share};
use ractor::{pg, ActorId};
use tokio::sync::watch;

use super::names;

/// The prefix of agents' cluster names (`agent/<node>`).
const AGENT_PREFIX: &str = "agent/";

/// The prefix of the role groups that announce a running fixed consumer.
const WORKER_PREFIX: &str = "consumer-worker/";

/// The role group an agent joins to announce that its node's fixed consumer
/// `worker` of the consumer group `group` is running.
pub fn worker_role(group: &str, worker: usize) -> String {
    format!("{WORKER_PREFIX}{group}/{worker}")
}

/// The fixed consumers of this node that are running now, by worker number,
/// shared by the consumers (which join and leave) and the agent (which
/// announces them). Each worker counts its open streams: a restarted
/// consumer opens its new stream before the old one's thread has closed, so
/// the old one's late `down` leaves the worker announced.
#[derive(Debug, Clone)]
pub struct RunningWorkers(Arc<RunningInner>);

#[derive(Debug)]
struct RunningInner {
    open: std::sync::Mutex<BTreeMap<usize, usize>>,
    set: watch::Sender<BTreeSet<usize>>,
}

impl Default for RunningWorkers {
    fn default() -> Self {
        Self(Arc::new(RunningInner {
            open: std::sync::Mutex::new(BTreeMap::new()),
            set: watch::Sender::new(BTreeSet::new()),
        }))
    }
}

impl RunningWorkers {
    /// Worker `k` opened a stream.
    pub fn up(&self, k: usize) {
        let mut open = self.0.open.lock().unwrap_or_else(|p| p.into_inner());
        *open.entry(k).or_default() += 1;
        self.0.set.send_if_modified(|set| set.insert(k));
    }

    /// Worker `k` closed a stream; it stops running when none is open.
    pub fn down(&self, k: usize) {
        let mut open = self.0.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(k).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            open.remove(&k);
            self.0.set.send_if_modified(|set| set.remove(&k));
        }
    }

    /// The running workers now.
    pub fn now(&self) -> BTreeSet<usize> {
        self.0.set.borrow().clone()
    }

    /// Follows the running workers.
    pub fn watch(&self) -> watch::Receiver<BTreeSet<usize>> {
        self.0.set.subscribe()
    }
}

/// The running fixed consumers of `group` on the live nodes, as this node
/// sees them now: node → its running workers.
pub fn consumer_nodes(group: &str) -> BTreeMap<String, BTreeSet<usize>> {
    let prefix = format!("{WORKER_PREFIX}{group}/");
    let mut workers: HashMap<ActorId, BTreeSet<usize>> = HashMap::new();
    for role in pg::which_scoped_groups(&names::ROLES_SCOPE.to_owned()) {
        let Some(k) = role
            .strip_prefix(&prefix)
            .and_then(|k| k.parse::<usize>().ok())
        else {
            continue;
        };
        for agent in names::role_members(&role) {
            workers.entry(agent.get_id()).or_default().insert(k);
        }
    }
    names::all()
        .into_iter()
        .filter_map(|(name, holders)| {
            let node = name.strip_prefix(AGENT_PREFIX)?;
            let ks = holders.iter().find_map(|id| workers.get(id))?;
            Some((node.to_owned(), ks.clone()))
        })
        .collect()
}

/// The member name of worker `k` of `node` (sorted the same on every node).
fn member(node: &str, k: usize) -> String {
    format!("{node}#{k:03}")
}

/// The share of worker `worker` of `node` among the running workers of
/// `nodes` (and itself).
pub fn share_among(node: &str, worker: usize, nodes: &BTreeMap<String, BTreeSet<usize>>) -> Share {
    let members: BTreeSet<String> = nodes
        .iter()
        .flat_map(|(n, ks)| ks.iter().map(move |k| member(n, *k)))
        .collect();
    Share::of(&member(node, worker), &members)
}

/// The share of one fixed consumer of this node among the running fixed
/// consumers of the live consumer nodes.
#[derive(Debug, Clone)]
pub struct ConsumerNodes {
    /// This node's name.
    pub node: String,
    /// The consumer group.
    pub group: String,
    /// This consumer's number on the node, from 0.
    pub worker: usize,
    /// This node's running consumers, which the agent announces.
    pub running: RunningWorkers,
}

impl Placement for ConsumerNodes {
    fn share(&self) -> Share {
        share_among(&self.node, self.worker, &consumer_nodes(&self.group))
    }

    fn member(&self) -> String {
        member(&self.node, self.worker)
    }

    fn joined(&self) {
        self.running.up(self.worker);
    }

    fn left(&self) {
        self.running.down(self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, &[usize])]) -> BTreeMap<String, BTreeSet<usize>> {
        list.iter()
            .map(|(n, ks)| ((*n).to_owned(), ks.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn workers_of_every_node_share_the_partitions_once() {
        let all = nodes(&[("beta", &[0, 1]), ("gamma", &[0]), ("delta", &[0, 1, 2])]);
        let mut seen = vec![0; 12];
        for (node, ks) in &all {
            for k in ks {
                let share = share_among(node, *k, &all);
                assert_eq!(share.count, 6);
                for p in share.partitions(12) {
                    seen[p as usize] += 1;
                }
            }
        }
        assert!(seen.iter().all(|n| *n == 1), "{seen:?}");
    }

    #[test]
    fn only_running_workers_are_members() {
        // beta's worker 0 is in a crash loop (not announced): its worker 1
        // and gamma's share everything between them.
        let all = nodes(&[("beta", &[1]), ("gamma", &[0])]);
        let b1 = share_among("beta", 1, &all);
        let g0 = share_among("gamma", 0, &all);
        assert_eq!((b1.count, g0.count), (2, 2));
        let mut seen = [0; 6];
        for p in b1.partitions(6).into_iter().chain(g0.partitions(6)) {
            seen[p as usize] += 1;
        }
        assert_eq!(seen, [1; 6]);
    }

    #[test]
    fn a_worker_counts_itself_before_its_announcement() {
        assert_eq!(share_among("beta", 1, &nodes(&[])), Share::ALL);
        assert_eq!(
            share_among("beta", 1, &nodes(&[("beta", &[0])])),
            Share { index: 1, count: 2 }
        );
        // Two nodes of one worker: sorted by name.
        let two = nodes(&[("beta", &[0]), ("gamma", &[0])]);
        assert_eq!(share_among("gamma", 0, &two), Share { index: 1, count: 2 });
    }

    #[test]
    fn running_workers_follow_up_and_down() {
        let running = RunningWorkers::default();
        let mut rx = running.watch();
        running.up(1);
        running.up(0);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), BTreeSet::from([0, 1]));
        running.up(1);
        assert!(!rx.has_changed().unwrap(), "no change, no event");
        running.down(0);
        assert_eq!(running.now(), BTreeSet::from([1]));
        // Worker 1 opened twice (a restart: the new stream opens before the
        // old one closes): the old stream's late close leaves it running.
        running.down(1);
        assert_eq!(
            running.now(),
            BTreeSet::from([1]),
            "the old stream's late close"
        );
        running.down(1);
        assert!(running.now().is_empty());
    }
}
