//! Benchmark (not a test): requests per second and latency percentiles of a
//! 500-bar `GET /api/v1/ohlcv` served from the cache, over real HTTP on
//! loopback, through the Datastore pool, with PostgreSQL and Redis behind it.
//!
//! `cargo bench -p candela-api --bench ohlcv` (env: `BENCH_SECS`, default 10;
//! `BENCH_CLIENTS`, default 16; `BENCH_POOL`, default 4).

use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::datastore::{start_pool, DatastoreArgs};
use candela_actors::domain::{Instrument, Interval, Side, Tick};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::{BarStore, WriteBatch};
use candela_actors::supervisor::RestartPolicy;
use candela_api::server::{ApiConfig, ApiState};
use candela_testkit::{unique, TestDb};
use rust_decimal::Decimal;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let secs = env("BENCH_SECS", 10);
    let clients = env("BENCH_CLIENTS", 16) as usize;
    let pool_size = env("BENCH_POOL", 4) as usize;

    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 8).await.unwrap());
    let cache = Arc::new(
        RedisCache::connect(
            &candela_testkit::redis_url(),
            &unique("candela_bench"),
            86_400,
        )
        .await
        .unwrap(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = Interval::M1.floor(now) - 600 * 60;
    let i = Instrument::new("Coinbase", "BTC", "USD");
    let ticks: Vec<Tick> = (0..600 * 10)
        .map(|k| Tick {
            instrument: i.clone(),
            trade_id: k.to_string(),
            trade_time_ns: (start + k * 6) * 1_000_000_000,
            price: Decimal::new(3_000_000 + (k * 7_919) % 10_000, 2),
            quantity: Decimal::new(1 + k % 1_000, 4),
            side: Side::Buy,
            received_ns: 0,
        })
        .collect();
    store
        .write(WriteBatch {
            ticks: &ticks,
            history: &[],
        })
        .await
        .unwrap();

    let prefix = unique("datastore");
    let (_sup, pool) = start_pool(
        &prefix,
        pool_size,
        DatastoreArgs {
            instance: String::new(),
            store: Arc::clone(&store),
            cache,
            fetcher: None,
            ingested: Default::default(),
            cache_window_secs: 86_400,
            fetch_timeout: Duration::from_secs(5),
            restarted: false,
            busy: Default::default(),
        },
        RestartPolicy::default(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let s = Arc::clone(&store);
    let state = Arc::new(ApiState {
        datastore: Arc::new(pool),
        feed: candela_api::feed::BarHub::new(
            Arc::new(candela_api::feed::StoreFeed(Arc::clone(&store))),
            candela_api::feed::HubConfig::default(),
        ),
        streams: Arc::new(tokio::sync::Semaphore::new(64)),
        instruments: Arc::new(move || {
            let s = Arc::clone(&s);
            Box::pin(async move { s.instruments().await.map_err(|e| e.to_string()) })
        }),
        ready: Arc::new(|| Box::pin(async { Ok(()) })),
        config: ApiConfig::default(),
        admin: Default::default(),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(candela_api::serve(listener, state, std::future::pending()));

    let from = start + 100 * 60;
    let url = format!(
        "http://{addr}/api/v1/ohlcv?instrument=Coinbase:BTC-USD&interval=1m&from={from}&limit=500"
    );
    let http = reqwest::Client::new();
    // Warm up (fills the cache) and check the shape.
    let body: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["bars"].as_array().unwrap().len(), 500);
    let body: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["served"], "cache");

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = http.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = http.get(&url).send().await.unwrap();
                assert!(resp.status().is_success());
                let _ = resp.bytes().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "ohlcv 500 bars from cache: {:.0} requests/s over {:.1} s with {clients} clients, pool {pool_size}; latency p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        all.len() as f64 / elapsed,
        elapsed,
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.len()
    );
}
