//! The TimescaleDB path, against a real TimescaleDB with data in the tables:
//! the continuous aggregates answer like the plain-PostgreSQL views (expected
//! values from the independent oracle, `candela_testkit::oracle`), the
//! current bucket is served at once, a write into a materialised bucket is
//! refreshed after it, an old deployment is brought to the new policies, a
//! server that does not preload TimescaleDB stays plain, and failing refresh
//! policies are seen and replaced by the store's own refreshes.
//!
//! `CANDELA_TEST_TIMESCALEDB_URL` names a server that preloads TimescaleDB,
//! `CANDELA_TEST_TIMESCALEDB_NOPRELOAD_URL` one that has it installed but not
//! preloaded; each test creates a database of its own there. Without them the
//! tests FAIL, unless `CANDELA_SKIP_TIMESCALEDB=1` (then they print SKIPPED).
//! docs/timescaledb.md says how to build and start such servers.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candela_actors::domain::{Instrument, Interval, Side, Tick};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::timescale::{
    PolicyProblem, Timescale, TimescaleOptions, AGGREGATES, VERSION,
};
use candela_actors::store::{BarStore, StoredBar, WriteBatch};
use candela_testkit::oracle::{self, RefBar, Trade};
use candela_testkit::timescale::{server_url, TimescaleDb, NOPRELOAD_URL_VAR, URL_VAR};
use rust_decimal::Decimal;
use sqlx::{PgPool, Row};

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn floor(secs: i64, width: i64) -> i64 {
    secs.div_euclid(width) * width
}

fn btc() -> Instrument {
    Instrument::new("Coinbase", "BTC", "USD")
}

/// `count` ticks of `i` from `from` (Unix seconds) every `step` seconds,
/// with ids from `first_id`.
fn ticks(i: &Instrument, from: i64, count: i64, step: i64, first_id: i64) -> Vec<Tick> {
    (0..count)
        .map(|k| {
            let id = first_id + k;
            Tick {
                instrument: i.clone(),
                trade_id: id.to_string(),
                trade_time_ns: (from + k * step) * 1_000_000_000 + (id % 997) * 1_000,
                price: Decimal::new(3_000_000 + (id * 7_919) % 10_000, 2),
                quantity: Decimal::new(1 + id % 1_000, 4),
                side: Side::Buy,
                received_ns: 0,
            }
        })
        .collect()
}

/// One tick at `secs` with `price`.
fn tick(i: &Instrument, id: i64, secs: i64, price: &str) -> Tick {
    Tick {
        instrument: i.clone(),
        trade_id: id.to_string(),
        trade_time_ns: secs * 1_000_000_000 + 123_456,
        price: price.parse().unwrap(),
        quantity: Decimal::new(25, 3),
        side: Side::Sell,
        received_ns: 0,
    }
}

async fn write(store: &PgStore, ticks: &[Tick]) {
    for chunk in ticks.chunks(2_000) {
        store
            .write(WriteBatch {
                ticks: chunk,
                history: &[],
            })
            .await
            .unwrap();
    }
}

type Key = (
    i64,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    u64,
);

