//! The Kafka layer against a real Kafka-compatible broker (tansu, started by
//! `common::broker`, or the broker in `CANDELA_KAFKA_BROKERS`).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use candela_actors::domain::{Instrument, Tick};
use candela_actors::kafka::{
    ensure_topic, schema, topic_partitions, KafkaConfig, PublishError, TickPublisher,
};
use common::broker::{Storage, Tansu};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn consumer(bootstrap: &str, group: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer")
}

/// Receives until `want` returns true or `timeout` passes; returns (key, payload, partition).
async fn receive(
    c: &StreamConsumer,
    timeout: Duration,
    mut keep: impl FnMut(&str) -> bool,
    want: usize,
) -> Vec<(String, Vec<u8>, i32, i64)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < want {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => panic!("consumer error: {e}"),
            Ok(Ok(m)) => {
                let key = String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap();
                if keep(&key) {
                    got.push((
                        key,
                        m.payload().unwrap_or_default().to_vec(),
                        m.partition(),
                        m.offset(),
                    ));
                }
            }
        }
    }
    got
}

#[tokio::test]
async fn ensure_topic_is_idempotent_and_has_the_configured_partitions() {
    let config = common::config();
    let topic = common::unique("ensure");
    let first = ensure_topic(&config, &topic, 6, 1).await.unwrap();
    assert!(first.created, "{first:?}");
    assert_eq!(first.partitions, 6);
    let again = ensure_topic(&config, &topic, 6, 1).await.unwrap();
    assert!(!again.created, "{again:?}");
    assert_eq!(again.partitions, 6);
    // A different request for an existing topic leaves it as it is.
    let other = ensure_topic(&config, &topic, 3, 1).await.unwrap();
    assert_eq!((other.created, other.partitions), (false, 6));
    assert_eq!(topic_partitions(&config, &topic).await.unwrap(), Some(6));
    assert_eq!(
        topic_partitions(&config, &common::unique("absent"))
            .await
            .unwrap(),
        None
    );
    assert!(ensure_topic(&config, "no spaces", 1, 1).await.is_err());
}

#[tokio::test]
async fn published_ticks_are_read_back_exactly_and_in_order_per_instrument() {
    let config = common::config();
    let topic = config.tick_topic.clone();
    let ensured = ensure_topic(
        &config,
        &topic,
        config.tick_topic_partitions,
        config.replication_factor,
    )
    .await
    .unwrap();
    assert_eq!(ensured.partitions, config.tick_topic_partitions as usize);

    let instruments = common::instruments(5);
    let sent = common::ticks(&instruments, 3_000);
    let publisher = TickPublisher::new(&config).unwrap();
    // Several batches, as the producer actor would send them.
    for chunk in sent.chunks(700) {
        let report = publisher.publish(&topic, chunk).await.unwrap();
        assert_eq!(report.messages, chunk.len());
    }
    let stats = publisher.stats();
    assert_eq!((stats.published, stats.failed), (3_000, 0));
    assert!(stats.bytes > 3_000 * 100, "{stats:?}");

    // This run's instruments only: the topic may hold earlier runs' ticks.
    let ours: HashSet<String> = instruments.iter().map(schema::key).collect();
    let c = consumer(&config.bootstrap_servers(), &common::unique("read-back"));
    c.subscribe(&[&topic]).unwrap();
    let got = receive(
        &c,
        Duration::from_secs(60),
        |k| ours.contains(k),
        sent.len(),
    )
    .await;
    assert_eq!(
        got.len(),
        sent.len(),
        "received {} of {}",
        got.len(),
        sent.len()
    );
    // Nothing beyond the N: wait briefly for stragglers (duplicates).
    let extra = receive(&c, Duration::from_secs(2), |k| ours.contains(k), 1).await;
    assert!(extra.is_empty(), "more messages than published: {extra:?}");

    let mut per_instrument: BTreeMap<String, Vec<Tick>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, HashSet<i32>> = BTreeMap::new();
    for (key, payload, partition, _) in &got {
        let tick = schema::decode(payload).unwrap();
        assert_eq!(key, &tick.instrument.to_string());
        partition_of
            .entry(key.clone())
            .or_default()
            .insert(*partition);
        per_instrument.entry(key.clone()).or_default().push(tick);
    }
    for i in &instruments {
        let expected: Vec<Tick> = sent
            .iter()
            .filter(|t| &t.instrument == i)
            .cloned()
            .collect();
        assert_eq!(per_instrument[&i.to_string()], expected, "{i}");
        assert_eq!(
            partition_of[&i.to_string()].len(),
            1,
            "{i} spread over partitions"
        );
    }
}

