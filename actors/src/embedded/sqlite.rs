//! [`SqliteStore`]: the embedded system of record, a [`BarStore`] on one
//! SQLite file (through sqlx), with exactly the semantics of
//! [`PgStore`](crate::store::postgres::PgStore).
//!
//! [`SqliteStore::open`] creates the data folder if needed, opens (or
//! creates) `candela.sqlite3` in it in WAL mode with `synchronous=FULL` (a
//! committed write survives a crash of the process or the machine, which the
//! consumer's offset commit relies on), and applies the migrations in
//! `migrations/sqlite/` (same tables as PostgreSQL: `ticks`, `bars_1m`).
//!
//! **Exact decimals.** Prices, quantities and volumes are stored as decimal
//! strings (`TEXT`, scale included); every merge, sum, minimum and maximum is
//! computed in Rust on [`rust_decimal::Decimal`], never in floating point.
//!
//! **One write is one transaction** (`BEGIN IMMEDIATE`, writes serialised on
//! one connection; reads use a pool of their own and never block, thanks to
//! WAL), with the steps of `PgStore::write`:
//!
//! 1. each distinct tick of the batch is inserted unless its identity
//!    (instrument, trade id) is already stored; the inserted ones are the
//!    *new* ticks, the rest are duplicates;
//! 2. the new ticks are aggregated into partial 1-minute bars
//!    ([`crate::domain::aggregate`]) and merged into `live` rows with
//!    [`Bar::merge`] (a `history` row is left alone), each change adding one
//!    to the row's version;
//! 3. history bars follow the reconciliation rule of
//!    [`store::postgres`](crate::store::postgres): zero volume ignored; the
//!    first bar of a minute within the batch counts; it creates a missing
//!    minute, replaces a `live` row with a smaller base volume, and changes
//!    nothing else;
//! 4. the rows of every minute the batch touched are read back, ordered by
//!    instrument and time.
//!
//! **Coarser intervals** (5m, 15m, 1h, 1d) are computed when read, from the
//! 1-minute rows of each bucket (buckets on the Unix epoch, days in UTC),
//! exactly as the PostgreSQL views do: open of the minute with the earliest
//! first trade, close of the one with the latest last trade, no trade ids,
//! source `live`, version 0.
//!
//! One difference in a case that does not occur: PostgreSQL's tick key also
//! holds the trade time (for TimescaleDB), so a tick that reused a stored
//! trade id with another time would be stored there and ignored here; the
//! documented identity of a tick is (instrument, trade id).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};

use crate::domain::{aggregate, Bar, HistoryBar, Instrument, Interval, Side, Tick, TradeMark};
use crate::store::{
    BarStore, InstrumentSummary, Source, StoreError, StoredBar, WriteBatch, WriteOutcome,
};

/// The migrations in `migrations/sqlite/`, embedded in the binary.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The database file's name inside the data folder.
pub const DATABASE_FILE: &str = "candela.sqlite3";

/// How many connections serve reads.
const READERS: u32 = 4;

/// How long a write waits for another process holding the file's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const BAR_COLUMNS: &str = "instrument, open_time, open, high, low, close, volume_base, \
                           volume_quote, trades, first_ns, first_id, last_ns, last_id, source, version";

/// A [`BarStore`] on SQLite. Cloning shares the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: writes are serialised here rather than on the file lock.
    writer: SqlitePool,
    /// Reads.
    reader: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens the store in the folder `data_dir` (created if missing): the file
    /// `data_dir/candela.sqlite3`, created and migrated as needed.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        Self::open_file(dir.join(DATABASE_FILE)).await
    }

    /// Opens the store in the database file `path` (its folder must exist).
    pub async fn open_file(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        SQLITE_MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        tracing::info!(path = %path.display(), "sqlite store open");
        Ok(Self {
            writer,
            reader,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The read pool (for inspection, e.g. counting stored ticks in tests).
    pub fn pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// The write pool (one connection).
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Closes both pools (waits for the connections to finish).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

fn side(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
        Side::Unknown => "unknown",
    }
}

fn source_text(source: Source) -> &'static str {
    match source {
        Source::Live => "live",
        Source::History => "history",
    }
}

fn decimal(row: &SqliteRow, index: usize, column: &str) -> Result<Decimal, StoreError> {
    let text: String = row.try_get(index)?;
    Decimal::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("bars_1m.{column} `{text}`: {e}")))
}

