//! The PostgreSQL (and TimescaleDB) implementation of [`BarStore`].
//!
//! One [`BarStore::write`] is one transaction:
//!
//! 1. the batch's distinct ticks are inserted; the rows actually inserted are
//!    the *new* ticks (replays and redeliveries insert nothing). A tick's
//!    identity is (instrument, trade id). The first try is a plain `INSERT`
//!    of them all (no tick of the batch stored yet: the common case, and
//!    twice as fast); a stored tick makes it fail with a unique violation,
//!    the transaction is rolled back, and the batch is written again in a
//!    new transaction with `ON CONFLICT DO NOTHING RETURNING`, which says
//!    which ticks were new;
//! 2. the new ticks are aggregated into partial 1-minute bars (pure code,
//!    [`crate::domain::aggregate`]) and merged into `live_1m` with the same
//!    merge as [`crate::domain::Bar::merge`], written in SQL, so the live bar
//!    is always the bar of the set of distinct ticks, whatever the order of
//!    arrival;
//! 3. the batch's history answers, the best per minute
//!    ([`reconcile::best_answers`]), replace the stored answer of their minute
//!    in `history_1m` when they rank above it ([`reconcile::history_rank`],
//!    the same order as a row comparison in SQL);
//! 4. every minute the batch touched gets the bar the reconciliation rule
//!    chooses ([`crate::domain::reconcile`], mirrored in SQL below): the
//!    best history answer when it is more complete than the live bar, else
//!    the live bar. A row that changes takes the next `bars_version`; a row
//!    that does not change keeps its version;
//! 5. the rows of every minute the batch touched are read back (for the cache
//!    and the live stream).
//!
//! The outcome depends on the set of ticks and answers only: not on their
//! order, their batches or redeliveries (property-tested against an
//! independent reference in `actors/tests/backends/reconcile.rs`).

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::watch;

use super::timescale::{Timescale, TimescaleOptions, TimescaleRuntime, TimescaleStatus};
use super::{BarStore, InstrumentSummary, Source, StoreError, StoredBar, WriteBatch, WriteOutcome};
use crate::domain::{aggregate, reconcile, Bar, Instrument, Interval, Side, Tick, TradeMark};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A [`BarStore`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Plain PostgreSQL or TimescaleDB ([`super::timescale`]).
    timescale: Timescale,
    /// With TimescaleDB: the refresh after writes and the watch over the
    /// refresh policies (their tasks end with the last clone of the store).
    timescale_runtime: Option<Arc<TimescaleRuntime>>,
}

impl PgStore {
    /// Connects to `url`, applies the migrations, and uses TimescaleDB when
    /// the server preloads it ([`TimescaleOptions::default`]).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, TimescaleOptions::default()).await
    }

    /// [`PgStore::connect`] with TimescaleDB used as `options` say.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        options: TimescaleOptions,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        let timescale = if options.enabled {
            super::timescale::upgrade(&pool).await?
        } else {
            Timescale::Disabled
        };
        let timescale_runtime = (timescale == Timescale::Enabled)
            .then(|| Arc::new(TimescaleRuntime::start(pool.clone(), &options)));
        Ok(Self {
            pool,
            timescale,
            timescale_runtime,
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Plain PostgreSQL or TimescaleDB.
    pub fn timescale(&self) -> Timescale {
        self.timescale
    }

    /// With TimescaleDB: what its side of the store has seen and done.
    pub fn timescale_status(&self) -> Option<watch::Receiver<TimescaleStatus>> {
        self.timescale_runtime.as_ref().map(|r| r.status())
    }

    /// Warnings for the readiness answer (they do not make the node unready):
    /// TimescaleDB installed but not preloaded, refresh policies not working.
    pub fn readiness_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.timescale == Timescale::NotPreloaded {
            notes.push(
                "timescaledb is installed but not preloaded (shared_preload_libraries): \
                 plain PostgreSQL serves the coarse intervals"
                    .to_owned(),
            );
        }
        if let Some(runtime) = &self.timescale_runtime {
            notes.extend(runtime.status().borrow().note());
        }
        notes
    }
}