fn ref_key(b: &RefBar) -> Key {
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

fn stored_key(b: &StoredBar) -> Key {
    let b = &b.bar;
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

/// The oracle's bars of `ticks` at `width` seconds within `[from, to]`.
fn expected(ticks: &[Tick], width: i64, from: i64, to: i64) -> Vec<Key> {
    let trades: Vec<Trade> = ticks
        .iter()
        .map(|t| Trade {
            instrument: t.instrument.to_string(),
            id: t.trade_id.clone(),
            time_ns: t.trade_time_ns,
            price: t.price,
            quantity: t.quantity,
        })
        .collect();
    oracle::bars(&trades, width)
        .iter()
        .filter(|b| b.open_time >= from && b.open_time <= to)
        .map(ref_key)
        .collect()
}

/// Where `got` and `want` first differ, if they do.
fn diff(what: &str, got: &[Key], want: &[Key]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    Err(format!(
        "{what}: {} bars, {} expected; first difference at #{at}: got {:?}, want {:?}",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at)
    ))
}

/// The store's bars of `interval` within `[from, to]` against the oracle's.
async fn answers(
    store: &PgStore,
    all: &[Tick],
    interval: Interval,
    from: i64,
    to: i64,
) -> Result<(), String> {
    let got: Vec<Key> = store
        .bars(&btc(), interval, from, to, 1_000_000)
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(stored_key)
        .collect();
    diff(
        interval.as_str(),
        &got,
        &expected(all, interval.seconds(), from, to),
    )
}

async fn assert_every_interval(store: &PgStore, all: &[Tick], from: i64, to: i64) {
    for interval in Interval::ALL {
        answers(store, all, interval, from, to).await.unwrap();
    }
}

/// The rows TimescaleDB has materialised for `relation` within `[from, to]`
/// (its materialization hypertable, which real-time aggregation does not
/// touch).
async fn materialized(pool: &PgPool, relation: &str, from: i64, to: i64) -> Vec<Key> {
    let table: String = sqlx::query(
        "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name) \
         FROM timescaledb_information.continuous_aggregates WHERE view_name = $1",
    )
    .bind(relation)
    .fetch_one(pool)
    .await
    .unwrap()
    .get(0);
    sqlx::query(&format!(
        "SELECT extract(epoch from open_time)::int8, open, high, low, close, volume_base, \
                volume_quote, trades FROM {table} \
         WHERE instrument = $1 AND open_time >= to_timestamp($2) AND open_time <= to_timestamp($3) \
         ORDER BY open_time"
    ))
    .bind(btc().to_string())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get::<i64, _>(7) as u64,
        )
    })
    .collect()
}

/// Waits until `check` passes, at most `secs` seconds; fails with its last
/// complaint.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not within {secs} s: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn db_now(pool: &PgPool) -> i64 {
    sqlx::query("SELECT extract(epoch from now())::int8")
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0)
}

/// The end of `relation`'s materialised region, Unix seconds (`None`:
/// nothing materialised).
async fn watermark(pool: &PgPool, relation: &str) -> Option<i64> {
    let micros: i64 = sqlx::query(
        "SELECT _timescaledb_functions.cagg_watermark(mat_hypertable_id) \
         FROM _timescaledb_catalog.continuous_agg WHERE user_view_name = $1",
    )
    .bind(relation)
    .fetch_one(pool)
    .await
    .unwrap()
    .get(0);
    (micros > -210_866_803_200_000_000).then(|| micros.div_euclid(1_000_000))
}

async fn is_hypertable(pool: &PgPool, table: &str) -> bool {
    sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = $1)",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap()
    .get(0)
}

/// The refresh policies' job ids, in `AGGREGATES` order.
async fn policy_jobs(pool: &PgPool) -> Vec<i32> {
    let mut ids = Vec::new();
    for a in &AGGREGATES {
        let rows = sqlx::query(
            "SELECT job_id FROM timescaledb_information.jobs \
             WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = $1",
        )
        .bind(a.relation)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1, "{}: one refresh policy", a.relation);
        ids.push(rows[0].get(0));
    }
    ids
}

