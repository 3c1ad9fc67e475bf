//! [`MemoryBus`]: the in-process record bus, with the behaviour of Kafka that
//! the producer and the consumers rely on. It is the [`RecordBus`] (topics
//! with partitions), the [`OpenStream`] (consumer groups whose members read
//! [`MemoryStream`]s with explicitly committed offsets) and the
//! [`DeadLetters`] (`{topic}.dlq`) of one process.
//!
//! **Topics and partitions.** [`RecordBus::ensure_topic`] creates a topic
//! with its partitions (an existing topic stays as it is). A record is
//! encoded with the Kafka schema ([`crate::kafka::schema`]), so payloads are
//! the same bytes as on Kafka, and keyed by its instrument; the partition is
//! CRC-32 of the key modulo the partition count, which is librdkafka's
//! default partitioner, so an instrument lands in the partition it would have
//! on Kafka and all records of one instrument keep their order. Publishing
//! to a topic that does not exist is an error (as on a broker without
//! automatic topic creation), and so is publishing nothing but a failure: an
//! `Ok` means every record is appended.
//!
//! **Consumer groups.** [`OpenStream::open`] adds a member to a group (a
//! group may subscribe to topics that do not exist yet). The partitions of
//! the group's topics are spread over its members (partition `p` of a topic
//! goes to member `p mod n` of the `n` members subscribed to it, in joining
//! order), and spread again whenever a member joins or leaves (dropping a
//! [`MemoryStream`] leaves the group) or a subscribed topic is created. A
//! member reads a partition from the group's committed offset, or from the
//! earliest retained message when the group has committed none. Offsets are
//! committed only by [`MessageStream::commit`] (the offset after the last
//! message, per partition), never automatically, and only for partitions the
//! member holds at that moment. As on Kafka, one member returns each message
//! once; a message that was never committed is delivered again to the next
//! member that owns its partition (a restarted consumer, or another member
//! after a rebalance). Committed offsets live as long as the bus.
//!
//! **Retention (bounded memory).** Checked for a partition on every publish
//! to it and every commit of it:
//!
//! * a message is dropped once it is older than [`Retention::min_age`] and
//!   every consumer group that ever subscribed to its topic has committed
//!   past it (a topic no group has subscribed to keeps its messages, so a
//!   consumer that starts after the producer misses nothing);
//! * whatever the groups, a partition holds at most
//!   [`Retention::max_messages`]; beyond that the oldest messages are dropped
//!   even if not consumed (Kafka's size retention; logged as a warning and
//!   counted by [`MemoryBus::evicted`]), and a member behind them resumes at
//!   the earliest message left.
//!
//! **Dead letters.** [`DeadLetters::dead_letter`] appends each message,
//! unchanged (key and payload), to `{topic}.dlq` (created with one partition
//! on first use) with the headers of the Kafka dead letters
//! ([`DLQ_REASON`], [`DLQ_TOPIC`], [`DLQ_PARTITION`], [`DLQ_OFFSET`]);
//! [`MemoryBus::messages`] reads any topic with its headers.
//!
//! Nothing survives the process: the bus is the transport of a single-process
//! platform, where the producer's backfill and history repair cover a
//! restart.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

use tokio::sync::Notify;

use crate::consumer::OpenStream;
use crate::domain::Record;
use crate::kafka::admin::MAX_PARTITIONS;
use crate::kafka::publisher::{
    dead_letter_topic, DLQ_KIND, DLQ_OFFSET, DLQ_PARTITION, DLQ_PARTITIONS, DLQ_REASON, DLQ_TOPIC,
};
use crate::kafka::schema;
use crate::ports::{BusError, DeadLetter, DeadLetters, MessageStream, RawMessage, RecordBus};

/// When retained messages are dropped: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// A message consumed by every group is kept at least this long.
    pub min_age: Duration,
    /// The most messages a partition holds, consumed or not.
    pub max_messages: usize,
}

impl Default for Retention {
    /// One minute; 250 000 messages per partition.
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(60),
            max_messages: 250_000,
        }
    }
}

/// A message as the bus holds it, with its headers (for inspection, e.g. of
/// dead letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The payload.
    pub payload: Vec<u8>,
    /// Headers (name, value), in order.
    pub headers: Vec<(String, String)>,
}

/// One appended message.
#[derive(Debug)]
struct Entry {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, String)>,
    appended: Instant,
}

/// A partition's retained log: `log[0]` has offset `start`.
#[derive(Debug, Default)]
struct Partition {
    start: i64,
    log: VecDeque<Entry>,
}

