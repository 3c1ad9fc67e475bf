//! Consume throughput into bars, on the real services: Kafka (tansu) →
//! `KafkaStreams` → pipeline (decode, `PgStore`, `RedisCache`, offsets).
//!
//! ```text
//! cargo bench -p candela-actors --bench consume
//! ```
//!
//! Starts a tansu broker (or uses `CANDELA_KAFKA_BROKERS`), publishes N
//! synthetic trades of 50 instruments to a fresh 6-partition topic, then
//!
//! 1. reads them all with a bare `KafkaStreams` member (the stream alone);
//! 2. runs the consumer pipeline on them with a fresh group (`BENCH_MEMBERS`
//!    members, each placed on its share of the 6 partitions as the node
//!    places its consumers), into a fresh
//!    PostgreSQL database (candela-testkit) and Redis (a key prefix of its
//!    own), and prints ticks/s into bars, with where the time went (simple
//!    timers around each port).
//!
//! Knobs (environment): `BENCH_TICKS` (300000), `BENCH_BATCH` (messages per
//! pipeline batch, 10000), `BENCH_MEMBERS` (pipelines in the consumer group,
//! as that many consumer actors would run; 1), `BENCH_STORAGE` (`memory` or `sqlite`, the
//! broker's storage; default `memory` so the broker is not what is measured).

use candela_testkit::broker;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::consumer::{ConsumerMetrics, OpenStream, Pipeline};
use candela_actors::domain::{Instrument, Interval, Side, Tick};
use candela_actors::fsm::Fsm;
use candela_actors::kafka::{
    ensure_topic, Compression, KafkaConfig, KafkaPublisher, KafkaStreams, Share,
};
use candela_actors::machines::ConsumerFixed;
use candela_actors::ports::{BusError, MessageStream, RawMessage};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::{
    BarCache, BarStore, InstrumentSummary, StoreError, StoredBar, WriteBatch, WriteOutcome,
};
use candela_testkit::TestDb;
use rust_decimal::Decimal;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn synthetic(n: usize) -> Vec<Tick> {
    let instruments: Vec<Instrument> = (0..50)
        .map(|i| Instrument::new("Bench", format!("C{i}"), "USD"))
        .collect();
    (0..n)
        .map(|i| Tick {
            instrument: instruments[i % instruments.len()].clone(),
            trade_id: (100_000_000 + i).to_string(),
            // 300,000 trades over about an hour.
            trade_time_ns: 1_700_000_000_000_000_000 + i as i64 * 12_000_000,
            price: Decimal::new(3_725_012 + (i as i64 % 10_000), 2),
            quantity: Decimal::new(1 + (i as i64 % 5_000), 4),
            side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
            received_ns: 1_700_000_000_000_000_000 + i as i64 * 12_000_000 + 250_000,
        })
        .collect()
}

/// Time spent inside one port, summed over calls.
#[derive(Default)]
struct Timer {
    nanos: std::sync::atomic::AtomicU64,
    calls: std::sync::atomic::AtomicU64,
}

