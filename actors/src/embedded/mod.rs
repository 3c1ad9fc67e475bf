//! Embedded backends: the whole platform in one process, with no external
//! service, behind the same traits as the real backends.
//!
//! [`MemoryCache`] is the in-process [`BarCache`](crate::store::BarCache)
//! ([`MemoryCache::new`]).

pub mod memory_cache;

pub use memory_cache::MemoryCache;
