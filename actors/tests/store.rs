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

/// Follows the cache's events as an API node does (on the bar feed's
/// subscription); the subscription lasts as long as the returned task.
async fn redis_listen(
    cache: std::sync::Arc<RedisCache>,
    listener: std::sync::Arc<dyn candela_actors::store::watch::CacheListener>,
) -> tokio::task::JoinHandle<()> {
    let mut feed = candela_actors::store::redis_feed::follow(
        &candela_testkit::redis_url(),
        cache.prefix(),
        Default::default(),
        Some(listener),
    )
    .unwrap();
    tokio::spawn(async move { while feed.recv().await.is_some() {} })
}

store_contract_tests!(pg_store);
reconcile_contract_tests!(pg_store);
cache_contract_tests!(redis_cache, pg_store, redis_listen);

/// Redis written before hour versions existed (an upgrade, or a node of
/// the previous release still writing): an hour with bars but no version is
/// sent whole, with version 0, which no reader keeps; never left out.
#[tokio::test]
async fn hours_written_without_a_version_are_sent_not_left_out() {
    use candela_actors::store::BarCache;
    let prefix = candela_testkit::unique("candela_test");
    let cache = RedisCache::connect(&candela_testkit::redis_url(), &prefix, 86_400 * 36_500)
        .await
        .unwrap();
    let i = backends::data::btc();
    let start = 1_700_000_000 - 1_700_000_000 % 3_600;
    let bars: Vec<_> = (0..5)
        .map(|k| backends::cache::bar(&i, start + k * 60, 10 + k, k))
        .collect();
    // The previous layout: the minutes, their index, the mark; no `:hv`.
    let client = redis::Client::open(candela_testkit::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for b in &bars {
        let t = b.bar.open_time;
        let _: () = redis::pipe()
            .hset(
                format!("{prefix}:1m:{i}"),
                t,
                serde_json::to_string(b).unwrap(),
            )
            .hset(format!("{prefix}:1m:{i}"), format!("{t}:v"), b.version)
            .zadd(format!("{prefix}:1m:{i}:idx"), t, t)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:1m:{i}:from"))
        .arg(format!("{start}:0"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let got = cache
        .hours(&i, start, start + 600, 100, &[])
        .await
        .unwrap()
        .expect("the mark holds");
    assert_eq!(got.hours.len(), 1);
    assert_eq!(got.hours[0].version, 0);
    assert_eq!(got.hours[0].bars.as_ref(), Some(&bars));
}

/// A Redis that lost its scripts (restarted, `SCRIPT FLUSH`) still answers
/// a read of the hour in progress: the script is loaded again.
#[tokio::test]
async fn a_read_loads_its_script_again_after_a_flush() {
    use candela_actors::domain::Interval;
    use candela_actors::store::{BarCache, KnownHour};
    let cache = redis_cache(4 * 3_600).await;
    let i = backends::data::btc();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let now = Interval::M1.floor(now);
    let hour = now - now.rem_euclid(3_600);
    let bars: Vec<_> = (hour..=now)
        .step_by(60)
        .map(|t| backends::cache::bar(&i, t, 1, 5))
        .collect();
    assert!(backends::cache::fill(&cache, &i, hour, &bars).await);
    let first = cache.hours(&i, hour, now, 100, &[]).await.unwrap().unwrap();
    let known = [KnownHour {
        hour,
        version: first.hours[0].version,
        bars: bars.len(),
    }];
    let client = redis::Client::open(candela_testkit::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let again = cache
        .hours(&i, hour, now, 100, &known)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.hours.len(), 1);
    assert!(again.hours[0].bars.is_none());
}