fn instrument(text: &str) -> Result<Instrument, StoreError> {
    text.parse::<Instrument>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A `bars_1m` row selected with [`BAR_COLUMNS`].
fn stored_bar(row: &SqliteRow) -> Result<StoredBar, StoreError> {
    let name: String = row.try_get(0)?;
    let source: String = row.try_get(13)?;
    Ok(StoredBar {
        bar: Bar {
            instrument: instrument(&name)?,
            interval: Interval::M1,
            open_time: row.try_get(1)?,
            open: decimal(row, 2, "open")?,
            high: decimal(row, 3, "high")?,
            low: decimal(row, 4, "low")?,
            close: decimal(row, 5, "close")?,
            volume_base: decimal(row, 6, "volume_base")?,
            volume_quote: decimal(row, 7, "volume_quote")?,
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
        source: match source.as_str() {
            "live" => Source::Live,
            "history" => Source::History,
            other => return Err(StoreError::Corrupt(format!("bars_1m.source `{other}`"))),
        },
        version: row.try_get(14)?,
    })
}

/// The stored row of (`instrument`, `open_time`), if any.
async fn load(
    conn: &mut SqliteConnection,
    instrument: &str,
    open_time: i64,
) -> Result<Option<StoredBar>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {BAR_COLUMNS} FROM bars_1m WHERE instrument = ?1 AND open_time = ?2"
    ))
    .bind(instrument)
    .bind(open_time)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(stored_bar).transpose()
}

