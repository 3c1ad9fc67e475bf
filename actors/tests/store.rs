//! The storage layer on the real PostgreSQL and Redis: exactly-once bars from
//! distinct ticks, the history reconciliation rule, and the cache's rules.

use candela_testkit as services;

use candela_actors::domain::{aggregate, Bar, HistoryBar, Instrument, Interval, Side, Tick};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::{BarCache, BarStore, Source, StoredBar, WriteBatch};
use candela_testkit::TestDb;
use rust_decimal::Decimal;

fn btc() -> Instrument {
    Instrument::new("Coinbase", "BTC", "USD")
}

fn tick(instrument: &Instrument, id: u64, secs: i64, price: i64, qty: i64) -> Tick {
    Tick {
        instrument: instrument.clone(),
        trade_id: id.to_string(),
        trade_time_ns: secs * 1_000_000_000 + (id as i64 % 1000) * 1000,
        price: Decimal::new(price, 2),
        quantity: Decimal::new(qty, 6),
        side: if id % 2 == 0 { Side::Buy } else { Side::Sell },
        received_ns: 0,
    }
}

/// A deterministic spread of ticks over `minutes` minutes from `start`.
fn ticks(instrument: &Instrument, start: i64, minutes: i64, per_minute: u64) -> Vec<Tick> {
    let mut out = Vec::new();
    let mut id = 1_000;
    for m in 0..minutes {
        for k in 0..per_minute {
            id += 1;
            let secs = start + m * 60 + (k as i64 * 7) % 60;
            let price = 3_000_000 + ((id * 7919) % 10_000) as i64;
            out.push(tick(instrument, id, secs, price, 1 + (id % 5_000) as i64));
        }
    }
    out
}

/// The comparable part of a bar (history bars carry no trade ids).
fn ohlcv(
    b: &Bar,
) -> (
    i64,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    u64,
) {
    (
        b.open_time,
        b.open,
        b.high,
        b.low,
        b.close,
        b.volume_base,
        b.volume_quote,
        b.trades,
    )
}

#[tokio::test]
async fn bars_are_a_function_of_the_distinct_ticks() {
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    let i = btc();
    let start = 1_700_000_040 - 1_700_000_040 % 86_400; // a day boundary
    let all = ticks(&i, start, 130, 9);

    // Deliver in three overlapping, reordered batches, with a replay inside a batch.
    let mut b1: Vec<Tick> = all[..500].to_vec();
    b1.reverse();
    let mut b2: Vec<Tick> = all[300..900].to_vec();
    b2.push(all[310].clone());
    let b3: Vec<Tick> = all[800..].iter().rev().cloned().collect();
    let mut new = 0;
    for batch in [&b1, &b2, &b3] {
        let out = store
            .write(WriteBatch {
                ticks: batch,
                history: &[],
            })
            .await
            .unwrap();
        new += out.new_ticks;
        assert!(!out.touched.is_empty());
    }
    assert_eq!(new, all.len() as u64, "every distinct tick stored once");

    for interval in Interval::ALL {
        let expected = aggregate(&all, interval);
        let got = store
            .bars(&i, interval, start, start + 86_400, 10_000)
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|b| ohlcv(&b.bar)).collect::<Vec<_>>(),
            expected.iter().map(ohlcv).collect::<Vec<_>>(),
            "{interval:?}"
        );
    }
    // 1-minute bars also keep the first and last trade exactly.
    let m1 = store
        .bars(&i, Interval::M1, start, start + 86_400, 10_000)
        .await
        .unwrap();
    let expected = aggregate(&all, Interval::M1);
    assert_eq!(
        m1.iter().map(|b| b.bar.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(m1.iter().all(|b| b.source == Source::Live));

    // A redelivered batch changes nothing, and says so.
    let versions: Vec<i64> = m1.iter().map(|b| b.version).collect();
    let again = store
        .write(WriteBatch {
            ticks: &b2,
            history: &[],
        })
        .await
        .unwrap();
    assert_eq!(again.new_ticks, 0);
    assert_eq!(again.duplicate_ticks, b2.len() as u64);
    let after = store
        .bars(&i, Interval::M1, start, start + 86_400, 10_000)
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|b| b.version).collect::<Vec<_>>(),
        versions
    );
    // ...but still reports the rows it touched, so a cache can be healed.
    assert!(!again.touched.is_empty());

    // Limit and range.
    let few = store
        .bars(&i, Interval::M1, start + 60, start + 600, 3)
        .await
        .unwrap();
    assert_eq!(
        few.iter().map(|b| b.bar.open_time).collect::<Vec<_>>(),
        [start + 60, start + 120, start + 180]
    );

    let summary = store.instruments().await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].instrument, i);
    assert_eq!(summary[0].first_open, start);
    assert_eq!(summary[0].last_open, start + 129 * 60);
    assert_eq!(summary[0].bars, 130);
}

fn history(i: &Instrument, open_time: i64, close: i64, vb: i64) -> HistoryBar {
    HistoryBar {
        instrument: i.clone(),
        open_time,
        open: Decimal::new(100, 0),
        high: Decimal::new(close.max(100) + 5, 0),
        low: Decimal::new(90, 0),
        close: Decimal::new(close, 0),
        volume_base: Decimal::new(vb, 0),
        volume_quote: Decimal::new(vb * 100, 0),
    }
}