impl Timer {
    fn add(&self, since: Instant) {
        self.nanos
            .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
    fn secs(&self) -> f64 {
        self.nanos.load(Ordering::Relaxed) as f64 / 1e9
    }
}

#[derive(Default)]
struct Timers {
    receive: Timer,
    commit: Timer,
    write: Timer,
    cache: Timer,
}

struct TimedStream<S> {
    inner: S,
    timers: Arc<Timers>,
}

impl<S: MessageStream> MessageStream for TimedStream<S> {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RawMessage>, BusError> {
        let t = Instant::now();
        let r = self.inner.next_batch(max, wait).await;
        self.timers.receive.add(t);
        r
    }
    async fn commit(&mut self, messages: &[RawMessage]) -> Result<(), BusError> {
        let t = Instant::now();
        let r = self.inner.commit(messages).await;
        self.timers.commit.add(t);
        r
    }
}

struct TimedStore {
    inner: PgStore,
    timers: Arc<Timers>,
}

impl BarStore for TimedStore {
    async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteOutcome, StoreError> {
        let t = Instant::now();
        let r = self.inner.write(batch).await;
        self.timers.write.add(t);
        r
    }
    async fn bars(
        &self,
        instrument: &Instrument,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        self.inner.bars(instrument, interval, from, to, limit).await
    }
    async fn holds(&self, instrument: &Instrument) -> Result<bool, StoreError> {
        self.inner.holds(instrument).await
    }
    async fn instruments(&self) -> Result<Vec<InstrumentSummary>, StoreError> {
        self.inner.instruments().await
    }
    async fn changed_since(
        &self,
        instrument: &Instrument,
        from: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        self.inner
            .changed_since(instrument, from, after, limit)
            .await
    }
    async fn latest_version(&self, instrument: &Instrument) -> Result<i64, StoreError> {
        self.inner.latest_version(instrument).await
    }
}

struct TimedCache {
    inner: RedisCache,
    timers: Arc<Timers>,
}

impl BarCache for TimedCache {
    async fn put(&self, bars: &[StoredBar]) -> Result<(), StoreError> {
        let t = Instant::now();
        let r = self.inner.put(bars).await;
        self.timers.cache.add(t);
        r
    }
    async fn get(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<StoredBar>>, StoreError> {
        self.inner.get(instrument, from, to).await
    }
    async fn generation(&self, instrument: &Instrument) -> Result<u64, StoreError> {
        self.inner.generation(instrument).await
    }
    async fn fill(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
        generation: u64,
    ) -> Result<bool, StoreError> {
        self.inner.fill(instrument, from, bars, generation).await
    }
    async fn invalidate_all(&self) -> Result<(), StoreError> {
        self.inner.invalidate_all().await
    }
    async fn hours(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        limit: usize,
        known: &[candela_actors::store::KnownHour],
    ) -> Result<Option<candela_actors::store::HourRange>, StoreError> {
        self.inner.hours(instrument, from, to, limit, known).await
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let total: usize = env_or("BENCH_TICKS", 300_000);
    let batch: usize = env_or("BENCH_BATCH", 10_000);
    let members: usize = env_or("BENCH_MEMBERS", 1);
    let storage = match std::env::var("BENCH_STORAGE").as_deref() {
        Ok("sqlite") => broker::Storage::Sqlite,
        _ => broker::Storage::Memory,
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
    let config = KafkaConfig {
        compression: Compression::None,
        ..KafkaConfig::for_brokers(&bootstrap)
    };
    let topic = format!("bench-consume-{}", std::process::id());
    ensure_topic(&config, &topic, 6, 1).await.expect("topic");
    let publisher = Arc::new(KafkaPublisher::new(&config).expect("publisher"));
    let ticks = synthetic(total);
    let started = Instant::now();
    for chunk in ticks.chunks(20_000) {
        publisher.publish(&topic, chunk).await.expect("publish");
    }
    println!(
        "published {total} trades in {:.1} s ({:.0}/s), 50 instruments, 6 partitions, storage {storage:?}",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64()
    );
    let streams = KafkaStreams::new(config.clone());
    let topics = vec![topic.clone()];

    // 1. The stream alone.
    let mut stream = streams
        .open(&format!("{topic}-stream-only"), &topics)
        .await
        .expect("open");
    let mut got = 0;
    let mut first_at = None;
    while got < total {
        let b = stream
            .next_batch(batch, Duration::from_secs(10))
            .await
            .expect("next_batch");
        assert!(!b.is_empty(), "stalled at {got} of {total}");
        first_at.get_or_insert_with(Instant::now);
        got += b.len();
        stream.commit(&b).await.expect("commit");
    }
    let secs = first_at.unwrap().elapsed().as_secs_f64();
    println!(
        "stream only (KafkaStreams next_batch + commit, batch {batch}): {got} messages in {secs:.2} s: {:.0} msg/s",
        got as f64 / secs
    );
    stream.close().await;

    // 2. The pipeline into PostgreSQL and Redis: `members` pipelines in one
    // consumer group (as `members` consumer actors would run), sharing the
    // store's pool and the cache.
    let db = TestDb::new().await;
    let timers = Arc::new(Timers::default());
    let store = Arc::new(TimedStore {
        inner: PgStore::connect(&db.url, 4).await.expect("postgres"),
        timers: Arc::clone(&timers),
    });
    let cache = Arc::new(TimedCache {
        inner: RedisCache::connect(
            &candela_testkit::redis_url(),
            &candela_testkit::unique("bench"),
            10 * 365 * 86_400,
        )
        .await
        .expect("redis"),
        timers: Arc::clone(&timers),
    });
    let metrics = Arc::new(ConsumerMetrics::default());
    let group = format!("{topic}-pipeline");
    let mut tasks = Vec::new();
    for member in 0..members {
        // Each member is placed on its share of the partitions, as the node
        // places its consumers (no broker group protocol).
        let placed = KafkaStreams::placed(
            config.clone(),
            Arc::new(move || Share {
                index: member,
                count: members,
            }),
        );
        let mut pipeline = Pipeline {
            stream: TimedStream {
                inner: placed.open(&group, &topics).await.expect("open"),
                timers: Arc::clone(&timers),
            },
            dead_letters: Arc::clone(&publisher),
            store: Arc::clone(&store),
            cache: Arc::clone(&cache),
            sink: Arc::new(candela_actors::feed::NoSink),
            decode: candela_actors::kafka::decode_record,
            metrics: Arc::clone(&metrics),
        };
        let metrics = Arc::clone(&metrics);
        tasks.push(tokio::spawn(async move {
            let mut fsm: Fsm<ConsumerFixed> = Fsm::new(format!("bench-{member}"));
            while (metrics.new_ticks.load(Ordering::Relaxed) as usize) < total {
                pipeline
                    .cycle(&mut fsm, batch, Duration::from_millis(200))
                    .await
                    .expect("cycle");
            }
        }));
    }
    // The clock starts with the first stored batch (after the group join).
    let deadline = Instant::now() + Duration::from_secs(120);
    while metrics.batches.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no batch within 120 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let measured_from = metrics.new_ticks.load(Ordering::Relaxed) as usize;
    let timers_before = (
        timers.receive.secs(),
        timers.write.secs(),
        timers.cache.secs(),
        timers.commit.secs(),
    );
    while (metrics.new_ticks.load(Ordering::Relaxed) as usize) < total {
        assert!(
            Instant::now() < deadline + Duration::from_secs(600),
            "stalled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    for t in tasks {
        t.await.expect("member");
    }
    let m = metrics.snapshot();
    assert_eq!(m.new_ticks as usize, total, "{m:?}");
    let measured = total - measured_from;
    let (r0, w0, c0, k0) = timers_before;
    let (r, w, c, k) = (
        timers.receive.secs() - r0,
        timers.write.secs() - w0,
        timers.cache.secs() - c0,
        timers.commit.secs() - k0,
    );
    println!(
        "pipeline (KafkaStreams -> PgStore -> RedisCache, batch {batch}, {members} member(s)): \
         {measured} ticks into bars in {secs:.2} s: {:.0} ticks/s ({} batches)",
        measured as f64 / secs,
        m.batches
    );
    println!(
        "  time summed over members: receive {r:.2} s, database write {w:.2} s ({:.0} ticks/s per member), \
         cache {c:.2} s, offset commit {k:.2} s",
        measured as f64 / w.max(1e-9)
    );
    let bars = store
        .bars(
            &Instrument::new("Bench", "C0", "USD"),
            Interval::M1,
            1_699_990_000,
            1_700_100_000,
            100_000,
        )
        .await
        .expect("bars");
    println!("  C0 has {} 1-minute bars", bars.len());
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned())
            )
            .unwrap_or_default()
    );
}
