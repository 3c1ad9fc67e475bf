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
//!    ([`crate::domain::aggregate`]) and merged into the live bars
//!    (`live_1m`) with [`Bar::merge`];
//! 3. the best history answer of each minute of the batch
//!    ([`reconcile::best_answers`]) replaces the stored answer
//!    (`history_1m`) when it ranks above it;
//! 4. every touched minute gets the bar [`reconcile::choose`] picks; a row
//!    that changes takes the next version from the `counters` table (one
//!    counter for every row, as PostgreSQL's sequence);
//! 5. the rows of every minute the batch touched are read back, ordered by
//!    instrument and time.
//!
//! **Coarser intervals** (5m, 15m, 1h, 1d) are computed when read, from the
//! 1-minute rows of each bucket (buckets on the Unix epoch, days in UTC),
//! exactly as the PostgreSQL views do: open of the minute with the earliest
//! first trade, close of the one with the latest last trade, no trade ids,
//! source `live`, version 0.
//!
//! A tick's identity is (instrument, trade id), as in PostgreSQL.

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

use crate::domain::reconcile::{self, Chosen};
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

/// Inserts or replaces the row of `bar`, with `version`.
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

const LIVE_COLUMNS: &str = "open_time, open, high, low, close, volume_base, volume_quote, \
                            trades, first_ns, first_id, last_ns, last_id";

/// The live bar of (`instrument`, `open_time`), if any.
async fn load_live(
    conn: &mut SqliteConnection,
    instrument: &Instrument,
    open_time: i64,
) -> Result<Option<Bar>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {LIVE_COLUMNS} FROM live_1m WHERE instrument = ?1 AND open_time = ?2"
    ))
    .bind(instrument.to_string())
    .bind(open_time)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Bar {
        instrument: instrument.clone(),
        interval: Interval::M1,
        open_time: row.try_get(0)?,
        open: decimal(&row, 1, "open")?,
        high: decimal(&row, 2, "high")?,
        low: decimal(&row, 3, "low")?,
        close: decimal(&row, 4, "close")?,
        volume_base: decimal(&row, 5, "volume_base")?,
        volume_quote: decimal(&row, 6, "volume_quote")?,
        trades: u64::try_from(row.try_get::<i64, _>(7)?).unwrap_or(0),
        first: TradeMark {
            time_ns: row.try_get(8)?,
            id: row.try_get(9)?,
        },
        last: TradeMark {
            time_ns: row.try_get(10)?,
            id: row.try_get(11)?,
        },
    }))
}

/// Inserts or replaces the live bar `bar`.
async fn save_live(conn: &mut SqliteConnection, bar: &Bar) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT OR REPLACE INTO live_1m (instrument, {LIVE_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
    ))
    .bind(bar.instrument.to_string())
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The best history answer stored for (`instrument`, `open_time`), if any.
async fn load_history(
    conn: &mut SqliteConnection,
    instrument: &Instrument,
    open_time: i64,
) -> Result<Option<HistoryBar>, StoreError> {
    let row = sqlx::query(
        "SELECT open, high, low, close, volume_base, volume_quote FROM history_1m \
         WHERE instrument = ?1 AND open_time = ?2",
    )
    .bind(instrument.to_string())
    .bind(open_time)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(HistoryBar {
        instrument: instrument.clone(),
        open_time,
        open: decimal(&row, 0, "open")?,
        high: decimal(&row, 1, "high")?,
        low: decimal(&row, 2, "low")?,
        close: decimal(&row, 3, "close")?,
        volume_base: decimal(&row, 4, "volume_base")?,
        volume_quote: decimal(&row, 5, "volume_quote")?,
    }))
}