#[tokio::test]
async fn history_reconciliation_rule() {
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 2).await.unwrap();
    let i = btc();
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;

    // Minute t0 has a live bar of volume 3 (three ticks of quantity 1).
    let live: Vec<Tick> = (0..3)
        .map(|k| Tick {
            quantity: Decimal::ONE,
            ..tick(&i, 10 + k, t0 + k as i64, 10_000, 1)
        })
        .collect();
    store
        .write(WriteBatch {
            ticks: &live,
            history: &[],
        })
        .await
        .unwrap();

    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &[
                history(&i, t0, 101, 2),       // smaller than live: live stays
                history(&i, t0 + 60, 102, 5),  // no row: created
                history(&i, t0 + 120, 103, 0), // zero volume: ignored
            ],
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, 1);
    let bars = store
        .bars(&i, Interval::M1, t0, t0 + 300, 100)
        .await
        .unwrap();
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0].source, Source::Live);
    assert_eq!(bars[0].bar.volume_base, Decimal::from(3));
    assert_eq!(bars[1].source, Source::History);
    assert_eq!(bars[1].bar.close, Decimal::from(102));

    // A history bar with more volume repairs the live minute...
    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &[history(&i, t0, 104, 7)],
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, 1);
    assert_eq!(out.touched.len(), 1);
    assert_eq!(out.touched[0].source, Source::History);
    assert_eq!(out.touched[0].bar.volume_base, Decimal::from(7));
    // ...and later live ticks of that closed minute do not change it.
    let late = [Tick {
        quantity: Decimal::ONE,
        ..tick(&i, 99, t0 + 30, 20_000, 1)
    }];
    let out = store
        .write(WriteBatch {
            ticks: &late,
            history: &[],
        })
        .await
        .unwrap();
    assert_eq!(out.new_ticks, 1, "the tick itself is stored");
    let bars = store.bars(&i, Interval::M1, t0, t0, 10).await.unwrap();
    assert_eq!(bars[0].bar.volume_base, Decimal::from(7));
    assert_eq!(bars[0].bar.close, Decimal::from(104));
}

#[tokio::test]
async fn a_history_bar_repeated_within_one_batch_counts_once() {
    // Replays of history can land in one consumer batch: the first bar of a
    // minute counts, as if the batch were applied message by message.
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 2).await.unwrap();
    let i = btc();
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &[
                history(&i, t0, 101, 5),
                history(&i, t0 + 60, 102, 5),
                history(&i, t0, 101, 5),
                history(&i, t0, 109, 9),
            ],
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, 2);
    let bars = store.bars(&i, Interval::M1, t0, t0 + 60, 10).await.unwrap();
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0].bar.close, Decimal::from(101));
    assert_eq!(bars[0].version, 1);
    // The same replayed in a later batch changes nothing either.
    let again = store
        .write(WriteBatch {
            ticks: &[],
            history: &[history(&i, t0, 109, 9), history(&i, t0, 109, 9)],
        })
        .await
        .unwrap();
    assert_eq!(again.history_applied, 0);
    assert_eq!(
        store.bars(&i, Interval::M1, t0, t0 + 60, 10).await.unwrap(),
        bars
    );
}

#[tokio::test]
async fn cache_serves_only_what_it_holds_and_never_goes_back() {
    let db = TestDb::new().await;
    let store = PgStore::connect(&db.url, 2).await.unwrap();
    let prefix = services::unique("candela_test");
    let cache = RedisCache::connect(&services::redis_url(), &prefix, 86_400 * 365 * 100)
        .await
        .unwrap_or_else(|e| panic!("Redis is required (bash .ci/run starts it): {e}"));
    let i = btc();
    let start = 1_700_000_000 - 1_700_000_000 % 60;
    let all = ticks(&i, start, 30, 4);
    store
        .write(WriteBatch {
            ticks: &all[..60],
            history: &[],
        })
        .await
        .unwrap();

    // Nothing filled yet: a miss.
    assert_eq!(cache.get(&i, start, start + 3_600).await.unwrap(), None);

    let stored = store
        .bars(&i, Interval::M1, start, start + 3_600, 10_000)
        .await
        .unwrap();
    cache.fill(&i, start, &stored).await.unwrap();
    assert_eq!(
        cache.get(&i, start, start + 3_600).await.unwrap(),
        Some(stored.clone())
    );
    // Before the filled range: a miss.
    assert_eq!(
        cache.get(&i, start - 60, start + 3_600).await.unwrap(),
        None
    );

    // The consumer's put after a commit updates the touched minutes.
    let out = store
        .write(WriteBatch {
            ticks: &all[60..],
            history: &[],
        })
        .await
        .unwrap();
    cache.put(&out.touched).await.unwrap();
    let now_db = store
        .bars(&i, Interval::M1, start, start + 3_600, 10_000)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&i, start, start + 3_600).await.unwrap(),
        Some(now_db.clone())
    );

    // An older version written late does not replace a newer one.
    let old: Vec<StoredBar> = stored
        .iter()
        .filter(|b| b.bar.open_time >= start + 14 * 60)
        .cloned()
        .collect();
    assert!(!old.is_empty());
    cache.put(&old).await.unwrap();
    assert_eq!(
        cache.get(&i, start, start + 3_600).await.unwrap(),
        Some(now_db)
    );

    // Invalidation makes every read a miss until the next fill.
    cache.invalidate_all().await.unwrap();
    assert_eq!(cache.get(&i, start, start + 60).await.unwrap(), None);
}