/// The schema is version 2: `bars_1m` a hypertable, `ticks` not; each coarse
/// relation a continuous aggregate with real-time aggregation, its version
/// marker, one policy from the beginning to one bucket before now, and a
/// watermark no later than the start of the current bucket.
async fn assert_version_2(pool: &PgPool) {
    assert!(
        is_hypertable(pool, "bars_1m").await,
        "bars_1m is a hypertable"
    );
    assert!(
        !is_hypertable(pool, "ticks").await,
        "ticks is not a hypertable"
    );
    let now = db_now(pool).await;
    for a in &AGGREGATES {
        let row = sqlx::query(
            "SELECT ca.materialized_only, obj_description(format('%I.%I', ca.view_schema, ca.view_name)::regclass, 'pg_class') \
             FROM timescaledb_information.continuous_aggregates ca WHERE ca.view_name = $1",
        )
        .bind(a.relation)
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{} is not a continuous aggregate", a.relation));
        assert!(
            !row.get::<bool, _>(0),
            "{}: real-time aggregation",
            a.relation
        );
        let comment: Option<String> = row.get(1);
        assert!(
            comment
                .as_deref()
                .is_some_and(|c| c.starts_with(&format!("candela timescale v{VERSION}:"))),
            "{}: version marker, got {comment:?}",
            a.relation
        );
        let policy = sqlx::query(
            "SELECT config->>'start_offset' IS NULL, (config->>'end_offset')::interval = $2::interval \
             FROM timescaledb_information.jobs \
             WHERE proc_name = 'policy_refresh_continuous_aggregate' AND hypertable_name = $1",
        )
        .bind(a.relation)
        .bind(a.width)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(policy.len(), 1, "{}: one refresh policy", a.relation);
        assert!(
            policy[0].get::<bool, _>(0) && policy[0].get::<bool, _>(1),
            "{}: start_offset NULL and end_offset {}",
            a.relation,
            a.width
        );
        if let Some(w) = watermark(pool, a.relation).await {
            assert!(
                w <= floor(now, a.width_secs),
                "{}: watermark {w} past the start of the current bucket {}",
                a.relation,
                floor(now, a.width_secs)
            );
        }
    }
}

/// What the previous version of the upgrade did (kept here to build "old
/// deployments"). It also made `ticks` a hypertable; that step is left out:
/// a migration rebuilds `ticks` as a plain table, on deployments where it was
/// a hypertable too, and is tested with that migration.
fn version_1_upgrade() -> Vec<String> {
    let mut out = vec![
        "SELECT create_hypertable('bars_1m', by_range('open_time', INTERVAL '7 days'), migrate_data => true, if_not_exists => true)".to_owned(),
    ];
    for (name, width) in [
        ("5m", "5 minutes"),
        ("15m", "15 minutes"),
        ("1h", "1 hour"),
        ("1d", "1 day"),
    ] {
        out.push(format!("DROP VIEW IF EXISTS bars_{name}"));
        out.push(format!(
            "CREATE MATERIALIZED VIEW bars_{name} \
             WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS \
             SELECT instrument, time_bucket(INTERVAL '{width}', open_time) AS open_time, \
                    first(open, first_ns) AS open, max(high) AS high, min(low) AS low, \
                    last(close, last_ns) AS close, sum(volume_base) AS volume_base, \
                    sum(volume_quote) AS volume_quote, sum(trades)::bigint AS trades, \
                    min(first_ns) AS first_ns, max(last_ns) AS last_ns \
             FROM bars_1m GROUP BY 1, 2 WITH NO DATA"
        ));
        out.push(format!(
            "SELECT add_continuous_aggregate_policy('bars_{name}', start_offset => INTERVAL '3 days', \
             end_offset => NULL, schedule_interval => INTERVAL '1 minute', if_not_exists => true)"
        ));
        out.push(format!(
            "CALL refresh_continuous_aggregate('bars_{name}', NULL, NULL)"
        ));
    }
    out
}