#[tokio::test]
async fn publishing_to_an_unreachable_broker_fails_within_the_delivery_timeout() {
    // A port this test holds without listening: nothing answers there, and
    // nothing else can take it while the test runs.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = held.local_addr().unwrap().port();
    let config = KafkaConfig {
        delivery_timeout_ms: 3_000,
        ..KafkaConfig::for_brokers(&format!("127.0.0.1:{port}"))
    };
    let publisher = TickPublisher::new(&config).unwrap();
    let ticks = common::ticks(&common::instruments(2), 50);
    // A deadline, not a measured time: it ends (by the delivery timeout)
    // and says why.
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        publisher.publish("tick-data", &ticks),
    )
    .await
    .expect("the publish never ended: the delivery timeout did not apply");
    match result {
        Err(PublishError::Undelivered {
            failed,
            total,
            first_error,
            ..
        }) => {
            assert_eq!((failed, total), (50, 50));
            assert!(
                format!("{first_error:?}").contains("MessageTimedOut"),
                "not the delivery timeout: {first_error:?}"
            );
        }
        other => panic!("expected Undelivered, got {other:?}"),
    }
    let stats = publisher.stats();
    assert_eq!((stats.published, stats.failed), (0, 50));
}

#[tokio::test]
async fn an_empty_batch_is_acknowledged_without_a_broker() {
    let publisher = TickPublisher::new(&KafkaConfig::for_brokers("127.0.0.1:1")).unwrap();
    let report = publisher.publish("tick-data", &[]).await.unwrap();
    assert_eq!(report.messages, 0);
}

#[tokio::test]
async fn committed_offsets_and_messages_survive_a_broker_restart() {
    // Its own broker, as it restarts it; SQLite storage so that data survives.
    let mut broker = Tansu::start(Storage::Sqlite);
    let bootstrap = broker.bootstrap();
    let config = KafkaConfig {
        delivery_timeout_ms: 20_000,
        ..KafkaConfig::for_brokers(&bootstrap)
    };
    let topic = common::unique("restart");
    ensure_topic(&config, &topic, 1, 1).await.unwrap();
    let instrument: Vec<Instrument> = common::instruments(1);
    let sent = common::ticks(&instrument, 20);
    let publisher = TickPublisher::new(&config).unwrap();
    publisher.publish(&topic, &sent).await.unwrap();
    drop(publisher);

    let group = common::unique("group");
    {
        let c = consumer(&bootstrap, &group);
        c.subscribe(&[&topic]).unwrap();
        let got = receive(&c, Duration::from_secs(30), |_| true, 12).await;
        assert_eq!(got.len(), 12);
        let (_, _, partition, offset) = got[11];
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset + 1))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
    }

    broker.restart();
    assert_eq!(broker.bootstrap(), bootstrap);

    let c = consumer(&bootstrap, &group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 0);
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    assert_eq!(
        committed.find_partition(&topic, 0).unwrap().offset(),
        Offset::Offset(12)
    );
    c.subscribe(&[&topic]).unwrap();
    let rest = receive(&c, Duration::from_secs(30), |_| true, 8).await;
    let decoded: Vec<Tick> = rest.iter().map(|m| schema::decode(&m.1).unwrap()).collect();
    assert_eq!(decoded, sent[12..]);
}

#[tokio::test]
async fn publishing_to_a_missing_topic_is_an_error_unless_the_broker_creates_it() {
    // tansu does not auto-create topics: the publish fails after the delivery
    // timeout (MessageTimedOut), so topics must be made with ensure_topic
    // first. A Kafka broker with auto.create.topics.enable creates it
    // instead; either way, success is only claimed for delivered ticks.
    let config = KafkaConfig {
        delivery_timeout_ms: 3_000,
        ..common::config()
    };
    let publisher = TickPublisher::new(&config).unwrap();
    let topic = common::unique("never-created");
    let ticks = common::ticks(&common::instruments(1), 5);
    match publisher.publish(&topic, &ticks).await {
        Err(PublishError::Undelivered {
            failed: 5,
            total: 5,
            ..
        }) => assert_eq!(publisher.stats().failed, 5),
        Ok(report) => {
            assert_eq!(report.messages, 5);
            assert!(topic_partitions(&config, &topic).await.unwrap().is_some());
        }
        other => panic!("expected Undelivered, got {other:?}"),
    }
}
