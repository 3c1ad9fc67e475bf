//! The whole data plane of one node, in-process, on the real broker,
//! PostgreSQL and Redis, fed by the CryptoCompare imitation: what the API
//! serves equals the bars the test kit's independent oracle computes from the
//! distinct trades, every field, through replays,
//! late and out-of-order trades, malformed frames and a consumer restart; and
//! the live stream delivers every minute once across the history/live seam.

use std::collections::BTreeMap;
use std::time::Duration;

use candela_actors::consumer::fixed::FixedConsumerMsg;
use candela_actors::domain::{Instrument, Interval};
use candela_actors::producer::ProducerMsg;
use candela_node::config::Config;
use candela_node::platform;
use candela_testkit::{broker, convert, oracle, unique, TestDb};
use ractor::ActorRef;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::Row;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A configuration for one test: its own node name, topic, group, database,
/// cache prefix and API port.
fn config(db: &TestDb, backfill_minutes: i64) -> Config {
    // The node's log, shown with a failing test's output (RUST_LOG, else info).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let node = unique("node").replace('_', "-");
    let env = vec![
        ("CANDELA__NODE__NAME", node),
        (
            "CANDELA__KAFKA__BROKERS",
            format!("[\"{}\"]", broker::shared_bootstrap()),
        ),
        ("CANDELA__KAFKA__TICK_TOPIC", unique("tick-data")),
        ("CANDELA__KAFKA__TICK_TOPIC_PARTITIONS", "3".into()),
        ("CANDELA__POSTGRES__URL", db.url.clone()),
        ("CANDELA__REDIS__URL", candela_testkit::redis_url()),
        ("CANDELA__REDIS__KEY_PREFIX", unique("candela")),
        ("CANDELA__SOURCE__KIND", "imitation".into()),
        ("CANDELA__SOURCE__IMITATION__TRADES_PER_SEC", "15.0".into()),
        (
            "CANDELA__SOURCE__IMITATION__HEARTBEAT_INTERVAL_MS",
            "1000".into(),
        ),
        ("CANDELA__SOURCE__IMITATION__LATE_RELEASE_MS", "300".into()),
        (
            "CANDELA__SOURCE__CRYPTOCOMPARE__RECONNECT_MIN_MS",
            "100".into(),
        ),
        (
            "CANDELA__SOURCE__CRYPTOCOMPARE__STALE_AFTER_SECS",
            "5".into(),
        ),
        (
            "CANDELA__INGEST__INSTRUMENTS",
            "[\"Coinbase:BTC-USD\", \"Kraken:ETH-EUR\"]".into(),
        ),
        (
            "CANDELA__INGEST__BACKFILL_MINUTES",
            backfill_minutes.to_string(),
        ),
        ("CANDELA__CONSUMER__GROUP", unique("group")),
        ("CANDELA__CONSUMER__BATCH_MAX", "200".into()),
        ("CANDELA__API__LISTEN", "127.0.0.1:0".into()),
        ("CANDELA__API__STREAM_GRACE_SECS", "1".into()),
    ];
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml")).unwrap();
    Config::parse(&text, env.into_iter().map(|(k, v)| (k.to_owned(), v))).unwrap()
}