/// A store that leaves TimescaleDB alone (no upgrade, no refresh after its
/// writes): the plain-PostgreSQL baseline, or a writer whose refresh did not
/// happen.
async fn untouched(url: &str) -> PgStore {
    let store = PgStore::connect_with(
        url,
        4,
        TimescaleOptions {
            enabled: false,
            ..TimescaleOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(store.timescale(), Timescale::Disabled);
    store
}

/// Ticks of the last two days up to a second ago, denser in the last ten
/// minutes (the current 5-minute bucket has some).
fn history_to_now(now: i64) -> Vec<Tick> {
    let i = btc();
    let mut all = ticks(&i, now - 2 * 86_400, (2 * 86_400 - 600) / 67, 67, 1);
    all.extend(ticks(&i, now - 600, 600 / 7, 7, 100_000));
    all
}

#[tokio::test]
async fn a_fresh_deployment_answers_like_plain_postgresql_and_serves_the_current_bucket_at_once() {
    let Some(admin) = server_url(URL_VAR, "timescale::a_fresh_deployment") else {
        return;
    };
    let db = TimescaleDb::new(&admin).await;
    let now = now_secs();
    let (from, to) = (now - 3 * 86_400, now + 86_400);
    let mut all = history_to_now(now);

    // Plain PostgreSQL first (the migrations' views), with data.
    let plain = untouched(&db.url).await;
    write(&plain, &all).await;
    assert_every_interval(&plain, &all, from, to).await;
    drop(plain);

    // The upgrade, on tables that hold data.
    let store = PgStore::connect(&db.url, 4).await.unwrap();
    assert_eq!(store.timescale(), Timescale::Enabled);
    assert_version_2(store.pool()).await;
    // (c) Every interval answers as before, as the oracle says.
    assert_every_interval(&store, &all, from, to).await;

    // (a) A tick in the current 5-minute bucket, read at once: no refresh
    // has run since the upgrade's, which stopped at the start of this bucket.
    let at = now_secs();
    let new = tick(&btc(), 900_000, at, "99999.99");
    write(&store, std::slice::from_ref(&new)).await;
    all.push(new);
    let bars = store
        .bars(&btc(), Interval::M5, floor(at, 300), floor(at, 300), 10)
        .await
        .unwrap();
    assert_eq!(
        bars.first().map(|b| b.bar.high),
        Some("99999.99".parse().unwrap()),
        "the current 5-minute bar has the new tick: {bars:?}"
    );
    answers(&store, &all, Interval::M5, from, to).await.unwrap();
    for interval in [Interval::M15, Interval::H1, Interval::D1] {
        // The same minute is in the current bucket of each.
        answers(&store, &all, interval, floor(at, interval.seconds()), to)
            .await
            .unwrap();
    }

    // Upgrading again changes nothing.
    let jobs = policy_jobs(store.pool()).await;
    let again = PgStore::connect(&db.url, 2).await.unwrap();
    assert_eq!(again.timescale(), Timescale::Enabled);
    assert_eq!(policy_jobs(again.pool()).await, jobs);
    assert_version_2(again.pool()).await;
}

#[tokio::test]
async fn an_old_deployment_is_rebuilt_to_the_new_policies_and_serves_the_current_bucket() {
    let Some(admin) = server_url(URL_VAR, "timescale::an_old_deployment") else {
        return;
    };
    let db = TimescaleDb::new(&admin).await;
    db.create_extension().await;
    let now = now_secs();
    let (from, to) = (now - 3 * 86_400, now + 86_400);
    let mut all = history_to_now(now);
    // A tick just ahead: whatever bucket boundary passes meanwhile, version
    // 1's (NULL, NULL) refresh materialises past the current bucket.
    all.push(tick(&btc(), 800_000, now + 30, "30001.00"));

    let plain = untouched(&db.url).await;
    write(&plain, &all).await;
    for sql in version_1_upgrade() {
        sqlx::raw_sql(&sql).execute(plain.pool()).await.unwrap();
    }
    // The old state: materialised past the start of the current bucket.
    let db_time = db_now(plain.pool()).await;
    for a in &AGGREGATES {
        let w = watermark(plain.pool(), a.relation).await.unwrap();
        assert!(
            w > floor(db_time, a.width_secs),
            "{}: version 1 materialised past the current bucket",
            a.relation
        );
    }
    drop(plain);

    let store = PgStore::connect(&db.url, 4).await.unwrap();
    assert_eq!(store.timescale(), Timescale::Enabled);
    assert_version_2(store.pool()).await;
    assert_every_interval(&store, &all, from, to).await;

    // (a) on the rebuilt aggregates.
    let at = now_secs();
    let new = tick(&btc(), 900_001, at, "99999.98");
    write(&store, std::slice::from_ref(&new)).await;
    all.push(new);
    answers(&store, &all, Interval::M5, from, to).await.unwrap();
}

#[tokio::test]
async fn an_old_deployment_without_recent_data_keeps_its_aggregates_with_new_policies() {
    let Some(admin) = server_url(URL_VAR, "timescale::an_old_deployment_without_recent_data")
    else {
        return;
    };
    let db = TimescaleDb::new(&admin).await;
    db.create_extension().await;
    let now = now_secs();
    let start = floor(now, 86_400) - 3 * 86_400;
    let all = ticks(&btc(), start, 900, 97, 1);
    let (from, to) = (start - 86_400, now + 86_400);

    let plain = untouched(&db.url).await;
    write(&plain, &all).await;
    for sql in version_1_upgrade() {
        sqlx::raw_sql(&sql).execute(plain.pool()).await.unwrap();
    }
    let tables = |pool: PgPool| async move {
        sqlx::query(
            "SELECT view_name::text, materialization_hypertable_name::text \
             FROM timescaledb_information.continuous_aggregates ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect::<Vec<_>>()
    };
    let before = tables(plain.pool().clone()).await;
    drop(plain);

    let store = PgStore::connect(&db.url, 4).await.unwrap();
    assert_version_2(store.pool()).await;
    // Repaired in place: the same materialisations.
    assert_eq!(tables(store.pool().clone()).await, before);
    assert_every_interval(&store, &all, from, to).await;
}

#[tokio::test]
async fn a_write_into_a_materialised_bucket_is_refreshed_after_it() {
    let Some(admin) = server_url(URL_VAR, "timescale::a_write_into_a_materialised_bucket") else {
        return;
    };
    let db = TimescaleDb::new(&admin).await;
    // A month ago (older than any policy window of version 1), with an hour
    // without trades after 3 h.
    let start = floor(now_secs(), 86_400) - 30 * 86_400 + 3_600;
    let mut old = ticks(&btc(), start, 300, 37, 1);
    old.extend(ticks(&btc(), start + 4 * 3_600, 300, 37, 1_000));
    let (from, to) = (start - 86_400, start + 2 * 86_400);
    let plain = untouched(&db.url).await;
    write(&plain, &old).await;
    drop(plain);

    let store = PgStore::connect_with(
        &db.url,
        4,
        TimescaleOptions {
            // No refresh of the store's own in this test.
            watch_every: Duration::from_secs(3_600),
            ..TimescaleOptions::default()
        },
    )
    .await
    .unwrap();
    let pool = store.pool().clone();
    // Nothing but the refresh after writes may materialise anything now.
    for job in policy_jobs(&pool).await {
        sqlx::query("SELECT alter_job($1, scheduled => false)")
            .bind(job)
            .execute(&pool)
            .await
            .unwrap();
    }
    eventually("the paused policies' runs to end", 120, || {
        let pool = pool.clone();
        async move {
            let running: i64 = sqlx::query(
                "SELECT count(*) FROM timescaledb_information.job_stats s \
                 JOIN timescaledb_information.jobs j USING (job_id) \
                 WHERE j.proc_name = 'policy_refresh_continuous_aggregate' AND s.job_status = 'Running'",
            )
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?
            .get(0);
            (running == 0)
                .then_some(())
                .ok_or(format!("{running} running"))
        }
    })
    .await;
    // The upgrade materialised the month-old buckets.
    for a in &AGGREGATES {
        diff(
            a.relation,
            &materialized(&pool, a.relation, from, to).await,
            &expected(&old, a.width_secs, from, to),
        )
        .unwrap();
    }

    // Late trades below the watermark (the end of the last materialised
    // bucket): a new high, a new low, and one in the quiet hour (new 5- and
    // 15-minute buckets). Above the watermark real-time aggregation serves
    // them anyway.
    let mut all = old.clone();
    let late = vec![
        tick(&btc(), 700_001, start + 1_234, "99999.99"),
        tick(&btc(), 700_002, start + 5 * 3_600, "0.01"),
        tick(&btc(), 700_003, start + 3 * 3_600 + 1_800, "31234.56"),
    ];
    let materialised_to = watermark(&pool, "bars_5m").await.unwrap();
    assert!(late
        .iter()
        .all(|t| t.trade_time_ns / 1_000_000_000 < materialised_to));
    write(&store, &late).await;
    all.extend(late);

    for a in &AGGREGATES {
        let want = expected(&all, a.width_secs, from, to);
        eventually(
            &format!("{} materialised with the late trades", a.relation),
            60,
            || {
                let (pool, want) = (pool.clone(), want.clone());
                async move {
                    diff(
                        a.relation,
                        &materialized(&pool, a.relation, from, to).await,
                        &want,
                    )
                }
            },
        )
        .await;
    }
    assert_every_interval(&store, &all, from, to).await;
    let status = store.timescale_status().expect("a TimescaleDB store");
    assert!(status.borrow().backfill_refreshes > 0);
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_server_that_does_not_preload_timescaledb_connects_and_stays_plain() {
    let Some(admin) = server_url(
        NOPRELOAD_URL_VAR,
        "timescale::a_server_that_does_not_preload",
    ) else {
        return;
    };
    let db = TimescaleDb::new(&admin).await;
    let available: bool = {
        let pool = PgPool::connect(&db.url).await.unwrap();
        sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0)
    };
    assert!(
        available,
        "{NOPRELOAD_URL_VAR} must name a server with the timescaledb files installed"
    );

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let store = {
        let _guard = tracing::subscriber::set_default(subscriber);
        PgStore::connect(&db.url, 2).await
    }
    .expect("the store connects without TimescaleDB");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(store.timescale(), Timescale::NotPreloaded);
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("not preloaded")),
        "a warning says so: {logs}"
    );
    assert!(
        store
            .readiness_notes()
            .iter()
            .any(|n| n.contains("not preloaded")),
        "the readiness answer says so"
    );
    let pool = store.pool();
    let extension: i64 =
        sqlx::query("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
    assert_eq!(extension, 0, "no extension created");
    for a in &AGGREGATES {
        let kind: String = sqlx::query("SELECT relkind::text FROM pg_class WHERE relname = $1")
            .bind(a.relation)
            .fetch_one(pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(kind, "v", "{} stays the plain view", a.relation);
    }
    // And it works, on plain PostgreSQL.
    let now = now_secs();
    let all = history_to_now(now);
    write(&store, &all).await;
    assert_every_interval(&store, &all, now - 3 * 86_400, now + 86_400).await;
}

#[tokio::test]
async fn failing_policies_are_reported_and_the_store_refreshes_in_their_place() {
    let Some(admin) = server_url(URL_VAR, "timescale::failing_policies") else {
        return;
    };
    let db = TimescaleDb::new(&admin).await;
    // Yesterday evening (UTC): yesterday's 1-day bucket is materialised by
    // the upgrade, and no 1-day policy run reaches it before tomorrow.
    let midnight = floor(now_secs(), 86_400);
    let evening = ticks(&btc(), midnight - 7_200, 150, 43, 1);
    let (from, to) = (midnight - 3 * 86_400, midnight + 86_400);
    let plain = untouched(&db.url).await;
    write(&plain, &evening).await;

    let store = PgStore::connect_with(
        &db.url,
        4,
        TimescaleOptions {
            watch_every: Duration::from_secs(1),
            ..TimescaleOptions::default()
        },
    )
    .await
    .unwrap();
    let pool = store.pool().clone();
    let jobs = policy_jobs(&pool).await;

    // What the jobs did, read apart from the store: every policy job runs
    // right after it is added.
    let raw: Vec<(i32, String, Option<String>)> =
        eventually("every refresh policy to run once", 180, || {
            let pool = pool.clone();
            let jobs = jobs.clone();
            async move {
                let rows = sqlx::query(
                    "SELECT s.job_id, s.last_run_status::text, \
                        (SELECT h.err_message FROM timescaledb_information.job_history h \
                          WHERE h.job_id = s.job_id AND h.succeeded IS FALSE \
                          ORDER BY h.finish_time DESC LIMIT 1) \
                 FROM timescaledb_information.job_stats s \
                 WHERE s.job_id = ANY($1) AND s.last_run_status IS NOT NULL \
                   AND s.job_status <> 'Running' \
                 ORDER BY s.job_id",
                )
                .bind(&jobs)
                .fetch_all(&pool)
                .await
                .map_err(|e| e.to_string())?;
                let raw: Vec<(i32, String, Option<String>)> = rows
                    .iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect();
                if raw.len() == jobs.len() {
                    Ok(raw)
                } else {
                    Err(format!("{} of {} ran", raw.len(), jobs.len()))
                }
            }
        })
        .await;
    let failed: Vec<&(i32, String, Option<String>)> =
        raw.iter().filter(|(_, s, _)| s == "Failed").collect();
    let mut status = store.timescale_status().expect("a TimescaleDB store");
    if failed.len() == jobs.len() {
        // PostgreSQL 15.20 with TimescaleDB 2.28.3: every job fails.
        let seen = tokio::time::timeout(
            Duration::from_secs(60),
            status.wait_for(|s| {
                s.findings.len() == AGGREGATES.len()
                    && s.findings
                        .iter()
                        .all(|f| matches!(f.problem, PolicyProblem::Failed { .. }))
            }),
        )
        .await
        .expect("the store sees the failing policies within 60 s")
        .unwrap()
        .clone();
        for (finding, (job, _, error)) in seen.findings.iter().zip(&raw) {
            match &finding.problem {
                PolicyProblem::Failed {
                    job_id,
                    error: seen_error,
                    ..
                } => {
                    assert_eq!(job_id, job, "{}", finding.relation);
                    if let Some(error) = error {
                        assert_eq!(seen_error.as_ref(), Some(error), "{}", finding.relation);
                    }
                }
                other => panic!("{}: {other:?}", finding.relation),
            }
        }
        let notes = store.readiness_notes();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("refresh policies not working")
                    && jobs.iter().all(|j| n.contains(&format!("job {j} ")))),
            "the readiness answer names the failing jobs: {notes:?}"
        );
    } else {
        // A server whose jobs work: pause them to have the store stand in.
        eprintln!(
            "NOTE: the refresh jobs do not fail on this server ({raw:?}); pausing them instead"
        );
        for job in &jobs {
            sqlx::query("SELECT alter_job($1, scheduled => false)")
                .bind(job)
                .execute(&pool)
                .await
                .unwrap();
        }
        tokio::time::timeout(
            Duration::from_secs(60),
            status.wait_for(|s| s.findings.len() == AGGREGATES.len()),
        )
        .await
        .expect("the store sees the paused policies")
        .unwrap();
    }

    // A late trade in yesterday's 1-day bucket, written by a store whose
    // refresh after writes does not run: only the store's own refresh can
    // bring it into the materialised bucket.
    assert!(
        watermark(&pool, "bars_1d").await.unwrap_or(i64::MIN) >= midnight,
        "yesterday's 1-day bucket is materialised"
    );
    let refreshes = status.borrow().self_refreshes;
    let late = tick(&btc(), 600_001, midnight - 3_000, "99999.99");
    write(&plain, std::slice::from_ref(&late)).await;
    let mut all = evening.clone();
    all.push(late);
    let want = expected(&all, 86_400, from, to);
    eventually("bars_1d materialised with the late trade", 60, || {
        let (pool, want) = (pool.clone(), want.clone());
        async move {
            diff(
                "bars_1d",
                &materialized(&pool, "bars_1d", from, to).await,
                &want,
            )
        }
    })
    .await;
    answers(&store, &all, Interval::D1, from, to).await.unwrap();
    assert!(status.borrow().self_refreshes > refreshes);
}
