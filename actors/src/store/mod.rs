//! Storage of ticks and bars, behind small traits: [`BarStore`] (the system of
//! record: PostgreSQL/TimescaleDB) and [`BarCache`] (recent bars: Redis).
//!
//! The cache is never the only copy: it is written after the store commits,
//! and a missing or partial entry means "ask the store".

pub mod dynamic;
pub mod postgres;
pub mod redis_cache;
pub mod redis_feed;
pub mod timescale;
pub mod watch;

use std::future::Future;

use crate::domain::{Bar, BarOverflow, HistoryBar, Instrument, Interval, Tick};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The cache refused or could not be reached.
    #[error("cache: {0}")]
    Cache(#[from] redis::RedisError),
    /// Stored data could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A bar's arithmetic does not fit a decimal.
    #[error(transparent)]
    Overflow(#[from] BarOverflow),
    /// The cache is known to be unreachable; it is not tried again until
    /// its back-off ends.
    #[error("cache unreachable (retrying after a back-off)")]
    CacheDown,
    /// The data folder of an embedded store cannot be used.
    #[error("data folder `{path}`: {source}")]
    DataDir {
        /// The folder.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a failed write means for the batch that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// The database is not there or not able right now (a lost connection,
    /// a pool time-out, a serialization failure, a shutdown): the same batch
    /// will succeed later. Retried with back-off.
    Transient,
    /// The database refuses something *in the batch* (a constraint, a value
    /// out of range, a trigger, a value that cannot be read back, a bar that
    /// overflows): the same records will always fail. The offending records
    /// are found and quarantined; the rest of the batch is written.
    Data,
    /// Anything else (a privilege revoked, a table missing): no batch can
    /// succeed until someone acts. Fails the consumer, whose supervisor
    /// escalates if it keeps failing.
    Fatal,
}

/// A database's refusal sorted into a [`Failure`]: by SQLite's result code
/// or by PostgreSQL's SQLSTATE.
fn database_failure(db: &dyn sqlx::error::DatabaseError) -> Failure {
    let Some(code) = db.code() else {
        return Failure::Fatal;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite reports its (extended) result code as decimal text; the
        // primary code is the low byte.
        return match code.parse::<u32>().map(|n| n & 0xff) {
            // BUSY, LOCKED, NOMEM, IOERR, FULL, PROTOCOL
            Ok(5 | 6 | 7 | 10 | 13 | 15) => Failure::Transient,
            // TOOBIG, CONSTRAINT, MISMATCH, RANGE
            Ok(18 | 19 | 20 | 25) => Failure::Data,
            _ => Failure::Fatal,
        };
    }
    sqlstate_failure(&code)
}

/// PostgreSQL's SQLSTATE classes and codes sorted into [`Failure`]s.
fn sqlstate_failure(code: &str) -> Failure {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available,
        // query_canceled (a statement time-out), admin/crash shutdown,
        // cannot_connect_now
        "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" => Failure::Transient,
        // raise_exception: a trigger refusing a row
        "P0001" => Failure::Data,
        _ => match code.get(..2) {
            // connection exception, insufficient resources, system error
            Some("08" | "53" | "58") => Failure::Transient,
            // data exception, integrity constraint violation, program limit
            // exceeded (e.g. an index row too large)
            Some("22" | "23" | "54") => Failure::Data,
            _ => Failure::Fatal,
        },
    }
}

impl StoreError {
    /// What this failure of a write means for the batch (see [`Failure`]).
    pub fn failure(&self) -> Failure {
        match self {
            StoreError::Database(err) => match err {
                sqlx::Error::Database(db) => database_failure(db.as_ref()),
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => Failure::Transient,
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => Failure::Data,
                _ => Failure::Fatal,
            },
            StoreError::Corrupt(_) | StoreError::Overflow(_) => Failure::Data,
            StoreError::Cache(_) | StoreError::CacheDown => Failure::Transient,
            StoreError::Migrate(_) | StoreError::DataDir { .. } => Failure::Fatal,
        }
    }

    /// Whether this is the cache being unreachable (as opposed to refusing).
    pub fn is_cache_unreachable(&self) -> bool {
        match self {
            StoreError::CacheDown => true,
            StoreError::Cache(e) => {
                e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_connection_dropped()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn sqlstates_are_sorted_into_failures() {
        for code in ["23514", "23502", "22003", "22P02", "54000", "P0001"] {
            assert_eq!(sqlstate_failure(code), Failure::Data, "{code}");
        }
        for code in ["40001", "40P01", "08006", "57P01", "53300", "57014"] {
            assert_eq!(sqlstate_failure(code), Failure::Transient, "{code}");
        }
        // A revoked privilege, a missing table: nobody's batch can fix it.
        for code in ["42501", "42P01", "XX000"] {
            assert_eq!(sqlstate_failure(code), Failure::Fatal, "{code}");
        }
        assert_eq!(StoreError::Corrupt("x".into()).failure(), Failure::Data);
        assert_eq!(
            StoreError::Database(sqlx::Error::PoolTimedOut).failure(),
            Failure::Transient
        );
    }
}

/// Where a stored 1-minute bar came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Merged from distinct live ticks.
    Live,
    /// A closed minute from the history API.
    History,
}

/// A bar as stored: the bar, where it came from, and the row's version (the
/// store's change counter when the row last changed: it grows with every
/// change of any row).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBar {
    /// The bar.
    pub bar: Bar,
    /// Live or history.
    pub source: Source,
    /// Row version (1-minute bars); for a coarser interval, the highest
    /// version of its minutes where the store knows it, else 0.
    pub version: i64,
}

/// What one batch brings to the store: live ticks and history bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteBatch<'a> {
    /// Live ticks (duplicates allowed: they change nothing).
    pub ticks: &'a [Tick],
    /// Closed minutes from the history API.
    pub history: &'a [HistoryBar],
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Ticks stored for the first time.
    pub new_ticks: u64,
    /// Ticks already stored (replays, redeliveries).
    pub duplicate_ticks: u64,
    /// History bars that created or repaired a minute.
    pub history_applied: u64,
    /// The stored 1-minute bars of every minute the batch touched, as they are
    /// after the commit (what the cache must now hold).
    pub touched: Vec<StoredBar>,
}

/// An instrument the platform holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstrumentSummary {
    /// The instrument.
    pub instrument: Instrument,
    /// Start of its first 1-minute bar, Unix seconds.
    pub first_open: i64,
    /// Start of its last 1-minute bar, Unix seconds.
    pub last_open: i64,
    /// Number of 1-minute bars.
    pub bars: i64,
}

