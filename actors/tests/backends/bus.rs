//! The record bus contract: what the producer and the consumers rely on.
//! Records read back exactly, keyed (one partition per instrument, the same
//! partition on every bus); a new member of a group resumes after the last
//! committed offset; an uncommitted batch is delivered again to the next
//! member; members of one group split the partitions and an old owner never
//! commits a partition it lost; undecodable messages land on `{topic}.dlq`
//! with their reason, each once however often it is dead-lettered again.
//!
//! A [`BusHarness`] gives each case a bus and what only a harness can do
//! (write garbage, read dead letters with their headers, look at committed
//! offsets).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::consumer::OpenStream;
use candela_actors::domain::{HistoryBar, Instrument, Record};
use candela_actors::embedded::MemoryBus;
use candela_actors::kafka::publisher::{
    DLQ_KIND, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC,
};
use candela_actors::kafka::{decode_record, schema};
use candela_actors::ports::{DeadLetter, DeadLetters, MessageStream, RawMessage, RecordBus};
use rust_decimal::Decimal;

/// A message read from a dead-letter topic.
#[derive(Debug, Clone)]
pub struct Letter {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// The stream type of a harness.
pub type StreamOf<H> = <<H as BusHarness>::Streams as OpenStream>::Stream;

/// A bus under test.
pub trait BusHarness: Send + Sync {
    /// The publisher and dead-letter side.
    type Bus: RecordBus + DeadLetters;
    /// The consumer side.
    type Streams: OpenStream;

    fn bus(&self) -> &Arc<Self::Bus>;
    fn streams(&self) -> &Arc<Self::Streams>;
    /// How long to wait before concluding that nothing more comes.
    fn quiet(&self) -> Duration;
    /// Writes raw messages, as a plain producer could.
    fn publish_raw(
        &self,
        topic: &str,
        messages: &[(Option<&str>, &[u8])],
    ) -> impl Future<Output = ()> + Send;
    /// Reads `want` messages (or what came within a timeout) from `topic`'s
    /// dead-letter topic.
    fn dead_letters(&self, topic: &str, want: usize) -> impl Future<Output = Vec<Letter>> + Send;
    /// The offset after the last message of partitions `0..partitions` of
    /// `topic` (its high watermarks).
    fn end_offsets(&self, topic: &str, partitions: i32) -> impl Future<Output = Vec<i64>> + Send;
    /// How many messages `topic`'s dead-letter topic holds.
    fn dead_letter_count(&self, topic: &str) -> impl Future<Output = usize> + Send;
    /// The offsets `group` committed for partitions `0..partitions` of `topic`.
    fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> impl Future<Output = Vec<Option<i64>>> + Send;
    /// The partitions a member holds now.
    fn assignment(stream: &StreamOf<Self>) -> Vec<(String, i32)>;
    /// Leaves the group and waits until it left.
    fn close(stream: StreamOf<Self>) -> impl Future<Output = ()> + Send;
}

/// One `#[tokio::test]` per case on `$make().await`, a fresh harness.
#[macro_export]
macro_rules! bus_contract_tests {
    ($make:ident) => {
        $crate::bus_contract_tests!(@cases $make;
            records_published_are_read_back_exactly,
            a_new_member_resumes_where_the_last_one_committed,
            a_batch_that_was_not_committed_is_delivered_again_to_the_next_member,
            undecodable_messages_land_on_the_dead_letter_topic_with_their_reason,
            a_partition_revoked_after_a_batch_is_not_committed_by_its_old_owner,
        );
    };
    (@cases $make:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $make().await;
                $crate::backends::bus::$case(&harness).await;
            }
        )*
    };
}

/// Trades of `common::ticks` with a history bar of the same instrument after
/// every `bar_every`-th trade.
pub fn records(instruments: &[Instrument], trades: usize, bar_every: usize) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, t) in crate::common::ticks(instruments, trades)
        .into_iter()
        .enumerate()
    {
        let instrument = t.instrument.clone();
        out.push(Record::Trade(t));
        if i % bar_every == bar_every - 1 {
            let minute = 28_333_333 + i as i64;
            out.push(Record::Bar(HistoryBar {
                instrument,
                open_time: minute * 60,
                open: Decimal::new(3_725_012 + i as i64, 2),
                high: Decimal::new(3_726_000 + i as i64, 2),
                low: Decimal::new(3_724_000, 2),
                close: Decimal::new(37_255, 0),
                volume_base: Decimal::new(125 + i as i64, 1),
                volume_quote: Decimal::new(46_565_025, 2),
            }));
        }
    }
    out
}

