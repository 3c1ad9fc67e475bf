//! Benchmark (not a test): 1,000 live-stream clients on one node while
//! 1,000 ticks/s are committed, the pushed stream against a polling one, in
//! the same run.
//!
//! `cargo bench -p candela-api --bench stream` (env: `BENCH_CLIENTS`, default
//! 1,000; `BENCH_TICKS`, ticks per second, default 1,000; `BENCH_SECS`, per
//! phase, default 20; `BENCH_COMMIT_MS`, time between two commits, default
//! 50; `BENCH_INSTRUMENTS`, default 10).
//!
//! The node is a child process (this binary again, `BENCH_ROLE=node`), so its
//! CPU time and memory are its own: PostgreSQL and Redis behind a Datastore
//! pool, the hub and the API server as the platform wires them, and a writer
//! standing in for the consumer: every `BENCH_COMMIT_MS` it commits the ticks
//! due (spread over the instruments, each at the time it is written), puts the
//! touched minutes in the cache, publishes them to the hub, and reports each
//! committed bar version with its commit time. The same node serves a
//! polling stream on a second port: the stream this project had before the
//! push, per client a datastore query every 500 ms (for the current and the
//! previous minute), sending what changed (more generous than the old one,
//! which sent a minute once, after it closed); and the same polling every
//! `BENCH_COMMIT_MS`, the freshness a push gives.
//!
//! Phases: the writer alone (the node's own cost), then `BENCH_CLIENTS`
//! pushed streams, then as many polling streams (every 500 ms, then fast). For each: the node's CPU
//! (cores busy, from `/proc/<pid>/stat`), its resident memory at the end,
//! events received, and the delay from each commit until each client
//! following the instrument holds that version of the bar or a newer one
//! (p50, p99; versions from the event ids; a poller skips versions, so what
//! counts is how stale its view is). The clients
//! run in this process, on the same two cores: the figures are relative to
//! each other, not absolute.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use candela_actors::datastore::{start_pool, BarQuery, DatastoreArgs, DatastorePool};
use candela_actors::domain::{Instrument, Interval, Side, Tick};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::{BarCache, BarStore, WriteBatch};
use candela_actors::supervisor::RestartPolicy;
use candela_api::feed::{BarHub, HubConfig, StoreFeed};
use candela_api::server::{ApiConfig, ApiState};
use candela_testkit::{unique, TestDb};
use rust_decimal::Decimal;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn instruments(n: u64) -> Vec<Instrument> {
    (0..n)
        .map(|k| Instrument::new("Coinbase", format!("B{k}"), "USD"))
        .collect()
}

fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("node") {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(node());
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(clients());
    }
}

// ---------------------------------------------------------------- the node