/// Step 4 of a write: the bar the reconciliation rule chooses for each
/// minute of ($1 instruments, $2 minutes), from `live_1m` and `history_1m`,
/// written to `bars_1m` when it differs from the stored row (which then takes
/// the next version). Mirrors [`reconcile::choose`] and
/// [`reconcile::history_bar`]: history when its base volume exceeds the live
/// one by more than [`reconcile::VOLUME_TOLERANCE`] of the larger. Returns
/// the source of each row written.
const RESOLVE: &str = "\
    INSERT INTO bars_1m AS b (instrument, open_time, open, high, low, close, volume_base, volume_quote, \
                              trades, first_ns, first_id, last_ns, last_id, source) \
    SELECT k.i, k.ot, \
           CASE WHEN c.use_h THEN h.open ELSE l.open END, \
           CASE WHEN c.use_h THEN h.high ELSE l.high END, \
           CASE WHEN c.use_h THEN h.low ELSE l.low END, \
           CASE WHEN c.use_h THEN h.close ELSE l.close END, \
           CASE WHEN c.use_h THEN h.volume_base ELSE l.volume_base END, \
           CASE WHEN c.use_h THEN h.volume_quote ELSE l.volume_quote END, \
           CASE WHEN c.use_h THEN 0 ELSE l.trades END, \
           CASE WHEN c.use_h THEN k.secs * 1000000000 ELSE l.first_ns END, \
           CASE WHEN c.use_h THEN '' ELSE l.first_id END, \
           CASE WHEN c.use_h THEN k.secs * 1000000000 + 59999999999 ELSE l.last_ns END, \
           CASE WHEN c.use_h THEN '' ELSE l.last_id END, \
           CASE WHEN c.use_h THEN 'history' ELSE 'live' END \
    FROM (SELECT i, secs, to_timestamp(secs) AS ot FROM UNNEST($1::text[], $2::int8[]) AS u(i, secs)) k \
    LEFT JOIN live_1m l ON l.instrument = k.i AND l.open_time = k.ot \
    LEFT JOIN history_1m h ON h.instrument = k.i AND h.open_time = k.ot \
    CROSS JOIN LATERAL (SELECT h.instrument IS NOT NULL AND h.volume_base > 0 AND ( \
        l.instrument IS NULL OR (h.volume_base > l.volume_base AND \
            h.volume_base - l.volume_base > GREATEST(abs(h.volume_base), abs(l.volume_base)) * 0.000000000001)) AS use_h) c \
    WHERE l.instrument IS NOT NULL OR (h.instrument IS NOT NULL AND h.volume_base > 0) \
    ON CONFLICT (instrument, open_time) DO UPDATE SET \
      open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, \
      volume_base = excluded.volume_base, volume_quote = excluded.volume_quote, trades = excluded.trades, \
      first_ns = excluded.first_ns, first_id = excluded.first_id, last_ns = excluded.last_ns, \
      last_id = excluded.last_id, source = excluded.source, version = nextval('bars_version') \
    WHERE (b.open, b.high, b.low, b.close, b.volume_base, b.volume_quote, b.trades, \
           b.first_ns, b.first_id, b.last_ns, b.last_id, b.source) \
      IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume_base, \
           excluded.volume_quote, excluded.trades, excluded.first_ns, excluded.first_id, excluded.last_ns, \
           excluded.last_id, excluded.source) \
    RETURNING source";

const BAR_COLUMNS: &str =
    "instrument, extract(epoch from open_time)::int8, open, high, low, close, \
     volume_base, volume_quote, trades, first_ns, first_id, last_ns, last_id, source, version";