async fn topic_with(h: &impl BusHarness, partitions: i32) -> String {
    let topic = crate::common::unique("consume");
    h.bus().ensure_topic(&topic, partitions).await.unwrap();
    topic
}

/// Takes batches until `want` messages came or `timeout` passed.
pub async fn take<S: MessageStream>(
    stream: &mut S,
    want: usize,
    max: usize,
    timeout: Duration,
) -> Vec<RawMessage> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let batch = stream
            .next_batch(max.min(want - got.len()), Duration::from_millis(500))
            .await
            .unwrap();
        got.extend(batch);
    }
    got
}

/// Asserts that nothing more arrives within the harness's quiet time.
async fn assert_drained<H: BusHarness>(h: &H, stream: &mut StreamOf<H>) {
    let extra = stream.next_batch(100, h.quiet()).await.unwrap();
    assert!(extra.is_empty(), "unexpected messages: {}", extra.len());
}

fn ids(messages: &[RawMessage]) -> BTreeSet<(i32, i64)> {
    messages.iter().map(|m| (m.partition, m.offset)).collect()
}

pub async fn records_published_are_read_back_exactly<H: BusHarness>(h: &H) {
    let topic = topic_with(h, 3).await;
    let instruments = crate::common::instruments(5);
    let sent = records(&instruments, 2_000, 10);
    let bars = sent.iter().filter(|r| matches!(r, Record::Bar(_))).count();
    assert_eq!(bars, 200);
    for chunk in sent.chunks(450) {
        h.bus().publish(&topic, chunk).await.unwrap();
    }

    let mut stream = h
        .streams()
        .open(
            &crate::common::unique("read-back"),
            std::slice::from_ref(&topic),
        )
        .await
        .unwrap();
    let got = take(&mut stream, sent.len(), 1_000, Duration::from_secs(60)).await;
    assert_eq!(got.len(), sent.len());
    assert_drained(h, &mut stream).await;
    assert_eq!(ids(&got).len(), got.len(), "a message came twice");

    let mut per_key: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for m in &got {
        assert_eq!(m.topic, topic);
        let record = decode_record(&m.payload).unwrap();
        // The payload is the schema's encoding, byte for byte.
        let mut encoded = Vec::new();
        schema::encode_record(&record, &mut encoded);
        assert_eq!(encoded, m.payload);
        let key = String::from_utf8(m.key.clone().unwrap()).unwrap();
        assert_eq!(key, schema::key(record.instrument()));
        // The partition of a key is CRC-32 modulo the partition count
        // (librdkafka's default partitioner), on every bus.
        assert_eq!(m.partition, MemoryBus::partition_for(key.as_bytes(), 3));
        partitions
            .entry(key.clone())
            .or_default()
            .insert(m.partition);
        per_key.entry(key).or_default().push(record);
    }
    for i in &instruments {
        let expected: Vec<Record> = sent
            .iter()
            .filter(|r| r.instrument() == i)
            .cloned()
            .collect();
        assert_eq!(per_key[&i.to_string()], expected, "{i}");
        assert_eq!(partitions[&i.to_string()].len(), 1, "{i} spread");
    }
    H::close(stream).await;
}

