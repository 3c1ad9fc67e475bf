//! Embedded backends: the whole platform in one process, with no external
//! service, behind the same traits as the real backends.
//!
//! | trait | real backend | embedded backend | constructor |
//! |---|---|---|---|
//! | [`RecordBus`], [`OpenStream`], [`DeadLetters`] | Kafka ([`KafkaPublisher`], [`KafkaStreams`]) | [`MemoryBus`] | [`MemoryBus::new`], [`MemoryBus::with_retention`] |
//! | [`BarStore`] | PostgreSQL ([`PgStore`]) | [`SqliteStore`] (a file in a data folder) | [`SqliteStore::open`] |
//! | [`BarCache`] | Redis ([`RedisCache`]) | [`MemoryCache`] | [`MemoryCache::new`] |
//!
//! Wiring a node on them is a matter of choosing these types where the real
//! ones are built; every actor is generic over the traits:
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use candela_actors::embedded::{MemoryBus, MemoryCache, SqliteStore};
//!
//! let bus = MemoryBus::new();                         // RecordBus + OpenStream + DeadLetters
//! let store = SqliteStore::open("data").await?;       // data/candela.sqlite3, WAL
//! let cache = MemoryCache::new(86_400);               // the last 24 h of 1-minute bars
//! // Producer: `make_bus: Arc::new(move || Ok(bus.clone()))` (every instance
//! // publishes to the same bus). Fixed consumer: `streams` and `dead_letters`
//! // are `Arc::new(bus.clone())`. Consumers and datastore pool share the store
//! // and the cache as they share PgStore and RedisCache.
//! let (store, cache) = (Arc::new(store), Arc::new(cache));
//! let make_bus = { let bus = bus.clone(); move || Ok::<_, candela_actors::ports::BusError>(bus.clone()) };
//! # let _ = (make_bus, Arc::new(bus), store, cache);
//! # Ok(()) }
//! ```
//!
//! Clones of a [`MemoryBus`] or a [`MemoryCache`] share one bus or cache, so
//! the producer, the consumers and the datastore pool must get clones of the
//! same value. The bus and the cache hold nothing across a restart of the
//! process; the SQLite file does (it is the system of record, as PostgreSQL
//! is). After a restart the producer's backfill and history repair publish the
//! missing minutes again, as they do after a Kafka outage.
//!
//! The same contract tests run on both sides (`actors/tests/backends/`), so
//! the embedded backends answer exactly as the real ones do.
//!
//! [`RecordBus`]: crate::ports::RecordBus
//! [`DeadLetters`]: crate::ports::DeadLetters
//! [`OpenStream`]: crate::consumer::OpenStream
//! [`BarStore`]: crate::store::BarStore
//! [`BarCache`]: crate::store::BarCache
//! [`KafkaPublisher`]: crate::kafka::KafkaPublisher
//! [`KafkaStreams`]: crate::kafka::KafkaStreams
//! [`PgStore`]: crate::store::postgres::PgStore
//! [`RedisCache`]: crate::store::redis_cache::RedisCache

pub mod bus;
pub mod memory_cache;
pub mod sqlite;

pub use bus::{BusMessage, MemoryBus, MemoryStream, Retention};
pub use memory_cache::MemoryCache;
pub use sqlite::SqliteStore;
