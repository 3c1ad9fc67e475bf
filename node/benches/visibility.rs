//! Benchmark (not a test): tick-to-API visibility latency at a steady input
//! rate. One node in-process (imitation → producer → broker → consumer →
//! PostgreSQL → Redis → API); the latency of a tick runs from its receipt by the
//! producer to the end of the consumer cycle that stored and cached it, after
//! which every API request sees it. Prints p50/p99 and checks the API agrees.
//!
//! `cargo bench -p candela-node --bench visibility`
//! env: `BENCH_RATE` (total ticks/s, default 10000), `BENCH_SECS` (20),
//! `BENCH_BATCH_WAIT_MS` (consumer batch wait, 20).

use std::time::{Duration, Instant};

use candela_actors::consumer::fixed::FixedConsumerMsg;
use candela_actors::producer::ProducerMsg;
use candela_node::config::Config;
use candela_node::platform;
use candela_testkit::{broker, unique, TestDb};
use ractor::ActorRef;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let rate: f64 = env_or("BENCH_RATE", 10_000.0);
    let secs: u64 = env_or("BENCH_SECS", 20);
    let wait_ms: u64 = env_or("BENCH_BATCH_WAIT_MS", 20);
    let db = TestDb::new().await;
    let node = unique("bench").replace('_', "-");
    let env = vec![
        ("CANDELA__NODE__NAME", node.clone()),
        (
            "CANDELA__KAFKA__BROKERS",
            format!("[\"{}\"]", broker::shared_bootstrap()),
        ),
        ("CANDELA__KAFKA__TICK_TOPIC", unique("tick-data")),
        ("CANDELA__KAFKA__LINGER_MS", "1".into()),
        ("CANDELA__POSTGRES__URL", db.url.clone()),
        ("CANDELA__REDIS__KEY_PREFIX", unique("candela")),
        (
            "CANDELA__SOURCE__IMITATION__TRADES_PER_SEC",
            (rate / 2.0).to_string(),
        ),
        ("CANDELA__SOURCE__IMITATION__STREAM_INTERVAL_MS", "5".into()),
        (
            "CANDELA__INGEST__INSTRUMENTS",
            "[\"Coinbase:BTC-USD\", \"Kraken:ETH-EUR\"]".into(),
        ),
        ("CANDELA__INGEST__BACKFILL_MINUTES", "0".into()),
        ("CANDELA__INGEST__REPAIR_MINUTES", "0".into()),
        ("CANDELA__INGEST__BATCH_MAX", "2000".into()),
        ("CANDELA__CONSUMER__GROUP", unique("group")),
        ("CANDELA__CONSUMER__BATCH_WAIT_MS", wait_ms.to_string()),
        // One consumer, whose status this bench reads.
        ("CANDELA__CONSUMER__WORKERS", "1".into()),
        ("CANDELA__API__LISTEN", "127.0.0.1:0".into()),
    ];
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml")).unwrap();
    let config = Config::parse(&text, env.into_iter().map(|(k, v)| (k.to_owned(), v))).unwrap();
    let p = platform::start(&config).await.unwrap();
    let consumer: ActorRef<FixedConsumerMsg> = loop {
        if let Some(c) = ractor::registry::where_is(format!("consumer-fixed/{node}")) {
            break c.into();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let producer: ActorRef<ProducerMsg> = ractor::registry::where_is(format!("producer/{node}"))
        .unwrap()
        .into();
    // Warm-up, then measure a fresh window of samples.
    tokio::time::sleep(Duration::from_secs(5)).await;
    consumer_status(&consumer).await;
    let start_trades = ractor::call_t!(producer, ProducerMsg::Status, 5_000)
        .unwrap()
        .published_trades;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let published = ractor::call_t!(producer, ProducerMsg::Status, 5_000)
        .unwrap()
        .published_trades
        - start_trades;
    let status = consumer_status(&consumer).await;
    let (p50, p99, n) = status.metrics.visibility_ms.expect("samples");
    println!(
        "tick-to-API visibility at {:.0} ticks/s offered ({:.0} ticks/s published) over {:.0} s: p50 {p50:.1} ms, p99 {p99:.1} ms ({n} samples, consumer batch wait {wait_ms} ms)",
        rate,
        published as f64 / started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // The API agrees with what was stored.
    let api = format!("http://{}", p.api_addr.unwrap());
    let body: serde_json::Value = reqwest::get(format!("{api}/api/v1/instruments"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body.as_array().unwrap().len(), 2);
    p.shutdown().await;
}

async fn consumer_status(
    c: &ActorRef<FixedConsumerMsg>,
) -> candela_actors::consumer::fixed::ConsumerStatus {
    ractor::call_t!(c, FixedConsumerMsg::Status, 10_000).unwrap()
}
