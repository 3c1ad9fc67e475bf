//! Reading records from Kafka as a consumer-group member: the
//! [`OpenStream`]/[`MessageStream`] ports of the consumer actors.
//!
//! [`KafkaStreams::open`] makes a new group member ([`KafkaStream`]) each time
//! a consumer starts or is restarted. Offsets are never committed
//! automatically (`enable.auto.commit=false`, `enable.auto.offset.store=false`):
//! only [`MessageStream::commit`], which the pipeline calls after the batch's
//! database transaction (and the cache update), moves them. A group without
//! committed offsets starts at the earliest message (`auto.offset.reset=earliest`).
//!
//! **Threading.** librdkafka's consumer calls block, so each member owns one
//! OS thread that holds the [`BaseConsumer`] and serves `next_batch` and
//! `commit` requests sent over a channel; the async side only awaits the
//! answer. A batch is one blocking `poll` for the first message (up to
//! `wait`) and then non-blocking polls for what librdkafka has already
//! fetched, up to `max`, so a batch costs one channel round trip however
//! large it is. Dropping the stream ends the thread, which closes the
//! consumer (it leaves the group, so its partitions move at once).
//!
//! **Delivery.** A member returns each fetched message once: a batch that is
//! never committed is not returned again by the *same* member, but by the
//! next member that owns its partition (a restarted consumer, or another node
//! after a rebalance), which resumes from the committed offsets. The consumer
//! actor fails on any error in a cycle and is restarted with a fresh member,
//! so an uncommitted batch is always delivered again.
//!
//! **Placement.** A member either joins the group through the broker's group
//! protocol (`subscribe`, [`KafkaStreams::new`]), or is given its partitions
//! by a [`Placement`] ([`KafkaStreams::placed`]): before every batch the
//! member asks its placement for its [`Share`] and, when the share or a
//! topic's partition count changed, unassigns the partitions it no longer
//! reads and assigns the new ones (`incremental_assign`), which resume from
//! the group's committed offsets. Commits still go to the group. See
//! [`super::placement`] for why, and why a moment of overlap is harmless.
//!
//! **Rebalances.** Assignment changes are served inside `poll`, i.e. only
//! while a `next_batch` runs, between the pipeline's cycles, so a batch that
//! was returned is normally committed (or abandoned) before its partitions can
//! move. Two guards cover the rest:
//!
//! * messages of a partition revoked while a `next_batch` was collecting them
//!   are dropped from that batch (the partition's new owner resumes from the
//!   committed offset and gets them);
//! * `commit` commits only partitions this member holds now, so an old owner
//!   never commits a partition a new owner took (the broker also refuses
//!   commits from a stale group generation; that is a `BusError::Commit`).
//!
//! Should a commit land late anyway, the worst case is a redelivery: offsets
//! are only ever committed after the database commit, and the store ignores
//! ticks it already holds and applies a history bar only once, so a
//! redelivered batch changes no bar.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::config::KafkaConfig;
use super::placement::{self, Placement, Share};
use crate::consumer::OpenStream;
use crate::ports::{BusError, MessageStream, RawMessage};

/// Opens consumer-group members on the brokers of a [`KafkaConfig`].
#[derive(Clone)]
pub struct KafkaStreams {
    config: KafkaConfig,
    placement: Option<Arc<dyn Placement>>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams")
            .field("config", &self.config)
            .field("placed", &self.placement.is_some())
            .finish()
    }
}

impl KafkaStreams {
    /// Members on `config`'s brokers (its `client_id` and `extra` settings
    /// apply to them too), given their partitions by the broker's group
    /// protocol.
    pub fn new(config: KafkaConfig) -> Self {
        Self {
            config,
            placement: None,
        }
    }

    /// Members given their partitions by `placement` (see the module doc)
    /// instead of the broker's group protocol. Every member of a group must
    /// be opened the same way.
    pub fn placed(config: KafkaConfig, placement: Arc<dyn Placement>) -> Self {
        Self {
            config,
            placement: Some(placement),
        }
    }

    /// The same brokers, with members placed by `placement`.
    pub fn with_placement(&self, placement: Arc<dyn Placement>) -> Self {
        Self::placed(self.config.clone(), placement)
    }

