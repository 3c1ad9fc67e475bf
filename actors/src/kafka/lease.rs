//! Partition leases in PostgreSQL: a placed consumer reads a partition only
//! while it holds the partition's lease.
//!
//! Placement from each node's own view of the cluster ([`super::placement`])
//! gives disjoint shares that cover every partition *when the views agree*.
//! While they disagree for long (a partial network partition: gamma and
//! delta lose each other but both reach beta), the shares computed from
//! different views can leave partitions in nobody's share. Every consumer
//! node reaches the database it writes to, so the database arbitrates: the
//! view still says what a member *wants* (its share), and the lease table
//! (`partition_leases`, one row per group, topic and partition) says what it
//! *reads*.
//!
//! A member's [`Lessor`] runs a round every `renew` (see [`Leased`]):
//!
//! 1. it gives back leases it holds outside its share that another member
//!    asked for (`wanted_by`) within the lease time (requests are refreshed
//!    every round; an older one is stale: its member died or lost the
//!    database), so the share's owner gets them;
//! 2. it renews the leases it holds, takes the free or lapsed leases of its
//!    share, and takes any lease lapsed for longer than `grace` (a partition
//!    in nobody's share, or whose owner died and whose share's owner has not
//!    come for it): `expires_at = now() + ttl` by the database's clock;
//! 3. it asks for the partitions of its share that another member holds
//!    live (unless another member's fresh request is there first), and
//!    stops asking for those its share no longer gives it.
//!
//! A round is one transaction: it takes effect whole or not at all.
//!
//! Each statement changes a row only under the row lock and re-checks its
//! condition after waiting for it (PostgreSQL's `UPDATE` under READ
//! COMMITTED), so two members never both take one lease. A member keeps
//! holding a lease outside its share until another member asks for it:
//! nobody stops reading a partition before someone else wants to read it.
//!
//! **The fence.** A member counts a lease from the round's start (its own
//! monotonic clock, taken before the statement reached the database) for
//! `ttl - renew` only; the database counts it from its `now()`, which is
//! later, for `ttl`. So a member that cannot renew (the database is
//! unreachable from it, or slow) stops reading and stops committing offsets
//! ([`Leased::may_commit`]) before anyone else can take its partitions, with
//! a margin of `renew` for the clocks' rates. The token counts the times a
//! lease was taken: each new holder has a larger one (logs, admin view).
//!
//! Bounds: a partition stays unread at most `ttl + grace + renew` after its
//! reader died or lost the database (the lease lapses, the grace passes, and
//! the next round of any member takes it), and two members read it at once
//! for at most the round that hands it over, which the data rules make
//! harmless (ticks are stored once by key; offsets are committed only after
//! the database commit).
//!
//! Never: a lease taken from a live holder; a member reading or committing
//! past its own count of its lease.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::placement::{Placement, Share};

/// How long leases last and how often they are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A lease lapses this long after its last renewal (database clock).
    pub ttl: Duration,
    /// Rounds run this often; a member counts its lease for `ttl - renew`.
    pub renew: Duration,
    /// A lapsed lease outside every share waits this long for its share's
    /// owner before any member takes it.
    pub grace: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(6),
            renew: Duration::from_secs(1),
            grace: Duration::from_secs(2),
        }
    }
}

impl LeaseConfig {
    /// How long a member counts a lease from the start of the round that
    /// renewed it.
    pub fn held_for(&self) -> Duration {
        self.ttl.saturating_sub(self.renew)
    }
}

/// A lease error: the database refused or could not be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("partition leases: {0}")]
pub struct LeaseError(String);

impl LeaseError {
    /// A round that took longer than allowed.
    pub fn timed_out() -> Self {
        Self("the round timed out".into())
    }
}

impl From<sqlx::Error> for LeaseError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.to_string())
    }
}

/// A lease a member holds after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Held {
    /// The partition.
    pub partition: i32,
    /// The lease's token (raised each time it is taken).
    pub token: i64,
}

/// One row of the lease table, for the admin view and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// The partition.
    pub partition: i32,
    /// Its holder, if any.
    pub owner: Option<String>,
    /// Its token.
    pub token: i64,
    /// Whether it is live now (by the database's clock).
    pub live: bool,
    /// A member that asked for it.
    pub wanted_by: Option<String>,
}

/// The lease table of `group`'s `topic`, by partition.
pub async fn leases(pool: &PgPool, group: &str, topic: &str) -> Result<Vec<LeaseRow>, LeaseError> {
    type Row = (i32, Option<String>, i64, bool, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT partition, owner, token, expires_at > now(), wanted_by FROM partition_leases \
         WHERE consumer_group = $1 AND topic = $2 ORDER BY partition",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(partition, owner, token, live, wanted_by)| LeaseRow {
            partition,
            owner,
            token,
            live,
            wanted_by,
        })
        .collect())
}