impl Partition {
    /// The offset the next message gets.
    fn end(&self) -> i64 {
        self.start + self.log.len() as i64
    }
}

#[derive(Debug)]
struct Topic {
    partitions: Vec<Partition>,
}

/// A (topic, partition) pair.
type Tp = (String, i32);

/// A message to append: key, payload, headers.
type Outgoing = (Option<Vec<u8>>, Vec<u8>, Vec<(String, String)>);

#[derive(Debug, Default)]
struct Group {
    /// Member id → its topics.
    members: BTreeMap<u64, Vec<String>>,
    /// Member id → the partitions it holds.
    assignment: BTreeMap<u64, BTreeSet<Tp>>,
    /// The offset after the last committed message, per partition.
    committed: HashMap<Tp, i64>,
    /// Every topic a member of this group ever subscribed to (retention).
    topics: BTreeSet<String>,
    /// Grows with every rebalance.
    generation: u64,
}

#[derive(Debug, Default)]
struct State {
    topics: BTreeMap<String, Topic>,
    groups: BTreeMap<String, Group>,
    next_member: u64,
    evicted: u64,
}

impl State {
    /// Spreads the partitions of `group`'s topics over its members.
    fn rebalance(&mut self, group: &str) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        g.generation += 1;
        let mut assignment: BTreeMap<u64, BTreeSet<Tp>> =
            g.members.keys().map(|m| (*m, BTreeSet::new())).collect();
        let wanted: BTreeSet<&String> = g.members.values().flatten().collect();
        for topic in wanted {
            let Some(t) = self.topics.get(topic) else {
                continue;
            };
            let members: Vec<u64> = g
                .members
                .iter()
                .filter(|(_, topics)| topics.contains(topic))
                .map(|(m, _)| *m)
                .collect();
            for p in 0..t.partitions.len() {
                let owner = members[p % members.len()];
                if let Some(set) = assignment.get_mut(&owner) {
                    set.insert((topic.clone(), p as i32));
                }
            }
        }
        tracing::debug!(
            group,
            generation = g.generation,
            ?assignment,
            "memory bus rebalance"
        );
        g.assignment = assignment;
    }

    /// Applies the retention rule to one partition.
    fn retain(&mut self, retention: Retention, topic: &str, partition: i32) {
        let tp = (topic.to_owned(), partition);
        // The lowest committed offset over every group that ever subscribed;
        // None when no group did (then only the size limit applies).
        let floor = self
            .groups
            .values()
            .filter(|g| g.topics.contains(topic))
            .map(|g| g.committed.get(&tp).copied().unwrap_or(i64::MIN))
            .min();
        let Some(p) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
        else {
            return;
        };
        if let Some(floor) = floor {
            while p.start < floor
                && p.log
                    .front()
                    .is_some_and(|e| e.appended.elapsed() >= retention.min_age)
            {
                p.log.pop_front();
                p.start += 1;
            }
        }
        let excess = p.log.len().saturating_sub(retention.max_messages);
        if excess > 0 {
            p.log.drain(..excess);
            p.start += excess as i64;
            self.evicted += excess as u64;
            tracing::warn!(
                topic,
                partition,
                evicted = excess,
                max_messages = retention.max_messages,
                "memory bus partition full: dropped its oldest messages"
            );
        }
    }

    /// Appends to `topic`; returns the partitions written.
    fn append(
        &mut self,
        topic: &str,
        messages: impl IntoIterator<Item = Outgoing>,
    ) -> Result<BTreeSet<i32>, String> {
        let t = self
            .topics
            .get_mut(topic)
            .ok_or_else(|| format!("unknown topic `{topic}`"))?;
        let n = t.partitions.len();
        let now = Instant::now();
        let mut written = BTreeSet::new();
        for (key, payload, headers) in messages {
            let p = key.as_deref().map_or(0, |k| (crc32(k) % n as u32) as usize);
            t.partitions[p].log.push_back(Entry {
                key,
                payload,
                headers,
                appended: now,
            });
            written.insert(p as i32);
        }
        Ok(written)
    }
}

/// What every clone of a bus shares.
#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// Woken on every append, topic creation and rebalance.
    changed: Notify,
    retention: Retention,
}