async fn node() {
    let ticks_per_sec = env("BENCH_TICKS", 1_000);
    let commit_ms = env("BENCH_COMMIT_MS", 50).max(1);
    let instruments = instruments(env("BENCH_INSTRUMENTS", 10));

    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 8).await.unwrap());
    let cache = Arc::new(
        RedisCache::connect(
            &candela_testkit::redis_url(),
            &unique("candela_bench_stream"),
            86_400,
        )
        .await
        .unwrap(),
    );
    let (_sup, pool) = start_pool(
        &unique("datastore"),
        4,
        DatastoreArgs {
            instance: String::new(),
            store: Arc::clone(&store),
            cache: Arc::clone(&cache),
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
    let pool = Arc::new(pool);
    let hub = BarHub::new(
        Arc::new(StoreFeed(Arc::clone(&store))),
        HubConfig::default(),
    );
    let s = Arc::clone(&store);
    let state = Arc::new(ApiState {
        datastore: Arc::clone(&pool),
        feed: Arc::clone(&hub),
        mirror: None,
        streams: Arc::new(tokio::sync::Semaphore::new(20_000)),
        instruments: Arc::new(move || {
            let s = Arc::clone(&s);
            Box::pin(async move { s.instruments().await.map_err(|e| e.to_string()) })
        }),
        ready: Arc::new(|| Box::pin(async { Ok(()) })),
        config: ApiConfig {
            max_streams: 20_000,
            ..ApiConfig::default()
        },
        admin: Default::default(),
    });
    let push = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let poll = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (push_addr, poll_addr) = (push.local_addr().unwrap(), poll.local_addr().unwrap());
    tokio::spawn(candela_api::serve(push, state, std::future::pending()));
    tokio::spawn(polling::serve(poll, pool));

    let mut seq: u64 = 0;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {push_addr} {poll_addr}").unwrap();
    out.flush().unwrap();
    drop(out);

    let mut ticker = tokio::time::interval(Duration::from_millis(commit_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut written: u64 = 0;
    loop {
        ticker.tick().await;
        let due = (started.elapsed().as_secs_f64() * ticks_per_sec as f64) as u64;
        let now = wall_ns();
        // (The first commit gives every instrument a bar.)
        let due = if written == 0 {
            due.max(instruments.len() as u64)
        } else {
            due
        };
        let ticks: Vec<Tick> = (written..due)
            .map(|_| {
                seq += 1;
                Tick {
                    instrument: instruments[(seq % instruments.len() as u64) as usize].clone(),
                    trade_id: seq.to_string(),
                    trade_time_ns: now,
                    price: Decimal::new(3_000_000 + (seq as i64 * 7_919) % 10_000, 2),
                    quantity: Decimal::new(1 + (seq as i64) % 1_000, 4),
                    side: if seq % 2 == 0 { Side::Buy } else { Side::Sell },
                    received_ns: now,
                }
            })
            .collect();
        written += ticks.len() as u64;
        if ticks.is_empty() {
            continue;
        }
        let outcome = store
            .write(WriteBatch {
                ticks: &ticks,
                history: &[],
            })
            .await
            .unwrap();
        let committed = wall_ns();
        let _ = cache.put(&outcome.touched).await;
        hub.publish_bars(&outcome.touched);
        let mut out = std::io::stdout().lock();
        for b in &outcome.touched {
            writeln!(out, "C {} {} {committed}", b.bar.instrument, b.version).unwrap();
        }
        out.flush().unwrap();
    }
}

/// The polling stream (the baseline): per client, a datastore query every
/// 500 ms, sending the bars whose version changed.
mod polling {
    use super::*;
    use poem::web::sse::{Event, SSE};
    use poem::web::{Data, Query};
    use poem::{handler, EndpointExt, Route};

    #[derive(serde::Deserialize)]
    struct Params {
        instrument: String,
        every_ms: u64,
    }

    #[handler]
    fn stream(Query(p): Query<Params>, Data(pool): Data<&Arc<DatastorePool>>) -> SSE {
        let instrument: Instrument = p.instrument.parse().unwrap();
        let every = Duration::from_millis(p.every_ms.max(1));
        let pool = Arc::clone(pool);
        let sent: HashMap<i64, i64> = HashMap::new();
        let events = futures_util::stream::unfold(
            (pool, instrument, sent, Vec::<Event>::new()),
            move |(pool, instrument, mut sent, mut queue)| async move {
                loop {
                    if let Some(e) = queue.pop() {
                        return Some((e, (pool, instrument, sent, queue)));
                    }
                    tokio::time::sleep(every).await;
                    let now = wall_ns() / 1_000_000_000;
                    let minute = Interval::M1.floor(now);
                    let answer = pool
                        .request(BarQuery {
                            instrument: instrument.clone(),
                            interval: Interval::M1,
                            from: minute - 60,
                            to: minute,
                            limit: 10,
                            fetch: false,
                            by_hour: None,
                        })
                        .await;
                    let answer = match answer {
                        Ok(a) => a,
                        Err(err) => {
                            eprintln!("poll: {err}");
                            continue;
                        }
                    };
                    for b in answer.bars.iter().rev() {
                        if sent.get(&b.bar.open_time) != Some(&b.version) {
                            sent.insert(b.bar.open_time, b.version);
                            let data = serde_json::json!({
                                "time": b.bar.open_time,
                                "close": b.bar.close.to_string(),
                                "volume_base": b.bar.volume_base.to_string(),
                                "trades": b.bar.trades,
                            });
                            queue.push(
                                Event::message(data.to_string())
                                    .event_type("bar")
                                    .id(b.version.to_string()),
                            );
                        }
                    }
                }
            },
        );
        SSE::new(events)
    }

    pub async fn serve(listener: std::net::TcpListener, pool: Arc<DatastorePool>) {
        listener.set_nonblocking(true).unwrap();
        let acceptor = poem::listener::TcpAcceptor::from_std(listener).unwrap();
        let app = Route::new().at("/poll", stream).data(pool);
        poem::Server::new_with_acceptor(acceptor)
            .run(app)
            .await
            .unwrap();
    }
}

// ------------------------------------------------------------- the clients

/// Per instrument: (version, commit wall-clock ns), in commit order.
type Commits = Arc<Mutex<HashMap<String, Vec<(i64, i64)>>>>;

/// Per client, per received event: (bar version, arrival wall-clock ns).
type Received = Arc<Mutex<Vec<(i64, i64)>>>;

async fn client(url: String, received: Received) {
    let Ok(resp) = reqwest::get(&url).await else {
        return;
    };
    if !resp.status().is_success() {
        eprintln!("{url}: {}", resp.status());
        return;
    }
    let mut resp = resp;
    let mut buf = String::new();
    let mut mine = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let at = wall_ns();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(id) = line.strip_prefix("id:") {
                    let v = id.trim().split('-').next().unwrap_or_default();
                    if let Ok(v) = v.parse::<i64>() {
                        mine.push((v, at));
                    }
                }
            }
        }
        if !mine.is_empty() {
            received.lock().unwrap().append(&mut mine);
        }
    }
}

/// utime + stime of `pid`, in seconds (100 clock ticks per second, Linux's
/// `USER_HZ`).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat; `rest` starts at field 3.
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb / 1024.0
}

struct Phase {
    name: &'static str,
    cores: f64,
    rss_mib: f64,
    events: usize,
    p50_ms: f64,
    p99_ms: f64,
}

