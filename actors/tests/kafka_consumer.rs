//! The consumer side of the Kafka layer on a real broker (tansu, started by
//! `common::broker`, or the broker in `CANDELA_KAFKA_BROKERS`): records read
//! back exactly, offsets committed by one group member are where the next one
//! resumes, uncommitted batches come again, and undecodable messages land on
//! the dead-letter topic with their reason.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use candela_actors::consumer::OpenStream;
use candela_actors::domain::{HistoryBar, Instrument, Record};
use candela_actors::kafka::publisher::{DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC};
use candela_actors::kafka::{
    dead_letter_topic, decode_for_pipeline, decode_record, schema, KafkaPublisher, KafkaStream,
    KafkaStreams,
};
use candela_actors::ports::{DeadLetters, MessageStream, RawMessage, RecordBus};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rust_decimal::Decimal;

/// Trades of `common::ticks` with a history bar of the same instrument after
/// every `bar_every`-th trade.
fn records(instruments: &[Instrument], trades: usize, bar_every: usize) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, t) in common::ticks(instruments, trades).into_iter().enumerate() {
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

async fn topic_with(partitions: i32, publisher: &KafkaPublisher) -> String {
    let topic = common::unique("consume");
    RecordBus::ensure_topic(publisher, &topic, partitions)
        .await
        .unwrap();
    topic
}

/// Takes batches until `want` messages came or `timeout` passed.
async fn take(
    stream: &mut KafkaStream,
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

/// Asserts that nothing more arrives within a short wait.
async fn assert_drained(stream: &mut KafkaStream) {
    let extra = stream
        .next_batch(100, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(extra.is_empty(), "unexpected messages: {}", extra.len());
}

fn ids(messages: &[RawMessage]) -> BTreeSet<(i32, i64)> {
    messages.iter().map(|m| (m.partition, m.offset)).collect()
}

#[tokio::test]
async fn records_published_with_the_publisher_are_read_back_exactly() {
    let config = common::config();
    let publisher = KafkaPublisher::new(&config).unwrap();
    let topic = topic_with(3, &publisher).await;
    let instruments = common::instruments(5);
    let sent = records(&instruments, 2_000, 10);
    let bars = sent.iter().filter(|r| matches!(r, Record::Bar(_))).count();
    assert_eq!(bars, 200);
    for chunk in sent.chunks(450) {
        RecordBus::publish(&publisher, &topic, chunk).await.unwrap();
    }

    let streams = KafkaStreams::new(config.clone());
    let mut stream = streams
        .open(&common::unique("read-back"), std::slice::from_ref(&topic))
        .await
        .unwrap();
    let got = take(&mut stream, sent.len(), 1_000, Duration::from_secs(60)).await;
    assert_eq!(got.len(), sent.len());
    assert_drained(&mut stream).await;
    assert_eq!(ids(&got).len(), got.len(), "a message came twice");

    let mut per_key: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for m in &got {
        assert_eq!(m.topic, topic);
        let record = decode_record(&m.payload).unwrap();
        let key = String::from_utf8(m.key.clone().unwrap()).unwrap();
        assert_eq!(key, schema::key(record.instrument()));
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
    stream.close().await;
}

#[tokio::test]
async fn a_new_member_resumes_where_the_last_one_committed() {
    let config = common::config();
    let publisher = KafkaPublisher::new(&config).unwrap();
    let topic = topic_with(3, &publisher).await;
    let sent = records(&common::instruments(4), 600, 50);
    RecordBus::publish(&publisher, &topic, &sent).await.unwrap();
    let streams = KafkaStreams::new(config.clone());
    let group = common::unique("resume");
    let topics = vec![topic.clone()];

    // Member A takes some batches and commits each.
    let mut a = streams.open(&group, &topics).await.unwrap();
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while first.len() < 250 && Instant::now() < deadline {
        let batch = a.next_batch(100, Duration::from_millis(500)).await.unwrap();
        a.commit(&batch).await.unwrap();
        first.extend(batch);
    }
    assert!(first.len() >= 250, "took {}", first.len());
    a.close().await;

    // Member B gets exactly the rest.
    let mut b = streams.open(&group, &topics).await.unwrap();
    let rest = take(
        &mut b,
        sent.len() - first.len(),
        1_000,
        Duration::from_secs(60),
    )
    .await;
    assert_drained(&mut b).await;
    let (a_ids, b_ids) = (ids(&first), ids(&rest));
    assert!(a_ids.is_disjoint(&b_ids), "B got committed messages again");
    assert_eq!(a_ids.len() + b_ids.len(), sent.len());
    b.close().await;
}

#[tokio::test]
async fn a_batch_that_was_not_committed_is_delivered_again_to_the_next_member() {
    let config = common::config();
    let publisher = KafkaPublisher::new(&config).unwrap();
    let topic = topic_with(2, &publisher).await;
    let sent = records(&common::instruments(3), 300, 30);
    RecordBus::publish(&publisher, &topic, &sent).await.unwrap();
    let streams = KafkaStreams::new(config.clone());
    let group = common::unique("redeliver");
    let topics = vec![topic.clone()];

    let mut a = streams.open(&group, &topics).await.unwrap();
    let committed = take(&mut a, 100, 100, Duration::from_secs(60)).await;
    assert_eq!(committed.len(), 100);
    a.commit(&committed).await.unwrap();
    let uncommitted = take(&mut a, 100, 100, Duration::from_secs(60)).await;
    assert_eq!(uncommitted.len(), 100);
    // A dies without committing the second batch.
    drop(a);

    let mut b = streams.open(&group, &topics).await.unwrap();
    let again = take(&mut b, sent.len() - 100, 1_000, Duration::from_secs(60)).await;
    assert_drained(&mut b).await;
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
    b.close().await;
}

#[tokio::test]
async fn undecodable_messages_land_on_the_dead_letter_topic_with_their_reason() {
    let config = common::config();
    let publisher = KafkaPublisher::new(&config).unwrap();
    let topic = topic_with(2, &publisher).await;
    let good = records(&common::instruments(2), 20, 5);
    RecordBus::publish(&publisher, &topic, &good).await.unwrap();
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
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap_servers())
        .create()
        .unwrap();
    for (key, payload) in &garbage {
        let mut r = FutureRecord::<str, [u8]>::to(&topic).payload(payload);
        if let Some(k) = key {
            r = r.key(k);
        }
        raw.send(r, Duration::from_secs(10)).await.unwrap();
    }

    let streams = KafkaStreams::new(config.clone());
    let mut stream = streams
        .open(&common::unique("dlq"), std::slice::from_ref(&topic))
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
    let invalid: Vec<(RawMessage, String)> = got
        .iter()
        .filter_map(|m| {
            decode_for_pipeline(&m.payload)
                .err()
                .map(|e| (m.clone(), e))
        })
        .collect();
    assert_eq!(invalid.len(), garbage.len());
    publisher.dead_letter(&invalid).await.unwrap();
    stream.close().await;

    // Read the dead letters with a plain consumer, to see the headers.
    let dlq = dead_letter_topic(&topic);
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap_servers())
        .set("group.id", common::unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[&dlq]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < garbage.len() {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("dead letters arrive")
            .unwrap();
        let headers: BTreeMap<String, String> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        letters.push((
            m.key().map(<[u8]>::to_vec),
            m.payload().unwrap_or_default().to_vec(),
            headers,
        ));
    }
    for (original, reason) in &invalid {
        let found = letters
            .iter()
            .find(|(k, p, _)| p == &original.payload && k == &original.key)
            .unwrap_or_else(|| panic!("no dead letter for {original:?}"));
        let h = &found.2;
        assert_eq!(h[DLQ_REASON], *reason);
        assert_eq!(h[DLQ_TOPIC], topic);
        assert_eq!(h[DLQ_PARTITION], original.partition.to_string());
        assert_eq!(h[DLQ_OFFSET], original.offset.to_string());
    }
    let reasons: Vec<&str> = invalid.iter().map(|(_, r)| r.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unsupported schema version 2")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("unknown record type")));
    assert!(reasons.iter().any(|r| r.contains("missing field `open`")));
}

#[tokio::test]
async fn a_partition_revoked_after_a_batch_is_not_committed_by_its_old_owner() {
    let config = common::config();
    let publisher = KafkaPublisher::new(&config).unwrap();
    let topic = topic_with(2, &publisher).await;
    let sent = records(&common::instruments(6), 600, 1_000);
    RecordBus::publish(&publisher, &topic, &sent).await.unwrap();
    let streams = KafkaStreams::new(config.clone());
    let group = common::unique("rebalance");
    let topics = vec![topic.clone()];

    // A holds both partitions and takes a batch from each.
    let mut a = streams.open(&group, &topics).await.unwrap();
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
    assert_eq!(a.assignment().len(), 2);

    // B joins; A goes on polling (as its pipeline would) until the group
    // has moved one partition to B.
    let mut b = streams.open(&group, &topics).await.unwrap();
    let b_task = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while b.assignment().len() != 1 && Instant::now() < deadline {
            b.next_batch(10, Duration::from_millis(200)).await.unwrap();
        }
        b
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.assignment().len() != 1 {
        assert!(Instant::now() < deadline, "no rebalance");
        a.next_batch(10, Duration::from_millis(200)).await.unwrap();
    }
    let b = b_task.await.unwrap();
    let (held, lost) = (a.assignment()[0].1, b.assignment()[0].1);
    assert_ne!(held, lost);

    // A commits the batch it took before the rebalance: only the partition
    // it still holds is committed.
    a.commit(&batch).await.unwrap();
    let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap_servers())
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    tpl.add_partition(&topic, 1);
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let next_of = |p: i32| {
        batch
            .iter()
            .filter(|m| m.partition == p)
            .map(|m| m.offset + 1)
            .max()
            .unwrap()
    };
    assert_eq!(
        committed.find_partition(&topic, held).unwrap().offset(),
        rdkafka::Offset::Offset(next_of(held))
    );
    assert_eq!(
        committed.find_partition(&topic, lost).unwrap().offset(),
        rdkafka::Offset::Invalid,
        "the old owner committed a partition it no longer holds"
    );
    a.close().await;
    b.close().await;
}
