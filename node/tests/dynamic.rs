//! The Data Not Found path of one node, in-process, on the real broker,
//! PostgreSQL and Redis, fed by the CryptoCompare imitation: a request for an
//! instrument the platform has never held makes the datastore ask the
//! Coordinator (by cluster name), which creates the dynamic topic, has the
//! node's agent start a Consumer for dynamic topics and tells it the topic,
//! and has the producer publish the history there and stream it live. The
//! waiting request then returns bars equal to what the test kit's
//! independent oracle computes from the imitation's trades (its exact
//! history) and the live ticks the node stored, every field. A killed
//! dynamic consumer is re-told its topic and goes on storing.
//!
//! Before that, a node without a coordinator answers such a request with a
//! clear 404.

use std::time::Duration;

use candela_actors::consumer::dynamic::{DynamicConsumerMsg, DynamicConsumerStatus};
use candela_actors::coordinator::directory::COORDINATOR_NAME;
use candela_actors::coordinator::{CoordinatorMsg, CoordinatorStatus};
use candela_actors::domain::{Instrument, Interval};
use candela_actors::supervisor::SupervisorMsg;
use candela_node::cluster::names;
use candela_node::config::Config;
use candela_node::platform;
use candela_testkit::{broker, convert, oracle, unique, TestDb};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::Row;

const T: Duration = Duration::from_secs(5);

/// The tests of this file run one at a time: each starts a node with the
/// `coordinator` role in this process, and the cluster name `coordinator`
/// resolves to one of them (the lowest node name), not necessarily the
/// test's own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn config(db: &TestDb, roles: &str) -> Config {
    config_with(db, roles, &[])
}