pub async fn a_new_member_resumes_where_the_last_one_committed<H: BusHarness>(h: &H) {
    let topic = topic_with(h, 3).await;
    let sent = records(&crate::common::instruments(4), 600, 50);
    h.bus().publish(&topic, &sent).await.unwrap();
    let group = crate::common::unique("resume");
    let topics = vec![topic.clone()];

    // Member A takes some batches and commits each.
    let mut a = h.streams().open(&group, &topics).await.unwrap();
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.len() < 250 && Instant::now() < deadline {
        let batch = a.next_batch(100, Duration::from_millis(500)).await.unwrap();
        a.commit(&batch).await.unwrap();
        first.extend(batch);
    }
    assert!(first.len() >= 250, "took {}", first.len());
    H::close(a).await;

    // Member B gets exactly the rest.
    let mut b = h.streams().open(&group, &topics).await.unwrap();
    let rest = take(
        &mut b,
        sent.len() - first.len(),
        1_000,
        Duration::from_secs(60),
    )
    .await;
    assert_drained(h, &mut b).await;
    let (a_ids, b_ids) = (ids(&first), ids(&rest));
    assert!(a_ids.is_disjoint(&b_ids), "B got committed messages again");
    assert_eq!(a_ids.len() + b_ids.len(), sent.len());
    H::close(b).await;
}

pub async fn a_batch_that_was_not_committed_is_delivered_again_to_the_next_member<H: BusHarness>(
    h: &H,
) {
    let topic = topic_with(h, 2).await;
    let sent = records(&crate::common::instruments(3), 300, 30);
    h.bus().publish(&topic, &sent).await.unwrap();
    let group = crate::common::unique("redeliver");
    let topics = vec![topic.clone()];

    let mut a = h.streams().open(&group, &topics).await.unwrap();
    let committed = take(&mut a, 100, 100, Duration::from_secs(60)).await;
    assert_eq!(committed.len(), 100);
    a.commit(&committed).await.unwrap();
    let uncommitted = take(&mut a, 100, 100, Duration::from_secs(60)).await;
    assert_eq!(uncommitted.len(), 100);
    // The same member does not return them again.
    assert!(ids(&uncommitted).is_disjoint(&ids(&committed)));
    // A dies without committing the second batch.
    drop(a);

    let mut b = h.streams().open(&group, &topics).await.unwrap();
    let again = take(&mut b, sent.len() - 100, 1_000, Duration::from_secs(60)).await;
    assert_drained(h, &mut b).await;
    let again_ids = ids(&again);
    assert!(ids(&uncommitted).is_subset(&again_ids), "batch lost");
    assert!(ids(&committed).is_disjoint(&again_ids));
    assert_eq!(again_ids.len(), sent.len() - 100);
    // Same bytes the second time.
    let by_id: BTreeMap<(i32, i64), &RawMessage> =
        again.iter().map(|m| ((m.partition, m.offset), m)).collect();
    for m in &uncommitted {
        assert_eq!(by_id[&(m.partition, m.offset)], m);
    }
    H::close(b).await;
}

