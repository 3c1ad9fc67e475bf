//! Benchmark (not a test): history bars per second of the backfill, end to
//! end — the CryptoCompare imitation's REST history → the history client →
//! the Producer actor → acknowledged by the bus — for N instruments × M
//! minutes fetched concurrently (`producer::backfill`), against the same
//! history fetched by the client alone (no actor, no bus: the limit of the
//! source side) in the same run.
//!
//! `cargo bench -p candela-actors --bench backfill`
//! env: `BENCH_INSTRUMENTS` (3), `BENCH_MINUTES` (2000), `BENCH_ROUNDS` (5),
//! `BENCH_BUS` (`memory`: the embedded in-memory bus, the default; `kafka`:
//! a tansu broker with memory storage, or `CANDELA_KAFKA_BROKERS`).
//! The client's rate limit is raised to 10,000 requests/s: the imitation is
//! the source, and CryptoCompare's own limits would measure the limiter.

use std::sync::Arc;
use std::time::Instant;

use candela_actors::cryptocompare::{CryptoCompareConfig, HistoryClient, LiveFeed};
use candela_actors::domain::Instrument;
use candela_actors::embedded::MemoryBus;
use candela_actors::imitation::{Imitation, ImitationConfig};
use candela_actors::kafka::{KafkaConfig, KafkaPublisher};
use candela_actors::ports::{HistorySource, RecordBus};
use candela_actors::producer::backfill::{self, Plan, Settings};
use candela_actors::producer::{Producer, ProducerArgs, ProducerMsg};
use candela_testkit::broker;
use ractor::{Actor, ActorRef};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let n: usize = env_or("BENCH_INSTRUMENTS", 3);
    let minutes: i64 = env_or("BENCH_MINUTES", 2_000);
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let kafka = std::env::var("BENCH_BUS").as_deref() == Ok("kafka");

    let markets = ["Coinbase", "Kraken", "Bitstamp", "Bitfinex"];
    let bases = ["BTC", "ETH", "SOL", "XRP", "ADA"];
    let instruments: Vec<Instrument> = (0..n)
        .map(|k| {
            Instrument::new(
                markets[k % markets.len()],
                bases[k / markets.len() % bases.len()],
                "USD",
            )
        })
        .collect();
    let im = Imitation::serve(
        ImitationConfig {
            pairs: instruments.iter().map(|i| i.to_string()).collect(),
            ..ImitationConfig::default()
        },
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let cc = CryptoCompareConfig {
        rest_per_second: 10_000,
        rest_per_minute: 600_000,
        ..CryptoCompareConfig::for_urls(im.rest_url(), im.ws_url())
    };
    let history = Arc::new(HistoryClient::new(cc.clone()).unwrap());
    let now = candela_actors::domain::validate::now_secs();
    let plan = Plan::last_minutes(now - now.rem_euclid(60) - 120, minutes, 7 * 1_440);
    let bars_per_round = (n as i64 * plan.minutes()) as f64;

    // Warm-up: the imitation computes each bar from its trades once.
    fetch_only(&history, &instruments, plan).await;

    // Our own broker, if we start one, lives until the end.
    let mut _own = None;
    let (label, producer) = if kafka {
        let bootstrap = match std::env::var(broker::BROKERS_ENV) {
            Ok(b) if !b.trim().is_empty() => b,
            _ => {
                let t = broker::Tansu::start(broker::Storage::Memory);
                let b = t.bootstrap();
                _own = Some(t);
                b
            }
        };
        let config = KafkaConfig::for_brokers(&bootstrap);
        let make = Arc::new(move || {
            KafkaPublisher::new(&config).map_err(|e| candela_actors::ports::BusError::Client {
                reason: e.to_string(),
            })
        });
        ("tansu, memory storage", spawn(&history, &cc, make).await)
    } else {
        let bus = MemoryBus::new();
        let make = Arc::new(move || Ok(bus.clone()));
        (
            "the embedded in-memory bus",
            spawn(&history, &cc, make).await,
        )
    };

    let (mut source, mut end_to_end) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let fetched = fetch_only(&history, &instruments, plan).await;
        source.push(fetched as f64 / t.elapsed().as_secs_f64());

        let t = Instant::now();
        let producer = producer.clone();
        let report = backfill::run(
            move || Some(producer.clone()),
            instruments.clone(),
            plan,
            Settings {
                concurrency: n,
                ..Settings::default()
            },
        )
        .await;
        let secs = t.elapsed().as_secs_f64();
        let bars: u64 = report.iter().map(|r| r.bars).sum();
        assert_eq!(bars as f64, bars_per_round, "{report:?}");
        assert!(report.iter().all(|r| r.failed_chunks == 0), "{report:?}");
        end_to_end.push(bars as f64 / secs);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, e) = (median(&mut source), median(&mut end_to_end));
    println!(
        "backfill of {n} instruments x {minutes} minutes ({bars_per_round} bars a round, {rounds} rounds, medians), bus: {label}"
    );
    println!("  source alone (imitation -> history client, concurrent): {s:>10.0} bars/s");
    println!("  end to end (-> Producer actor -> bus, acknowledged):    {e:>10.0} bars/s");
    println!("  end to end / source alone: {:.2}", e / s);
}

/// Every instrument's plan fetched by the client alone, concurrently: the
/// bars fetched.
async fn fetch_only(history: &Arc<HistoryClient>, instruments: &[Instrument], plan: Plan) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for i in instruments {
        let i = i.clone();
        let history = Arc::clone(history);
        set.spawn(async move {
            let mut n = 0;
            for (from, to) in plan.chunks() {
                n += history.minute_bars(&i, from, to).await.unwrap().len();
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.unwrap();
    }
    total
}

async fn spawn<B: RecordBus>(
    history: &Arc<HistoryClient>,
    cc: &CryptoCompareConfig,
    make_bus: candela_actors::producer::BusFactory<B>,
) -> ActorRef<ProducerMsg> {
    let (producer, _) = Actor::spawn(
        None,
        Producer::<HistoryClient, LiveFeed, B>::default(),
        ProducerArgs {
            instance: "producer/bench".into(),
            history: Arc::clone(history),
            live: Arc::new(LiveFeed { config: cc.clone() }),
            make_bus,
            fixed_topic: format!("bench-backfill-{}", std::process::id()),
            fixed_partitions: 6,
            live_instruments: vec![],
            batch_max: 5_000,
            dynamic: Default::default(),
            restarted: false,
        },
    )
    .await
    .unwrap();
    // The bus client is made at start: wait until the actor answers.
    let _ = ractor::call_t!(producer, ProducerMsg::Status, 30_000);
    producer
}