/// The in-process bus: see the module doc. Clones share one bus.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// An empty bus with the default [`Retention`].
    pub fn new() -> Self {
        Self::with_retention(Retention::default())
    }

    /// An empty bus with `retention`.
    pub fn with_retention(retention: Retention) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::default(),
                changed: Notify::new(),
                retention,
            }),
        }
    }

    /// The retention rule.
    pub fn retention(&self) -> Retention {
        self.inner.retention
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is complete before it can panic.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition of a message with `key` in a topic of `partitions`
    /// partitions: CRC-32 (IEEE) of the key modulo the count, as librdkafka's
    /// default partitioner does.
    pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
        (crc32(key) % partitions.max(1) as u32) as i32
    }

    /// The partition count of `topic`, if it exists.
    pub fn partitions(&self, topic: &str) -> Option<i32> {
        self.lock()
            .topics
            .get(topic)
            .map(|t| t.partitions.len() as i32)
    }

    /// Per partition of `topic`: (the earliest retained offset, the offset
    /// the next message gets).
    pub fn offsets(&self, topic: &str) -> Option<Vec<(i64, i64)>> {
        self.lock()
            .topics
            .get(topic)
            .map(|t| t.partitions.iter().map(|p| (p.start, p.end())).collect())
    }

    /// The offset `group` committed for `topic`'s `partition` (the offset
    /// after the last processed message), if any.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.lock()
            .groups
            .get(group)?
            .committed
            .get(&(topic.to_owned(), partition))
            .copied()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<String> {
        self.lock().topics.keys().cloned().collect()
    }

    /// The offset the next message of a partition gets (its high watermark).
    pub fn end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        let state = self.lock();
        let p = usize::try_from(partition).ok()?;
        Some(state.topics.get(topic)?.partitions.get(p)?.end())
    }

    /// Messages dropped by the size limit before every group consumed them.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// Every retained message of `topic`, by partition and offset.
    pub fn messages(&self, topic: &str) -> Vec<BusMessage> {
        let state = self.lock();
        let Some(t) = state.topics.get(topic) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (p, part) in t.partitions.iter().enumerate() {
            for (i, e) in part.log.iter().enumerate() {
                out.push(BusMessage {
                    topic: topic.to_owned(),
                    partition: p as i32,
                    offset: part.start + i as i64,
                    key: e.key.clone(),
                    payload: e.payload.clone(),
                    headers: e.headers.clone(),
                });
            }
        }
        out
    }

    /// Appends raw messages (any bytes, as a plain Kafka producer could) to
    /// `topic`, partitioned by key (no key: partition 0).
    pub fn publish_raw(
        &self,
        topic: &str,
        messages: &[(Option<&[u8]>, &[u8])],
    ) -> Result<(), BusError> {
        self.append(
            topic,
            messages
                .iter()
                .map(|(k, p)| (k.map(<[u8]>::to_vec), p.to_vec(), Vec::new()))
                .collect(),
        )
    }

    fn append(&self, topic: &str, messages: Vec<Outgoing>) -> Result<(), BusError> {
        let total = messages.len();
        if total == 0 {
            return Ok(());
        }
        let mut state = self.lock();
        let written = state
            .append(topic, messages)
            .map_err(|reason| BusError::Undelivered {
                topic: topic.to_owned(),
                failed: total,
                total,
                reason,
            })?;
        for p in written {
            state.retain(self.inner.retention, topic, p);
        }
        drop(state);
        self.inner.changed.notify_waiters();
        Ok(())
    }

    fn create_topic(&self, topic: &str, partitions: i32) -> Result<bool, BusError> {
        let invalid = |reason: &str| BusError::Topic {
            topic: topic.to_owned(),
            reason: reason.to_owned(),
        };
        if topic.is_empty()
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "a topic name is made of ASCII letters, digits, '.', '_' and '-'",
            ));
        }
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(invalid("a topic has 1 to 1000 partitions"));
        }
        let mut state = self.lock();
        if state.topics.contains_key(topic) {
            return Ok(false);
        }
        state.topics.insert(
            topic.to_owned(),
            Topic {
                partitions: (0..partitions).map(|_| Partition::default()).collect(),
            },
        );
        let groups: Vec<String> = state
            .groups
            .iter()
            .filter(|(_, g)| g.members.values().flatten().any(|t| t == topic))
            .map(|(name, _)| name.clone())
            .collect();
        for g in groups {
            state.rebalance(&g);
        }
        drop(state);
        tracing::info!(topic, partitions, "memory bus topic created");
        self.inner.changed.notify_waiters();
        Ok(true)
    }

    /// Adds a member to `group`, subscribed to `topics`.
    pub fn open_member(&self, group: &str, topics: &[String]) -> Result<MemoryStream, BusError> {
        if topics.is_empty() {
            return Err(BusError::Subscribe {
                group: group.to_owned(),
                topics: Vec::new(),
                reason: "no topics".into(),
            });
        }
        let mut state = self.lock();
        let member = state.next_member;
        state.next_member += 1;
        let g = state.groups.entry(group.to_owned()).or_default();
        g.members.insert(member, topics.to_vec());
        g.topics.extend(topics.iter().cloned());
        state.rebalance(group);
        drop(state);
        self.inner.changed.notify_waiters();
        tracing::info!(group, ?topics, member, "memory bus member subscribed");
        Ok(MemoryStream {
            bus: self.clone(),
            group: group.to_owned(),
            member,
            generation: 0,
            positions: BTreeMap::new(),
            rotate: 0,
        })
    }
}

