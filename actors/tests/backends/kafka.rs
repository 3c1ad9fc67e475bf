//! Kafka under the bus contract ([`super::bus`]): the harness used by
//! `kafka_consumer.rs` and `consumer_e2e.rs`, on the shared test broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::bus::{BusHarness, Letter};
use candela_actors::kafka::{
    dead_letter_topic, KafkaConfig, KafkaPublisher, KafkaStream, KafkaStreams,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// Kafka under the bus contract: the publisher (also the dead letters) and
/// consumer-group members on the shared test broker.
pub struct Kafka {
    config: KafkaConfig,
    publisher: Arc<KafkaPublisher>,
    streams: Arc<KafkaStreams>,
}

pub async fn kafka() -> Kafka {
    let config = crate::common::config();
    Kafka {
        publisher: Arc::new(KafkaPublisher::new(&config).unwrap()),
        streams: Arc::new(KafkaStreams::new(config.clone())),
        config,
    }
}

/// The same, with members that read every partition, placed by the platform
/// (`assign`) rather than by the broker's group protocol.
pub async fn kafka_placed() -> Kafka {
    let config = crate::common::config();
    Kafka {
        publisher: Arc::new(KafkaPublisher::new(&config).unwrap()),
        streams: Arc::new(KafkaStreams::placed(
            config.clone(),
            Arc::new(candela_actors::kafka::AllPartitions),
        )),
        config,
    }
}

impl BusHarness for Kafka {
    type Bus = KafkaPublisher;
    type Streams = KafkaStreams;

    fn bus(&self) -> &Arc<KafkaPublisher> {
        &self.publisher
    }

    fn streams(&self) -> &Arc<KafkaStreams> {
        &self.streams
    }

    fn quiet(&self) -> Duration {
        Duration::from_secs(2)
    }

    async fn publish_raw(&self, topic: &str, messages: &[(Option<&str>, &[u8])]) {
        let raw: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.config.bootstrap_servers())
            .create()
            .unwrap();
        for (key, payload) in messages {
            let mut r = FutureRecord::<str, [u8]>::to(topic).payload(payload);
            if let Some(k) = key {
                r = r.key(k);
            }
            raw.send(r, Duration::from_secs(10)).await.unwrap();
        }
    }

    async fn dead_letters(&self, topic: &str, want: usize) -> Vec<Letter> {
        // A plain consumer, to see the headers.
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.config.bootstrap_servers())
            .set("group.id", crate::common::unique("dlq-reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        c.subscribe(&[&dead_letter_topic(topic)]).unwrap();
        let mut letters = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while letters.len() < want {
            let m = match tokio::time::timeout_at(deadline, c.recv()).await {
                Ok(m) => m.unwrap(),
                Err(_) => break,
            };
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
            letters.push(Letter {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
        letters
    }

    async fn end_offsets(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.config.bootstrap_servers())
            .set("group.id", crate::common::unique("ends"))
            .create()
            .unwrap();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    probe
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .unwrap()
                        .1
                })
                .collect()
        })
        .await
        .unwrap()
    }

    async fn dead_letter_count(&self, topic: &str) -> usize {
        let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.config.bootstrap_servers())
            .set("group.id", crate::common::unique("dlq-count"))
            .create()
            .unwrap();
        let dlq = dead_letter_topic(topic);
        tokio::task::spawn_blocking(move || {
            let md = probe
                .fetch_metadata(Some(&dlq), Duration::from_secs(10))
                .unwrap();
            let partitions = md.topics()[0].partitions().len() as i32;
            (0..partitions)
                .map(|p| {
                    let (low, high) = probe
                        .fetch_watermarks(&dlq, p, Duration::from_secs(10))
                        .unwrap();
                    (high - low) as usize
                })
                .sum()
        })
        .await
        .unwrap()
    }

    async fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let probe: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.config.bootstrap_servers())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let committed = tokio::task::spawn_blocking(move || {
            probe.committed_offsets(tpl, Duration::from_secs(10))
        })
        .await
        .unwrap()
        .unwrap();
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).unwrap().offset() {
                    rdkafka::Offset::Offset(o) => Some(o),
                    _ => None,
                },
            )
            .collect()
    }

    fn assignment(stream: &KafkaStream) -> Vec<(String, i32)> {
        stream.assignment()
    }

    async fn close(stream: KafkaStream) {
        stream.close().await;
    }
}