    /// The configuration.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// Subscribes a new member of `group` to `topics` (blocking-free: the
    /// group join happens on the member's first `next_batch`).
    pub fn open_member(&self, group: &str, topics: &[String]) -> Result<KafkaStream, BusError> {
        let subscribe_error = |reason: String| BusError::Subscribe {
            group: group.to_owned(),
            topics: topics.to_vec(),
            reason,
        };
        self.config
            .validate()
            .map_err(|e| subscribe_error(e.to_string()))?;
        if topics.is_empty() {
            return Err(subscribe_error("no topics".into()));
        }
        let shared = Arc::new(Shared::default());
        let mut cc = self.config.client_config();
        cc.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // The lag gauge (`MemberContext::stats`).
            .set("statistics.interval.ms", "2000")
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait_max_ms.to_string(),
            );
        let consumer: BaseConsumer<MemberContext> = cc
            .create_with_context(MemberContext {
                shared: Arc::clone(&shared),
                group: group.to_owned(),
            })
            .map_err(|e| subscribe_error(e.to_string()))?;
        if self.placement.is_none() {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&names)
                .map_err(|e| subscribe_error(e.to_string()))?;
        }
        let (requests, rx) = mpsc::channel();
        let member = Member {
            consumer,
            shared: Arc::clone(&shared),
            group: group.to_owned(),
            placed: self.placement.clone().map(|placement| Placed {
                id: NEXT_PLACED.fetch_add(1, Ordering::Relaxed),
                placement,
                topics: topics.to_vec(),
                share: None,
                partitions: BTreeMap::new(),
                checked: None,
                metadata_timeout: Duration::from_millis(
                    self.config.admin_timeout_ms.clamp(100, 5_000),
                ),
            }),
        };
        let thread = std::thread::Builder::new()
            .name(format!("kafka-consumer-{group}"))
            .spawn(move || member.serve(rx))
            .map_err(|e| subscribe_error(format!("cannot start the consumer thread: {e}")))?;
        if let Some(placement) = &self.placement {
            placement.joined();
        }
        info!(
            group,
            ?topics,
            placed = self.placement.is_some(),
            "kafka consumer member opened"
        );
        Ok(KafkaStream {
            requests,
            thread,
            group: group.to_owned(),
            shared: Arc::clone(&shared),
        })
    }
}

impl OpenStream for KafkaStreams {
    type Stream = KafkaStream;

    async fn open(&self, group: &str, topics: &[String]) -> Result<KafkaStream, BusError> {
        self.open_member(group, topics)
    }
}

/// What the member's thread and its rebalance callbacks share.
#[derive(Debug, Default)]
struct Shared {
    /// The partitions this member holds now.
    assigned: Mutex<HashSet<(String, i32)>>,
    /// Counts revocations, so a batch can tell one happened while it was
    /// being collected.
    revocations: AtomicU64,
}