impl RecordBus for MemoryBus {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), BusError> {
        self.create_topic(topic, partitions).map(|_| ())
    }

    async fn publish(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        let mut key = String::with_capacity(64);
        let messages = records
            .iter()
            .map(|r| {
                let mut payload = Vec::with_capacity(192);
                schema::encode_record(r, &mut payload);
                schema::write_key(r.instrument(), &mut key);
                (Some(key.as_bytes().to_vec()), payload, Vec::new())
            })
            .collect();
        self.append(topic, messages)
    }
}

impl MemoryBus {
    /// The (source partition, offset) of every dead letter of `source` held
    /// in its dead-letter topic `dlq`.
    fn dead_lettered(&self, dlq: &str, source: &str) -> HashSet<(i32, i64)> {
        let state = self.lock();
        let Some(t) = state.topics.get(dlq) else {
            return HashSet::new();
        };
        let header = |e: &Entry, name: &str| {
            e.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        t.partitions
            .iter()
            .flat_map(|p| p.log.iter())
            .filter(|e| header(e, DLQ_TOPIC).as_deref() == Some(source))
            .filter_map(|e| {
                Some((
                    header(e, DLQ_PARTITION)?.parse().ok()?,
                    header(e, DLQ_OFFSET)?.parse().ok()?,
                ))
            })
            .collect()
    }
}

impl DeadLetters for MemoryBus {
    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<usize, BusError> {
        let mut by_topic: BTreeMap<&str, Vec<&DeadLetter>> = BTreeMap::new();
        for l in letters {
            by_topic
                .entry(l.message.topic.as_str())
                .or_default()
                .push(l);
        }
        let mut written = 0;
        for (source, mut letters) in by_topic {
            let dlq = dead_letter_topic(source);
            self.create_topic(&dlq, DLQ_PARTITIONS)?;
            // Once per message: the whole (in-memory) dead-letter topic is
            // the record of what is written.
            let done = self.dead_lettered(&dlq, source);
            let given = letters.len();
            letters.retain(|l| !done.contains(&(l.message.partition, l.message.offset)));
            letters.sort_by_key(|l| (l.message.partition, l.message.offset));
            letters.dedup_by_key(|l| (l.message.partition, l.message.offset));
            let skipped = given - letters.len();
            if letters.is_empty() {
                tracing::debug!(topic = source, skipped, "dead letters already written");
                continue;
            }
            self.append(
                &dlq,
                letters
                    .iter()
                    .map(|l| {
                        let m = &l.message;
                        (
                            m.key.clone(),
                            m.payload.clone(),
                            vec![
                                (DLQ_REASON.to_owned(), l.reason.clone()),
                                (DLQ_KIND.to_owned(), l.kind.clone()),
                                (DLQ_TOPIC.to_owned(), m.topic.clone()),
                                (DLQ_PARTITION.to_owned(), m.partition.to_string()),
                                (DLQ_OFFSET.to_owned(), m.offset.to_string()),
                            ],
                        )
                    })
                    .collect(),
            )?;
            written += letters.len();
            tracing::warn!(
                topic = source,
                dead_letter_topic = %dlq,
                count = letters.len(),
                skipped,
                "dead-lettered messages"
            );
        }
        Ok(written)
    }
}

impl OpenStream for MemoryBus {
    type Stream = MemoryStream;

