//! Benchmark (not a test): ticks per second from the CryptoCompare imitation
//! (firehose) through the live client and the Producer actor to acknowledged
//! delivery on the broker.
//!
//! `cargo bench -p candela-actors --bench produce`
//! env: `BENCH_SECS` (10), `BENCH_INSTRUMENTS` (3, each streaming 60,000
//! trades/s), `BENCH_BATCH` (5000), `BENCH_STORAGE` (`sqlite` | `memory`, the
//! broker's storage), or `CANDELA_KAFKA_BROKERS` to use a running broker.

use candela_testkit::broker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::cryptocompare::{CryptoCompareConfig, HistoryClient, LiveFeed};
use candela_actors::domain::Instrument;
use candela_actors::imitation::{Imitation, ImitationConfig};
use candela_actors::kafka::{KafkaConfig, KafkaPublisher};
use candela_actors::producer::{Producer, ProducerArgs, ProducerMsg};
use ractor::Actor;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let secs: u64 = env_or("BENCH_SECS", 10);
    let n: usize = env_or("BENCH_INSTRUMENTS", 3);
    let batch: usize = env_or("BENCH_BATCH", 5_000);
    let storage = match std::env::var("BENCH_STORAGE").as_deref() {
        Ok("memory") => broker::Storage::Memory,
        _ => broker::Storage::Sqlite,
    };
    let _own;
    let bootstrap = match std::env::var(broker::BROKERS_ENV) {
        Ok(b) if !b.trim().is_empty() => b,
        _ => {
            let t = broker::Tansu::start(storage);
            println!("broker: {}", t.command_line());
            let b = t.bootstrap();
            _own = t;
            b
        }
    };
    let kafka = KafkaConfig::for_brokers(&bootstrap);

    let markets = ["Coinbase", "Kraken", "Bitstamp", "Binance"];
    let instruments: Vec<Instrument> = (0..n)
        .map(|k| {
            Instrument::new(
                markets[k % markets.len()],
                ["BTC", "ETH", "SOL"][k % 3],
                "USD",
            )
        })
        .collect();
    // The imitation lists exactly these pairs (it refuses unlisted ones, as
    // CryptoCompare does, and Binance has no USD pairs by default).
    let pairs: std::collections::BTreeSet<String> =
        instruments.iter().map(|i| i.to_string()).collect();
    let im = Imitation::serve(
        ImitationConfig {
            pairs: pairs.into_iter().collect(),
            ..ImitationConfig::firehose()
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let cc = CryptoCompareConfig::for_urls(im.rest_url(), im.ws_url());
    let topic = format!("bench-produce-{}", std::process::id());
    let make = kafka.clone();
    let (producer, _) = Actor::spawn(
        None,
        Producer::<HistoryClient, LiveFeed, KafkaPublisher>::default(),
        ProducerArgs {
            instance: "producer/bench".into(),
            history: Arc::new(HistoryClient::new(cc.clone()).unwrap()),
            live: Arc::new(LiveFeed { config: cc }),
            make_bus: Arc::new(move || {
                KafkaPublisher::new(&make).map_err(|e| candela_actors::ports::BusError::Client {
                    reason: e.to_string(),
                })
            }),
            fixed_topic: topic,
            fixed_partitions: 6,
            live_instruments: instruments.clone(),
            batch_max: batch,
            dynamic: Default::default(),
            restarted: false,
        },
    )
    .await
    .unwrap();

    let published = || async {
        ractor::call_t!(producer, ProducerMsg::Status, 30_000)
            .unwrap()
            .published_trades
    };
    // Warm-up: connection, subscriptions, producer id.
    let t0 = Instant::now();
    while published().await < 10_000 {
        assert!(t0.elapsed() < Duration::from_secs(60), "nothing flows");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start_count = published().await;
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push(published().await);
    }
    let end_count = published().await;
    let elapsed = start.elapsed().as_secs_f64();
    let per_sec: Vec<u64> = std::iter::once(start_count)
        .chain(samples.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    println!(
        "imitation -> producer -> broker ({}): {:.0} ticks/s acknowledged over {:.1} s ({} instruments offered {} trades/s each, batch {batch}); per-second: {:?}",
        match storage {
            broker::Storage::Memory => "tansu, memory storage",
            broker::Storage::Sqlite => "tansu, sqlite storage",
        },
        (end_count - start_count) as f64 / elapsed,
        elapsed,
        n,
        ImitationConfig::firehose().trades_per_sec,
        per_sec
    );
    producer.stop(None);
}