fn config_with(db: &TestDb, roles: &str, extra: &[(&str, &str)]) -> Config {
    let node = unique("node").replace('_', "-");
    let mut env = vec![
        ("CANDELA__NODE__NAME", node),
        ("CANDELA__NODE__ROLES", roles.to_owned()),
        (
            "CANDELA__KAFKA__BROKERS",
            format!("[\"{}\"]", broker::shared_bootstrap()),
        ),
        ("CANDELA__KAFKA__TICK_TOPIC", unique("tick-data")),
        ("CANDELA__KAFKA__TICK_TOPIC_PARTITIONS", "1".into()),
        ("CANDELA__POSTGRES__URL", db.url.clone()),
        ("CANDELA__REDIS__URL", candela_testkit::redis_url()),
        ("CANDELA__REDIS__KEY_PREFIX", unique("candela")),
        ("CANDELA__SOURCE__KIND", "imitation".into()),
        ("CANDELA__SOURCE__IMITATION__TRADES_PER_SEC", "5.0".into()),
        (
            "CANDELA__INGEST__INSTRUMENTS",
            "[\"Coinbase:BTC-USD\"]".into(),
        ),
        ("CANDELA__INGEST__BACKFILL_MINUTES", "0".into()),
        ("CANDELA__INGEST__REPAIR_MINUTES", "0".into()),
        ("CANDELA__CONSUMER__GROUP", unique("group")),
        ("CANDELA__CONSUMER__BATCH_MAX", "500".into()),
        ("CANDELA__DYNAMIC__TOPIC_PREFIX", unique("dyn")),
        ("CANDELA__DYNAMIC__GROUP_PREFIX", unique("dyngroup")),
        ("CANDELA__DYNAMIC__HISTORY_MINUTES", "15".into()),
        ("CANDELA__DATASTORE__FETCH_TIMEOUT_SECS", "90".into()),
        ("CANDELA__API__LISTEN", "127.0.0.1:0".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml")).unwrap();
    Config::parse(&text, env.into_iter().map(|(k, v)| (k.to_owned(), v))).unwrap()
}

use candela_testkit::cluster::eventually as wait_for;

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

type Ohlcv = (i64, Decimal, Decimal, Decimal, Decimal, Decimal, Decimal);

fn bars_of(body: &Value) -> Vec<Ohlcv> {
    body["bars"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|b| {
            (
                b["time"].as_i64().unwrap(),
                dec(&b["open"]),
                dec(&b["high"]),
                dec(&b["low"]),
                dec(&b["close"]),
                dec(&b["volume_base"]),
                dec(&b["volume_quote"]),
            )
        })
        .collect()
}

async fn dynamic_status(name: &str) -> Option<DynamicConsumerStatus> {
    names::call_by_name(name, DynamicConsumerMsg::Status, T)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_instrument_is_fetched_on_demand_and_equals_the_independent_computation() {
    let _serial = SERIAL.lock().await;
    let http = reqwest::Client::new();
    let sol: Instrument = "Binance:SOL-USDT".parse().unwrap();

    // A node without a coordinator: a clear 404, at once.
    let db0 = TestDb::new().await;
    let lone = platform::start(&config(&db0, "[\"datastore\", \"api\"]"))
        .await
        .unwrap();
    let url = format!(
        "http://{}/api/v1/ohlcv?instrument={sol}&from={}",
        lone.api_addr.unwrap(),
        now() - 600
    );
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no coordinator"),
        "{body}"
    );
    lone.shutdown().await;

    // A node with every role.
    let db = TestDb::new().await;
    let config = config(
        &db,
        "[\"producer\", \"consumer\", \"datastore\", \"api\", \"coordinator\"]",
    );
    let p = platform::start(&config).await.unwrap();
    let im = p.imitation.as_ref().unwrap();
    let api = format!("http://{}", p.api_addr.unwrap());
    let from = Interval::M1.floor(now() - 10 * 60);
    let url = format!("{api}/api/v1/ohlcv?instrument={sol}&interval=1m&from={from}&limit=10000");
    let started = std::time::Instant::now();
    let resp = http.get(&url).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["served"], "fetched", "{body}");
    eprintln!("fetched on demand in {:?}", started.elapsed());

    // What the coordinator arranged.
    let coordinator: CoordinatorStatus =
        names::call_by_name(COORDINATOR_NAME, CoordinatorMsg::Status, T)
            .await
            .unwrap();
    let grant = coordinator
        .topics
        .iter()
        .find(|t| t.instrument == sol)
        .unwrap_or_else(|| panic!("{coordinator:?}"))
        .clone();
    assert_eq!(
        grant.topic,
        format!("{}.Binance.SOL-USDT", config.dynamic.topic_prefix)
    );
    assert_eq!(grant.producer, format!("producer/{}", config.node.name));
    assert!(
        grant
            .consumer
            .starts_with(&format!("consumer-dynamic/{}/", config.node.name)),
        "{grant:?}"
    );
    assert_eq!(grant.history_bars, 15, "{grant:?}");
    let events: Vec<&str> = coordinator
        .run
        .recent
        .iter()
        .map(|s| s.event.as_str())
        .collect();
    assert_eq!(
        events,
        [
            "REQUEST_CREATE_TOPIC",
            "CREATE_TOPIC_SUCCESS",
            "NOTIFY_SUCCESS"
        ]
    );
    assert_eq!(coordinator.run.state, "Active");

    // The bars of the history minutes equal the independent computation:
    // the reference rule on the history an exact source answers (the
    // imitation's trades of each minute) and the live ticks the node stored
    // (the stream joined at the end of the window: they cannot complete a
    // history minute, so none of them changes one).
    let history = convert::exact_history(&convert::imitation_trades(
        &im.model(),
        &sol,
        grant.history_from * 1_000_000_000,
        (grant.history_to + 60) * 1_000_000_000 - 1,
    ));
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let want = {
        let live = convert::stored_ticks(&pool, &sol.to_string()).await;
        oracle::reconcile(&live, &history)
            .into_iter()
            .filter(|m| (from..=grant.history_to).contains(&m.bar.open_time))
            .collect::<Vec<_>>()
    };
    assert!(want.len() >= 9, "{} minutes expected", want.len());
    let window = |body: &Value| -> Vec<oracle::Minute> {
        convert::served_minutes(body, &sol.to_string())
            .into_iter()
            .filter(|m| m.bar.open_time <= grant.history_to)
            .collect()
    };
    oracle::assert_same_minutes("fetched", &window(&body), &want);

    // The dynamic consumer: subscribed by the coordinator, storing live trades.
    let consumer = dynamic_status(&grant.consumer).await.unwrap();
    assert_eq!(consumer.topic.as_deref(), Some(grant.topic.as_str()));
    let events: Vec<&str> = consumer
        .run
        .recent
        .iter()
        .map(|s| s.event.as_str())
        .collect();
    assert_eq!(&events[..2], ["SUBSCRIBE_TO_TOPIC", "SUBSCRIBE_SUCCESS"]);
    let live = || {
        let pool = pool.clone();
        let sol = sol.to_string();
        async move {
            sqlx::query("SELECT count(*) FROM ticks WHERE instrument = $1")
                .bind(sol)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    wait_for("live ticks of the dynamic instrument", 60, async || {
        (live().await > 5).then_some(())
    })
    .await;

    // Kill it: its supervisor restarts it (RESET → Idle) and the agent's
    // child spec re-tells it its topic; it goes on storing.
    names::resolve_cell(&grant.consumer).unwrap().kill();
    let again = wait_for("the consumer to be re-told its topic", 60, async || {
        let children = ractor::call_t!(p.dynamic, SupervisorMsg::Status, 2_000).ok()?;
        let child = children.iter().find(|c| c.name == grant.consumer)?;
        if child.restarts == 0 || !child.running {
            return None;
        }
        let s = dynamic_status(&grant.consumer).await?;
        // A fresh run: it began with RESET (the record may have rolled on).
        (!s.idle && s.run.transitions_total >= 3).then_some(s)
    })
    .await;
    assert_eq!(again.topic.as_deref(), Some(grant.topic.as_str()));
    assert!(!again.idle, "{again:?}");
    let before = live().await;
    wait_for("live ticks after the restart", 60, async || {
        (live().await > before + 5).then_some(())
    })
    .await;

    // Asked again: answered from what is stored, no second fetch.
    let body: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_ne!(body["served"], "fetched", "{body}");
    oracle::assert_same_minutes("asked again", &window(&body), &want);
    let coordinator: CoordinatorStatus =
        names::call_by_name(COORDINATOR_NAME, CoordinatorMsg::Status, T)
            .await
            .unwrap();
    assert_eq!(coordinator.run.transitions_total, 3, "one cycle only");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pairs_the_source_does_not_list_change_nothing_and_the_live_feed_carries_on() {
    let _serial = SERIAL.lock().await;
    let http = reqwest::Client::new();
    let db = TestDb::new().await;
    let config = config_with(
        &db,
        "[\"producer\", \"consumer\", \"datastore\", \"api\", \"coordinator\"]",
        &[("CANDELA__DYNAMIC__CREATIONS_PER_MINUTE", "600")],
    );
    let p = platform::start(&config).await.unwrap();
    let api = format!("http://{}", p.api_addr.unwrap());
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .map(|r| r.get::<i64, _>(0))
                .unwrap_or(0)
        }
    };
    let btc = || count("SELECT count(*) FROM ticks WHERE instrument = 'Coinbase:BTC-USD'");
    wait_for("the live feed", 60, async || {
        (btc().await > 5).then_some(())
    })
    .await;

    // 100 pairs the source does not list: 404 each, with the source's words.
    for n in 0..100 {
        let url = format!(
            "{api}/api/v1/ohlcv?instrument=Coinbase:ZZ{n}-USD&from={}",
            now() - 600
        );
        let resp = http.get(&url).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 404, "{body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("does not list"), "{body}");
        assert!(
            message.contains("does not exist for this coin pair"),
            "{body}"
        );
    }

    // Nothing was created, nothing restarted, and the live feed carries on.
    assert_eq!(count("SELECT count(*) FROM dynamic_instruments").await, 0);
    let children = ractor::call_t!(p.supervisor, SupervisorMsg::Status, 2_000).unwrap();
    for name in [
        format!("producer/{}", config.node.name),
        format!("coordinator/{}", config.node.name),
    ] {
        let child = children.iter().find(|c| c.name == name).unwrap();
        assert!(child.running, "{child:?}");
        assert_eq!(child.restarts, 0, "{child:?}");
    }
    let dynamic = ractor::call_t!(p.dynamic, SupervisorMsg::Status, 2_000).unwrap();
    assert!(dynamic.is_empty(), "no dynamic consumer: {dynamic:?}");
    let ds = ractor::call_t!(p.datastore.as_ref().unwrap(), SupervisorMsg::Status, 2_000).unwrap();
    assert!(ds.iter().all(|c| c.restarts == 0), "{ds:?}");
    let topics = candela_actors::kafka::admin::list_topics(&config.kafka, T)
        .await
        .unwrap();
    assert!(
        !topics
            .iter()
            .any(|t| t.name.starts_with(&config.dynamic.topic_prefix)),
        "no dynamic topic: {topics:?}"
    );
    let before = btc().await;
    wait_for("the live feed to carry on", 60, async || {
        (btc().await > before + 5).then_some(())
    })
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_illiquid_instrument_is_served_on_the_first_request() {
    let _serial = SERIAL.lock().await;
    // A trade every minute or so: many minutes of the history are empty
    // (flat bars with no volume, never stored).
    let db = TestDb::new().await;
    let config = config_with(
        &db,
        "[\"producer\", \"consumer\", \"datastore\", \"api\", \"coordinator\"]",
        &[
            ("CANDELA__SOURCE__IMITATION__TRADES_PER_SEC", "0.02"),
            ("CANDELA__DATASTORE__FETCH_TIMEOUT_SECS", "30"),
        ],
    );
    let p = platform::start(&config).await.unwrap();
    let im = p.imitation.as_ref().unwrap();
    let sol: Instrument = "Binance:SOL-USDT".parse().unwrap();
    let from = Interval::M1.floor(now() - 15 * 60);
    let url = format!(
        "http://{}/api/v1/ohlcv?instrument={sol}&interval=1m&from={from}&limit=10000",
        p.api_addr.unwrap()
    );
    let resp = reqwest::get(&url).await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["served"], "fetched", "{body}");
    let coordinator: CoordinatorStatus =
        names::call_by_name(COORDINATOR_NAME, CoordinatorMsg::Status, T)
            .await
            .unwrap();
    let grant = coordinator
        .topics
        .iter()
        .find(|t| t.instrument == sol)
        .unwrap()
        .clone();
    // Fewer minutes with trades than minutes: the request did not wait for
    // the empty ones.
    let minutes = (grant.history_to - grant.history_from) / 60 + 1;
    assert!(grant.history_bars < minutes as u64, "{grant:?}");
    let trades: Vec<candela_testkit::oracle::Trade> = im
        .model()
        .trades_between(
            &sol,
            grant.history_from * 1_000_000_000,
            (grant.history_to + 60) * 1_000_000_000 - 1,
        )
        .iter()
        .map(|t| {
            let tick = t.to_tick(&sol);
            candela_testkit::oracle::Trade {
                instrument: sol.to_string(),
                id: tick.trade_id,
                time_ns: tick.trade_time_ns,
                price: tick.price,
                quantity: tick.quantity,
            }
        })
        .collect();
    let want: Vec<Ohlcv> = candela_testkit::oracle::bars(&trades, 60)
        .iter()
        .filter(|b| b.open_time >= from)
        .map(|b| {
            (
                b.open_time,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume_base,
                b.volume_quote,
            )
        })
        .collect();
    assert_eq!(want.len() as u64, grant.history_bars.min(want.len() as u64));
    let got: Vec<Ohlcv> = bars_of(&body)
        .into_iter()
        .filter(|b| b.0 <= grant.history_to)
        .collect();
    assert_eq!(got, want);
    p.shutdown().await;
}