/// One member's side of the lease table (see the module doc).
#[derive(Debug, Clone)]
pub struct Lessor {
    pool: PgPool,
    group: String,
    member: String,
    config: LeaseConfig,
}

impl Lessor {
    /// The lessor of `member` in `group`.
    pub fn new(pool: PgPool, group: &str, member: &str, config: LeaseConfig) -> Self {
        Self {
            pool,
            group: group.to_owned(),
            member: member.to_owned(),
            config,
        }
    }

    /// The member's name.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Its lease timing.
    pub fn config(&self) -> LeaseConfig {
        self.config
    }

    /// One round on `topic` (of `count` partitions) for a member whose
    /// share is `desired`: what it holds afterwards (see the module doc).
    pub async fn round(
        &self,
        topic: &str,
        count: i32,
        desired: &[i32],
    ) -> Result<Vec<Held>, LeaseError> {
        let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
        // One transaction: a round takes effect whole or not at all, so
        // what the member counts afterwards is what the table says (a lease
        // given back in step 1 is never still counted after a failed step).
        let mut tx = self.pool.begin().await?;
        // A row for every partition (new topics, more partitions), free
        // from now: a lease nobody's share takes waits `grace` from now.
        sqlx::query(
            "INSERT INTO partition_leases (consumer_group, topic, partition, expires_at) \
             SELECT $1, $2, p, now() FROM generate_series(0, $3 - 1) AS p ON CONFLICT DO NOTHING",
        )
        .bind(&self.group)
        .bind(topic)
        .bind(count)
        .execute(&mut *tx)
        .await?;
        // 1. Give back what lies outside the share and another member asked
        //    for within the lease time (an older request is stale: its
        //    member stopped asking, it died or lost the database).
        let given: Vec<(i32,)> = sqlx::query_as(
            "UPDATE partition_leases SET owner = NULL, expires_at = now() \
             WHERE consumer_group = $1 AND topic = $2 AND owner = $3 \
               AND NOT (partition = ANY($4)) AND wanted_by IS NOT NULL AND wanted_by <> $3 \
               AND wanted_at > now() - make_interval(secs => $5::double precision / 1000) \
             RETURNING partition",
        )
        .bind(&self.group)
        .bind(topic)
        .bind(&self.member)
        .bind(desired)
        .bind(ms(self.config.ttl))
        .fetch_all(&mut *tx)
        .await?;
        // 2. Renew, take the share's free leases, take long-lapsed leases.
        let mut held: Vec<(i32, i64)> = sqlx::query_as(
            "UPDATE partition_leases SET \
               token = CASE WHEN owner = $3 AND expires_at > now() THEN token ELSE token + 1 END, \
               owner = $3, \
               expires_at = now() + make_interval(secs => $5::double precision / 1000), \
               wanted_by = CASE WHEN wanted_by = $3 THEN NULL ELSE wanted_by END, \
               wanted_at = CASE WHEN wanted_by = $3 THEN NULL ELSE wanted_at END \
             WHERE consumer_group = $1 AND topic = $2 AND partition < $7 AND ( \
                  (owner = $3 AND expires_at > now()) \
               OR (partition = ANY($4) AND expires_at <= now()) \
               OR expires_at <= now() - make_interval(secs => $6::double precision / 1000)) \
             RETURNING partition, token",
        )
        .bind(&self.group)
        .bind(topic)
        .bind(&self.member)
        .bind(desired)
        .bind(ms(self.config.ttl))
        .bind(ms(self.config.grace))
        .bind(count)
        .fetch_all(&mut *tx)
        .await?;
        held.sort_unstable();
        // 3. Ask (again: requests are refreshed every round) for the
        //    share's partitions others hold, unless another member's fresh
        //    request is there first; stop asking for the others.
        sqlx::query(
            "UPDATE partition_leases SET \
               wanted_by = CASE WHEN partition = ANY($4) THEN $3 ELSE NULL END, \
               wanted_at = CASE WHEN partition = ANY($4) THEN now() ELSE NULL END \
             WHERE consumer_group = $1 AND topic = $2 AND ( \
                  (partition = ANY($4) AND owner <> $3 AND expires_at > now() \
                   AND (wanted_by IS NULL OR wanted_by = $3 \
                        OR wanted_at IS NULL \
                        OR wanted_at <= now() - make_interval(secs => $5::double precision / 1000))) \
               OR (wanted_by = $3 AND NOT (partition = ANY($4))))",
        )
        .bind(&self.group)
        .bind(topic)
        .bind(&self.member)
        .bind(desired)
        .bind(ms(self.config.ttl))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if !given.is_empty() {
            info!(group = %self.group, member = %self.member, %topic,
                  partitions = ?given.iter().map(|g| g.0).collect::<Vec<_>>(),
                  "partition leases given to the members that asked");
        }
        Ok(held
            .into_iter()
            .map(|(partition, token)| Held { partition, token })
            .collect())
    }