impl Shared {
    /// The partitions this member holds now.
    fn assigned(&self) -> std::sync::MutexGuard<'_, HashSet<(String, i32)>> {
        self.assigned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The member no longer holds `partitions` (a revocation: a batch being
    /// collected drops their messages).
    fn release(&self, partitions: &[(String, i32)]) {
        self.revocations.fetch_add(1, Ordering::AcqRel);
        let mut assigned = self.assigned();
        for p in partitions {
            assigned.remove(p);
        }
    }

    /// The member holds `partitions` too.
    fn take(&self, partitions: &[(String, i32)]) {
        self.assigned().extend(partitions.iter().cloned());
    }

    fn holds(&self, topic: &str, partition: i32) -> bool {
        self.assigned().contains(&(topic.to_owned(), partition))
    }

    /// The partitions this member holds now, sorted.
    fn sorted(&self) -> Vec<(String, i32)> {
        let mut held: Vec<_> = self.assigned().iter().cloned().collect();
        held.sort();
        held
    }
}

/// Tracks the assignment as rebalances happen.
/// The latest lag librdkafka reported for each (topic, partition) a member
/// of this process reads, with when it was reported.
static LAGS: std::sync::LazyLock<std::sync::Mutex<Lags>> =
    std::sync::LazyLock::new(Default::default);

/// (topic, partition) → (lag, when reported).
type Lags = BTreeMap<(String, i32), (i64, Instant)>;

/// How long a reported lag counts: statistics come every 2 s, so a
/// partition not reported for this long is no longer read here (placed
/// elsewhere, or its member stopped).
const LAG_FRESH: Duration = Duration::from_secs(10);

/// The largest consumer lag this process's members reported within the
/// last few seconds, `None` when none did.
pub fn max_consumer_lag() -> Option<i64> {
    fresh_max(
        &LAGS.lock().unwrap_or_else(|e| e.into_inner()),
        Instant::now(),
    )
}

/// The largest lag among `lags` reported within [`LAG_FRESH`] of `now`.
fn fresh_max(lags: &Lags, now: Instant) -> Option<i64> {
    lags.values()
        .filter(|(_, at)| now.saturating_duration_since(*at) <= LAG_FRESH)
        .map(|(lag, _)| *lag)
        .max()
}

struct MemberContext {
    shared: Arc<Shared>,
    group: String,
}

impl ClientContext for MemberContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the lag of
    /// each partition this member reads, as it computes it (the high
    /// watermark of its last fetch minus the committed offset).
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for p in topic.partitions.values() {
                if p.partition < 0 || !p.desired || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    crate::telemetry::CONSUMER_LAG,
                    "topic" => topic.topic.clone(),
                    "partition" => p.partition.to_string()
                )
                .set(p.consumer_lag as f64);
                LAGS.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    (topic.topic.clone(), p.partition),
                    (p.consumer_lag, Instant::now()),
                );
            }
        }
    }
}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            self.shared.release(&revoked);
            info!(group = %self.group, partitions = ?revoked, "kafka partitions revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let added = partitions(tpl);
                self.shared.take(&added);
                info!(group = %self.group, partitions = ?added, "kafka partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(group = %self.group, error = %e, "kafka rebalance failed"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// One committed position: the offset after the last processed message.
type CommitOffset = ((String, i32), i64);

enum Request {
    Batch {
        max: usize,
        wait: Duration,
        reply: oneshot::Sender<Result<Vec<RawMessage>, BusError>>,
    },
    Commit {
        offsets: Vec<CommitOffset>,
        reply: oneshot::Sender<Result<(), BusError>>,
    },
}

/// The member's thread: owns the consumer.
struct Member {
    consumer: BaseConsumer<MemberContext>,
    shared: Arc<Shared>,
    group: String,
    /// Set when a [`Placement`] gives the member its partitions.
    placed: Option<Placed>,
}

/// How often a placed member re-reads its topics' partition counts (a topic
/// created later, or given more partitions).
const METADATA_REFRESH: Duration = Duration::from_secs(10);
/// How soon a placed member retries when a topic's metadata is missing.
const METADATA_RETRY: Duration = Duration::from_secs(1);

/// Numbers placed members for the process-wide [`placement::placements`].
static NEXT_PLACED: AtomicU64 = AtomicU64::new(0);

/// A placed member's view.
struct Placed {
    /// Its number in [`placement::placements`].
    id: u64,
    placement: Arc<dyn Placement>,
    topics: Vec<String>,
    /// The share the current assignment was made for.
    share: Option<Share>,
    /// Each topic's partition count, as last read.
    partitions: BTreeMap<String, i32>,
    /// When the partition counts were last read, and whether all were found.
    checked: Option<(Instant, bool)>,
    metadata_timeout: Duration,
}

impl Member {
    fn serve(mut self, requests: mpsc::Receiver<Request>) {
        for request in requests {
            match request {
                Request::Batch { max, wait, reply } => {
                    let _ = reply.send(self.batch(max, wait));
                }
                Request::Commit { offsets, reply } => {
                    let _ = reply.send(self.commit(offsets));
                }
            }
        }
        if let Some(placed) = &self.placed {
            placement::forget(placed.id);
            placed.placement.left();
        }
        // The stream was dropped: closing the consumer (on drop) leaves the group.
        debug!(group = %self.group, "kafka consumer member closing");
    }

    /// A placed member's assignment, brought up to date with its share and
    /// its topics' partition counts. Errors reading metadata are logged and
    /// retried; the current assignment stays meanwhile.
    fn place(&mut self) -> Result<(), BusError> {
        let Some(placed) = self.placed.as_mut() else {
            return Ok(());
        };
        let share = placed.placement.share();
        let now = Instant::now();
        let stale = match placed.checked {
            None => true,
            Some((at, complete)) => {
                let every = if complete {
                    METADATA_REFRESH
                } else {
                    METADATA_RETRY
                };
                now.saturating_duration_since(at) >= every
            }
        };
        let mut counts_changed = false;
        if stale {
            let mut complete = true;
            for topic in &placed.topics {
                let count = match self
                    .consumer
                    .fetch_metadata(Some(topic), placed.metadata_timeout)
                {
                    Ok(md) => md
                        .topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map_or(0, |t| t.partitions().len() as i32),
                    Err(error) => {
                        warn!(group = %self.group, %topic, %error, "cannot read the topic's partitions (retrying)");
                        complete = false;
                        continue;
                    }
                };
                if count == 0 {
                    debug!(group = %self.group, %topic, "the topic has no partitions yet");
                    complete = false;
                }
                if placed.partitions.get(topic) != Some(&count) {
                    placed.partitions.insert(topic.clone(), count);
                    counts_changed = true;
                }
            }
            placed.checked = Some((now, complete));
        }
        if counts_changed {
            placed.placement.counts(&placed.partitions);
        }
        // What the placement gives the member now (its share, or the leases
        // it holds: asked every batch, as leases change between batches).
        let want: BTreeSet<(String, i32)> = placed
            .partitions
            .iter()
            .flat_map(|(topic, count)| {
                placed
                    .placement
                    .partitions(topic, *count)
                    .into_iter()
                    .filter(move |p| (0..*count).contains(p))
                    .map(move |p| (topic.clone(), p))
            })
            .collect();
        let have: BTreeSet<(String, i32)> = self.shared.sorted().into_iter().collect();
        let gone: Vec<_> = have.difference(&want).cloned().collect();
        let added: Vec<_> = want.difference(&have).cloned().collect();
        let assign_error = |e: KafkaError| BusError::Subscribe {
            group: self.group.clone(),
            topics: placed.topics.clone(),
            reason: e.to_string(),
        };
        if !gone.is_empty() {
            let mut tpl = TopicPartitionList::with_capacity(gone.len());
            for (t, p) in &gone {
                tpl.add_partition(t, *p);
            }
            self.shared.release(&gone);
            self.consumer
                .incremental_unassign(&tpl)
                .map_err(assign_error)?;
        }
        if !added.is_empty() {
            let mut tpl = TopicPartitionList::with_capacity(added.len());
            for (t, p) in &added {
                // Invalid = the group's committed offset, else auto.offset.reset.
                tpl.add_partition_offset(t, *p, Offset::Invalid)
                    .map_err(assign_error)?;
            }
            self.consumer
                .incremental_assign(&tpl)
                .map_err(assign_error)?;
            self.shared.take(&added);
        }
        let changed = placed.share != Some(share) || !gone.is_empty() || !added.is_empty();
        if !changed {
            return Ok(());
        }
        info!(
            group = %self.group,
            member = %placed.placement.member(),
            share = %share,
            released = ?gone,
            taken = ?added,
            "kafka partitions placed"
        );
        placed.share = Some(share);
        let partitions = self.shared.sorted();
        placement::record(
            placed.id,
            placement::PlacementStatus {
                member: placed.placement.member(),
                group: self.group.clone(),
                share,
                partitions,
            },
        );
        Ok(())
    }

    fn batch(&mut self, max: usize, wait: Duration) -> Result<Vec<RawMessage>, BusError> {
        self.place()?;
        let revocations = self.shared.revocations.load(Ordering::Acquire);
        let deadline = Instant::now() + wait;
        let mut out = Vec::with_capacity(max.min(4_096));
        // The first message: wait for it (rebalance and commit events make
        // `poll` return early without a message).
        while out.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.consumer.poll(left) {
                Some(Ok(m)) => out.push(raw(&m)),
                Some(Err(e)) => self.check(e)?,
                None => {}
            }
            if left.is_zero() {
                break;
            }
        }
        // Then what librdkafka has already fetched.
        while !out.is_empty() && out.len() < max {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => out.push(raw(&m)),
                Some(Err(e)) => {
                    self.check(e)?;
                    break;
                }
                None => break,
            }
        }
        if self.shared.revocations.load(Ordering::Acquire) != revocations {
            let before = out.len();
            out.retain(|m| self.shared.holds(&m.topic, m.partition));
            if out.len() != before {
                info!(
                    group = %self.group,
                    dropped = before - out.len(),
                    "dropped messages of partitions revoked during the batch"
                );
            }
        }
        Ok(out)
    }

    /// A consumer error is logged and survived (librdkafka retries by itself)
    /// unless the client is fatally broken.
    fn check(&self, error: KafkaError) -> Result<(), BusError> {
        if let Some((code, reason)) = self.consumer.client().fatal_error() {
            return Err(BusError::Receive {
                reason: format!("fatal ({code}): {reason}"),
            });
        }
        warn!(group = %self.group, %error, "kafka consumer error (retrying)");
        Ok(())
    }

    fn commit(&self, offsets: Vec<CommitOffset>) -> Result<(), BusError> {
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        let mut skipped = 0;
        for ((topic, partition), next) in &offsets {
            // A placed member commits only while its placement allows (a
            // leased one: while it counts the partition's lease).
            let allowed = self
                .placed
                .as_ref()
                .is_none_or(|p| p.placement.may_commit(topic, *partition));
            if allowed && self.shared.holds(topic, *partition) {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(|e| BusError::Commit {
                        reason: e.to_string(),
                    })?;
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            info!(
                group = %self.group,
                skipped,
                "not committing partitions this member no longer holds"
            );
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| BusError::Commit {
                reason: e.to_string(),
            })?;
        debug!(group = %self.group, partitions = tpl.count(), "kafka offsets committed");
        Ok(())
    }
}

fn raw(m: &BorrowedMessage<'_>) -> RawMessage {
    RawMessage {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().unwrap_or_default().to_vec(),
    }
}

/// A consumer-group member: see the module doc. Dropping it leaves the group.
#[derive(Debug)]
pub struct KafkaStream {
    requests: mpsc::Sender<Request>,
    thread: std::thread::JoinHandle<()>,
    group: String,
    shared: Arc<Shared>,
}

impl KafkaStream {
    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The partitions this member holds now, as (topic, partition), sorted
    /// (empty until it joined the group; it changes only during `next_batch`).
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.shared.sorted()
    }

    /// Leaves the group and waits until the consumer is closed (dropping the
    /// stream does the same without waiting).
    pub async fn close(self) {
        let KafkaStream {
            requests, thread, ..
        } = self;
        drop(requests);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, BusError>>) -> Request,
        gone: impl Fn(String) -> BusError,
    ) -> Result<T, BusError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(request(tx))
            .map_err(|_| gone("the consumer thread is gone".into()))?;
        rx.await
            .map_err(|_| gone("the consumer thread is gone".into()))?
    }
}

