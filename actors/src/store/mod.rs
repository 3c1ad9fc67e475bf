//! Storage of ticks and bars, behind small traits: [`BarStore`] (the system of
//! record: PostgreSQL/TimescaleDB) and [`BarCache`] (recent bars: Redis).
//!
//! The cache is never the only copy: it is written after the store commits,
//! and a missing or partial entry means "ask the store".

pub mod postgres;
pub mod redis_cache;
pub mod timescale;

use std::future::Future;

use crate::domain::{Bar, HistoryBar, Instrument, Interval, Tick};

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

impl StoreError {
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

/// Where a stored 1-minute bar came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Merged from distinct live ticks.
    Live,
    /// A closed minute from the history API.
    History,
}

/// A bar as stored: the bar, where it came from, and the row's version (it
/// grows with every change of the row).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBar {
    /// The bar.
    pub bar: Bar,
    /// Live or history.
    pub source: Source,
    /// Row version (1-minute bars); 0 for coarser intervals.
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

    /// Loads `bars` (all stored 1-minute bars of `instrument` from `from` on)
    /// and marks the cache complete for `instrument` from `from`.
    fn fill(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets what the cache claims to hold completely, for every instrument
    /// (bars stay, but reads go to the store until the next fill).
    fn invalidate_all(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
