//! Benchmark (not a test): requests per second of a 500-bar
//! `GET /api/v1/ohlcv` against the physical limit of the same server, in one
//! run on one node.
//!
//! One poem server serves, side by side:
//! * `/redis/...`: the API on PostgreSQL and Redis (through the Datastore
//!   pool, as a node does);
//! * `/embedded/...`: the API on the embedded backends (SQLite, the
//!   in-process cache), as the quick start does;
//! * `/static`: the exact bytes of the Redis answer, as a static body (the
//!   physical limit: the same bytes through the same server, nothing built);
//! * `/health`: the smallest answer.
//!
//! Each is loaded in turn with `wrk` (`-t2 -c16` by default; Debian's `wrk`
//! package, installed by `scripts/services`) over `BENCH_ROUNDS` rounds,
//! and the medians and their ratios are printed. Without `wrk` an
//! in-process HTTP client loads them instead (it shares the server's cores,
//! so the ratios are closer to 1 than the truth: said in the output).
//!
//! `cargo bench -p candela-api --bench ohlcv` (env: `BENCH_SECS` per run,
//! default 5; `BENCH_ROUNDS`, default 3; `BENCH_CONNECTIONS`, default 16;
//! `BENCH_POOL`, the datastores, default 4; `BENCH_ONLY=<part of a name>`
//! loads only those targets, e.g. under a profiler).

use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::datastore::{start_pool, DatastoreArgs};
use candela_actors::domain::{Instrument, Interval, Side, Tick};
use candela_actors::embedded::memory_cache::MemoryCache;
use candela_actors::embedded::sqlite::SqliteStore;
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::{BarCache, BarStore, WriteBatch};
use candela_actors::supervisor::RestartPolicy;
use candela_api::server::{ApiConfig, ApiState};
use candela_testkit::{unique, TestDb};
use poem::EndpointExt;
use rust_decimal::Decimal;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// 600 minutes of trades ending now, ten per minute.
fn ticks(start: i64) -> Vec<Tick> {
    let i = Instrument::new("Coinbase", "BTC", "USD");
    (0..600 * 10)
        .map(|k| Tick {
            instrument: i.clone(),
            trade_id: k.to_string(),
            trade_time_ns: (start + k * 6) * 1_000_000_000,
            price: Decimal::new(3_000_000 + (k * 7_919) % 10_000, 2),
            quantity: Decimal::new(1 + k % 1_000, 4),
            side: Side::Buy,
            received_ns: 0,
        })
        .collect()
}

