//! The embedded backends (`candela_actors::embedded`) under the same shared
//! contracts as the real ones: `SqliteStore` as the `BarStore` (the cases
//! PostgreSQL passes in `store.rs`), `MemoryCache` as the `BarCache` (Redis's
//! cases), `MemoryBus` as the bus (Kafka's cases in `kafka_consumer.rs`), and
//! the fixed consumer end to end on the embedded stack (as on Kafka,
//! PostgreSQL and Redis in `consumer_e2e.rs`). Then what only the embedded
//! backends have: the bus's retention rule, topics and subscriptions, and the
//! SQLite file's persistence.

mod backends;
mod common;

use std::sync::Arc;
use std::time::Duration;

use backends::bus::{take, BusHarness, Letter};
use backends::e2e::Stack;
use candela_actors::consumer::OpenStream;
use candela_actors::domain::{Instrument, Interval};
use candela_actors::embedded::{MemoryBus, MemoryCache, MemoryStream, Retention, SqliteStore};
use candela_actors::kafka::dead_letter_topic;
use candela_actors::ports::{BusError, MessageStream, RecordBus};
use candela_actors::store::{BarStore, WriteBatch};
use tempfile::TempDir;

/// A fresh store in a fresh data folder.
async fn sqlite_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("data")).await.unwrap();
    (dir, store)
}

async fn memory_cache(window_secs: i64) -> MemoryCache {
    MemoryCache::new(window_secs)
}

/// Attaches a listener to the cache's events.
async fn memory_listen(
    cache: Arc<MemoryCache>,
    listener: Arc<dyn candela_actors::store::watch::CacheListener>,
) {
    cache.listen(listener);
}

/// The in-process bus under the bus contract.
struct Memory {
    bus: Arc<MemoryBus>,
}

async fn memory_bus() -> Memory {
    Memory {
        bus: Arc::new(MemoryBus::new()),
    }
}

impl BusHarness for Memory {
    type Bus = MemoryBus;
    type Streams = MemoryBus;

    fn bus(&self) -> &Arc<MemoryBus> {
        &self.bus
    }

    fn streams(&self) -> &Arc<MemoryBus> {
        &self.bus
    }

    fn quiet(&self) -> Duration {
        Duration::from_millis(200)
    }

    async fn publish_raw(&self, topic: &str, messages: &[(Option<&str>, &[u8])]) {
        let raw: Vec<(Option<&[u8]>, &[u8])> = messages
            .iter()
            .map(|(k, p)| (k.map(str::as_bytes), *p))
            .collect();
        self.bus.publish_raw(topic, &raw).unwrap();
    }

    async fn dead_letters(&self, topic: &str, want: usize) -> Vec<Letter> {
        let _ = want; // everything is there already: appends are synchronous
        self.bus
            .messages(&dead_letter_topic(topic))
            .into_iter()
            .map(|m| Letter {
                key: m.key,
                payload: m.payload,
                headers: m.headers.into_iter().collect(),
            })
            .collect()
    }

    async fn end_offsets(&self, topic: &str, partitions: i32) -> Vec<i64> {
        (0..partitions)
            .map(|p| self.bus.end_offset(topic, p).unwrap_or(0))
            .collect()
    }

    async fn dead_letter_count(&self, topic: &str) -> usize {
        self.bus.messages(&dead_letter_topic(topic)).len()
    }

    async fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        (0..partitions)
            .map(|p| self.bus.committed(group, topic, p))
            .collect()
    }

    fn assignment(stream: &MemoryStream) -> Vec<(String, i32)> {
        stream.assignment()
    }

    async fn close(stream: MemoryStream) {
        drop(stream);
    }
}

async fn embedded_stack() -> (TempDir, Stack<Memory, SqliteStore, MemoryCache>) {
    let (dir, store) = sqlite_store().await;
    let bus = memory_bus().await;
    let topic = common::unique("e2e");
    bus.bus().ensure_topic(&topic, 3).await.unwrap();
    (
        dir,
        Stack {
            bus,
            store: Arc::new(store),
            cache: Arc::new(MemoryCache::new(backends::cache::CENTURY)),
            topic,
        },
    )
}

store_contract_tests!(sqlite_store);
reconcile_contract_tests!(sqlite_store);
cache_contract_tests!(memory_cache, sqlite_store, memory_listen);
bus_contract_tests!(memory_bus);
e2e_contract_tests!(embedded_stack);

// What only the embedded backends have.

fn instruments(n: usize) -> Vec<Instrument> {
    common::instruments(n)
}