use candela_testkit::cluster::eventually as wait_for;

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_bars_equal_the_independent_computation_through_faults_and_a_restart() {
    let db = TestDb::new().await;
    let config = config(&db, 0);
    let node = config.node.name.clone();
    let p = platform::start(&config).await.unwrap();
    let im = p.imitation.as_ref().unwrap();
    let api = format!("http://{}", p.api_addr.unwrap());
    let producer = format!("producer/{node}");
    // The shipped cluster.toml runs two fixed consumers: restart the first.
    assert_eq!(config.consumer.workers, 2);
    let consumer = format!("consumer-fixed/{node}/1");
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let stored = || {
        let pool = pool.clone();
        async move {
            sqlx::query("SELECT count(*) FROM ticks")
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };

    wait_for("ticks in the database", 60, async || {
        (stored().await > 30).then_some(())
    })
    .await;
    im.replay_recent(10);
    im.send_late(5);
    im.send_malformed(3);

    // Restart the consumer mid-stream (its supervisor's RESET).
    let c: ActorRef<FixedConsumerMsg> =
        ractor::registry::where_is(consumer.clone()).unwrap().into();
    c.kill();
    let c = wait_for("the consumer to come back", 30, async || {
        let cell = ractor::registry::where_is(consumer.clone())?;
        let c: ActorRef<FixedConsumerMsg> = cell.into();
        let status = ractor::call_t!(c, FixedConsumerMsg::Status, 2_000).ok()?;
        (status.run.recent.first()?.event == "RESET").then_some(c)
    })
    .await;
    im.drop_connections();
    im.replay_recent(10);
    im.send_late(5);
    let before = stored().await;
    wait_for("ticks after the restart", 60, async || {
        (stored().await > before + 40).then_some(())
    })
    .await;

    // Stop the feed; wait until everything published is stored.
    let prod: ActorRef<ProducerMsg> = ractor::registry::where_is(producer.clone()).unwrap().into();
    let instruments: Vec<Instrument> = config.instruments();
    for i in &instruments {
        prod.cast(ProducerMsg::StopLive {
            instrument: i.clone(),
        })
        .unwrap();
    }
    // Trades already in flight may still be published after the casts:
    // the count is read again on every look, not once after a pause (a
    // trade published after a single reading would leave stored above it
    // for ever).
    wait_for("the consumer to catch up", 60, async || {
        let status = ractor::call_t!(prod, ProducerMsg::Status, 5_000).ok()?;
        (stored().await == status.published_trades as i64).then_some(())
    })
    .await;
    let status = ractor::call_t!(c, FixedConsumerMsg::Status, 2_000).unwrap();
    assert_eq!(status.run.rejected_total, 0);

    let http = reqwest::Client::new();
    for i in &instruments {
        // The distinct trades, independently: the imitation's trade function
        // over the time the platform covered — which must be exactly what it
        // stored.
        let row = sqlx::query("SELECT min(trade_time_ns), max(trade_time_ns), count(*) FROM ticks WHERE instrument = $1")
            .bind(i.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
        let (from_ns, to_ns, count): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let trades = convert::imitation_trades(&im.model(), i, from_ns, to_ns);
        assert_eq!(
            trades.len() as i64,
            count,
            "{i}: stored ticks are exactly the distinct trades"
        );

        for interval in Interval::ALL {
            let url = format!(
                "{api}/api/v1/ohlcv?instrument={i}&interval={}&from={}&to={}&limit=10000",
                interval.as_str(),
                from_ns / 1_000_000_000,
                now() + 60
            );
            let body: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
            let what = format!("{i} {}", interval.as_str());
            oracle::assert_same_bars(
                &what,
                &convert::served_bars(&body, &i.to_string()),
                &oracle::bars(&trades, interval.seconds()),
            );
            if interval == Interval::M1 {
                // No history minute among them: every one live.
                oracle::assert_same_minutes(
                    &what,
                    &convert::served_minutes(&body, &i.to_string()),
                    &oracle::reconcile(&trades, &[]),
                );
            }
        }
    }
    let list: Value = http
        .get(format!("{api}/api/v1/instruments"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), instruments.len());
    p.shutdown().await;
}

/// Reads server-sent events from `url` until `until` says stop; returns
/// (event, data) pairs.
async fn sse(
    url: &str,
    secs: u64,
    mut until: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    use futures_util::StreamExt;
    let resp = reqwest::Client::new().get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !until(&events) {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("stream: timed out after {} events", events.len()))
            .expect("stream ended")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = String::from("message");
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            if !data.is_empty() {
                events.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_stream_delivers_every_minute_once_across_the_seam() {
    let db = TestDb::new().await;
    let config = config(&db, 60);
    let p = platform::start(&config).await.unwrap();
    let api = format!("http://{}", p.api_addr.unwrap());
    let started = now();
    let from = started - 3_600;
    // Wait for the backfill, so the stream starts with an hour of history.
    let http = reqwest::Client::new();
    wait_for("the backfill", 60, async || {
        let body: Value = http
            .get(format!(
                "{api}/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from={from}&limit=10000"
            ))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["bars"].as_array()?.len() >= 55).then_some(())
    })
    .await;
    // Read until two minutes that closed after the stream began came through live.
    let live_from = Interval::M1.floor(now());
    let events = sse(
        &format!("{api}/api/v1/stream?instrument=Coinbase:BTC-USD&interval=1m&from={from}"),
        200,
        |events| {
            events
                .iter()
                .filter(|(e, d)| e == "bar" && d["time"].as_i64().unwrap() >= live_from)
                .count()
                >= 2
        },
    )
    .await;
    let closed: Vec<i64> = events
        .iter()
        .filter(|(e, _)| e == "bar")
        .map(|(_, d)| d["time"].as_i64().unwrap())
        .collect();
    let mut seen = BTreeMap::new();
    for t in &closed {
        *seen.entry(*t).or_insert(0) += 1;
    }
    assert!(
        seen.values().all(|n| *n == 1),
        "a minute came twice: {seen:?}"
    );
    assert!(
        closed.windows(2).all(|w| w[1] == w[0] + 60),
        "a gap or disorder at {closed:?}"
    );
    assert!(
        closed.first().unwrap() <= &(Interval::M1.floor(from) + 5 * 60),
        "history came first"
    );
    assert!(
        closed.iter().any(|t| *t < live_from) && closed.iter().any(|t| *t >= live_from),
        "both sides of the seam"
    );
    assert!(
        events
            .iter()
            .any(|(e, d)| e == "partial" && d["closed"] == false),
        "the live partial bar was sent"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_repairs_the_minute_the_live_stream_joined_midway() {
    // The stream must join well inside a minute: on subscribe the imitation
    // replays the latest 20 trades of each instrument (~3 s here), which
    // would give live the whole minute if it had only just begun, and then
    // history has nothing to repair; and the minute must not end before
    // `joined` is read below.
    let into = now().rem_euclid(60);
    if !(10..=40).contains(&into) {
        tokio::time::sleep(Duration::from_secs((70 - into).rem_euclid(60) as u64)).await;
    }
    let db = TestDb::new().await;
    let mut config = config(&db, 0);
    config.ingest.repair_minutes = 3;
    config.ingest.repair_interval_secs = 2;
    let p = platform::start(&config).await.unwrap();
    let im = p.imitation.as_ref().unwrap();
    let api = format!("http://{}", p.api_addr.unwrap());
    let i: Instrument = "Coinbase:BTC-USD".parse().unwrap();
    // The minute the stream joined: live has only part of it.
    let joined = Interval::M1.floor(now());
    let http = reqwest::Client::new();
    let bar = wait_for("the repaired minute", 150, async || {
        let body: Value = http
            .get(format!(
                "{api}/api/v1/ohlcv?instrument={i}&from={joined}&to={joined}"
            ))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let bar = body["bars"].as_array()?.first()?.clone();
        (bar["source"] == "history").then_some(bar)
    })
    .await;
    let full = im.bars(
        candela_actors::cryptocompare::Interval::Minute,
        &i,
        joined,
        joined,
    );
    let full = &full[0];
    assert_eq!(bar["time"].as_i64().unwrap(), full.time);
    assert_eq!(
        (
            dec(&bar["open"]),
            dec(&bar["high"]),
            dec(&bar["low"]),
            dec(&bar["close"]),
            dec(&bar["volume_base"])
        ),
        (full.open, full.high, full.low, full.close, full.volume_from),
        "the whole minute, as the source has it"
    );
    p.shutdown().await;
}
