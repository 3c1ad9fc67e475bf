//! The fixed consumer end to end on the real services: a tansu broker
//! (`common::broker`), PostgreSQL (a fresh database per test, candela-testkit)
//! and Redis (a key prefix per test). Trades arrive with replays, late and out
//! of order, with history bars and garbage; the consumer actor is killed
//! mid-stream and restarted by the supervisor (RESET); the bars in PostgreSQL
//! must be exactly the bars of the distinct trades, computed independently.
//! The cases are the shared ones of `backends::e2e`, which the embedded stack
//! passes too (`embedded.rs`).

mod backends;
mod common;

use std::sync::Arc;

use backends::bus::BusHarness;
use backends::e2e::Stack;
use backends::kafka::{kafka, Kafka};
use candela_actors::ports::RecordBus;
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_testkit::TestDb;

async fn stack() -> (TestDb, Stack<Kafka, PgStore, RedisCache>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 4).await.unwrap());
    let cache = Arc::new(
        RedisCache::connect(
            &candela_testkit::redis_url(),
            &candela_testkit::unique("e2e"),
            10 * 365 * 86_400,
        )
        .await
        .unwrap(),
    );
    let bus = kafka().await;
    let topic = common::unique("e2e");
    bus.bus().ensure_topic(&topic, 3).await.unwrap();
    (
        db,
        Stack {
            bus,
            store,
            cache,
            topic,
        },
    )
}

e2e_contract_tests!(stack);
