//! The backends a node runs on, chosen by `[backends]` in the configuration:
//! the real ones (Kafka, PostgreSQL/TimescaleDB, Redis) or the embedded ones
//! (an in-process bus, SQLite in a data folder, an in-memory cache).
//!
//! Each choice is an enum that implements the same port trait as its
//! variants ([`RecordBus`], [`DeadLetters`], [`OpenStream`], [`BarStore`],
//! [`BarCache`]) by delegating, so the actors are instantiated once, with
//! these types, whatever the configuration says.

use std::sync::Arc;

use anyhow::Context;
use sqlx::Connection;

use candela_actors::consumer::OpenStream;
use candela_actors::domain::{Instrument, Interval, Record};
use candela_actors::embedded::{MemoryBus, MemoryCache, MemoryStream, SqliteStore};
use candela_actors::kafka::{KafkaConfig, KafkaPublisher, KafkaStream, KafkaStreams, Placement};
use candela_actors::ports::{
    BusError, DeadLetter, DeadLetters, MessageStream, RawMessage, RecordBus,
};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::{
    BarCache, BarStore, InstrumentSummary, StoreError, StoredBar, WriteBatch, WriteOutcome,
};

use crate::config::{BusKind, CacheKind, Config, StoreKind};

/// The record bus: Kafka, or the in-process bus.
#[derive(Clone)]
pub enum Bus {
    /// A Kafka producer (the brokers of `[kafka]`).
    Kafka(Arc<KafkaPublisher>),
    /// The in-process bus.
    Memory(MemoryBus),
}

/// Opens consumer-group members: on Kafka, or on the in-process bus.
#[derive(Clone)]
pub enum Streams {
    /// Members on the brokers of `[kafka]`.
    Kafka(KafkaStreams),
    /// Members on the in-process bus.
    Memory(MemoryBus),
}

/// A consumer-group member of either bus.
pub enum Stream {
    /// On Kafka.
    Kafka(KafkaStream),
    /// On the in-process bus.
    Memory(MemoryStream),
}

/// The system of record: PostgreSQL/TimescaleDB, or SQLite.
#[derive(Clone)]
pub enum Store {
    /// PostgreSQL (with TimescaleDB when the extension is there).
    Postgres(PgStore),
    /// SQLite in the data folder.
    Sqlite(SqliteStore),
}

/// The cache of recent bars: Redis, or in memory.
#[derive(Clone)]
pub enum Cache {
    /// Redis.
    Redis(RedisCache),
    /// In this process's memory.
    Memory(MemoryCache),
}

/// The backends of one node, connected.
pub struct Backends {
    /// Publishes records (producer) and dead letters (consumers).
    pub bus: Bus,
    /// Opens consumer members.
    pub streams: Streams,
    /// The store, if this node's roles need one.
    pub store: Option<Arc<Store>>,
    /// The cache, if this node's roles need one.
    pub cache: Option<Arc<Cache>>,
}

impl Backends {
    /// Connects what `config` chooses; the store and cache only when
    /// `needs_store`.
    pub async fn connect(config: &Config, needs_store: bool) -> anyhow::Result<Self> {
        let b = &config.backends;
        let (bus, streams) = match b.bus {
            BusKind::Kafka => (
                Bus::Kafka(Arc::new(
                    KafkaPublisher::new(&config.kafka).context("kafka: creating the producer")?,
                )),
                Streams::Kafka(KafkaStreams::new(config.kafka.clone())),
            ),
            BusKind::Memory => {
                let bus = MemoryBus::new();
                (Bus::Memory(bus.clone()), Streams::Memory(bus))
            }
        };
        if !needs_store {
            return Ok(Self {
                bus,
                streams,
                store: None,
                cache: None,
            });
        }
        let store = match b.store {
            StoreKind::Postgres => {
                ensure_database(&config.postgres.url).await?;
                Store::Postgres(
                    PgStore::connect(&config.postgres.url, config.postgres.max_connections)
                        .await
                        .context("postgres.url: connecting and migrating")?,
                )
            }
            StoreKind::Sqlite => {
                Store::Sqlite(SqliteStore::open(&b.data_dir).await.with_context(|| {
                    format!("backends.data_dir: opening the store in {}", b.data_dir)
                })?)
            }
        };
        let cache = match b.cache {
            CacheKind::Redis => Cache::Redis(
                RedisCache::connect(
                    &config.redis.url,
                    &config.redis.key_prefix,
                    config.redis.window_secs,
                )
                .await
                .context("redis.url: connecting")?,
            ),
            CacheKind::Memory => Cache::Memory(MemoryCache::new(config.redis.window_secs)),
        };
        Ok(Self {
            bus,
            streams,
            store: Some(Arc::new(store)),
            cache: Some(Arc::new(cache)),
        })
    }