    /// Gives back every lease of the member and withdraws its requests (it
    /// stops reading).
    pub async fn release_all(&self) -> Result<(), LeaseError> {
        sqlx::query(
            "UPDATE partition_leases SET owner = NULL, expires_at = now() \
             WHERE consumer_group = $1 AND owner = $2",
        )
        .bind(&self.group)
        .bind(&self.member)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE partition_leases SET wanted_by = NULL, wanted_at = NULL \
             WHERE consumer_group = $1 AND wanted_by = $2",
        )
        .bind(&self.group)
        .bind(&self.member)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What a member may read: the leases of its last successful round, each
/// topic's until the member's own count of them runs out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    /// topic → (partitions held, counted until).
    topics: BTreeMap<String, (BTreeSet<i32>, Instant)>,
}

impl Holdings {
    /// A round that started at `started` left the member holding `held`.
    pub fn renewed(&mut self, topic: &str, held: &[Held], started: Instant, config: &LeaseConfig) {
        self.topics.insert(
            topic.to_owned(),
            (
                held.iter().map(|h| h.partition).collect(),
                started + config.held_for(),
            ),
        );
    }

    /// The partitions of `topic` the member may read at `now`.
    pub fn partitions(&self, topic: &str, now: Instant) -> BTreeSet<i32> {
        match self.topics.get(topic) {
            Some((held, until)) if now < *until => held.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Whether the member may still read (and commit) `partition` of
    /// `topic` at `now`.
    pub fn holds(&self, topic: &str, partition: i32, now: Instant) -> bool {
        matches!(self.topics.get(topic), Some((held, until)) if now < *until && held.contains(&partition))
    }

    /// After a round that failed (it may still have committed): counts
    /// only the partitions of `topic` in `desired`, as a lease outside the
    /// share may have been given back.
    pub fn keep_only(&mut self, topic: &str, desired: &[i32]) {
        if let Some((held, _)) = self.topics.get_mut(topic) {
            held.retain(|p| desired.contains(p));
        }
    }

    /// Forgets everything (the member stopped reading).
    pub fn clear(&mut self) {
        self.topics.clear();
    }
}

/// A [`Placement`] that reads only what it holds the lease of: the inner
/// placement says what the member wants (its share), a task runs the
/// member's [`Lessor`] rounds every `renew` while the member reads, and the
/// consumer reads the partitions the last round left it (see the module
/// doc). The task ends with the last clone of the placement.
pub struct Leased {
    inner: Arc<dyn Placement>,
    state: Arc<State>,
}

struct State {
    holdings: Mutex<Holdings>,
    /// Each topic's partition count, as the consumer last read it.
    counts: Mutex<BTreeMap<String, i32>>,
    /// How many of the member's streams are open (`joined` minus `left`): a
    /// restarted consumer opens its new stream before the old one's thread
    /// has closed, so a late `left` must not switch the new one off.
    active: AtomicUsize,
    wake: Notify,
}

impl Leased {
    /// Leases for `inner`'s member through `lessor`; starts the rounds' task
    /// (needs a Tokio runtime).
    pub fn start(inner: Arc<dyn Placement>, lessor: Lessor) -> Arc<Self> {
        let state = Arc::new(State {
            holdings: Mutex::new(Holdings::default()),
            counts: Mutex::new(BTreeMap::new()),
            active: AtomicUsize::new(0),
            wake: Notify::new(),
        });
        tokio::spawn(rounds(Arc::downgrade(&state), Arc::clone(&inner), lessor));
        Arc::new(Self { inner, state })
    }
}

impl State {
    fn holdings(&self) -> std::sync::MutexGuard<'_, Holdings> {
        self.holdings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counts(&self) -> BTreeMap<String, i32> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The member's rounds, while its placement lives.
async fn rounds(state: Weak<State>, inner: Arc<dyn Placement>, lessor: Lessor) {
    let config = lessor.config;
    let mut was_active = false;
    while let Some(s) = state.upgrade() {
        let active = s.active.load(Ordering::Acquire) > 0;
        if active {
            for (topic, count) in s.counts() {
                let desired = inner.partitions(&topic, count);
                let started = Instant::now();
                let round =
                    tokio::time::timeout(config.held_for(), lessor.round(&topic, count, &desired))
                        .await
                        .unwrap_or_else(|_| Err(LeaseError::timed_out()));
                match round {
                    Ok(held) => {
                        let mut holdings = s.holdings();
                        let before = holdings.partitions(&topic, started);
                        holdings.renewed(&topic, &held, started, &config);
                        let now: BTreeSet<i32> = held.iter().map(|h| h.partition).collect();
                        drop(holdings);
                        metrics::gauge!(crate::telemetry::PARTITION_LEASES, "topic" => topic.clone())
                            .set(now.len() as f64);
                        if before != now {
                            info!(member = %lessor.member, %topic, held = ?held, wanted = ?desired,
                                  "partition leases held");
                        }
                    }
                    Err(error) => {
                        s.holdings().keep_only(&topic, &desired);
                        metrics::counter!(crate::telemetry::PARTITION_LEASE_ERRORS).increment(1);
                        warn!(member = %lessor.member, %topic, %error,
                              "cannot renew the partition leases (reading stops when they run out)");
                    }
                }
            }
        } else if was_active {
            s.holdings().clear();
            match lessor.release_all().await {
                Ok(()) => debug!(member = %lessor.member, "partition leases given back"),
                Err(error) => {
                    metrics::counter!(crate::telemetry::PARTITION_LEASE_ERRORS).increment(1);
                    warn!(member = %lessor.member, %error,
                          "cannot give the partition leases back (they lapse by themselves)");
                }
            }
        }
        was_active = active;
        let wake = Arc::clone(&s);
        drop(s);
        let _ = tokio::time::timeout(config.renew, wake.wake.notified()).await;
    }
    // The placement is gone: give the leases back.
    if was_active {
        let _ = lessor.release_all().await;
    }
}

impl Placement for Leased {
    fn share(&self) -> Share {
        self.inner.share()
    }

    fn partitions(&self, topic: &str, _count: i32) -> Vec<i32> {
        self.state
            .holdings()
            .partitions(topic, Instant::now())
            .into_iter()
            .collect()
    }

    fn may_commit(&self, topic: &str, partition: i32) -> bool {
        self.state
            .holdings()
            .holds(topic, partition, Instant::now())
    }

    fn counts(&self, counts: &BTreeMap<String, i32>) {
        let mut mine = self.state.counts.lock().unwrap_or_else(|p| p.into_inner());
        if *mine != *counts {
            *mine = counts.clone();
            drop(mine);
            self.state.wake.notify_one();
        }
    }

    fn member(&self) -> String {
        self.inner.member()
    }

    fn joined(&self) {
        self.inner.joined();
        self.state.active.fetch_add(1, Ordering::AcqRel);
        self.state.wake.notify_one();
    }

    fn left(&self) {
        self.inner.left();
        let was = self
            .state
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            })
            .unwrap_or(0);
        if was <= 1 {
            self.state.holdings().clear();
        }
        self.state.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(ps: &[i32]) -> Vec<Held> {
        ps.iter()
            .map(|p| Held {
                partition: *p,
                token: 1,
            })
            .collect()
    }

    #[test]
    fn a_member_stops_counting_its_lease_before_the_database_does() {
        let config = LeaseConfig {
            ttl: Duration::from_secs(6),
            renew: Duration::from_secs(1),
            grace: Duration::from_secs(2),
        };
        let t0 = Instant::now();
        let mut h = Holdings::default();
        h.renewed("t", &held(&[0, 3]), t0, &config);
        let s = Duration::from_secs;
        assert_eq!(h.partitions("t", t0 + s(4)), BTreeSet::from([0, 3]));
        assert!(h.holds("t", 3, t0 + s(4)));
        assert!(!h.holds("t", 1, t0 + s(4)));
        // No renewal: at ttl - renew after the round's start it reads and
        // commits nothing, while the database still counts the lease (it
        // counts from a later now(), for ttl).
        assert!(h.partitions("t", t0 + s(5)).is_empty());
        assert!(!h.holds("t", 3, t0 + s(5)));
        assert!(h.partitions("other", t0).is_empty());
        // A later round renews.
        h.renewed("t", &held(&[3]), t0 + s(4), &config);
        assert_eq!(h.partitions("t", t0 + s(8)), BTreeSet::from([3]));
        h.clear();
        assert!(h.partitions("t", t0 + s(4)).is_empty());
    }
}
