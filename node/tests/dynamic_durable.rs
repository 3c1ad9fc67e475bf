//! Dynamic instruments that survive, on three `candela node` processes, one
//! tansu broker, one PostgreSQL database and Redis, fed by the CryptoCompare
//! imitation (in this process, so the test can recompute every trade):
//!
//! | node  | roles                                |
//! |-------|--------------------------------------|
//! | alpha | datastore, api                       |
//! | beta  | producer, consumer, coordinator      |
//! | gamma | producer, consumer, coordinator      |
//!
//! beta's coordinator is the active one (the lowest node name), gamma's the
//! standby.
//!
//! * **Survives its nodes.** An instrument no node holds is asked for on
//!   alpha; then the node whose producer streams it is killed (`kill -9`)
//!   and started again, and then the node whose dynamic consumer reads its
//!   topic is killed and left dead. Each time, the instrument is live again
//!   on the survivors within 30 s (the active coordinator reconciles on the
//!   membership change: a producer streams it again, a consumer reads its
//!   topic again from the group's committed offsets), and once the repair
//!   has gone over the gaps, every closed minute alpha serves equals the
//!   bar the independent reference computes from the imitation's trades,
//!   with no gap.
//! * **A standby takes over.** The active coordinator's node is killed; a
//!   new dynamic instrument asked for on alpha is served within 15 s of the
//!   kill, by the standby.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use candela_testkit::cluster::{self, wait_for, NodeProcess};
use candela_testkit::oracle;
use common::DataPlane;
use serde_json::Value;
use sqlx::Row;

/// Streamed from the start (the producers' live feed).
const FIXED: [&str; 1] = ["Coinbase:BTC-USD"];
/// Asked for on demand.
const DYNAMIC: &str = "Binance:SOL-USDT";
/// Asked for on demand after the active coordinator's node is killed.
const LATER: &str = "Kraken:ETH-USD";
/// How many minutes the repair fetches again, every 10 s.
const REPAIR_MINUTES: i64 = 3;

fn client() -> reqwest::Client {
    cluster::http(70)
}

fn nodes(dp: &DataPlane) -> Vec<NodeProcess> {
    let mut nodes = vec![
        common::node("alpha"),
        common::node("beta"),
        common::node("gamma"),
    ];
    cluster::mesh(&mut nodes);
    for (node, roles) in nodes.iter_mut().zip([
        r#"["datastore", "api"]"#,
        r#"["producer", "consumer", "coordinator"]"#,
        r#"["producer", "consumer", "coordinator"]"#,
    ]) {
        dp.configure(node, roles, 1, 2, &FIXED);
        node.set("CANDELA__DYNAMIC__HISTORY_MINUTES", "5")
            .set("CANDELA__DYNAMIC__RECONCILE_SECS", "5")
            .set("CANDELA__DYNAMIC__RECONCILE_HISTORY_MINUTES", "10")
            .set("CANDELA__DYNAMIC__CALL_TIMEOUT_MS", "5000")
            .set("CANDELA__DYNAMIC__PRODUCER_TIMEOUT_MS", "30000")
            .set("CANDELA__DYNAMIC__TOPIC_PREFIX", cluster_prefix(dp))
            .set("CANDELA__DYNAMIC__GROUP_PREFIX", cluster_prefix(dp))
            .set("CANDELA__DATASTORE__FETCH_TIMEOUT_SECS", "60")
            .set(
                "CANDELA__INGEST__REPAIR_MINUTES",
                REPAIR_MINUTES.to_string(),
            )
            .set("CANDELA__INGEST__REPAIR_INTERVAL_SECS", "10");
    }
    nodes
}

/// Topic and group prefixes of this test (tests share one broker).
fn cluster_prefix(dp: &DataPlane) -> String {
    format!("dyn.{}", dp.group.replace('_', "-"))
}

