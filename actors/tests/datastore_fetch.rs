//! The Datastore's Data Not Found path against its requester, on the real
//! PostgreSQL and Redis: a requester that never delivers ends in a clear
//! timeout (`DataError::Timeout`, HTTP 504), one that refuses in "not
//! available" (HTTP 404), and the member that ended in Error is restarted.
//! An instrument the platform ingests is held before its first bar is
//! stored: no fetch, an empty answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use candela_actors::datastore::{
    start_pool, BarQuery, DataError, DatastoreArgs, FetchRequester, WaitForData,
};
use candela_actors::domain::{Instrument, Interval};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::supervisor::RestartPolicy;
use candela_testkit::{unique, TestDb};

/// Sends the instructions, then the data never comes.
struct Never;

impl FetchRequester for Never {
    fn request_fetch(
        &self,
        _: &Instrument,
    ) -> Pin<Box<dyn Future<Output = Result<WaitForData, String>> + Send + '_>> {
        Box::pin(async {
            let wait: WaitForData = Box::pin(std::future::pending());
            Ok(wait)
        })
    }
}

/// Cannot even send the instructions.
struct Refuses;

impl FetchRequester for Refuses {
    fn request_fetch(
        &self,
        _: &Instrument,
    ) -> Pin<Box<dyn Future<Output = Result<WaitForData, String>> + Send + '_>> {
        Box::pin(async { Err("no coordinator to ask".to_owned()) })
    }
}

async fn answer(fetcher: Arc<dyn FetchRequester>) -> Result<(), DataError> {
    answer_with(fetcher, &[]).await.map(|_| ())
}

/// The answer to a request for `Binance:SOL-USDT`, which nothing stored,
/// from a pool whose platform ingests `ingested`; asked twice (the second
/// time of a member restarted if the first ended in Error): the answers must
/// agree.
async fn answer_with(
    fetcher: Arc<dyn FetchRequester>,
    ingested: &[&str],
) -> Result<usize, DataError> {
    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 2).await.unwrap());
    let cache = Arc::new(
        RedisCache::connect(&candela_testkit::redis_url(), &unique("fetch"), 86_400)
            .await
            .unwrap(),
    );
    let prefix = unique("ds-fetch");
    let (sup, pool) = start_pool(
        &prefix,
        1,
        DatastoreArgs {
            instance: String::new(),
            store,
            cache,
            fetcher: Some(fetcher),
            ingested: Arc::new(ingested.iter().map(|i| i.parse().unwrap()).collect()),
            cache_window_secs: 86_400,
            fetch_timeout: Duration::from_secs(1),
            restarted: false,
        },
        RestartPolicy {
            backoff_min: Duration::from_millis(5),
            ..RestartPolicy::default()
        },
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let query = BarQuery {
        instrument: "Binance:SOL-USDT".parse().unwrap(),
        interval: Interval::M1,
        from: 0,
        to: 4_000_000_000,
        limit: 10,
    };
    let result = pool.request(query.clone()).await.map(|a| a.bars.len());
    // The member failed after answering (Error) and comes back (RESET).
    let again = pool.request(query).await.map(|a| a.bars.len());
    assert_eq!(
        std::mem::discriminant(&result),
        std::mem::discriminant(&again)
    );
    sup.stop(None);
    result
}

#[tokio::test]
async fn data_that_never_arrives_is_a_clear_timeout() {
    match answer(Arc::new(Never)).await {
        Err(DataError::Timeout(msg)) => {
            assert!(msg.contains("Binance:SOL-USDT"), "{msg}");
            assert!(msg.contains("longer than 1 s"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_requester_that_cannot_ask_is_not_available() {
    match answer(Arc::new(Refuses)).await {
        Err(DataError::NotAvailable(msg)) => {
            assert!(msg.contains("no coordinator to ask"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_ingested_instrument_without_bars_yet_is_an_empty_answer_not_a_fetch() {
    // `Refuses` would make any fetch fail: the answer shows none was asked.
    match answer_with(Arc::new(Refuses), &["Binance:SOL-USDT"]).await {
        Ok(0) => {}
        other => panic!("{other:?}"),
    }
}
