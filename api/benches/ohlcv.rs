//! Benchmark (not a test): requests per second of a 500-bar
//! `GET /api/v1/ohlcv` against the physical limit of the same server, in one
//! run on one node.
//!
//! One poem server serves, side by side:
//! * `/redis/...`: the API on PostgreSQL and Redis (through the Datastore
//!   pool, as a node does, with the mirror of the cache's hours following
//!   its events: answers from the memo while nothing moved);
//! * `/redis-ask/...`: the same without the mirror (every request asks
//!   Redis, `api.memo_trust_ms = 0`);
//! * `/embedded/...`, `/embedded-ask/...`: the API on the embedded
//!   backends (SQLite, the in-process cache), as the quick start does;
//! * the "changing" targets load `/redis` and `/embedded` while a writer
//!   puts the range's last bar into both caches again, with a new version,
//!   `BENCH_WRITES` (20) times a second;
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
use candela_actors::store::{redis_feed, BarCache, BarStore, StoredBar, WriteBatch};
use candela_actors::supervisor::RestartPolicy;
use candela_api::mirror::Mirror;
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

fn btc() -> Instrument {
    Instrument::new("Coinbase", "BTC", "USD")
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
    mirror: Option<Arc<Mirror>>,
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
        mirror,
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
    let redis_prefix = unique("candela_bench");
    let redis = Arc::new(
        RedisCache::connect(&candela_testkit::redis_url(), &redis_prefix, 86_400)
            .await
            .unwrap(),
    );
    // As a node has it: the mirror follows the cache's events on the bar
    // feed's subscription.
    let redis_mirror = Arc::new(Mirror::new(Duration::from_secs(2)));
    let mut feed = redis_feed::follow(
        &candela_testkit::redis_url(),
        &redis_prefix,
        Arc::default(),
        Some(Arc::clone(&redis_mirror) as _),
    )
    .unwrap();
    tokio::spawn(async move { while feed.recv().await.is_some() {} });
    // The embedded backends.
    let dir = std::env::temp_dir().join(unique("candela-bench-sqlite"));
    let sqlite = Arc::new(SqliteStore::open(&dir).await.unwrap());
    sqlite.write(batch).await.unwrap();
    let memory = Arc::new(MemoryCache::new(86_400));
    let memory_mirror = Arc::new(Mirror::new(Duration::from_secs(2)));
    memory.listen(Arc::clone(&memory_mirror) as _);
    while !redis_mirror.is_live() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let static_body: Arc<std::sync::Mutex<bytes::Bytes>> = Arc::default();
    let body = Arc::clone(&static_body);
    let app = poem::Route::new()
        .nest(
            "/redis",
            api(
                Arc::clone(&pg),
                Arc::clone(&redis),
                pool_size,
                Some(redis_mirror),
            )
            .await,
        )
        .nest(
            "/redis-ask",
            api(Arc::clone(&pg), Arc::clone(&redis), pool_size, None).await,
        )
        .nest(
            "/embedded",
            api(
                Arc::clone(&sqlite),
                Arc::clone(&memory),
                pool_size,
                Some(memory_mirror),
            )
            .await,
        )
        .nest(
            "/embedded-ask",
            api(Arc::clone(&sqlite), Arc::clone(&memory), pool_size, None).await,
        )
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
    for backend in ["redis", "redis-ask", "embedded", "embedded-ask"] {
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

    // An hour of the range changing: a writer puts the bar of its last
    // minute again, with a new version, `BENCH_WRITES` times a second, into
    // both caches, while the targets marked "changing" are loaded.
    let writes = env("BENCH_WRITES", 20).max(1);
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let last = pg
            .bars(&btc(), Interval::M1, from + 499 * 60, from + 499 * 60, 1)
            .await
            .unwrap();
        let mut bar: StoredBar = last.into_iter().next().expect("the range's last bar");
        let (redis, memory, writing) = (
            Arc::clone(&redis),
            Arc::clone(&memory),
            Arc::clone(&writing),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / writes as u32);
            loop {
                tick.tick().await;
                if writing.load(std::sync::atomic::Ordering::Relaxed) {
                    bar.version += 1;
                    redis.put(std::slice::from_ref(&bar)).await.unwrap();
                    memory.put(std::slice::from_ref(&bar)).await.unwrap();
                }
            }
        });
    }
    let changing = format!("changing {writes}/s");
    let targets = [
        ("/health", format!("http://{addr}/health")),
        ("static body", format!("http://{addr}/static")),
        ("ohlcv from Redis", format!("http://{addr}/redis/{query}")),
        (
            "ohlcv from Redis, asking it every time",
            format!("http://{addr}/redis-ask/{query}"),
        ),
        (
            &format!("ohlcv from Redis, {changing}"),
            format!("http://{addr}/redis/{query}"),
        ),
        (
            "ohlcv from the embedded cache",
            format!("http://{addr}/embedded/{query}"),
        ),
        (
            "ohlcv from the embedded cache, asking it every time",
            format!("http://{addr}/embedded-ask/{query}"),
        ),
        (
            &format!("ohlcv from the embedded cache, {changing}"),
            format!("http://{addr}/embedded/{query}"),
        ),
    ];
    let load = async |name: &str, url: &str| {
        writing.store(
            name.contains("changing"),
            std::sync::atomic::Ordering::Relaxed,
        );
        let r = load(url, secs, connections, wrk).await;
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        r
    };
    // `BENCH_ONLY=redis` (for a profiler): load only the targets whose name
    // holds it, print no ratios.
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        for (name, url) in targets.iter().filter(|(n, _)| n.contains(only.as_str())) {
            let r = load(name, url).await;
            println!("{name:<56} {r:>10.0} requests/s");
        }
        return;
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        for (k, (name, url)) in targets.iter().enumerate() {
            let r = load(name, url).await;
            println!("round {}: {name:<56} {r:>10.0} requests/s", round + 1);
            rates[k].push(r);
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(median).collect();
    let (health, stat) = (medians[0], medians[1]);
    println!("medians of {rounds} rounds:");
    for ((name, _), r) in targets.iter().zip(&medians) {
        println!("  {name:<56} {r:>10.0} requests/s");
    }
    for ((name, _), r) in targets.iter().zip(&medians).skip(2) {
        println!(
            "{name}: ÷ static body {:.2}; ÷ /health {:.3}",
            r / stat,
            r / health
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
