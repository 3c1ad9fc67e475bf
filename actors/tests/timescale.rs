//! The TimescaleDB path: hypertables and continuous aggregates answer like the
//! plain-PostgreSQL views. Runs against `CANDELA_TEST_TIMESCALEDB_URL` (a
//! server with the extension loaded); without it the test says it was skipped.

use candela_actors::domain::{aggregate, Instrument, Interval, Side, Tick};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::timescale::{upgrade, Timescale};
use candela_actors::store::{BarStore, WriteBatch};
use rust_decimal::Decimal;

#[tokio::test]
async fn timescaledb_answers_like_plain_postgresql() {
    let Ok(admin) = std::env::var("CANDELA_TEST_TIMESCALEDB_URL") else {
        eprintln!("SKIPPED: the TimescaleDB path needs CANDELA_TEST_TIMESCALEDB_URL (no TimescaleDB server here)");
        return;
    };
    std::env::set_var("CANDELA_TEST_DATABASE_URL", &admin);
    let db = candela_testkit::TestDb::new().await;
    let store = PgStore::connect(&db.url, 2).await.unwrap();
    assert_eq!(
        upgrade(store.pool()).await.unwrap(),
        Timescale::Enabled,
        "extension not enabled"
    );
    let i = Instrument::new("Coinbase", "BTC", "USD");
    let start = 1_700_006_400;
    let ticks: Vec<Tick> = (0..3_000i64)
        .map(|k| Tick {
            instrument: i.clone(),
            trade_id: k.to_string(),
            trade_time_ns: (start + k * 29) * 1_000_000_000,
            price: Decimal::new(3_000_000 + (k * 7_919) % 10_000, 2),
            quantity: Decimal::new(1 + k % 1_000, 4),
            side: Side::Buy,
            received_ns: 0,
        })
        .collect();
    store
        .write(WriteBatch {
            ticks: &ticks,
            history: &[],
        })
        .await
        .unwrap();
    for interval in Interval::ALL {
        let got = store
            .bars(&i, interval, start, start + 86_400 * 2, 100_000)
            .await
            .unwrap();
        let want = aggregate(&ticks, interval).unwrap();
        let key = |b: &candela_actors::domain::Bar| {
            (
                b.open_time,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume_base,
                b.trades,
            )
        };
        assert_eq!(
            got.iter().map(|b| key(&b.bar)).collect::<Vec<_>>(),
            want.iter().map(key).collect::<Vec<_>>(),
            "{interval:?}"
        );
    }
}