/// `GET /api/v1/ohlcv` for `instrument` on `node`: (status, body).
async fn ohlcv(node: &NodeProcess, instrument: &str, from: i64) -> (u16, Value) {
    let url = format!(
        "{}/api/v1/ohlcv?instrument={instrument}&interval=1m&from={from}&limit=10000",
        node.api()
    );
    match client().get(&url).send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            (code, resp.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// The ticks of `instrument` stored so far.
async fn ticks_of(dp: &DataPlane, instrument: &str) -> i64 {
    sqlx::query("SELECT count(*) FROM ticks WHERE instrument = $1")
        .bind(instrument)
        .fetch_one(&dp.pool)
        .await
        .map(|r| r.get::<i64, _>(0))
        .unwrap_or(0)
}

/// The node whose log last says it does `what` for `needle`.
fn last_to(nodes: &[NodeProcess], what: &str, needle: &str) -> Option<usize> {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(k, n)| {
            let log = n.log();
            let at = log
                .lines()
                .enumerate()
                .filter(|(_, l)| l.contains(what) && l.contains(needle))
                .map(|(i, _)| i)
                .last()?;
            // Compare by time stamp: the line's first word.
            let line = log.lines().nth(at)?;
            Some((line.split_whitespace().next()?.to_owned(), k))
        })
        .max()
        .map(|(_, k)| k)
}

/// Waits until more ticks of `instrument` are stored than now: it is live.
async fn live_again(dp: &DataPlane, nodes: &[NodeProcess], instrument: &str, what: &str) {
    let before = ticks_of(dp, instrument).await;
    wait_for(what, 30, nodes, async || {
        (ticks_of(dp, instrument).await > before + 5).then_some(())
    })
    .await;
}

/// The comparable part of a closed 1-minute bar served: (open time, open,
/// high, low, close, base volume, quote volume). The trade count is left
/// out: a minute repaired from history has none.
type Closed = (
    i64,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dynamic_instrument_survives_its_producer_and_its_consumer_node() {
    let mut dp = DataPlane::start(4.0).await;
    let mut nodes = nodes(&dp);
    nodes[1].start();
    nodes[2].start();
    nodes[0].start();
    cluster::wait_ready(&nodes, 0, 90).await;
    let asked_at = common::now_secs();

    // Asked for on alpha: served.
    let (code, body) = wait_for("the dynamic instrument", 90, &nodes, async || {
        let (code, body) = ohlcv(&nodes[0], DYNAMIC, asked_at - 3_600).await;
        (code == 200).then_some((code, body))
    })
    .await;
    assert_eq!(code, 200, "{body}");
    live_again(&dp, &nodes, DYNAMIC, "live ticks of the dynamic instrument").await;

    // The producer's node dies and comes back.
    let producer =
        last_to(&nodes, "serving a dynamic topic", DYNAMIC).expect("a producer serves it");
    assert_ne!(producer, 0);
    nodes[producer].kill();
    live_again(
        &dp,
        &nodes,
        DYNAMIC,
        "the instrument live again after its producer's node died",
    )
    .await;
    nodes[producer].start();

    // The consumer's node dies for good.
    let consumer = last_to(
        &nodes,
        "subscribed to a dynamic topic",
        &DYNAMIC.replace(':', "."),
    )
    .expect("a consumer reads it");
    assert_ne!(consumer, 0);
    nodes[consumer].kill();
    live_again(
        &dp,
        &nodes,
        DYNAMIC,
        "the instrument live again after its consumer's node died",
    )
    .await;

    // Once the repair went over the gaps: every closed minute since the
    // instrument was asked for, up to the minute of the last kill, equals
    // the reference, with no gap.
    let first = asked_at - asked_at.rem_euclid(60) + 60;
    let now = common::now_secs();
    let last = (now - now.rem_euclid(60)).max(first);
    wait_for("the repair to go over the gaps", 240, &nodes, async || {
        // Closed, then two repair rounds (every 10 s) over it.
        (common::now_secs() >= last + 60 + 25).then_some(())
    })
    .await;
    let model = dp.stop_source().await;
    let trades = common::reference_trades(
        &model,
        DYNAMIC,
        first * 1_000_000_000,
        (last + 60) * 1_000_000_000 - 1,
    );
    let want: BTreeMap<i64, Closed> = oracle::bars(&trades, 60)
        .into_iter()
        .map(|b| {
            (
                b.open_time,
                (
                    b.open_time,
                    b.open,
                    b.high,
                    b.low,
                    b.close,
                    b.volume_base,
                    b.volume_quote,
                ),
            )
        })
        .collect();
    let served = cluster::served_bars(&nodes[0].api(), DYNAMIC, "1m", first).await;
    let got: BTreeMap<i64, Closed> = served
        .into_iter()
        .filter(|b| b.0 <= last)
        .map(|b| (b.0, (b.0, b.1, b.2, b.3, b.4, b.5, b.6)))
        .collect();
    assert!(!want.is_empty());
    let differ: Vec<String> = want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|t| want.get(t) != got.get(t))
        .map(|t| format!("{t}: want {:?}, got {:?}", want.get(t), got.get(t)))
        .collect();
    assert!(
        differ.is_empty(),
        "every closed minute from {first} to {last}, no gap; differing:\n{}\n{}",
        differ.join("\n"),
        nodes
            .iter()
            .map(|n| format!("--- {}:\n{}", n.name, n.log_tail(30)))
            .collect::<String>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_coordinator_takes_over() {
    let dp = DataPlane::start(4.0).await;
    let mut nodes = nodes(&dp);
    nodes[1].start();
    nodes[2].start();
    nodes[0].start();
    cluster::wait_ready(&nodes, 0, 90).await;
    wait_for(
        "beta's coordinator to be the active one",
        60,
        &nodes,
        async || {
            nodes[1]
                .log()
                .contains("this node's coordinator is the active one")
                .then_some(())
        },
    )
    .await;
    // A first instrument, through beta's coordinator.
    let from = common::now_secs() - 3_600;
    let (code, body) = ohlcv(&nodes[0], DYNAMIC, from).await;
    assert_eq!(code, 200, "{body}");

    // beta dies; gamma's coordinator takes over.
    nodes[1].kill();
    let killed = Instant::now();
    let (code, body) = wait_for(
        "a new instrument served after the kill",
        60,
        &nodes,
        async || {
            let (code, body) = ohlcv(&nodes[0], LATER, from).await;
            (code == 200).then_some((code, body))
        },
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        nodes[2]
            .log()
            .contains("this node's coordinator is the active one"),
        "{}",
        nodes[2].log_tail(30)
    );
    eprintln!(
        "a new instrument served {} ms after the active coordinator's node was killed",
        killed.elapsed().as_millis()
    );
}