/// The API on `store` and `cache`, as a node assembles it.
async fn api<T: BarStore, C: BarCache>(
    store: Arc<T>,
    cache: Arc<C>,
    pool_size: usize,
) -> impl poem::Endpoint<Output = poem::Response> {
    let (_sup, pool) = start_pool(
        &unique("datastore"),
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
    std::mem::forget(_sup);
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
    candela_api::routes(state, "http://localhost")
}

/// Requests per second of `url` for `secs`, with `wrk` when there is one.
async fn load(url: &str, secs: u64, connections: u64, wrk: bool) -> f64 {
    if wrk {
        let url = url.to_owned();
        return tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("wrk")
                .args([
                    "-t2",
                    &format!("-c{connections}"),
                    &format!("-d{secs}s"),
                    &url,
                ])
                .output()
                .expect("wrk runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                !text.contains("Non-2xx"),
                "{url}: answers other than 2xx:\n{text}"
            );
            text.lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("wrk's output has no rate:\n{text}"))
        })
        .await
        .unwrap();
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let resp = http.get(&url).send().await.unwrap();
                assert!(resp.status().is_success());
                let _ = resp.bytes().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let secs = env("BENCH_SECS", 5);
    let rounds = env("BENCH_ROUNDS", 3).max(1);
    let connections = env("BENCH_CONNECTIONS", 16);
    let pool_size = env("BENCH_POOL", 4) as usize;
    let wrk = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();

    let start = Interval::M1.floor(now()) - 599 * 60;
    let ticks = ticks(start);
    let batch = WriteBatch {
        ticks: &ticks,
        history: &[],
    };

    // PostgreSQL and Redis.
    let db = TestDb::new().await;
    let pg = Arc::new(PgStore::connect(&db.url, 8).await.unwrap());
    pg.write(batch).await.unwrap();
    let redis = Arc::new(
        RedisCache::connect(
            &candela_testkit::redis_url(),
            &unique("candela_bench"),
            86_400,
        )
        .await
        .unwrap(),
    );
    // The embedded backends.
    let dir = std::env::temp_dir().join(unique("candela-bench-sqlite"));
    let sqlite = Arc::new(SqliteStore::open(&dir).await.unwrap());
    sqlite.write(batch).await.unwrap();
    let memory = Arc::new(MemoryCache::new(86_400));

    let static_body: Arc<std::sync::Mutex<bytes::Bytes>> = Arc::default();
    let body = Arc::clone(&static_body);
    let app = poem::Route::new()
        .nest("/redis", api(pg, redis, pool_size).await)
        .nest("/embedded", api(sqlite, memory, pool_size).await)
        .at(
            "/static",
            poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json; charset=utf-8")
                    .body(body.lock().unwrap().clone())
            }),
        )
        .at("/health", poem::endpoint::make_sync(|_| "ok"))
        .boxed();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let std_listener = listener.into_std().unwrap();
    tokio::spawn(async move {
        let acceptor = poem::listener::TcpAcceptor::from_std(std_listener).unwrap();
        poem::Server::new_with_acceptor(acceptor).run(app).await
    });

    let from = start + 99 * 60;
    let query =
        format!("api/v1/ohlcv?instrument=Coinbase:BTC-USD&interval=1m&from={from}&limit=500");
    let http = reqwest::Client::new();
    // Warm up (fills the caches) and check the answers.
    let mut bytes = bytes::Bytes::new();
    for backend in ["redis", "embedded"] {
        let url = format!("http://{addr}/{backend}/{query}");
        for _ in 0..3 {
            bytes = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        }
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["bars"].as_array().unwrap().len(), 500, "{backend}");
        assert_eq!(body["served"], "cache", "{backend}");
        if backend == "redis" {
            *static_body.lock().unwrap() = bytes.clone();
        }
    }
    let redis_len = static_body.lock().unwrap().len();
    println!(
        "500 bars: {redis_len} bytes of JSON; load: {}, {connections} connections, {secs} s per run, {rounds} rounds",
        if wrk {
            "wrk -t2 (a process of its own)"
        } else {
            "in-process client (no wrk: it shares the server's cores, ratios read high)"
        }
    );

    let targets = [
        ("/health", format!("http://{addr}/health")),
        ("static body", format!("http://{addr}/static")),
        ("ohlcv from Redis", format!("http://{addr}/redis/{query}")),
        (
            "ohlcv from the embedded cache",
            format!("http://{addr}/embedded/{query}"),
        ),
    ];
    // `BENCH_ONLY=redis` (for a profiler): load only the targets whose name
    // holds it, print no ratios.
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        for (name, url) in targets.iter().filter(|(n, _)| n.contains(only.as_str())) {
            let r = load(url, secs, connections, wrk).await;
            println!("{name:<30} {r:>10.0} requests/s");
        }
        return;
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        for (k, (name, url)) in targets.iter().enumerate() {
            let r = load(url, secs, connections, wrk).await;
            println!("round {}: {name:<30} {r:>10.0} requests/s", round + 1);
            rates[k].push(r);
        }
    }
    let [health, stat, redis, embedded]: [f64; 4] = rates
        .into_iter()
        .map(median)
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    println!("medians: /health {health:.0}/s, static body {stat:.0}/s, ohlcv from Redis {redis:.0}/s, from the embedded cache {embedded:.0}/s");
    println!(
        "ohlcv from Redis ÷ static body: {:.2}; ÷ /health: {:.3}",
        redis / stat,
        redis / health
    );
    println!(
        "ohlcv from the embedded cache ÷ static body: {:.2}; ÷ /health: {:.3}",
        embedded / stat,
        embedded / health
    );
    let _ = std::fs::remove_dir_all(&dir);
}