impl MessageStream for KafkaStream {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RawMessage>, BusError> {
        let max = max.max(1);
        self.ask(
            |reply| Request::Batch { max, wait, reply },
            |reason| BusError::Receive { reason },
        )
        .await
    }

    async fn commit(&mut self, messages: &[RawMessage]) -> Result<(), BusError> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in messages {
            let after = m.offset + 1;
            next.entry((m.topic.as_str(), m.partition))
                .and_modify(|o| *o = (*o).max(after))
                .or_insert(after);
        }
        if next.is_empty() {
            return Ok(());
        }
        let offsets = next
            .into_iter()
            .map(|((t, p), o)| ((t.to_owned(), p), o))
            .collect();
        self.ask(
            |reply| Request::Commit { offsets, reply },
            |reason| BusError::Commit { reason },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_no_longer_reported_stops_counting_for_the_lag() {
        let t0 = Instant::now();
        let mut lags = BTreeMap::new();
        lags.insert(("t".to_owned(), 0), (5_000, t0));
        lags.insert(("t".to_owned(), 1), (7, t0 + Duration::from_secs(9)));
        assert_eq!(fresh_max(&lags, t0 + Duration::from_secs(9)), Some(5_000));
        // Partition 0 moved to another node: its last lag goes stale.
        assert_eq!(fresh_max(&lags, t0 + Duration::from_secs(12)), Some(7));
        assert_eq!(fresh_max(&lags, t0 + Duration::from_secs(60)), None);
    }
}