/// Inserts (version 1) or replaces (with `version`) the row of `bar`.
async fn save(
    conn: &mut SqliteConnection,
    instrument: &str,
    bar: &Bar,
    source: Source,
    version: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO bars_1m (instrument, open_time, open, high, low, close, volume_base, \
                              volume_quote, trades, first_ns, first_id, last_ns, last_id, source, version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT (instrument, open_time) DO UPDATE SET \
           open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close, \
           volume_base = excluded.volume_base, volume_quote = excluded.volume_quote, \
           trades = excluded.trades, first_ns = excluded.first_ns, first_id = excluded.first_id, \
           last_ns = excluded.last_ns, last_id = excluded.last_id, source = excluded.source, \
           version = excluded.version",
    )
    .bind(instrument)
    .bind(bar.open_time)
    .bind(bar.open.to_string())
    .bind(bar.high.to_string())
    .bind(bar.low.to_string())
    .bind(bar.close.to_string())
    .bind(bar.volume_base.to_string())
    .bind(bar.volume_quote.to_string())
    .bind(i64::try_from(bar.trades).unwrap_or(i64::MAX))
    .bind(bar.first.time_ns)
    .bind(bar.first.id.as_str())
    .bind(bar.last.time_ns)
    .bind(bar.last.id.as_str())
    .bind(source_text(source))
    .bind(version)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A history bar as a 1-minute row: no trades, first and last trade at the
/// minute's edges (as PostgreSQL stores it).
fn history_row(h: &HistoryBar) -> Bar {
    Bar {
        instrument: h.instrument.clone(),
        interval: Interval::M1,
        open_time: h.open_time,
        open: h.open,
        high: h.high,
        low: h.low,
        close: h.close,
        volume_base: h.volume_base,
        volume_quote: h.volume_quote,
        trades: 0,
        first: TradeMark {
            time_ns: h.open_time.saturating_mul(1_000_000_000),
            id: String::new(),
        },
        last: TradeMark {
            time_ns: h
                .open_time
                .saturating_mul(1_000_000_000)
                .saturating_add(59_999_999_999),
            id: String::new(),
        },
    }
}

/// A coarse bar as the PostgreSQL views return it: no trade ids, `live`,
/// version 0.
fn coarse(mut bar: Bar) -> StoredBar {
    bar.first.id.clear();
    bar.last.id.clear();
    StoredBar {
        bar,
        source: Source::Live,
        version: 0,
    }
}

/// Keeps range arithmetic (floors, bucket ends) clear of overflow.
const TIME_LIMIT: i64 = i64::MAX / 4;

impl BarStore for SqliteStore {
    async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteOutcome, StoreError> {
        let started = std::time::Instant::now();
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut outcome = WriteOutcome::default();

        // 1. New ticks: the first copy of each identity, if not stored yet.
        let t = batch.ticks;
        let mut seen: HashSet<(&Instrument, &str)> = HashSet::with_capacity(t.len());
        let mut new_ticks: Vec<&Tick> = Vec::with_capacity(t.len());
        for tick in t {
            if !seen.insert((&tick.instrument, tick.trade_id.as_str())) {
                continue;
            }
            let done = sqlx::query(
                "INSERT INTO ticks (instrument, trade_id, trade_time_ns, price, quantity, side, received_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )
            .bind(tick.instrument.to_string())
            .bind(tick.trade_id.as_str())
            .bind(tick.trade_time_ns)
            .bind(tick.price.to_string())
            .bind(tick.quantity.to_string())
            .bind(side(tick.side))
            .bind(tick.received_ns)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                new_ticks.push(tick);
            }
        }
        outcome.new_ticks = new_ticks.len() as u64;
        outcome.duplicate_ticks = (t.len() - new_ticks.len()) as u64;
        let inserted_at = started.elapsed();

        // 2. Merge the new ticks' partial bars into live rows.
        for partial in aggregate(new_ticks.iter().copied(), Interval::M1)? {
            let key = partial.instrument.to_string();
            match load(&mut tx, &key, partial.open_time).await? {
                None => save(&mut tx, &key, &partial, Source::Live, 1).await?,
                Some(row) if row.source == Source::Live => {
                    let merged = row.bar.merge(&partial)?;
                    let version = row.version.saturating_add(1);
                    save(&mut tx, &key, &merged, Source::Live, version).await?;
                }
                // Live ticks never change a closed minute from history.
                Some(_) => {}
            }
        }
        let merged_at = started.elapsed();

        // 3. History bars, by the reconciliation rule.
        let mut first_of_minute = HashSet::with_capacity(batch.history.len());
        let h: Vec<&HistoryBar> = batch
            .history
            .iter()
            .filter(|b| !b.volume_base.is_zero())
            .filter(|b| first_of_minute.insert((&b.instrument, b.open_time)))
            .collect();
        for hb in &h {
            let key = hb.instrument.to_string();
            let apply = match load(&mut tx, &key, hb.open_time).await? {
                None => Some(1),
                Some(row) if row.source == Source::Live && row.bar.volume_base < hb.volume_base => {
                    Some(row.version.saturating_add(1))
                }
                Some(_) => None,
            };
            if let Some(version) = apply {
                save(&mut tx, &key, &history_row(hb), Source::History, version).await?;
                outcome.history_applied += 1;
            }
        }
        let history_at = started.elapsed();

        // 4. Read back every touched minute.
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
        for (instrument, open_time) in &keys {
            if let Some(row) = load(&mut tx, instrument, *open_time).await? {
                outcome.touched.push(row);
            }
        }
        let read_at = started.elapsed();
        tx.commit().await?;
        tracing::debug!(
            ticks = t.len(),
            new_ticks = outcome.new_ticks,
            history = batch.history.len(),
            touched = outcome.touched.len(),
            insert_us = inserted_at.as_micros() as u64,
            merge_us = (merged_at - inserted_at).as_micros() as u64,
            history_us = (history_at - merged_at).as_micros() as u64,
            read_back_us = (read_at - history_at).as_micros() as u64,
            commit_us = (started.elapsed() - read_at).as_micros() as u64,
            "sqlite store write"
        );
        Ok(outcome)
    }

    async fn bars(
        &self,
        instrument: &Instrument,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        let key = instrument.to_string();
        if interval == Interval::M1 {
            let rows = sqlx::query(&format!(
                "SELECT {BAR_COLUMNS} FROM bars_1m \
                 WHERE instrument = ?1 AND open_time >= ?2 AND open_time <= ?3 \
                 ORDER BY open_time LIMIT ?4"
            ))
            .bind(&key)
            .bind(from)
            .bind(to)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await?;
            return rows.iter().map(stored_bar).collect();
        }
        let (from, to) = (from.max(-TIME_LIMIT), to.min(TIME_LIMIT));
        if limit == 0 || to < from {
            return Ok(Vec::new());
        }
        // Every minute of the buckets that start within [from, to].
        let first_minute = interval.floor(from);
        let last_minute = interval.floor(to) + interval.seconds() - 1;
        let query = format!(
            "SELECT {BAR_COLUMNS} FROM bars_1m \
             WHERE instrument = ?1 AND open_time >= ?2 AND open_time <= ?3 ORDER BY open_time"
        );
        let mut rows = sqlx::query(&query)
            .bind(&key)
            .bind(first_minute)
            .bind(last_minute)
            .fetch(&self.reader);
        let mut out = Vec::new();
        let mut current: Option<Bar> = None;
        while let Some(row) = rows.try_next().await? {
            let wide = stored_bar(&row)?.bar.widen(interval);
            if wide.open_time < from {
                continue;
            }
            match current.take() {
                Some(c) if c.open_time == wide.open_time => current = Some(c.merge(&wide)?),
                Some(c) => {
                    out.push(coarse(c));
                    if out.len() == limit {
                        return Ok(out);
                    }
                    current = Some(wide);
                }
                None => current = Some(wide),
            }
        }
        if let Some(c) = current {
            out.push(coarse(c));
        }
        Ok(out)
    }

    async fn holds(&self, instrument: &Instrument) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT EXISTS (SELECT 1 FROM bars_1m WHERE instrument = ?1)")
            .bind(instrument.to_string())
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get::<i64, _>(0)? != 0)
    }

    async fn instruments(&self) -> Result<Vec<InstrumentSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT instrument, min(open_time), max(open_time), count(*) \
             FROM bars_1m GROUP BY instrument ORDER BY instrument",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.try_get(0)?;
                Ok(InstrumentSummary {
                    instrument: instrument(&name)?,
                    first_open: r.try_get(1)?,
                    last_open: r.try_get(2)?,
                    bars: r.try_get(3)?,
                })
            })
            .collect()
    }
}