async fn clients() {
    let clients = env("BENCH_CLIENTS", 1_000) as usize;
    let secs = env("BENCH_SECS", 20);
    let n = env("BENCH_INSTRUMENTS", 10);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_ROLE", "node")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    let mut parts = ready.split_whitespace().skip(1);
    let (push, poll) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let commits: Commits = Arc::default();
    let c = Arc::clone(&commits);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut f = line.split_whitespace();
            if f.next() == Some("C") {
                let i = f.next().unwrap().to_owned();
                let v: i64 = f.next().unwrap().parse().unwrap();
                let t: i64 = f.next().unwrap().parse().unwrap();
                c.lock().unwrap().entry(i).or_default().push((v, t));
            }
        }
    });
    println!(
        "node pid {pid}; {clients} clients, {} ticks/s over {n} instruments, a commit every {} ms, {secs} s per phase",
        env("BENCH_TICKS", 1_000),
        env("BENCH_COMMIT_MS", 50)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let names = instruments(n);
    let mut phases = Vec::new();
    let commit_ms = env("BENCH_COMMIT_MS", 50);
    for (name, base, every_ms) in [
        ("writer alone", None, 0),
        ("pushed stream", Some(&push), 0),
        ("polling 500 ms", Some(&poll), 500),
        ("polling fast", Some(&poll), commit_ms),
    ] {
        // One record per client (its instrument, its events).
        let mut received: Vec<(String, Received)> = Vec::new();
        let mut tasks = Vec::new();
        if let Some(base) = &base {
            let from = Interval::M1.floor(wall_ns() / 1_000_000_000);
            for k in 0..clients {
                let i = &names[k % names.len()];
                let url = if name == "pushed stream" {
                    format!("http://{base}/api/v1/stream?instrument={i}&interval=1m&from={from}")
                } else {
                    format!("http://{base}/poll?instrument={i}&every_ms={every_ms}")
                };
                let mine: Received = Arc::default();
                received.push((i.to_string(), Arc::clone(&mine)));
                tasks.push(tokio::spawn(client(url, mine)));
                if k % 50 == 49 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            // Everyone connected and past the first read.
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let (w0, cpu0, t0) = (wall_ns(), cpu_secs(pid), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let cores = (cpu_secs(pid) - cpu0) / t0.elapsed().as_secs_f64();
        let w1 = wall_ns();
        let rss = rss_mib(pid);
        // Let the last events arrive, then disconnect.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for t in &tasks {
            t.abort();
        }
        // For every commit in the window and every client following its
        // instrument: the time until that client held this version of the
        // bar or a newer one (a polling client skips versions: what counts
        // is how stale its view is).
        let commits = commits.lock().unwrap().clone();
        let mut delays: Vec<f64> = Vec::new();
        let (mut events, mut missed) = (0usize, 0usize);
        for (instrument, mine) in &received {
            let got = mine.lock().unwrap();
            let in_window: Vec<(i64, i64)> =
                got.iter().copied().filter(|(_, at)| *at >= w0).collect();
            drop(got);
            events += in_window.iter().filter(|(_, at)| *at < w1).count();
            // The newest version held after each arrival.
            let mut held = Vec::with_capacity(in_window.len());
            let mut newest = i64::MIN;
            for (v, at) in &in_window {
                newest = newest.max(*v);
                held.push((newest, *at));
            }
            for (v, t) in commits.get(instrument).into_iter().flatten() {
                if *t < w0 || *t >= w1 {
                    continue;
                }
                let k = held.partition_point(|(h, _)| h < v);
                match held.get(k) {
                    Some((_, at)) => delays.push((at - t) as f64 / 1e6),
                    None => missed += 1,
                }
            }
        }
        delays.sort_by(f64::total_cmp);
        let p = |q: f64| {
            if delays.is_empty() {
                f64::NAN
            } else {
                delays[((delays.len() - 1) as f64 * q).round() as usize]
            }
        };
        if missed > 0 {
            println!(
                "  ({missed} commit×client pairs not delivered within 2 s of the window's end)"
            );
        }
        let phase = Phase {
            name,
            cores,
            rss_mib: rss,
            events,
            p50_ms: p(0.5),
            p99_ms: p(0.99),
        };
        println!(
            "{:<15} node CPU {:.2} cores, RSS {:.0} MiB, {} events in {secs} s ({:.0}/s), commit→client p50 {:.1} ms, p99 {:.1} ms",
            phase.name,
            phase.cores,
            phase.rss_mib,
            phase.events,
            phase.events as f64 / secs as f64,
            phase.p50_ms,
            phase.p99_ms
        );
        phases.push(phase);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let idle = &phases[0];
    let own = |p: &Phase| (p.cores - idle.cores).max(0.001);
    let push = &phases[1];
    for poll in &phases[2..] {
        println!(
            "{} against the pushed stream: CPU of the streams (minus the writer alone) ×{:.2}, p99 delay ×{:.1}, events ×{:.2}",
            poll.name,
            own(poll) / own(push),
            poll.p99_ms / push.p99_ms,
            poll.events as f64 / push.events.max(1) as f64
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