    async fn open(&self, group: &str, topics: &[String]) -> Result<MemoryStream, BusError> {
        self.open_member(group, topics)
    }
}

/// A consumer-group member of a [`MemoryBus`]: see the module doc. Dropping
/// it leaves the group.
#[derive(Debug)]
pub struct MemoryStream {
    bus: MemoryBus,
    group: String,
    member: u64,
    /// The group generation `positions` follows.
    generation: u64,
    /// The next offset to read, per partition held.
    positions: BTreeMap<Tp, i64>,
    /// Which held partition a batch starts with (fairness).
    rotate: usize,
}

impl MemoryStream {
    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The partitions this member holds now, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.bus
            .lock()
            .groups
            .get(&self.group)
            .and_then(|g| g.assignment.get(&self.member))
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Follows the group's assignment and takes up to `max` messages.
    fn take(&mut self, max: usize) -> Vec<RawMessage> {
        let state = self.bus.lock();
        let Some(g) = state.groups.get(&self.group) else {
            return Vec::new();
        };
        if g.generation != self.generation {
            let held = g.assignment.get(&self.member).cloned().unwrap_or_default();
            self.positions.retain(|tp, _| held.contains(tp));
            for tp in held {
                let start = g.committed.get(&tp).copied().unwrap_or(i64::MIN);
                self.positions.entry(tp).or_insert(start);
            }
            self.generation = g.generation;
        }
        let mut out = Vec::new();
        let n = self.positions.len();
        if n == 0 {
            return out;
        }
        self.rotate = (self.rotate + 1) % n;
        let order: Vec<Tp> = self
            .positions
            .keys()
            .cycle()
            .skip(self.rotate)
            .take(n)
            .cloned()
            .collect();
        for tp in order {
            if out.len() >= max {
                break;
            }
            let Some(p) = state
                .topics
                .get(&tp.0)
                .and_then(|t| t.partitions.get(tp.1 as usize))
            else {
                continue;
            };
            let Some(position) = self.positions.get_mut(&tp) else {
                continue;
            };
            if *position < p.start {
                if *position != i64::MIN {
                    tracing::warn!(
                        group = %self.group,
                        topic = %tp.0,
                        partition = tp.1,
                        from = *position,
                        to = p.start,
                        "messages were dropped before this group read them; resuming at the earliest"
                    );
                }
                *position = p.start;
            }
            let skip = (*position - p.start) as usize;
            for (i, e) in p.log.iter().skip(skip).take(max - out.len()).enumerate() {
                out.push(RawMessage {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    offset: *position + i as i64,
                    key: e.key.clone(),
                    payload: e.payload.clone(),
                });
            }
            *position = out
                .last()
                .filter(|m| m.topic == tp.0 && m.partition == tp.1)
                .map_or(*position, |m| m.offset + 1);
        }
        out
    }
}

impl Drop for MemoryStream {
    fn drop(&mut self) {
        let mut state = self.bus.lock();
        if let Some(g) = state.groups.get_mut(&self.group) {
            g.members.remove(&self.member);
            g.assignment.remove(&self.member);
        }
        state.rebalance(&self.group);
        drop(state);
        self.bus.inner.changed.notify_waiters();
        tracing::debug!(group = %self.group, member = self.member, "memory bus member left");
    }
}

impl MessageStream for MemoryStream {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RawMessage>, BusError> {
        let max = max.max(1);
        let deadline = tokio::time::Instant::now() + wait;
        let bus = self.bus.clone();
        loop {
            // Registered before looking, so no append in between is missed.
            let changed = bus.inner.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let batch = self.take(max);
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn commit(&mut self, messages: &[RawMessage]) -> Result<(), BusError> {
        let mut next: BTreeMap<Tp, i64> = BTreeMap::new();
        for m in messages {
            let after = m.offset + 1;
            next.entry((m.topic.clone(), m.partition))
                .and_modify(|o| *o = (*o).max(after))
                .or_insert(after);
        }
        if next.is_empty() {
            return Ok(());
        }
        let retention = self.bus.inner.retention;
        let mut state = self.bus.lock();
        let Some(g) = state.groups.get_mut(&self.group) else {
            return Err(BusError::Commit {
                reason: format!("group `{}` is gone", self.group),
            });
        };
        let held = g.assignment.get(&self.member).cloned().unwrap_or_default();
        let mut committed = Vec::new();
        let mut skipped = 0;
        for (tp, offset) in next {
            if held.contains(&tp) {
                g.committed.insert(tp.clone(), offset);
                committed.push(tp);
            } else {
                skipped += 1;
            }
        }
        if skipped > 0 {
            tracing::info!(
                group = %self.group,
                skipped,
                "not committing partitions this member no longer holds"
            );
        }
        for (topic, partition) in &committed {
            state.retain(retention, topic, *partition);
        }
        Ok(())
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and librdkafka compute it).
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_standard_one() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }
}