fn stored_bar(row: &PgRow, interval: Interval) -> Result<StoredBar, StoreError> {
    let instrument: String = row.try_get(0)?;
    let instrument = instrument
        .parse::<Instrument>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let source: String = row.try_get(13)?;
    Ok(StoredBar {
        bar: Bar {
            instrument,
            interval,
            open_time: row.try_get(1)?,
            open: row.try_get(2)?,
            high: row.try_get(3)?,
            low: row.try_get(4)?,
            close: row.try_get(5)?,
            volume_base: row.try_get(6)?,
            volume_quote: row.try_get(7)?,
            trades: u64::try_from(row.try_get::<i64, _>(8)?).unwrap_or(0),
            first: TradeMark {
                time_ns: row.try_get(9)?,
                id: row.try_get(10)?,
            },
            last: TradeMark {
                time_ns: row.try_get(11)?,
                id: row.try_get(12)?,
            },
        },
        source: if source == "history" {
            Source::History
        } else {
            Source::Live
        },
        version: row.try_get(14)?,
    })
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
        Side::Unknown => "unknown",
    }
}

/// How a transaction inserts the batch's ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickInsert {
    /// A plain `INSERT` of every distinct tick of the batch: the common case
    /// (no tick of the batch is stored yet), about twice as fast as
    /// `ON CONFLICT`, whose per-row conflict check is most of the cost. A
    /// stored tick makes it fail with a unique violation, and the whole
    /// transaction is rolled back (nothing of it is kept).
    Plain,
    /// `INSERT … ON CONFLICT DO NOTHING RETURNING`: the ticks actually
    /// inserted are the new ones (replays and redeliveries insert nothing).
    SkipStored,
}

/// The unique violation of `ticks`' key (SQLSTATE 23505).
fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "23505")
}

