//! What a dead-letter topic already holds, read back from the broker, so that
//! a redelivered batch writes no dead letter twice (the `DeadLetters`
//! contract in `ports`).
//!
//! The letters of source partition `p` go to partition `p mod n` of the
//! dead-letter topic (`n` its partition count; a new dead-letter topic gets
//! as many partitions as its source, so `p` alone). One consumer reads a
//! source partition at a time and writes its letters in offset order, so in
//! that dead-letter partition the letters of `p` come in increasing offset
//! order. To know which of the letters `min..` of `p` are already written,
//! [`written`] reads the dead-letter partition backwards from its end, a
//! window at a time, and stops at the first letter of `p` older than `min`
//! (or at the start). In the usual case that is the last few messages.
//!
//! The reader is a plain consumer assigned to one partition, in no group and
//! committing nothing. Reading back costs a round trip to the broker per
//! dead-letter call, and dead letters are rare.
//!
//! What must never happen: a letter reported written that is not (it would be
//! lost), or a read that never ends (every wait is bounded by the deadline,
//! and running out is an error, so the caller retries the batch).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::config::KafkaConfig;
use super::publisher::{DLQ_OFFSET, DLQ_PARTITION, DLQ_TOPIC};
use crate::ports::BusError;

/// How many messages one step back reads.
const WINDOW: i64 = 256;

/// Where a source partition's letters live and which of them to look for.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    /// The dead-letter topic.
    pub dlq: String,
    /// Its partition holding the source partition's letters.
    pub dlq_partition: i32,
    /// The source topic.
    pub source: String,
    /// The source partition.
    pub partition: i32,
    /// The oldest offset of the letters about to be written.
    pub min_offset: i64,
}

/// The offsets, from `lookup.min_offset` on, of the source partition's
/// letters already in the dead-letter topic.
pub(crate) async fn written(
    config: &KafkaConfig,
    lookup: Lookup,
) -> Result<HashSet<i64>, BusError> {
    let client = config
        .client_config()
        .set("group.id", "candela.dead-letter-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create::<BaseConsumer>();
    let timeout = config.admin_timeout();
    let topic = lookup.dlq.clone();
    let fail = move |reason: String| BusError::Topic {
        topic: topic.clone(),
        reason: format!("reading back dead letters: {reason}"),
    };
    let consumer = client.map_err(|e| fail(e.to_string()))?;
    tokio::task::spawn_blocking(move || read_back(&consumer, &lookup, timeout))
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)
}

fn read_back(
    consumer: &BaseConsumer,
    lookup: &Lookup,
    timeout: Duration,
) -> Result<HashSet<i64>, String> {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let (low, high) = consumer
        .fetch_watermarks(&lookup.dlq, lookup.dlq_partition, left())
        .map_err(|e| e.to_string())?;
    let mut found = HashSet::new();
    let mut end = high;
    while end > low {
        let start = (end - WINDOW).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&lookup.dlq, lookup.dlq_partition, Offset::Offset(start))
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let mut older_seen = false;
        let mut next = start;
        while next < end {
            if left().is_zero() {
                return Err(format!(
                    "no answer from the broker within {} ms",
                    timeout.as_millis()
                ));
            }
            match consumer.poll(left().min(Duration::from_millis(500))) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    if m.offset() >= end {
                        break;
                    }
                    if let Some((topic, partition, offset)) = letter_of(&m) {
                        if topic == lookup.source && partition == lookup.partition {
                            if offset >= lookup.min_offset {
                                found.insert(offset);
                            } else {
                                older_seen = true;
                            }
                        }
                    }
                }
            }
        }
        if older_seen {
            break;
        }
        end = start;
    }
    Ok(found)
}

/// The source (topic, partition, offset) a dead letter names in its headers.
fn letter_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<(String, i32, i64)> {
    let headers = m.headers()?;
    let get = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    Some((
        get(DLQ_TOPIC)?,
        get(DLQ_PARTITION)?.parse().ok()?,
        get(DLQ_OFFSET)?.parse().ok()?,
    ))
}
