//! Embedded backends: the whole platform in one process, with no external
//! service, behind the same traits as the real backends.
//!
//! [`MemoryCache`] is the in-process [`BarCache`](crate::store::BarCache)
//! ([`MemoryCache::new`]); [`SqliteStore`] the
//! [`BarStore`](crate::store::BarStore) on one SQLite file
//! ([`SqliteStore::open`]).

pub mod memory_cache;
pub mod sqlite;

pub use memory_cache::MemoryCache;
pub use sqlite::SqliteStore;