/// The ticks of a batch without repeats of the same identity (instrument,
/// trade id), first occurrence kept, in batch order.
fn distinct_ticks(ticks: &[Tick]) -> Vec<&Tick> {
    let mut seen = std::collections::HashSet::with_capacity(ticks.len());
    ticks
        .iter()
        .filter(|t| seen.insert((&t.instrument, t.trade_id.as_str())))
        .collect()
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds the seven tick arrays ($1…$7) of the tick inserts.
fn bind_ticks<'q>(query: PgQuery<'q>, ticks: &[&'q Tick]) -> PgQuery<'q> {
    query
        .bind(
            ticks
                .iter()
                .map(|x| x.instrument.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(
            ticks
                .iter()
                .map(|x| x.trade_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(ticks.iter().map(|x| x.trade_time_ns).collect::<Vec<_>>())
        .bind(ticks.iter().map(|x| x.price).collect::<Vec<_>>())
        .bind(ticks.iter().map(|x| x.quantity).collect::<Vec<_>>())
        .bind(ticks.iter().map(|x| side(x.side)).collect::<Vec<_>>())
        .bind(ticks.iter().map(|x| x.received_ns).collect::<Vec<_>>())
}

impl PgStore {
    /// One transaction for `batch`, its ticks inserted as `insert` says.
    async fn attempt(
        &self,
        batch: &WriteBatch<'_>,
        distinct: &[&Tick],
        insert: TickInsert,
    ) -> Result<WriteOutcome, StoreError> {
        let started = std::time::Instant::now();
        let mut tx = self.pool.begin().await?;
        let mut outcome = WriteOutcome::default();

        // 1. New ticks.
        let t = batch.ticks;
        let new_ticks: Vec<&Tick> = match insert {
            _ if distinct.is_empty() => Vec::new(),
            TickInsert::Plain => {
                let inserted = bind_ticks(sqlx::query(
                    "INSERT INTO ticks (instrument, trade_id, trade_time, trade_time_ns, price, quantity, side, received_ns) \
                     SELECT i, id, to_timestamp(ns / 1e9), ns, p, q, s, r \
                     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::numeric[], $5::numeric[], $6::text[], $7::int8[]) \
                       AS t(i, id, ns, p, q, s, r)",
                ), distinct)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => distinct.to_vec(),
                    Err(err) => {
                        // Never keep anything of a failed transaction.
                        let _ = tx.rollback().await;
                        return Err(err.into());
                    }
                }
            }
            TickInsert::SkipStored => {
                let rows = bind_ticks(sqlx::query(
                    "INSERT INTO ticks (instrument, trade_id, trade_time, trade_time_ns, price, quantity, side, received_ns) \
                     SELECT i, id, to_timestamp(ns / 1e9), ns, p, q, s, r \
                     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::numeric[], $5::numeric[], $6::text[], $7::int8[]) \
                       AS t(i, id, ns, p, q, s, r) \
                     ON CONFLICT DO NOTHING \
                     RETURNING instrument, trade_id",
                ), distinct)
                .fetch_all(&mut *tx)
                .await?;
                let mut inserted = std::collections::HashSet::with_capacity(rows.len());
                for row in &rows {
                    inserted.insert((row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?));
                }
                distinct
                    .iter()
                    .copied()
                    .filter(|tick| {
                        inserted.remove(&(tick.instrument.to_string(), tick.trade_id.clone()))
                    })
                    .collect()
            }
        };
        let inserted_at = started.elapsed();
        outcome.new_ticks = new_ticks.len() as u64;
        outcome.duplicate_ticks = (t.len() - new_ticks.len()) as u64;

        // 2. Merge the new ticks' partial bars into the live bars.
        let partial = aggregate(new_ticks.iter().copied(), Interval::M1)?;
        if !partial.is_empty() {
            sqlx::query(
                "INSERT INTO live_1m AS b (instrument, open_time, open, high, low, close, volume_base, volume_quote, \
                                           trades, first_ns, first_id, last_ns, last_id) \
                 SELECT i, to_timestamp(ot), o, h, l, c, vb, vq, n, fns, fid, lns, lid \
                 FROM UNNEST($1::text[], $2::int8[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[], \
                             $7::numeric[], $8::numeric[], $9::int8[], $10::int8[], $11::text[], $12::int8[], $13::text[]) \
                   AS t(i, ot, o, h, l, c, vb, vq, n, fns, fid, lns, lid) \
                 ON CONFLICT (instrument, open_time) DO UPDATE SET \
                   open = CASE WHEN (excluded.first_ns, length(excluded.first_id), excluded.first_id COLLATE \"C\") \
                                  < (b.first_ns, length(b.first_id), b.first_id COLLATE \"C\") \
                               THEN excluded.open ELSE b.open END, \
                   first_ns = CASE WHEN (excluded.first_ns, length(excluded.first_id), excluded.first_id COLLATE \"C\") \
                                      < (b.first_ns, length(b.first_id), b.first_id COLLATE \"C\") \
                                   THEN excluded.first_ns ELSE b.first_ns END, \
                   first_id = CASE WHEN (excluded.first_ns, length(excluded.first_id), excluded.first_id COLLATE \"C\") \
                                      < (b.first_ns, length(b.first_id), b.first_id COLLATE \"C\") \
                                   THEN excluded.first_id ELSE b.first_id END, \
                   close = CASE WHEN (excluded.last_ns, length(excluded.last_id), excluded.last_id COLLATE \"C\") \
                                   > (b.last_ns, length(b.last_id), b.last_id COLLATE \"C\") \
                                THEN excluded.close ELSE b.close END, \
                   last_ns = CASE WHEN (excluded.last_ns, length(excluded.last_id), excluded.last_id COLLATE \"C\") \
                                     > (b.last_ns, length(b.last_id), b.last_id COLLATE \"C\") \
                                  THEN excluded.last_ns ELSE b.last_ns END, \
                   last_id = CASE WHEN (excluded.last_ns, length(excluded.last_id), excluded.last_id COLLATE \"C\") \
                                     > (b.last_ns, length(b.last_id), b.last_id COLLATE \"C\") \
                                  THEN excluded.last_id ELSE b.last_id END, \
                   high = GREATEST(b.high, excluded.high), \
                   low = LEAST(b.low, excluded.low), \
                   volume_base = b.volume_base + excluded.volume_base, \
                   volume_quote = b.volume_quote + excluded.volume_quote, \
                   trades = b.trades + excluded.trades",
            )
            .bind(partial.iter().map(|b| b.instrument.to_string()).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.open_time).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.open).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.high).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.low).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.close).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.volume_base).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.volume_quote).collect::<Vec<_>>())
            .bind(
                partial
                    .iter()
                    .map(|b| i64::try_from(b.trades).unwrap_or(i64::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(partial.iter().map(|b| b.first.time_ns).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.first.id.as_str()).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.last.time_ns).collect::<Vec<_>>())
            .bind(partial.iter().map(|b| b.last.id.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }

        let merged_at = started.elapsed();

        // 3. The best history answer of each minute.
        let h = reconcile::best_answers(batch.history);
        if !h.is_empty() {
            sqlx::query(
                "INSERT INTO history_1m AS b (instrument, open_time, open, high, low, close, volume_base, volume_quote) \
                 SELECT i, to_timestamp(ot), o, hi, lo, c, vb, vq \
                 FROM UNNEST($1::text[], $2::int8[], $3::numeric[], $4::numeric[], $5::numeric[], $6::numeric[], \
                             $7::numeric[], $8::numeric[]) AS t(i, ot, o, hi, lo, c, vb, vq) \
                 ON CONFLICT (instrument, open_time) DO UPDATE SET \
                   open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, \
                   volume_base = excluded.volume_base, volume_quote = excluded.volume_quote \
                 WHERE (excluded.volume_base, excluded.volume_quote, excluded.high, excluded.low, excluded.open, excluded.close) \
                     > (b.volume_base, b.volume_quote, b.high, b.low, b.open, b.close)",
            )
            .bind(h.iter().map(|b| b.instrument.to_string()).collect::<Vec<_>>())
            .bind(h.iter().map(|b| b.open_time).collect::<Vec<_>>())
            .bind(h.iter().map(|b| b.open).collect::<Vec<_>>())
            .bind(h.iter().map(|b| b.high).collect::<Vec<_>>())
            .bind(h.iter().map(|b| b.low).collect::<Vec<_>>())
            .bind(h.iter().map(|b| b.close).collect::<Vec<_>>())
            .bind(h.iter().map(|b| b.volume_base).collect::<Vec<_>>())
            .bind(h.iter().map(|b| b.volume_quote).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }

        // 4. The chosen bar of every touched minute.
        let mut keys: Vec<(String, i64)> = t
            .iter()
            .map(|x| {
                (
                    x.instrument.to_string(),
                    Interval::M1.floor(x.trade_time_ns.div_euclid(1_000_000_000)),
                )
            })
            .chain(h.iter().map(|b| (b.instrument.to_string(), b.open_time)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if !keys.is_empty() {
            let changed = sqlx::query(RESOLVE)
                .bind(keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>())
                .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await?;
            for row in &changed {
                if row.try_get::<String, _>(0)? == "history" {
                    outcome.history_applied += 1;
                }
            }
        }
        let history_at = started.elapsed();

        // 5. Read back every touched minute.
        if !keys.is_empty() {
            let rows = sqlx::query(&format!(
                "SELECT {BAR_COLUMNS} FROM bars_1m \
                 WHERE (instrument, open_time) IN \
                   (SELECT i, to_timestamp(ot) FROM UNNEST($1::text[], $2::int8[]) AS k(i, ot)) \
                 ORDER BY instrument, open_time"
            ))
            .bind(keys.iter().map(|k| k.0.as_str()).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?;
            outcome.touched = rows
                .iter()
                .map(|r| stored_bar(r, Interval::M1))
                .collect::<Result<_, _>>()?;
        }
        let read_at = started.elapsed();
        tx.commit().await?;
        tracing::debug!(
            ticks = t.len(),
            insert = ?insert,
            new_ticks = outcome.new_ticks,
            history = batch.history.len(),
            touched = outcome.touched.len(),
            insert_us = inserted_at.as_micros() as u64,
            merge_us = (merged_at - inserted_at).as_micros() as u64,
            history_us = (history_at - merged_at).as_micros() as u64,
            read_back_us = (read_at - history_at).as_micros() as u64,
            commit_us = (started.elapsed() - read_at).as_micros() as u64,
            "store write"
        );
        Ok(outcome)
    }
}

impl BarStore for PgStore {
    async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteOutcome, StoreError> {
        let distinct = distinct_ticks(batch.ticks);
        let outcome = match self.attempt(&batch, &distinct, TickInsert::Plain).await {
            Err(StoreError::Database(err)) if is_unique_violation(&err) => {
                tracing::debug!(
                    ticks = batch.ticks.len(),
                    "the batch holds stored ticks: writing it again with ON CONFLICT"
                );
                self.attempt(&batch, &distinct, TickInsert::SkipStored)
                    .await
            }
            other => other,
        };
        // Committed: the continuous aggregates' materialised buckets of the
        // minutes that changed are refreshed off the write path.
        if let (Ok(done), Some(runtime)) = (&outcome, &self.timescale_runtime) {
            if done.new_ticks > 0 || done.history_applied > 0 {
                runtime.after_write(done.touched.iter().map(|b| b.bar.open_time));
            }
        }
        outcome
    }

    async fn bars(
        &self,
        instrument: &Instrument,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        let sql = if interval == Interval::M1 {
            format!(
                "SELECT {BAR_COLUMNS} FROM bars_1m \
                 WHERE instrument = $1 AND open_time >= to_timestamp($2) AND open_time <= to_timestamp($3) \
                 ORDER BY open_time LIMIT $4"
            )
        } else {
            // Coarser relations carry no trade ids, source or version.
            format!(
                "SELECT instrument, extract(epoch from open_time)::int8, open, high, low, close, \
                        volume_base, volume_quote, trades, first_ns, ''::text, last_ns, ''::text, \
                        'live'::text, 0::int8 \
                 FROM bars_{} \
                 WHERE instrument = $1 AND open_time >= to_timestamp($2) AND open_time <= to_timestamp($3) \
                 ORDER BY open_time LIMIT $4",
                interval.as_str()
            )
        };
        let rows = sqlx::query(&sql)
            .bind(instrument.to_string())
            .bind(from)
            .bind(to)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| stored_bar(r, interval)).collect()
    }

    async fn holds(&self, instrument: &Instrument) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT EXISTS (SELECT 1 FROM bars_1m WHERE instrument = $1)")
            .bind(instrument.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn instruments(&self) -> Result<Vec<InstrumentSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT instrument, extract(epoch from min(open_time))::int8, \
                    extract(epoch from max(open_time))::int8, count(*) \
             FROM bars_1m GROUP BY instrument ORDER BY instrument",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                Ok(InstrumentSummary {
                    instrument: name.parse().map_err(
                        |e: crate::domain::tick::InvalidInstrument| {
                            StoreError::Corrupt(e.to_string())
                        },
                    )?,
                    first_open: r.try_get(1)?,
                    last_open: r.try_get(2)?,
                    bars: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn changed_since(
        &self,
        instrument: &Instrument,
        from: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BAR_COLUMNS} FROM bars_1m \
             WHERE instrument = $1 AND version > $2 AND open_time >= to_timestamp($3) \
             ORDER BY version LIMIT $4"
        ))
        .bind(instrument.to_string())
        .bind(after)
        .bind(from)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| stored_bar(r, Interval::M1)).collect()
    }

    async fn latest_version(&self, instrument: &Instrument) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT coalesce(max(version), 0)::int8 FROM bars_1m WHERE instrument = $1",
        )
        .bind(instrument.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }
}