/// The system of record.
pub trait BarStore: Send + Sync + 'static {
    /// Stores a batch in one transaction: new ticks, the bars they change, and
    /// the history bars by the reconciliation rule.
    fn write(
        &self,
        batch: WriteBatch<'_>,
    ) -> impl Future<Output = Result<WriteOutcome, StoreError>> + Send;

    /// Bars of `instrument` and `interval` with `from <= open_time <= to`
    /// (Unix seconds), ascending, at most `limit`.
    fn bars(
        &self,
        instrument: &Instrument,
        interval: Interval,
        from: i64,
        to: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBar>, StoreError>> + Send;

    /// Whether any bar of `instrument` is stored.
    fn holds(
        &self,
        instrument: &Instrument,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every instrument with stored bars.
    fn instruments(
        &self,
    ) -> impl Future<Output = Result<Vec<InstrumentSummary>, StoreError>> + Send;

    /// The 1-minute bars of `instrument` with `open_time >= from` that
    /// changed after version `after` (their version is greater), by version
    /// ascending, at most `limit`: what a follower that saw every change up
    /// to `after` has missed. Versions come from one counter per store, so
    /// they order every change of every row.
    fn changed_since(
        &self,
        instrument: &Instrument,
        from: i64,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredBar>, StoreError>> + Send;

    /// The highest version of `instrument`'s 1-minute bars (0 without any).
    fn latest_version(
        &self,
        instrument: &Instrument,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
}

/// Recent 1-minute bars, for fast reads.
pub trait BarCache: Send + Sync + 'static {
    /// Writes the given (committed) bars, replacing what the cache held for
    /// their minutes.
    fn put(&self, bars: &[StoredBar]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The cached 1-minute bars of `instrument` with `from <= open_time <= to`,
    /// or `None` when the cache does not hold that whole range (then ask the
    /// store).
    fn get(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Option<Vec<StoredBar>>, StoreError>> + Send;

    /// The cache's generation, to read *before* querying the store for a
    /// [`BarCache::fill`]: every invalidation moves it on.
    fn generation(
        &self,
        instrument: &Instrument,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Loads `bars` (all stored 1-minute bars of `instrument` from `from` on,
    /// as a query made after reading `generation` returned them) and marks
    /// the cache complete for `instrument` from `from`, but only if the
    /// generation is still `generation` (compare-and-set): a fill that read
    /// the store before an invalidation never marks what it read as
    /// complete. Returns whether the mark was set.
    fn fill(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
        generation: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets what the cache claims to hold completely, for every instrument
    /// (bars stay, but reads go to the store until the next fill): moves the
    /// generation on.
    fn invalidate_all(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The cached 1-minute bars of `instrument` with `from <= open_time <=
    /// to`, hour by hour, for a reader that keeps what it built from earlier
    /// answers: an hour the reader names in `known` with the version the
    /// cache still holds comes back without its bars ([`CachedHour::bars`] is
    /// `None`); any other hour comes back whole (every minute of it the
    /// cache holds from its mark on, also outside `from..=to`, so the reader
    /// can keep it). Hours are returned in order until they hold `limit`
    /// bars of the range (a known hour counts with its [`KnownHour::bars`]).
    /// `None` when the cache does not hold the whole range (as
    /// [`BarCache::get`]).
    fn hours(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        limit: usize,
        known: &[KnownHour],
    ) -> impl Future<Output = Result<Option<HourRange>, StoreError>> + Send;
}

/// An hour's length, seconds.
pub const HOUR_SECS: i64 = 3_600;

/// An hour of 1-minute bars a cache reader already holds, at a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownHour {
    /// Start of the hour (a multiple of [`HOUR_SECS`]).
    pub hour: i64,
    /// The version the reader built it from ([`CachedHour::version`]).
    pub version: i64,
    /// How many of its bars lie in the range asked for.
    pub bars: usize,
}

/// One hour of a cached range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedHour {
    /// Start of the hour (a multiple of [`HOUR_SECS`]).
    pub hour: i64,
    /// The hour's version in the cache: it moves whenever the cache takes a
    /// change of any of the hour's bars, and never comes back to a value it
    /// had, so the same version is the same bars. 0: the cache has no
    /// version for the hour (bars written before versions existed); such an
    /// hour is always sent.
    pub version: i64,
    /// The hour's bars from [`HourRange::complete_from`] on, ascending;
    /// `None` when the reader named this version in `known`.
    pub bars: Option<Vec<StoredBar>>,
}

/// What [`BarCache::hours`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourRange {
    /// The cache holds every bar of the instrument from this time on (its
    /// mark): an hour's bars are complete from here.
    pub complete_from: i64,
    /// The hours holding bars, ascending (hours without bars are left out).
    pub hours: Vec<CachedHour>,
}

/// The start of the hour holding `t`.
pub fn hour_of(t: i64) -> i64 {
    t - t.rem_euclid(HOUR_SECS)
}
