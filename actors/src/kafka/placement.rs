//! Which partitions a consumer member reads when the platform places them
//! itself instead of the broker's group protocol.
//!
//! A Kafka consumer group normally lets the broker's group coordinator hand
//! out partitions (`subscribe`). That makes failover depend on the broker:
//! tansu 0.6.0, for one, never gives a dead member's partitions to the
//! survivors (see `node/tests/cluster_data.rs`). With a [`Placement`], a
//! member is given its partitions directly (`assign`) from the cluster's own
//! membership, which the node already watches with heartbeats:
//!
//! * the members are the names of the live nodes that run a consumer of the
//!   group, the same set on every node once the membership settles;
//! * a member's [`Share`] is its index in that set, sorted, and the set's size;
//! * it reads partition `p` of each topic when `p % count == index`
//!   ([`Share::partitions`]), so the shares are disjoint and cover every
//!   partition.
//!
//! Offsets are still committed to the group, after the database commit, and
//! a newly placed partition resumes from the group's committed offset. While
//! the members' views differ (a node just died or just joined), a partition
//! may be read by two members for a moment, or by none: the first is a
//! redelivery, which the store absorbs (it ignores ticks it holds), and the
//! second is a short delay. Neither loses or changes a bar. Views that stay
//! different (a partial network partition) could leave a partition unread
//! for as long as they differ: with PostgreSQL, members therefore read only
//! the partitions whose lease they hold ([`super::lease`]), the share saying
//! only which leases they want.
//!
//! This module is pure; the consumer thread asks its placement for the share
//! before every batch (`super::consumer`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{LazyLock, Mutex};

/// One member's share of every topic's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Share {
    /// The member's position among the members, from 0.
    pub index: usize,
    /// How many members share the partitions (at least 1).
    pub count: usize,
}

impl Share {
    /// Every partition: the only member.
    pub const ALL: Share = Share { index: 0, count: 1 };

    /// The share of `me` among `members` (sorted, as a `BTreeSet` is). `me`
    /// counts as a member whether or not the set holds it: a member always
    /// reads its own share, even before it sees the others.
    pub fn of(me: &str, members: &BTreeSet<String>) -> Share {
        let mut all = members.clone();
        all.insert(me.to_owned());
        let index = all.iter().position(|m| m == me).unwrap_or(0);
        Share {
            index,
            count: all.len(),
        }
    }

    /// The partitions of a topic with `partitions` partitions that this share
    /// reads, in order.
    pub fn partitions(self, partitions: i32) -> Vec<i32> {
        let count = self.count.max(1);
        (0..partitions.max(0))
            .filter(|p| (*p as usize) % count == self.index % count)
            .collect()
    }
}

impl std::fmt::Display for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.index + 1, self.count)
    }
}

/// Decides a member's share. Asked before every batch, from the member's
/// own thread, so it must be cheap and must not block.
pub trait Placement: Send + Sync + 'static {
    /// This member's share now.
    fn share(&self) -> Share;

    /// The partitions of `topic`, which has `count`, this member reads now:
    /// its share's by default; a leased placement's are those it holds the
    /// lease of (`super::lease`).
    fn partitions(&self, _topic: &str, count: i32) -> Vec<i32> {
        self.share().partitions(count)
    }

    /// Whether the member may commit offsets of `partition` of `topic` now
    /// (a leased placement: only while it counts the partition's lease).
    fn may_commit(&self, _topic: &str, _partition: i32) -> bool {
        true
    }

    /// The member's topics have these partition counts (the consumer reads
    /// them from the broker and tells its placement when they change).
    fn counts(&self, _counts: &BTreeMap<String, i32>) {}

    /// The member's name among the members, for logs (empty by default).
    fn member(&self) -> String {
        String::new()
    }

    /// The member's stream opened: it reads from now on (a placement that
    /// announces its members to other nodes announces this one).
    fn joined(&self) {}

    /// The member's stream closed (its consumer stopped or failed): it reads
    /// no more, and must no longer be counted by anyone.
    fn left(&self) {}
}

/// A member that reads every partition (a topic with one consumer, such as
/// a dynamic topic, whose consumer the coordinator chose).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllPartitions;

impl Placement for AllPartitions {
    fn share(&self) -> Share {
        Share::ALL
    }
}

impl<F> Placement for F
where
    F: Fn() -> Share + Send + Sync + 'static,
{
    fn share(&self) -> Share {
        self()
    }
}

/// What a placed member of this process holds now (the admin view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementStatus {
    /// The member's name ([`Placement::member`]; empty when it has none).
    pub member: String,
    /// The consumer group.
    pub group: String,
    /// Its share.
    pub share: Share,
    /// The partitions it reads, as (topic, partition), sorted.
    pub partitions: Vec<(String, i32)>,
}

/// The placed members of this process, by a member number.
static PLACED: LazyLock<Mutex<BTreeMap<u64, PlacementStatus>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// Every placed member of this process and what it holds now, by member
/// name.
pub fn placements() -> Vec<PlacementStatus> {
    let mut out: Vec<_> = PLACED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    out.sort_by(|a, b| (&a.member, &a.group).cmp(&(&b.member, &b.group)));
    out
}

/// Records what member `id` holds now.
pub(crate) fn record(id: u64, status: PlacementStatus) {
    PLACED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, status);
}

/// Member `id` closed.
pub(crate) fn forget(id: u64) {
    PLACED.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn shares_are_disjoint_and_cover_every_partition() {
        for members in 1..=5usize {
            for partitions in 0..=12 {
                let mut seen = vec![0; partitions as usize];
                for index in 0..members {
                    let share = Share {
                        index,
                        count: members,
                    };
                    for p in share.partitions(partitions) {
                        seen[p as usize] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|n| *n == 1),
                    "{members} {partitions} {seen:?}"
                );
            }
        }
    }

    #[test]
    fn a_share_is_the_position_among_the_sorted_members() {
        let m = set(&["gamma", "beta"]);
        assert_eq!(Share::of("beta", &m), Share { index: 0, count: 2 });
        assert_eq!(Share::of("gamma", &m), Share { index: 1, count: 2 });
        // A member that does not see itself yet still counts itself.
        assert_eq!(Share::of("alpha", &m), Share { index: 0, count: 3 });
        assert_eq!(Share::of("beta", &set(&[])), Share::ALL);
        assert_eq!(Share { index: 1, count: 2 }.partitions(4), vec![1, 3]);
        assert_eq!(Share::ALL.partitions(3), vec![0, 1, 2]);
        assert_eq!(Share { index: 1, count: 2 }.to_string(), "2 of 2");
    }

    #[test]
    fn the_survivor_of_two_takes_every_partition() {
        let both = set(&["beta", "gamma"]);
        let alone = set(&["beta"]);
        assert_eq!(Share::of("beta", &both).partitions(4), vec![0, 2]);
        assert_eq!(Share::of("beta", &alone).partitions(4), vec![0, 1, 2, 3]);
    }
}
