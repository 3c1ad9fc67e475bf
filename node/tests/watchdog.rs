//! The consumer watchdog on a node process with every role (real broker,
//! PostgreSQL, Redis; the imitation feeding it): while the test holds a lock
//! that blocks the consumer's database writes past `consumer.stall_secs`,
//! the watchdog reports the stuck consumer (log, metric) and restarts it
//! through its supervisor; once the lock is released the consumer catches
//! up, and every bar served equals the independent oracle's bars of the
//! source's trades.
//!
//! Node logs: set `CANDELA_TEST_LOG_DIR` to keep them there.

mod common;

use candela_testkit::cluster::{self, wait_for};
use common::DataPlane;

const INSTRUMENTS: [&str; 2] = ["Coinbase:BTC-USD", "Kraken:ETH-EUR"];
const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stuck_on_a_lock_is_restarted_and_the_bars_are_right_after() {
    let mut dp = DataPlane::start(20.0).await;
    let mut node = common::node("solo");
    dp.configure(
        &mut node,
        r#"["producer", "consumer", "datastore", "api"]"#,
        1,
        PARTITIONS,
        &INSTRUMENTS,
    );
    node.set("CANDELA__CONSUMER__STALL_SECS", "3");
    node.start();
    let nodes = [node];
    wait_for("ingestion under way", 60, &nodes, async || {
        (dp.stored().await > 100).then_some(())
    })
    .await;

    // The consumer's writes wait on the test's lock.
    let mut lock = dp.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE ticks IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let ops = nodes[0].ops();
    wait_for(
        "the watchdog's report and restart",
        60,
        &nodes,
        async || {
            let log = nodes[0].log();
            let text = reqwest::get(format!("{ops}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let stalls = text
                .lines()
                .filter(|l| l.starts_with("candela_consumer_stalls_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            (log.contains("consumer stuck") && log.contains("child restarted") && stalls >= 1.0)
                .then_some(())
        },
    )
    .await;
    assert!(nodes[0].exited().is_none(), "the node runs on");
    lock.rollback().await.unwrap();

    // It catches up; the bars are right.
    let model = dp.stop_source().await;
    wait_for("the consumer to catch up", 120, &nodes, async || {
        cluster::caught_up(&dp.bootstrap, &dp.topic, &dp.group, PARTITIONS)
            .ok()
            .filter(|c| *c)
    })
    .await;
    dp.assert_served_bars_equal_reference(&nodes[0].api(), &model, &INSTRUMENTS)
        .await;
}
