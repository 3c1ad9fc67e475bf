//! The storage layer on the real PostgreSQL and Redis: the shared contracts
//! of `backends::store` (exactly-once bars from distinct ticks, the history
//! reconciliation rule, versions, coarse intervals) and `backends::cache`
//! (the cache's rules), the same cases the embedded backends pass
//! (`embedded.rs`).

mod backends;
mod common;

use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_testkit::TestDb;

/// A fresh database with the migrations applied.
async fn pg_store() -> (TestDb, PgStore) {
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    (db, store)
}

/// A cache under a key prefix of its own.
async fn redis_cache(window_secs: i64) -> RedisCache {
    RedisCache::connect(
        &candela_testkit::redis_url(),
        &candela_testkit::unique("candela_test"),
        window_secs,
    )
    .await
    .unwrap_or_else(|e| panic!("Redis is required (bash .ci/run starts it): {e}"))
}

store_contract_tests!(pg_store);
reconcile_contract_tests!(pg_store);
cache_contract_tests!(redis_cache, pg_store);
