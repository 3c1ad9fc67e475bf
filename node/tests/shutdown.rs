//! A graceful stop during ingestion, on a node process with every role (real
//! broker, PostgreSQL, Redis; the imitation at 50 trades/s per instrument):
//! SIGTERM lands while the consumer's batch waits on a table lock the test
//! holds (released 2 s later); the node stops the intake, lets the consumer
//! finish and commit that batch (the group's committed offsets move past
//! it), stops every supervisor and exits 0 within the bound. Then the
//! group's committed offsets are exact: every trade before them is stored,
//! and no trade after them is (nothing processed and left uncommitted, so a
//! restart redoes no batch).
//!
//! Node logs: set `CANDELA_TEST_LOG_DIR` to keep them there.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use candela_actors::domain::Record;
use candela_actors::kafka::schema::decode_record;
use candela_testkit::cluster::{self, wait_for};
use common::DataPlane;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::Row;

const PARTITIONS: i32 = 2;

/// Every record of `topic` up to each partition's high watermark: (partition,
/// offset, record).
fn read_all(bootstrap: &str, topic: &str, highs: &[i64]) -> Vec<(i32, i64, Record)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", candela_testkit::unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let want: i64 = highs.iter().sum();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < want {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {want}",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            if m.offset() < highs[m.partition() as usize] {
                let record = decode_record(m.payload().unwrap_or_default()).expect("a record");
                out.push((m.partition(), m.offset(), record));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_ingestion_exits_0_with_every_processed_batch_committed() {
    let dp = DataPlane::start(50.0).await;
    let mut node = common::node("solo");
    dp.configure(
        &mut node,
        r#"["producer", "consumer", "datastore", "api"]"#,
        1,
        PARTITIONS,
        &["Coinbase:BTC-USD", "Kraken:ETH-EUR"],
    );
    node.start();
    let nodes = [node];
    wait_for("ingestion under way", 60, &nodes, async || {
        (dp.stored().await > 300).then_some(())
    })
    .await;

    // The consumer's next write waits on a lock the test holds: SIGTERM
    // lands while a batch is in flight.
    let mut lock = dp.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE ticks IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let committed_at =
        |o: &[(Option<i64>, i64)]| o.iter().map(|(c, _)| c.unwrap_or(0)).sum::<i64>();
    let before_term = cluster::offsets(&dp.bootstrap, &dp.topic, &dp.group, PARTITIONS).unwrap();
    assert!(
        before_term.iter().any(|(c, h)| c.unwrap_or(0) < *h),
        "messages wait behind the lock: {before_term:?}"
    );
    nodes[0].terminate();
    tokio::time::sleep(Duration::from_secs(2)).await;
    lock.rollback().await.unwrap();
    let status = wait_for("the node to exit", 60, &nodes, async || nodes[0].exited()).await;
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        nodes[0].log_tail(40)
    );
    let log = nodes[0].log();
    assert!(log.contains("shutting down"), "{}", nodes[0].log_tail(40));

    let offsets = cluster::offsets(&dp.bootstrap, &dp.topic, &dp.group, PARTITIONS).unwrap();
    assert!(
        committed_at(&offsets) > committed_at(&before_term),
        "the batch in flight at SIGTERM was finished and committed: {before_term:?} then {offsets:?}"
    );
    let highs: Vec<i64> = offsets.iter().map(|(_, h)| *h).collect();
    let committed: Vec<i64> = offsets.iter().map(|(c, _)| c.unwrap_or(0)).collect();
    let stored: HashSet<(String, String)> = sqlx::query("SELECT instrument, trade_id FROM ticks")
        .fetch_all(&dp.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let records = read_all(&dp.bootstrap, &dp.topic, &highs);
    let key = |r: &Record| match r {
        Record::Trade(t) => Some((t.instrument.to_string(), t.trade_id.clone())),
        Record::Bar(_) => None,
    };
    let before: HashSet<(String, String)> = records
        .iter()
        .filter(|(p, o, _)| *o < committed[*p as usize])
        .filter_map(|(_, _, r)| key(r))
        .collect();
    let after: Vec<(String, String)> = records
        .iter()
        .filter(|(p, o, _)| *o >= committed[*p as usize])
        .filter_map(|(_, _, r)| key(r))
        .filter(|k| !before.contains(k))
        .collect();
    eprintln!(
        "offsets (committed, high) {offsets:?}: {} trades before the commits, {} after; {} stored",
        before.len(),
        after.len(),
        stored.len()
    );
    assert!(!before.is_empty());
    let missing = before.iter().filter(|k| !stored.contains(*k)).count();
    assert_eq!(missing, 0, "trades before the committed offsets not stored");
    let uncommitted = after.iter().filter(|k| stored.contains(*k)).count();
    assert_eq!(
        uncommitted, 0,
        "trades stored but not committed: a restart would redo their batch"
    );
}