/// Inserts or replaces the stored history answer with `h`.
async fn save_history(conn: &mut SqliteConnection, h: &HistoryBar) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT OR REPLACE INTO history_1m (instrument, open_time, open, high, low, close, \
                                            volume_base, volume_quote) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(h.instrument.to_string())
    .bind(h.open_time)
    .bind(h.open.to_string())
    .bind(h.high.to_string())
    .bind(h.low.to_string())
    .bind(h.close.to_string())
    .bind(h.volume_base.to_string())
    .bind(h.volume_quote.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
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

/// One batch in one transaction on the writer connection (see
/// [`SqliteStore::write`]).
async fn write_batch(
    writer: &SqlitePool,
    batch: WriteBatch<'_>,
) -> Result<WriteOutcome, StoreError> {
    let started = std::time::Instant::now();
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;

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

    // 2. Merge the new ticks' partial bars into the live bars.
    for partial in aggregate(new_ticks.iter().copied(), Interval::M1)? {
        let merged = match load_live(&mut tx, &partial.instrument, partial.open_time).await? {
            Some(stored) => stored.merge(&partial)?,
            None => partial,
        };
        save_live(&mut tx, &merged).await?;
    }
    let merged_at = started.elapsed();

    // 3. The best history answer of each minute.
    let h = reconcile::best_answers(batch.history);
    for answer in &h {
        let better = match load_history(&mut tx, &answer.instrument, answer.open_time).await? {
            Some(stored) => reconcile::outranks(answer, &stored),
            None => true,
        };
        if better {
            save_history(&mut tx, answer).await?;
        }
    }

    // 4. The chosen bar of every touched minute.
    // By instrument name and time, as PostgreSQL orders them.
    let mut keys: Vec<(String, i64, &Instrument)> = t
        .iter()
        .map(|x| {
            (
                x.instrument.to_string(),
                Interval::M1.floor(x.trade_time_ns.div_euclid(1_000_000_000)),
                &x.instrument,
            )
        })
        .chain(
            h.iter()
                .map(|b| (b.instrument.to_string(), b.open_time, &b.instrument)),
        )
        .collect();
    keys.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    keys.dedup_by(|a, b| (&a.0, a.1) == (&b.0, b.1));
    let mut version: i64 = sqlx::query("SELECT value FROM counters WHERE name = 'bars_version'")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    let counter_was = version;
    for (key, open_time, instrument) in &keys {
        let live = load_live(&mut tx, instrument, *open_time).await?;
        let history = load_history(&mut tx, instrument, *open_time).await?;
        let chosen = match reconcile::choose(live.as_ref(), history.as_ref()) {
            Some(Chosen::Live) => live.map(|b| (b, Source::Live)),
            Some(Chosen::History) => history
                .as_ref()
                .map(|h| (reconcile::history_bar(h), Source::History)),
            None => None,
        };
        let Some((bar, source)) = chosen else {
            continue;
        };
        let stored = load(&mut tx, key, *open_time).await?;
        if stored
            .as_ref()
            .is_some_and(|s| s.bar == bar && s.source == source)
        {
            continue;
        }
        version = version.saturating_add(1);
        save(&mut tx, key, &bar, source, version).await?;
        if source == Source::History {
            outcome.history_applied += 1;
        }
    }
    if version != counter_was {
        sqlx::query("UPDATE counters SET value = ?1 WHERE name = 'bars_version'")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    let history_at = started.elapsed();

    // 5. Read back every touched minute.
    for (key, open_time, _) in &keys {
        if let Some(row) = load(&mut tx, key, *open_time).await? {
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

impl BarStore for SqliteStore {
    /// The transaction runs in a task of its own, to its commit or
    /// rollback, whatever becomes of the caller: a caller dropped while it
    /// waits (an actor killed, a time-out) must never leave the one writer
    /// connection inside a transaction (every later write would then fail
    /// with "begin at non-zero transaction depth", as a Fatal error).
    async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteOutcome, StoreError> {
        let (ticks, history) = (batch.ticks.to_vec(), batch.history.to_vec());
        let writer = self.writer.clone();
        let task = tokio::spawn(async move {
            write_batch(
                &writer,
                WriteBatch {
                    ticks: &ticks,
                    history: &history,
                },
            )
            .await
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Corrupt(format!("the write task ended: {e}"))),
        }
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

    async fn changed_since(
        &self,
        instrument: &Instrument,
        from: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BAR_COLUMNS} FROM bars_1m \
             WHERE instrument = ?1 AND version > ?2 AND open_time >= ?3 \
             ORDER BY version LIMIT ?4"
        ))
        .bind(instrument.to_string())
        .bind(after)
        .bind(from)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(stored_bar).collect()
    }

    async fn latest_version(&self, instrument: &Instrument) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT coalesce(max(version), 0) FROM bars_1m WHERE instrument = ?1")
                .bind(instrument.to_string())
                .fetch_one(&self.reader)
                .await?;
        Ok(row.try_get(0)?)
    }
}