    /// A fresh publisher for a (re)started producer.
    pub fn make_bus(config: &KafkaConfig, bus: &Bus) -> Result<Bus, BusError> {
        match bus {
            Bus::Kafka(_) => KafkaPublisher::new(config)
                .map(|p| Bus::Kafka(Arc::new(p)))
                .map_err(|e| BusError::Client {
                    reason: e.to_string(),
                }),
            Bus::Memory(m) => Ok(Bus::Memory(m.clone())),
        }
    }
}

/// Creates the database named in `url` when it does not exist yet.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    use sqlx::Executor;
    if sqlx::PgConnection::connect(url).await.is_ok() {
        return Ok(());
    }
    let (server, name) = url
        .rsplit_once('/')
        .context("postgres.url has no database name")?;
    let name = name.split('?').next().unwrap_or(name);
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "postgres.url: database name `{name}` must be letters, digits or `_`"
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("postgres.url: cannot reach the server at {server}"))?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .with_context(|| format!("creating database {name}"))?;
    tracing::info!(database = name, "created the database");
    Ok(())
}

impl Store {
    /// Whether the store answers a trivial query (the readiness probe).
    pub async fn ping(&self) -> Result<(), String> {
        match self {
            Store::Postgres(s) => sqlx::query("SELECT 1")
                .execute(s.pool())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Store::Sqlite(s) => sqlx::query("SELECT 1")
                .execute(s.pool())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

impl RecordBus for Bus {
    async fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), BusError> {
        match self {
            Bus::Kafka(b) => RecordBus::ensure_topic(b.as_ref(), topic, partitions).await,
            Bus::Memory(b) => b.ensure_topic(topic, partitions).await,
        }
    }

    async fn publish(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        match self {
            Bus::Kafka(b) => RecordBus::publish(b.as_ref(), topic, records).await,
            Bus::Memory(b) => b.publish(topic, records).await,
        }
    }
}

impl DeadLetters for Bus {
    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<usize, BusError> {
        match self {
            Bus::Kafka(b) => DeadLetters::dead_letter(b.as_ref(), letters).await,
            Bus::Memory(b) => b.dead_letter(letters).await,
        }
    }
}

impl Streams {
    /// The same bus, with Kafka members given their partitions by
    /// `placement` rather than the broker's group protocol (the in-process
    /// bus lives in one process and spreads a group's partitions over its
    /// members itself: it ignores the placement).
    pub fn placed(&self, placement: Arc<dyn Placement>) -> Streams {
        match self {
            Streams::Kafka(s) => Streams::Kafka(s.with_placement(placement)),
            Streams::Memory(b) => Streams::Memory(b.clone()),
        }
    }
}

impl OpenStream for Streams {
    type Stream = Stream;

    async fn open(&self, group: &str, topics: &[String]) -> Result<Stream, BusError> {
        match self {
            Streams::Kafka(s) => s.open(group, topics).await.map(Stream::Kafka),
            Streams::Memory(s) => s.open(group, topics).await.map(Stream::Memory),
        }
    }
}

impl MessageStream for Stream {
    async fn next_batch(
        &mut self,
        max: usize,
        wait: std::time::Duration,
    ) -> Result<Vec<RawMessage>, BusError> {
        match self {
            Stream::Kafka(s) => s.next_batch(max, wait).await,
            Stream::Memory(s) => s.next_batch(max, wait).await,
        }
    }

    async fn commit(&mut self, messages: &[RawMessage]) -> Result<(), BusError> {
        match self {
            Stream::Kafka(s) => s.commit(messages).await,
            Stream::Memory(s) => s.commit(messages).await,
        }
    }
}

impl candela_actors::store::dynamic::DynamicRegistry for Store {
    fn list(
        &self,
    ) -> candela_actors::store::dynamic::BoxFuture<
        '_,
        Result<Vec<candela_actors::store::dynamic::DynamicRecord>, StoreError>,
    > {
        match self {
            Store::Postgres(s) => s.list(),
            Store::Sqlite(s) => s.list(),
        }
    }

    fn add(
        &self,
        record: candela_actors::store::dynamic::DynamicRecord,
    ) -> candela_actors::store::dynamic::BoxFuture<'_, Result<bool, StoreError>> {
        match self {
            Store::Postgres(s) => s.add(record),
            Store::Sqlite(s) => s.add(record),
        }
    }

    fn set_state<'a>(
        &'a self,
        instrument: &'a candela_actors::domain::Instrument,
        state: candela_actors::store::dynamic::DynamicState,
    ) -> candela_actors::store::dynamic::BoxFuture<'a, Result<bool, StoreError>> {
        match self {
            Store::Postgres(s) => s.set_state(instrument, state),
            Store::Sqlite(s) => s.set_state(instrument, state),
        }
    }

    fn remove<'a>(
        &'a self,
        instrument: &'a candela_actors::domain::Instrument,
    ) -> candela_actors::store::dynamic::BoxFuture<'a, Result<bool, StoreError>> {
        match self {
            Store::Postgres(s) => s.remove(instrument),
            Store::Sqlite(s) => s.remove(instrument),
        }
    }
}