pub async fn undecodable_messages_land_on_the_dead_letter_topic_with_their_reason<H: BusHarness>(
    h: &H,
) {
    let topic = topic_with(h, 2).await;
    let good = records(&crate::common::instruments(2), 20, 5);
    h.bus().publish(&topic, &good).await.unwrap();
    // Garbage, written by a plain producer: not JSON, another version, an
    // unknown type, a bar missing a field, and one without a key.
    let garbage: Vec<(Option<&str>, &[u8])> = vec![
        (Some("Junk:A-B"), b"not json"),
        (Some("Junk:A-B"), br#"{"v":2,"market":"x"}"#),
        (Some("Junk:C-D"), br#"{"v":1,"type":"quote","market":"x"}"#),
        (
            Some("Junk:C-D"),
            br#"{"v":1,"type":"bar","market":"K","base":"B","quote":"Q","open_time":60}"#,
        ),
        (None, b"\xff\xfe"),
    ];
    h.publish_raw(&topic, &garbage).await;

    let mut stream = h
        .streams()
        .open(&crate::common::unique("dlq"), std::slice::from_ref(&topic))
        .await
        .unwrap();
    let got = take(
        &mut stream,
        good.len() + garbage.len(),
        1_000,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(got.len(), good.len() + garbage.len());
    let invalid: Vec<DeadLetter> = got
        .iter()
        .filter_map(|m| {
            decode_record(&m.payload)
                .err()
                .map(|e| DeadLetter::new(m.clone(), e.kind(), &e.to_string()))
        })
        .collect();
    assert_eq!(invalid.len(), garbage.len());
    assert_eq!(h.bus().dead_letter(&invalid).await.unwrap(), garbage.len());
    // The batch is delivered again (its commit never happened): its dead
    // letters come again, whole, in part, or with others; none is written
    // twice.
    assert_eq!(h.bus().dead_letter(&invalid).await.unwrap(), 0);
    assert_eq!(h.bus().dead_letter(&invalid[1..3]).await.unwrap(), 0);
    let mut reversed = invalid.clone();
    reversed.reverse();
    assert_eq!(h.bus().dead_letter(&reversed).await.unwrap(), 0);
    H::close(stream).await;

    let letters = h.dead_letters(&topic, garbage.len()).await;
    assert_eq!(letters.len(), garbage.len());
    assert_eq!(h.dead_letter_count(&topic).await, garbage.len());
    for l in &invalid {
        let original = &l.message;
        let found = letters
            .iter()
            .find(|x| x.payload == original.payload && x.key == original.key)
            .unwrap_or_else(|| panic!("no dead letter for {original:?}"));
        let h = &found.headers;
        assert_eq!(h[DLQ_REASON], l.reason);
        assert_eq!(h[DLQ_KIND], l.kind);
        assert_eq!(h[DLQ_TOPIC], topic);
        assert_eq!(h[DLQ_PARTITION], original.partition.to_string());
        assert_eq!(h[DLQ_OFFSET], original.offset.to_string());
    }
    let reasons: Vec<&str> = invalid.iter().map(|l| l.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unsupported schema version 2")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("unknown record type")));
    assert!(reasons.iter().any(|r| r.contains("missing field `open`")));
}

pub async fn a_partition_revoked_after_a_batch_is_not_committed_by_its_old_owner<H: BusHarness>(
    h: &H,
) {
    let topic = topic_with(h, 2).await;
    let sent = records(&crate::common::instruments(6), 600, 1_000);
    h.bus().publish(&topic, &sent).await.unwrap();
    let group = crate::common::unique("rebalance");
    let topics = vec![topic.clone()];

    // A holds both partitions and takes a batch from each.
    let mut a = h.streams().open(&group, &topics).await.unwrap();
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids(&batch)
        .iter()
        .map(|(p, _)| *p)
        .collect::<BTreeSet<_>>()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "A never saw both partitions");
        batch.extend(a.next_batch(50, Duration::from_millis(500)).await.unwrap());
    }
    assert_eq!(H::assignment(&a).len(), 2);

    // B joins; both go on polling (as their pipelines would) until the
    // group has given each one partition.
    let mut b = h.streams().open(&group, &topics).await.unwrap();
    let mut b_got = Vec::new();
    let mut a_got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while H::assignment(&a).len() != 1 || H::assignment(&b).len() != 1 {
        assert!(Instant::now() < deadline, "no rebalance");
        let (x, y) = tokio::join!(
            a.next_batch(10, Duration::from_millis(200)),
            b.next_batch(10, Duration::from_millis(200))
        );
        a_got.extend(x.unwrap());
        b_got.extend(y.unwrap());
    }
    let (held, lost) = (H::assignment(&a)[0].1, H::assignment(&b)[0].1);
    assert_ne!(held, lost);
    // After the rebalance, B reads only its partition and A only its own.
    let more = b.next_batch(50, Duration::from_millis(500)).await.unwrap();
    assert!(more.iter().all(|m| m.partition == lost));
    let more = a.next_batch(50, Duration::from_millis(500)).await.unwrap();
    assert!(more.iter().all(|m| m.partition == held));

    // A commits the batch it took before the rebalance: only the partition
    // it still holds is committed.
    a.commit(&batch).await.unwrap();
    let next_of = |p: i32| {
        batch
            .iter()
            .filter(|m| m.partition == p)
            .map(|m| m.offset + 1)
            .max()
            .unwrap()
    };
    let committed = h.committed(&group, &topic, 2).await;
    assert_eq!(committed[held as usize], Some(next_of(held)));
    assert_eq!(
        committed[lost as usize], None,
        "the old owner committed a partition it no longer holds"
    );
    H::close(a).await;
    H::close(b).await;
}