// Time is the test's (paused, advanced only by its sleeps): "old enough"
// and "too young" never depend on how fast a loaded machine runs the steps.
#[tokio::test(start_paused = true)]
async fn retention_drops_what_every_group_committed_once_old_enough() {
    let bus = MemoryBus::with_retention(Retention {
        min_age: Duration::from_millis(300),
        max_messages: 1_000_000,
    });
    bus.ensure_topic("t", 1).await.unwrap();
    let records = backends::bus::records(&instruments(1), 100, 1_000);
    bus.publish("t", &records).await.unwrap();
    // No group has subscribed: everything is kept, however old.
    tokio::time::sleep(Duration::from_millis(350)).await;
    bus.publish("t", &records[..1]).await.unwrap();
    assert_eq!(bus.offsets("t").unwrap(), [(0, 101)]);

    let topics = vec!["t".to_owned()];
    let mut a = bus.open("a", &topics).await.unwrap();
    let mut b = bus.open("b", &topics).await.unwrap();
    let got_a = take(&mut a, 101, 1_000, Duration::from_secs(5)).await;
    let got_b = take(&mut b, 101, 1_000, Duration::from_secs(5)).await;
    assert_eq!((got_a.len(), got_b.len()), (101, 101));
    // Group a committed everything, group b half: b's uncommitted half stays.
    a.commit(&got_a).await.unwrap();
    b.commit(&got_b[..50]).await.unwrap();
    assert_eq!(bus.offsets("t").unwrap(), [(50, 101)]);
    // Too young to go, even when every group committed it.
    bus.publish("t", &records[..1]).await.unwrap(); // offset 101
    let fresh = take(&mut b, 1, 10, Duration::from_secs(5)).await;
    assert_eq!(
        fresh.iter().map(|m| m.offset).collect::<Vec<_>>(),
        [101],
        "b reads on from its position"
    );
    let mut rest = got_b[50..].to_vec();
    rest.extend(fresh.iter().cloned());
    b.commit(&rest).await.unwrap();
    let more = take(&mut a, 1, 10, Duration::from_secs(5)).await;
    a.commit(&more).await.unwrap();
    assert_eq!(
        bus.offsets("t").unwrap(),
        [(100, 102)],
        "offsets 0..100 were old enough, 100 and 101 are not"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    b.commit(&fresh).await.unwrap();
    assert_eq!(bus.offsets("t").unwrap(), [(102, 102)]);
    assert_eq!(bus.evicted(), 0);

    // A member of b that reopens resumes after the last commit, even though
    // the messages before it are gone.
    drop(b);
    bus.publish("t", &records[..3]).await.unwrap();
    let mut b2 = bus.open("b", &topics).await.unwrap();
    let got = take(&mut b2, 3, 100, Duration::from_secs(5)).await;
    assert_eq!(
        got.iter().map(|m| m.offset).collect::<Vec<_>>(),
        [102, 103, 104]
    );
}

#[tokio::test]
async fn retention_caps_a_partition_whatever_the_groups() {
    let bus = MemoryBus::with_retention(Retention {
        min_age: Duration::ZERO,
        max_messages: 40,
    });
    bus.ensure_topic("t", 1).await.unwrap();
    let topics = vec!["t".to_owned()];
    // A group that subscribed and never commits would pin every message.
    let mut slow = bus.open("slow", &topics).await.unwrap();
    let records = backends::bus::records(&instruments(1), 100, 1_000);
    bus.publish("t", &records).await.unwrap();
    assert_eq!(bus.offsets("t").unwrap(), [(60, 100)]);
    assert_eq!(bus.evicted(), 60);
    // Its member resumes at the earliest message left.
    let got = take(&mut slow, 40, 1_000, Duration::from_secs(5)).await;
    assert_eq!(got.first().map(|m| m.offset), Some(60));
    assert_eq!(got.len(), 40);
    // Memory stays bounded under a steady flow that nobody consumes.
    for _ in 0..10 {
        bus.publish("t", &records).await.unwrap();
    }
    assert_eq!(bus.messages("t").len(), 40);
}

#[tokio::test]
async fn topics_and_subscriptions_behave_like_the_broker() {
    let bus = MemoryBus::new();
    let records = backends::bus::records(&instruments(3), 30, 1_000);
    // Publishing to a topic that does not exist fails, saying so.
    match bus.publish("absent", &records).await {
        Err(BusError::Undelivered {
            failed,
            total,
            reason,
            ..
        }) => {
            assert_eq!((failed, total), (records.len(), records.len()));
            assert!(reason.contains("unknown topic"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(bus.ensure_topic("bad name", 1).await.is_err());
    assert!(bus.ensure_topic("zero", 0).await.is_err());
    assert!(bus.open("g", &[]).await.is_err());
    // An existing topic keeps its partitions.
    bus.ensure_topic("t", 4).await.unwrap();
    bus.ensure_topic("t", 2).await.unwrap();
    assert_eq!(bus.partitions("t"), Some(4));

    // A group may subscribe before its topic exists; it is assigned once the
    // topic is created, and reads from the earliest message.
    let topics = vec!["later".to_owned()];
    let mut s = bus.open("g", &topics).await.unwrap();
    assert!(s
        .next_batch(10, Duration::from_millis(50))
        .await
        .unwrap()
        .is_empty());
    bus.ensure_topic("later", 2).await.unwrap();
    assert_eq!(s.assignment().len(), 2);
    bus.publish("later", &records).await.unwrap();
    let got = take(&mut s, records.len(), 1_000, Duration::from_secs(5)).await;
    assert_eq!(got.len(), records.len());

    // A waiting member wakes up as soon as a message comes.
    // (It waits up to an hour; the test's deadline is 30 s.)
    let waiter = tokio::spawn(async move {
        let batch = s.next_batch(10, Duration::from_secs(3_600)).await.unwrap();
        batch.len()
    });
    // Pacing only (the assertion below does not depend on it): let the
    // member wait before the message comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    bus.publish("later", &records[..1]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the waiting member did not wake up when a message came")
        .unwrap();
    assert_eq!(n, 1);

    // Three members of one group split four partitions; when one leaves, the
    // others take its partitions over.
    let topics = vec!["t".to_owned()];
    let a = bus.open("split", &topics).await.unwrap();
    let b = bus.open("split", &topics).await.unwrap();
    let c = bus.open("split", &topics).await.unwrap();
    let sizes = |xs: &[&MemoryStream]| xs.iter().map(|x| x.assignment().len()).collect::<Vec<_>>();
    assert_eq!(sizes(&[&a, &b, &c]), [2, 1, 1]);
    let mut all: Vec<(String, i32)> = [&a, &b, &c].iter().flat_map(|x| x.assignment()).collect();
    all.sort();
    assert_eq!(all.len(), 4);
    all.dedup();
    assert_eq!(all.len(), 4, "a partition held twice");
    drop(b);
    assert_eq!(sizes(&[&a, &c]), [2, 2]);
}

#[tokio::test]
async fn the_sqlite_file_keeps_everything_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let i = Instrument::new("Coinbase", "BTC", "USD");
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let ticks = backends::data::ticks(&i, t0, 10, 5);
    let before = {
        let store = SqliteStore::open(&data).await.unwrap();
        assert!(store.path().starts_with(&data));
        store
            .write(WriteBatch {
                ticks: &ticks,
                history: &[backends::data::history(&i, t0 + 3_600, 100, 5)],
            })
            .await
            .unwrap();
        let bars = store
            .bars(&i, Interval::M1, t0, t0 + 7_200, 1_000)
            .await
            .unwrap();
        store.close().await;
        bars
    };
    assert_eq!(before.len(), 11);
    // Reopened (migrations already applied): the same rows, and the ticks are
    // still known (a replay is a duplicate).
    let store = SqliteStore::open(&data).await.unwrap();
    assert_eq!(
        store
            .bars(&i, Interval::M1, t0, t0 + 7_200, 1_000)
            .await
            .unwrap(),
        before
    );
    let again = store
        .write(WriteBatch {
            ticks: &ticks,
            history: &[],
        })
        .await
        .unwrap();
    assert_eq!((again.new_ticks, again.duplicate_ticks), (0, 50));
    // WAL mode.
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    // A data folder that cannot be created is a clear error.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(file.join("data")).await.unwrap_err();
    assert!(err.to_string().contains("data folder"), "{err}");
}

#[tokio::test]
async fn concurrent_writers_serialise_without_losing_a_tick() {
    let (_dir, store) = sqlite_store().await;
    let store = Arc::new(store);
    let i = Instrument::new("Coinbase", "BTC", "USD");
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let all = backends::data::ticks(&i, t0, 20, 50);
    let mut tasks = Vec::new();
    for chunk in all.chunks(37) {
        let (store, chunk) = (Arc::clone(&store), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            store
                .write(WriteBatch {
                    ticks: &chunk,
                    history: &[],
                })
                .await
                .unwrap()
                .new_ticks
        }));
    }
    let mut new = 0;
    for t in tasks {
        new += t.await.unwrap();
    }
    assert_eq!(new, all.len() as u64);
    let bars = store
        .bars(&i, Interval::M1, t0, t0 + 3_600, 1_000)
        .await
        .unwrap();
    let reference = candela_testkit::convert::trades(&all);
    candela_testkit::oracle::assert_same_bars(
        "1m",
        &candela_testkit::convert::stored_bars(&bars),
        &candela_testkit::oracle::bars(&reference, 60),
    );
    backends::data::assert_marks("1m", bars.iter().map(|b| &b.bar), &reference);
}