impl BarStore for Store {
    async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteOutcome, StoreError> {
        match self {
            Store::Postgres(s) => s.write(batch).await,
            Store::Sqlite(s) => s.write(batch).await,
        }
    }

    async fn bars(
        &self,
        instrument: &Instrument,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        match self {
            Store::Postgres(s) => s.bars(instrument, interval, from, to, limit).await,
            Store::Sqlite(s) => s.bars(instrument, interval, from, to, limit).await,
        }
    }

    async fn holds(&self, instrument: &Instrument) -> Result<bool, StoreError> {
        match self {
            Store::Postgres(s) => s.holds(instrument).await,
            Store::Sqlite(s) => s.holds(instrument).await,
        }
    }

    async fn instruments(&self) -> Result<Vec<InstrumentSummary>, StoreError> {
        match self {
            Store::Postgres(s) => s.instruments().await,
            Store::Sqlite(s) => s.instruments().await,
        }
    }

    async fn changed_since(
        &self,
        instrument: &Instrument,
        from: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        match self {
            Store::Postgres(s) => s.changed_since(instrument, from, after, limit).await,
            Store::Sqlite(s) => s.changed_since(instrument, from, after, limit).await,
        }
    }

    async fn latest_version(&self, instrument: &Instrument) -> Result<i64, StoreError> {
        match self {
            Store::Postgres(s) => s.latest_version(instrument).await,
            Store::Sqlite(s) => s.latest_version(instrument).await,
        }
    }
}

impl BarCache for Cache {
    async fn put(&self, bars: &[StoredBar]) -> Result<(), StoreError> {
        match self {
            Cache::Redis(c) => c.put(bars).await,
            Cache::Memory(c) => c.put(bars).await,
        }
    }

    async fn get(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<StoredBar>>, StoreError> {
        match self {
            Cache::Redis(c) => c.get(instrument, from, to).await,
            Cache::Memory(c) => c.get(instrument, from, to).await,
        }
    }

    async fn generation(&self, instrument: &Instrument) -> Result<u64, StoreError> {
        match self {
            Cache::Redis(c) => c.generation(instrument).await,
            Cache::Memory(c) => c.generation(instrument).await,
        }
    }

    async fn fill(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
        generation: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Cache::Redis(c) => c.fill(instrument, from, bars, generation).await,
            Cache::Memory(c) => c.fill(instrument, from, bars, generation).await,
        }
    }

    async fn invalidate_all(&self) -> Result<(), StoreError> {
        match self {
            Cache::Redis(c) => c.invalidate_all().await,
            Cache::Memory(c) => c.invalidate_all().await,
        }
    }

    async fn hours(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        limit: usize,
        known: &[candela_actors::store::KnownHour],
    ) -> Result<Option<candela_actors::store::HourRange>, StoreError> {
        match self {
            Cache::Redis(c) => c.hours(instrument, from, to, limit, known).await,
            Cache::Memory(c) => c.hours(instrument, from, to, limit, known).await,
        }
    }
}
