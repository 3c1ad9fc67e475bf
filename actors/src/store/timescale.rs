//! The TimescaleDB side of the PostgreSQL store: the upgrade of the schema,
//! the refreshes that keep the continuous aggregates right, and the watch
//! over TimescaleDB's refresh jobs. Plain PostgreSQL keeps the tables and
//! views of the migrations and runs none of this. How to build TimescaleDB,
//! what was observed on it and how to run the tests:
//! [docs/timescaledb.md](../../../../docs/timescaledb.md).
//!
//! * **Preload check.** The extension is used only when the server preloads
//!   it (`shared_preload_libraries`, or the loader's own setting when that
//!   list cannot be read). Otherwise the store stays on plain PostgreSQL and
//!   says so ([`Timescale::NotPreloaded`], a warning, a readiness note);
//!   `CREATE EXTENSION` is not even tried.
//! * **The upgrade, version [`VERSION`]** (under an advisory lock, statement by
//!   statement: continuous aggregates cannot be created in a transaction):
//!   `bars_1m` becomes a hypertable; the views `bars_5m`, `bars_15m`,
//!   `bars_1h`, `bars_1d` become continuous aggregates of the same names and
//!   columns, with real-time aggregation on (`materialized_only = false`), a
//!   refresh policy whose `end_offset` is one bucket (and `start_offset`
//!   NULL, see below), materialised up to the start of the current bucket
//!   only. Each aggregate carries its version in its comment. An aggregate of
//!   an older version (version 1 refreshed `(NULL, NULL)` with an
//!   `end_offset` of NULL) whose watermark lies past the start of the current
//!   bucket is rebuilt (built beside it, then swapped in one transaction);
//!   otherwise its policy is replaced. `ticks` is left as it is: its identity
//!   is becoming (instrument, trade id), which a hypertable cannot hold.
//! * **Refresh after writes.** After a write commits, the buckets of the
//!   minutes it touched that are already materialised (below the watermark)
//!   are refreshed by a background task that coalesces the requests
//!   ([`TimescaleRuntime::after_write`]): a late tick or a repaired history
//!   minute reaches the aggregates at once, however old.
//! * **The watch.** TimescaleDB's background jobs fail on PostgreSQL 15.20
//!   (`cannot drop portal "" while it is being set up`, after doing their
//!   work). Every [`TimescaleOptions::watch_every`] the store reads the
//!   policies' job status; when one is failing, paused, overdue or missing it
//!   logs an error with the job ids and the last error, publishes a readiness
//!   note ([`TimescaleStatus::note`]), and refreshes the last
//!   [`TimescaleOptions::self_refresh_buckets`] buckets of that aggregate
//!   itself. The decisions are pure code ([`PolicyWatch`], [`refresh_window`]).
//!
//! **What must never happen:**
//! * a refresh window ending after the start of the current bucket (the
//!   database's clock): it moves the watermark past the newest bucket and
//!   real-time aggregation stops seeing new minutes of that bucket until the
//!   next refresh. So never `(NULL, NULL)`;
//! * a refresh window starting above the watermark: the buckets between the
//!   watermark and the window vanish from the aggregate (they count as
//!   materialised, but nothing was materialised for them) until something
//!   refreshes them, which a policy with a finite `start_offset` never does
//!   once they are older than it. Hence `start_offset => NULL` in the
//!   policies, and every window here starting at or below the watermark;
//! * `CREATE EXTENSION timescaledb` on a server that does not preload it (the
//!   session ends with FATAL), or a failed connection because of TimescaleDB;
//! * a refresh on the write path or inside a transaction
//!   (`refresh_continuous_aggregate` cannot run in one);
//! * `ticks` turned into a hypertable, or a coarse relation whose columns
//!   differ from the views of the migrations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};
use tokio::sync::{watch, Notify};

use super::StoreError;

/// What the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timescale {
    /// The extension is not installed on this server: plain PostgreSQL.
    Unavailable,
    /// The extension is installed but the server does not preload it: plain
    /// PostgreSQL (warned, and noted in the readiness answer).
    NotPreloaded,
    /// Switched off ([`TimescaleOptions::enabled`]): nothing was checked or
    /// changed, no background task runs.
    Disabled,
    /// Hypertable and continuous aggregates, upgraded now or before.
    Enabled,
}

/// The version of the TimescaleDB schema this code builds. Version 1 (before
/// the comment marker existed) refreshed `(NULL, NULL)` with policies whose
/// `end_offset` was NULL and made `ticks` a hypertable.
pub const VERSION: u32 = 2;

/// The comment marker of an aggregate of [`VERSION`].
fn marker(version: u32) -> String {
    format!("candela timescale v{version}: see actors/src/store/timescale.rs")
}

/// The version a comment marks (`None`: no marker, i.e. version 1).
fn marked_version(comment: Option<&str>) -> Option<u32> {
    let rest = comment?.strip_prefix("candela timescale v")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A continuous aggregate over `bars_1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aggregate {
    /// Its relation (the name of the plain view it replaces).
    pub relation: &'static str,
    /// Bucket width, seconds.
    pub width_secs: i64,
    /// Bucket width, as an SQL interval.
    pub width: &'static str,
    /// How often its refresh policy runs, as an SQL interval.
    pub schedule: &'static str,
}

/// The coarse intervals, finest first.
pub const AGGREGATES: [Aggregate; 4] = [
    Aggregate {
        relation: "bars_5m",
        width_secs: 300,
        width: "5 minutes",
        schedule: "1 minute",
    },
    Aggregate {
        relation: "bars_15m",
        width_secs: 900,
        width: "15 minutes",
        schedule: "5 minutes",
    },
    Aggregate {
        relation: "bars_1h",
        width_secs: 3_600,
        width: "1 hour",
        schedule: "15 minutes",
    },
    Aggregate {
        relation: "bars_1d",
        width_secs: 86_400,
        width: "1 day",
        schedule: "1 hour",
    },
];

impl Aggregate {
    /// The start of the bucket holding `secs` (Unix seconds, UTC; the same
    /// buckets as the views' `date_bin` from the epoch).
    pub fn bucket_start(&self, secs: i64) -> i64 {
        secs.div_euclid(self.width_secs) * self.width_secs
    }

    /// The aggregate's definition under `name`: exactly the views' columns.
    fn create(&self, name: &str) -> String {
        format!(
            "CREATE MATERIALIZED VIEW {name} \
             WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS \
             SELECT instrument, time_bucket(INTERVAL '{width}', open_time) AS open_time, \
                    first(open, first_ns) AS open, max(high) AS high, min(low) AS low, \
                    last(close, last_ns) AS close, sum(volume_base) AS volume_base, \
                    sum(volume_quote) AS volume_quote, sum(trades)::bigint AS trades, \
                    min(first_ns) AS first_ns, max(last_ns) AS last_ns \
             FROM bars_1m GROUP BY 1, 2 WITH NO DATA",
            width = self.width
        )
    }

    /// Its refresh policy: from the beginning (a finite start leaves gaps, see
    /// the module doc) to one bucket before now.
    fn add_policy(&self, name: &str) -> String {
        format!(
            "SELECT add_continuous_aggregate_policy('{name}', start_offset => NULL, \
             end_offset => INTERVAL '{width}', schedule_interval => INTERVAL '{schedule}')",
            width = self.width,
            schedule = self.schedule
        )
    }

    fn by_relation(relation: &str) -> Option<&'static Aggregate> {
        AGGREGATES.iter().find(|a| a.relation == relation)
    }
}

/// How the store uses TimescaleDB.
#[derive(Debug, Clone)]
pub struct TimescaleOptions {
    /// Whether to use it at all (when the server has it). Off: the schema is
    /// neither checked nor changed and no background task runs.
    pub enabled: bool,
    /// How often the refresh policies' job status is read.
    pub watch_every: Duration,
    /// How many buckets before the current one the store refreshes itself,
    /// per aggregate, while that aggregate's policy is not working.
    pub self_refresh_buckets: i64,
    /// How often a problem that did not change is logged again.
    pub remind_every: Duration,
}

impl Default for TimescaleOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            watch_every: Duration::from_secs(60),
            self_refresh_buckets: 3,
            remind_every: Duration::from_secs(15 * 60),
        }
    }
}

// ---------------------------------------------------------------------------
// Preload check and upgrade
// ---------------------------------------------------------------------------

/// Whether the server preloads TimescaleDB: `shared_preload_libraries` (when
/// readable: it needs `pg_read_all_settings`) names it, or the loader's own
/// setting `timescaledb.disable_load` exists (it exists only when the loader
/// was preloaded).
pub fn preloaded(shared_preload_libraries: Option<&str>, loader_setting: bool) -> bool {
    loader_setting
        || shared_preload_libraries.is_some_and(|list| {
            list.split(',')
                .map(|lib| lib.trim().trim_matches('"').trim())
                .any(|lib| lib == "timescaledb" || lib.ends_with("/timescaledb"))
        })
}

/// Any number, as a key for `pg_advisory_lock`: the upgrade runs on one node
/// at a time.
const UPGRADE_LOCK: i64 = 0x0063_616e_6465_6c61; // "candela"

/// Upgrades the schema when the server preloads TimescaleDB (see the module
/// doc); says what the store runs on. Never fails because TimescaleDB is
/// missing or not preloaded.
pub async fn upgrade(pool: &PgPool) -> Result<Timescale, StoreError> {
    let probe = sqlx::query(
        "SELECT (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), \
                EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.disable_load'), \
                EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), \
                EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')",
    )
    .fetch_one(pool)
    .await?;
    let libraries: Option<String> = probe.try_get(0)?;
    let loader: bool = probe.try_get(1)?;
    let available: bool = probe.try_get(2)?;
    let installed: bool = probe.try_get(3)?;
    if !available && !installed {
        tracing::info!("timescaledb is not installed on this server: plain PostgreSQL views");
        return Ok(Timescale::Unavailable);
    }
    if !preloaded(libraries.as_deref(), loader) {
        if installed {
            tracing::error!(
                shared_preload_libraries = libraries.as_deref().unwrap_or("(not readable)"),
                "this database has the timescaledb extension but the server does not preload it: \
                 its hypertable and continuous aggregates cannot work until \
                 shared_preload_libraries includes timescaledb"
            );
        } else {
            tracing::warn!(
                shared_preload_libraries = libraries.as_deref().unwrap_or("(not readable)"),
                "timescaledb is installed but not preloaded (shared_preload_libraries): \
                 using plain PostgreSQL"
            );
        }
        return Ok(Timescale::NotPreloaded);
    }
    // One session holds the advisory lock for the whole upgrade; closing it
    // releases the lock whatever happened.
    let mut conn = pool.acquire().await?.detach();
    let outcome = upgrade_locked(&mut conn, installed).await;
    if let Err(err) = conn.close().await {
        tracing::debug!(error = %err, "closing the upgrade's session");
    }
    outcome
}

async fn upgrade_locked(conn: &mut PgConnection, installed: bool) -> Result<Timescale, StoreError> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(UPGRADE_LOCK)
        .execute(&mut *conn)
        .await?;
    if !installed {
        if let Err(err) = sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
            .execute(&mut *conn)
            .await
        {
            tracing::warn!(error = %err, "timescaledb is preloaded but cannot be created in this database: using plain PostgreSQL");
            return Ok(Timescale::Unavailable);
        }
    }
    let hypertable: bool = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables \
                        WHERE hypertable_schema = current_schema() AND hypertable_name = 'bars_1m')",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    if !hypertable {
        sqlx::raw_sql(
            "SELECT create_hypertable('bars_1m', by_range('open_time', INTERVAL '7 days'), \
             migrate_data => true, if_not_exists => true)",
        )
        .execute(&mut *conn)
        .await?;
        tracing::info!("bars_1m is now a hypertable");
    }
    for aggregate in &AGGREGATES {
        upgrade_aggregate(conn, aggregate).await?;
    }
    Ok(Timescale::Enabled)
}

/// What a coarse relation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing of that name.
    Missing,
    /// The plain view of the migrations.
    View,
    /// A continuous aggregate.
    Aggregate,
}

/// A coarse relation as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// What it is.
    pub kind: Kind,
    /// The version its comment marks (`None`: version 1, or a view).
    pub version: Option<u32>,
    /// Real-time aggregation off.
    pub materialized_only: bool,
    /// Its refresh policy is the one this version wants.
    pub policy_ok: bool,
    /// It has a refresh policy at all.
    pub has_policy: bool,
    /// The end of the materialised region, Unix seconds (`None`: nothing).
    pub watermark: Option<i64>,
}

/// What the upgrade does to one coarse relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Build the aggregate beside it, materialise it up to the start of the
    /// current bucket, give it its policy, and swap it in.
    Build,
    /// Fix it in place.
    Repair {
        /// Replace (or add) the refresh policy.
        policy: bool,
        /// Turn real-time aggregation on.
        realtime: bool,
        /// Write the version marker.
        mark: bool,
    },
    /// It is as this version wants it (or newer: left alone).
    Nothing,
}

/// The upgrade's decision for one relation, `now` in Unix seconds (the
/// database's clock).
pub fn plan(aggregate: &Aggregate, found: &Found, now: i64) -> Plan {
    match found.kind {
        Kind::Missing | Kind::View => Plan::Build,
        Kind::Aggregate => match found.version {
            Some(v) if v > VERSION => Plan::Nothing,
            Some(VERSION) => {
                if found.policy_ok && !found.materialized_only {
                    Plan::Nothing
                } else {
                    Plan::Repair {
                        policy: !found.policy_ok,
                        realtime: found.materialized_only,
                        mark: false,
                    }
                }
            }
            // Version 1 (or an unknown older one): materialised past the
            // start of the current bucket, it must be rebuilt (a watermark
            // never moves back); otherwise its policy is replaced.
            _ => {
                if found
                    .watermark
                    .is_some_and(|w| w > aggregate.bucket_start(now))
                {
                    Plan::Build
                } else {
                    Plan::Repair {
                        policy: true,
                        realtime: found.materialized_only,
                        mark: true,
                    }
                }
            }
        },
    }
}

/// The smallest watermark TimescaleDB reports (microseconds): nothing
/// materialised.
const NO_WATERMARK_MICROS: i64 = -210_866_803_200_000_000;

fn watermark_secs(micros: Option<i64>) -> Option<i64> {
    micros
        .filter(|&m| m > NO_WATERMARK_MICROS)
        .map(|m| m.div_euclid(1_000_000))
}

async fn db_now(conn: &mut PgConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT extract(epoch from now())::int8")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?)
}

async fn inspect(conn: &mut PgConnection, aggregate: &Aggregate) -> Result<Found, StoreError> {
    let row = sqlx::query(
        "SELECT c.relkind::text, \
                EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates ca \
                        WHERE ca.view_schema = n.nspname AND ca.view_name = c.relname), \
                coalesce((SELECT ca.materialized_only FROM timescaledb_information.continuous_aggregates ca \
                          WHERE ca.view_schema = n.nspname AND ca.view_name = c.relname), false), \
                obj_description(c.oid, 'pg_class'), \
                (SELECT _timescaledb_functions.cagg_watermark(x.mat_hypertable_id) \
                   FROM _timescaledb_catalog.continuous_agg x \
                  WHERE x.user_view_schema = n.nspname AND x.user_view_name = c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relname = $1",
    )
    .bind(aggregate.relation)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(Found {
            kind: Kind::Missing,
            version: None,
            materialized_only: false,
            policy_ok: false,
            has_policy: false,
            watermark: None,
        });
    };
    let relkind: String = row.try_get(0)?;
    let continuous: bool = row.try_get(1)?;
    let comment: Option<String> = row.try_get(3)?;
    if !continuous && relkind != "v" {
        return Err(StoreError::Corrupt(format!(
            "{} is neither a view nor a continuous aggregate (relkind {relkind})",
            aggregate.relation
        )));
    }
    let policy = sqlx::query(
        "SELECT coalesce(config->>'start_offset' IS NULL \
                         AND (config->>'end_offset')::interval = $2::interval \
                         AND schedule_interval = $3::interval, false) \
         FROM timescaledb_information.jobs \
         WHERE proc_name = 'policy_refresh_continuous_aggregate' \
           AND hypertable_schema = current_schema() AND hypertable_name = $1",
    )
    .bind(aggregate.relation)
    .bind(aggregate.width)
    .bind(aggregate.schedule)
    .fetch_all(&mut *conn)
    .await?;
    let policy_ok = policy.len() == 1 && policy[0].try_get::<bool, _>(0)?;
    Ok(Found {
        kind: if continuous {
            Kind::Aggregate
        } else {
            Kind::View
        },
        version: if continuous {
            marked_version(comment.as_deref())
        } else {
            None
        },
        materialized_only: row.try_get(2)?,
        policy_ok,
        has_policy: !policy.is_empty(),
        watermark: watermark_secs(row.try_get(4)?),
    })
}

async fn upgrade_aggregate(
    conn: &mut PgConnection,
    aggregate: &Aggregate,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let found = inspect(conn, aggregate).await?;
    let now = db_now(conn).await?;
    let decided = plan(aggregate, &found, now);
    let relation = aggregate.relation;
    match &decided {
        Plan::Nothing => {
            if found.version.is_some_and(|v| v > VERSION) {
                tracing::warn!(
                    relation,
                    version = found.version,
                    this_version = VERSION,
                    "continuous aggregate built by a newer version: left alone"
                );
            }
            return Ok(());
        }
        Plan::Build => {
            let next = format!("{relation}_next");
            // A build that stopped half-way left this behind.
            sqlx::raw_sql(&format!("DROP MATERIALIZED VIEW IF EXISTS {next}"))
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql(&aggregate.create(&next))
                .execute(&mut *conn)
                .await?;
            let end = aggregate.bucket_start(db_now(conn).await?);
            sqlx::raw_sql(&refresh_call(&next, (None, end)))
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql(&aggregate.add_policy(&next))
                .execute(&mut *conn)
                .await?;
            sqlx::raw_sql(&format!("COMMENT ON VIEW {next} IS '{}'", marker(VERSION)))
                .execute(&mut *conn)
                .await?;
            let drop = match found.kind {
                Kind::Missing => None,
                Kind::View => Some(format!("DROP VIEW {relation}")),
                Kind::Aggregate => Some(format!("DROP MATERIALIZED VIEW {relation}")),
            };
            let mut tx = conn.begin().await?;
            if let Some(drop) = drop {
                sqlx::raw_sql(&drop).execute(&mut *tx).await?;
            }
            sqlx::raw_sql(&format!(
                "ALTER MATERIALIZED VIEW {next} RENAME TO {relation}"
            ))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Plan::Repair {
            policy,
            realtime,
            mark,
        } => {
            if *policy {
                if found.has_policy {
                    sqlx::raw_sql(&format!(
                        "SELECT remove_continuous_aggregate_policy('{relation}', if_exists => true)"
                    ))
                    .execute(&mut *conn)
                    .await?;
                }
                sqlx::raw_sql(&aggregate.add_policy(relation))
                    .execute(&mut *conn)
                    .await?;
            }
            if *realtime {
                sqlx::raw_sql(&format!(
                    "ALTER MATERIALIZED VIEW {relation} SET (timescaledb.materialized_only = false)"
                ))
                .execute(&mut *conn)
                .await?;
            }
            if *mark {
                sqlx::raw_sql(&format!(
                    "COMMENT ON VIEW {relation} IS '{}'",
                    marker(VERSION)
                ))
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    tracing::info!(
        relation,
        was = ?found.kind,
        from_version = found.version,
        to_version = VERSION,
        plan = ?decided,
        took_ms = started.elapsed().as_millis() as u64,
        "continuous aggregate upgraded"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Refresh windows
// ---------------------------------------------------------------------------

/// Why a refresh runs, which bounds what it may do to the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshMode {
    /// After a write: only buckets already materialised (below the
    /// watermark) can be stale; the watermark does not move.
    Backfill,
    /// Materialise recent buckets (the store's own refresh while a policy is
    /// not working): from the watermark at the latest, up to the start of
    /// the current bucket at the most.
    Advance,
}

/// A refresh window, Unix seconds: `(start, end)`, `None` = from the
/// beginning.
pub type Window = (Option<i64>, i64);

/// The window to refresh for the requested bucket range `[start, end)`
/// (bucket-aligned), given the watermark (`None`: nothing materialised) and
/// the database's `now`; `None` when there is nothing to do. The window
/// never starts above the watermark, and never moves the watermark past the
/// start of the current bucket (see the module doc).
pub fn refresh_window(
    mode: RefreshMode,
    aggregate: &Aggregate,
    requested: (i64, i64),
    watermark: Option<i64>,
    now: i64,
) -> Option<Window> {
    let (start, end) = requested;
    match mode {
        RefreshMode::Backfill => {
            // Below the watermark a refresh never moves it.
            let end = end.min(watermark?);
            (start < end).then_some((Some(start), end))
        }
        RefreshMode::Advance => {
            let end = end.min(aggregate.bucket_start(now));
            let start = watermark.map(|w| start.min(w));
            (start.is_none_or(|s| s < end)).then_some((start, end))
        }
    }
}

/// SQLSTATE `lock_not_available`: TimescaleDB refuses a refresh whose window
/// overlaps one in progress ("due to a concurrent refresh").
const CONCURRENT_REFRESH: &str = "55P03";

/// A refresh refused because an overlapping one runs: try again later,
/// nothing is wrong.
fn is_concurrent_refresh(err: &StoreError) -> bool {
    matches!(err, StoreError::Database(e)
        if e.as_database_error().and_then(|d| d.code()).as_deref() == Some(CONCURRENT_REFRESH))
}

fn refresh_call(relation: &str, (start, end): Window) -> String {
    let start = start.map_or_else(|| "NULL".to_owned(), |s| format!("to_timestamp({s})"));
    format!("CALL refresh_continuous_aggregate('{relation}', {start}, to_timestamp({end}))")
}

/// Refreshes `requested` of `aggregate` as `mode` allows; the window it
/// refreshed, if any. Runs outside any transaction (simple protocol).
async fn refresh(
    pool: &PgPool,
    aggregate: &Aggregate,
    mode: RefreshMode,
    requested: (i64, i64),
) -> Result<Option<Window>, StoreError> {
    let row = sqlx::query(
        "SELECT extract(epoch from now())::int8, \
                _timescaledb_functions.cagg_watermark(c.mat_hypertable_id) \
         FROM _timescaledb_catalog.continuous_agg c \
         WHERE c.user_view_schema = current_schema() AND c.user_view_name = $1",
    )
    .bind(aggregate.relation)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Err(StoreError::Corrupt(format!(
            "{} is not a continuous aggregate any more",
            aggregate.relation
        )));
    };
    let now: i64 = row.try_get(0)?;
    let watermark = watermark_secs(row.try_get(1)?);
    let Some(window) = refresh_window(mode, aggregate, requested, watermark, now) else {
        return Ok(None);
    };
    sqlx::raw_sql(&refresh_call(aggregate.relation, window))
        .execute(pool)
        .await?;
    Ok(Some(window))
}

// ---------------------------------------------------------------------------
// Refresh after writes
// ---------------------------------------------------------------------------

/// More ranges than this per aggregate are folded into one (a refresh only
/// recomputes the buckets that changed, so the hull costs little more).
const MAX_RANGES: usize = 32;

/// Bucket ranges waiting for a refresh, per aggregate (in [`AGGREGATES`]
/// order), each list sorted and disjoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    ranges: [Vec<(i64, i64)>; 4],
}

impl Pending {
    /// Adds the buckets of the 1-minute bars opening at `minutes` (Unix
    /// seconds) that lie before the current bucket at `now` (the node's
    /// clock); the buckets of the current one are served by real-time
    /// aggregation.
    pub fn add_minutes(&mut self, minutes: impl IntoIterator<Item = i64>, now: i64) {
        for minute in minutes {
            for (i, aggregate) in AGGREGATES.iter().enumerate() {
                let bucket = aggregate.bucket_start(minute);
                if bucket < aggregate.bucket_start(now) {
                    self.add(i, (bucket, bucket + aggregate.width_secs));
                }
            }
        }
    }

    /// Adds `range` to aggregate `i`'s list, merging what overlaps or touches.
    pub fn add(&mut self, i: usize, range: (i64, i64)) {
        let list = &mut self.ranges[i];
        list.push(range);
        list.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        if merged.len() > MAX_RANGES {
            let hull = (merged[0].0, merged.iter().map(|r| r.1).max().unwrap_or(0));
            merged = vec![hull];
        }
        *list = merged;
    }

    /// Adds everything of `other`.
    pub fn merge(&mut self, other: &Pending) {
        for (i, list) in other.ranges.iter().enumerate() {
            for &range in list {
                self.add(i, range);
            }
        }
    }

    /// Aggregate `i`'s ranges.
    pub fn ranges(&self, i: usize) -> &[(i64, i64)] {
        &self.ranges[i]
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.ranges.iter().all(Vec::is_empty)
    }
}

/// The requests of the write path, and the wake-up of the task that serves
/// them.
#[derive(Debug, Default)]
struct Backlog {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Backlog {
    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn put(&self, work: &Pending) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(work);
    }
}

async fn run_backfill_refresher(
    pool: PgPool,
    backlog: Arc<Backlog>,
    status: Arc<watch::Sender<TimescaleStatus>>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        backlog.wake.notified().await;
        loop {
            let work = backlog.take();
            if work.is_empty() {
                break;
            }
            let mut failed = Pending::default();
            let mut done = 0u64;
            for (i, aggregate) in AGGREGATES.iter().enumerate() {
                for &range in work.ranges(i) {
                    match refresh(&pool, aggregate, RefreshMode::Backfill, range).await {
                        Ok(Some(window)) => {
                            done += 1;
                            tracing::debug!(
                                relation = aggregate.relation,
                                from = window.0,
                                to = window.1,
                                "refreshed the materialised buckets a write changed"
                            );
                        }
                        Ok(None) => {}
                        Err(err) if is_concurrent_refresh(&err) => {
                            tracing::debug!(
                                relation = aggregate.relation,
                                from = range.0,
                                to = range.1,
                                "an overlapping refresh runs: refreshing after it"
                            );
                            failed.add(i, range);
                        }
                        Err(err) => {
                            tracing::warn!(
                                relation = aggregate.relation,
                                from = range.0,
                                to = range.1,
                                error = %err,
                                retry_in_ms = backoff.as_millis() as u64,
                                "refresh after a write failed; retrying"
                            );
                            failed.add(i, range);
                        }
                    }
                }
            }
            if done > 0 {
                status.send_modify(|s| s.backfill_refreshes += done);
            }
            if failed.is_empty() {
                backoff = Duration::from_millis(250);
            } else {
                backlog.put(&failed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The watch over the refresh policies
// ---------------------------------------------------------------------------

/// One refresh policy's job, as `timescaledb_information.jobs` and
/// `job_stats` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyJob {
    /// The aggregate it refreshes.
    pub relation: String,
    /// Its job id.
    pub job_id: i32,
    /// Whether the scheduler runs it.
    pub scheduled: bool,
    /// Its schedule interval, seconds.
    pub schedule_secs: i64,
    /// `Success`, `Failed`, or `None` before its first run.
    pub last_run_status: Option<String>,
    /// `Running`, `Scheduled`, `Paused`, …
    pub job_status: Option<String>,
    /// Runs so far.
    pub total_runs: i64,
    /// Failures so far.
    pub total_failures: i64,
    /// When it runs next, Unix seconds.
    pub next_start: Option<i64>,
    /// Its last error message, if it ever failed.
    pub last_error: Option<String>,
    /// The SQLSTATE of that error.
    pub last_error_code: Option<String>,
}

/// What is wrong with an aggregate's refresh policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyProblem {
    /// It has none.
    Missing,
    /// Its job is not scheduled.
    Paused {
        /// The job.
        job_id: i32,
    },
    /// Its last run failed.
    Failed {
        /// The job.
        job_id: i32,
        /// Failures so far.
        failures: i64,
        /// The last error message.
        error: Option<String>,
    },
    /// It should have run well before now and did not (the scheduler is not
    /// running it).
    Overdue {
        /// The job.
        job_id: i32,
        /// Seconds late.
        late_secs: i64,
    },
}

impl PolicyProblem {
    fn job_id(&self) -> Option<i32> {
        match self {
            PolicyProblem::Missing => None,
            PolicyProblem::Paused { job_id }
            | PolicyProblem::Failed { job_id, .. }
            | PolicyProblem::Overdue { job_id, .. } => Some(*job_id),
        }
    }

    /// Its kind and job, without what changes from run to run.
    fn signature(&self) -> (&'static str, Option<i32>) {
        let kind = match self {
            PolicyProblem::Missing => "missing",
            PolicyProblem::Paused { .. } => "paused",
            PolicyProblem::Failed { .. } => "failed",
            PolicyProblem::Overdue { .. } => "overdue",
        };
        (kind, self.job_id())
    }
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyProblem::Missing => write!(f, "no refresh policy"),
            PolicyProblem::Paused { job_id } => write!(f, "job {job_id} paused"),
            PolicyProblem::Failed {
                job_id,
                failures,
                error,
            } => write!(
                f,
                "job {job_id} failed ({failures} failures; last error: {})",
                error.as_deref().unwrap_or("not recorded")
            ),
            PolicyProblem::Overdue { job_id, late_secs } => {
                write!(
                    f,
                    "job {job_id} has not run for {late_secs} s past its time"
                )
            }
        }
    }
}

/// An aggregate whose refresh policy is not working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The aggregate.
    pub relation: &'static str,
    /// What is wrong.
    pub problem: PolicyProblem,
}

/// What to log after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAction {
    /// Nothing new.
    Quiet,
    /// Problems appeared or changed: an error.
    Report,
    /// The same problems, still there after the reminder period.
    Remind,
    /// The problems are gone.
    Recovered,
}

/// A job that never ran is overdue this long after its schedule interval
/// (seconds).
const GRACE_SECS: i64 = 120;

/// What identifies a reported problem: the aggregate, the kind, the job.
type Signature = (&'static str, &'static str, Option<i32>);

/// The watch's memory between checks: pure decisions, no I/O.
#[derive(Debug, Clone)]
pub struct PolicyWatch {
    remind_secs: i64,
    /// When each job was first seen (a job that never runs is overdue from then).
    first_seen: HashMap<i32, i64>,
    /// Each job's problem at the last check where it was not running: a run
    /// in progress says nothing new (its status reads NULL until it ends).
    last_problem: HashMap<i32, Option<PolicyProblem>>,
    /// What was last logged, and when.
    logged: Option<(Vec<Signature>, i64)>,
}

impl PolicyWatch {
    /// A watch that reminds of unchanged problems every `remind_every`.
    pub fn new(remind_every: Duration) -> Self {
        Self {
            remind_secs: i64::try_from(remind_every.as_secs()).unwrap_or(i64::MAX),
            first_seen: HashMap::new(),
            last_problem: HashMap::new(),
            logged: None,
        }
    }

    /// The aggregates whose policy is not working, in [`AGGREGATES`] order,
    /// from the jobs seen at `now` (Unix seconds, the database's clock).
    pub fn assess(&mut self, jobs: &[PolicyJob], now: i64) -> Vec<Finding> {
        let mut findings = Vec::new();
        for aggregate in &AGGREGATES {
            let job = jobs
                .iter()
                .filter(|j| j.relation == aggregate.relation)
                .min_by_key(|j| j.job_id);
            let problem = match job {
                None => Some(PolicyProblem::Missing),
                Some(job) => self.problem(job, now),
            };
            if let Some(problem) = problem {
                findings.push(Finding {
                    relation: aggregate.relation,
                    problem,
                });
            }
        }
        findings
    }

    fn problem(&mut self, job: &PolicyJob, now: i64) -> Option<PolicyProblem> {
        let first_seen = *self.first_seen.entry(job.job_id).or_insert(now);
        if !job.scheduled {
            return Some(PolicyProblem::Paused { job_id: job.job_id });
        }
        // A run in progress (or just starting: TimescaleDB clears the last
        // status when a run starts): the job stands as it stood.
        if job.job_status.as_deref() == Some("Running")
            || (job.last_run_status.is_none() && job.total_runs > 0)
        {
            return self.last_problem.get(&job.job_id).cloned().flatten();
        }
        let problem = self.settled_problem(job, now, first_seen);
        self.last_problem.insert(job.job_id, problem.clone());
        problem
    }

    /// The problem of a job that is not running.
    fn settled_problem(&self, job: &PolicyJob, now: i64, first_seen: i64) -> Option<PolicyProblem> {
        // A run that met a concurrent refresh of an overlapping window (the
        // store's own, another node's) failed without anything being wrong:
        // the job runs again at its next start.
        if job.last_run_status.as_deref() == Some("Failed")
            && job.last_error_code.as_deref() != Some(CONCURRENT_REFRESH)
        {
            return Some(PolicyProblem::Failed {
                job_id: job.job_id,
                failures: job.total_failures,
                error: job.last_error.clone(),
            });
        }
        let due = match (job.next_start, job.total_runs) {
            (Some(next), _) => next,
            // Never ran and no next start: due when first seen.
            (None, 0) => first_seen,
            (None, _) => return None,
        };
        let late = now - due;
        (late > job.schedule_secs + GRACE_SECS).then_some(PolicyProblem::Overdue {
            job_id: job.job_id,
            late_secs: late,
        })
    }

    /// What to log about `findings` at `now`.
    pub fn log_action(&mut self, findings: &[Finding], now: i64) -> LogAction {
        let signature: Vec<Signature> = findings
            .iter()
            .map(|f| {
                let (kind, job) = f.problem.signature();
                (f.relation, kind, job)
            })
            .collect();
        let (action, logged) = match self.logged.take() {
            None if signature.is_empty() => (LogAction::Quiet, None),
            None => (LogAction::Report, Some((signature, now))),
            Some(_) if signature.is_empty() => (LogAction::Recovered, None),
            Some((previous, _)) if previous != signature => {
                (LogAction::Report, Some((signature, now)))
            }
            Some((previous, at)) if now - at >= self.remind_secs => {
                (LogAction::Remind, Some((previous, now)))
            }
            unchanged => (LogAction::Quiet, unchanged),
        };
        self.logged = logged;
        action
    }
}

/// What the TimescaleDB side of the store has seen and done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimescaleStatus {
    /// Checks of the policies' job status so far.
    pub checks: u64,
    /// The aggregates whose policy is not working, at the last check.
    pub findings: Vec<Finding>,
    /// Why the last check could not read the job status, if it could not.
    pub check_error: Option<String>,
    /// Refreshes the store ran itself because a policy was not working.
    pub self_refreshes: u64,
    /// Refreshes after writes into materialised buckets.
    pub backfill_refreshes: u64,
    /// How often the store refreshes while a policy is not working, seconds.
    pub watch_every_secs: u64,
}

impl TimescaleStatus {
    /// A line for the readiness answer when something is wrong (the node
    /// stays ready: the aggregates are kept right, only slower or later).
    pub fn note(&self) -> Option<String> {
        if self.findings.is_empty() {
            return self
                .check_error
                .as_ref()
                .map(|e| format!("timescaledb: cannot read the refresh jobs' status: {e}"));
        }
        let list: Vec<String> = self
            .findings
            .iter()
            .map(|f| format!("{}: {}", f.relation, f.problem))
            .collect();
        Some(format!(
            "timescaledb: refresh policies not working ({}); the node refreshes their recent \
             buckets itself every {} s",
            list.join("; "),
            self.watch_every_secs
        ))
    }
}

async fn read_jobs(pool: &PgPool) -> Result<(Vec<PolicyJob>, i64), StoreError> {
    let now: i64 = sqlx::query("SELECT extract(epoch from now())::int8")
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    let rows = sqlx::query(
        "SELECT j.hypertable_name::text, j.job_id, j.scheduled, \
                extract(epoch from j.schedule_interval)::int8, \
                s.last_run_status::text, s.job_status::text, \
                coalesce(s.total_runs, 0)::int8, coalesce(s.total_failures, 0)::int8, \
                CASE WHEN isfinite(s.next_start) THEN extract(epoch from s.next_start)::int8 END \
         FROM timescaledb_information.jobs j \
         LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id \
         WHERE j.proc_name = 'policy_refresh_continuous_aggregate' \
           AND j.hypertable_schema = current_schema() \
         ORDER BY j.job_id",
    )
    .fetch_all(pool)
    .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        jobs.push(PolicyJob {
            relation: row.try_get(0)?,
            job_id: row.try_get(1)?,
            scheduled: row.try_get(2)?,
            schedule_secs: row.try_get(3)?,
            last_run_status: row.try_get(4)?,
            job_status: row.try_get(5)?,
            total_runs: row.try_get(6)?,
            total_failures: row.try_get(7)?,
            next_start: row.try_get(8)?,
            last_error: None,
            last_error_code: None,
        });
    }
    let failed: Vec<i32> = jobs
        .iter()
        .filter(|j| j.last_run_status.as_deref() == Some("Failed"))
        .map(|j| j.job_id)
        .collect();
    if !failed.is_empty() {
        // `job_history` exists since TimescaleDB 2.15; without it the
        // failure is still reported, without its message.
        match sqlx::query(
            "SELECT DISTINCT ON (job_id) job_id, err_message, sqlerrcode \
             FROM timescaledb_information.job_history \
             WHERE succeeded IS FALSE AND job_id = ANY($1) \
             ORDER BY job_id, finish_time DESC NULLS LAST",
        )
        .bind(&failed)
        .fetch_all(pool)
        .await
        {
            Ok(rows) => {
                for row in &rows {
                    let id: i32 = row.try_get(0)?;
                    let message: Option<String> = row.try_get(1)?;
                    let code: Option<String> = row.try_get(2)?;
                    if let Some(job) = jobs.iter_mut().find(|j| j.job_id == id) {
                        job.last_error = message;
                        job.last_error_code = code;
                    }
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot read timescaledb_information.job_history")
            }
        }
    }
    Ok((jobs, now))
}

fn log_findings(action: LogAction, findings: &[Finding], every: Duration) {
    let job_ids: Vec<i32> = findings.iter().filter_map(|f| f.problem.job_id()).collect();
    let relations: Vec<&str> = findings.iter().map(|f| f.relation).collect();
    let last_error = findings.iter().find_map(|f| match &f.problem {
        PolicyProblem::Failed { error, .. } => error.clone(),
        _ => None,
    });
    let detail: Vec<String> = findings
        .iter()
        .map(|f| format!("{}: {}", f.relation, f.problem))
        .collect();
    let detail = detail.join("; ");
    let every_secs = every.as_secs();
    match action {
        LogAction::Quiet => {}
        LogAction::Report => tracing::error!(
            ?job_ids,
            ?relations,
            last_error = last_error.as_deref().unwrap_or(""),
            %detail,
            self_refresh_every_secs = every_secs,
            "TimescaleDB's refresh policies are not working: the node refreshes the recent \
             buckets of these continuous aggregates itself (see docs/timescaledb.md)"
        ),
        LogAction::Remind => tracing::warn!(
            ?job_ids,
            ?relations,
            last_error = last_error.as_deref().unwrap_or(""),
            %detail,
            self_refresh_every_secs = every_secs,
            "TimescaleDB's refresh policies are still not working; the node keeps refreshing \
             the recent buckets itself"
        ),
        LogAction::Recovered => {
            tracing::info!("TimescaleDB's refresh policies work again")
        }
    }
}

async fn run_watcher(
    pool: PgPool,
    options: TimescaleOptions,
    status: Arc<watch::Sender<TimescaleStatus>>,
) {
    let mut policies = PolicyWatch::new(options.remind_every);
    let mut tick = tokio::time::interval(options.watch_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (jobs, now) = match read_jobs(&pool).await {
            Ok(seen) => seen,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the status of TimescaleDB's refresh jobs");
                status.send_modify(|s| {
                    s.checks += 1;
                    s.check_error = Some(err.to_string());
                });
                continue;
            }
        };
        let findings = policies.assess(&jobs, now);
        log_findings(
            policies.log_action(&findings, now),
            &findings,
            options.watch_every,
        );
        let mut refreshed = 0u64;
        for finding in &findings {
            let Some(aggregate) = Aggregate::by_relation(finding.relation) else {
                continue;
            };
            let current = aggregate.bucket_start(now);
            let back = current - options.self_refresh_buckets.max(1) * aggregate.width_secs;
            match refresh(&pool, aggregate, RefreshMode::Advance, (back, current)).await {
                Ok(Some(window)) => {
                    refreshed += 1;
                    tracing::debug!(
                        relation = aggregate.relation,
                        from = window.0,
                        to = window.1,
                        "refreshed the recent buckets in place of the policy"
                    );
                }
                Ok(None) => {}
                Err(err) if is_concurrent_refresh(&err) => tracing::debug!(
                    relation = aggregate.relation,
                    "an overlapping refresh runs: the store's own waits for the next check"
                ),
                Err(err) => tracing::warn!(
                    relation = aggregate.relation,
                    error = %err,
                    "the store's own refresh failed"
                ),
            }
        }
        status.send_modify(|s| {
            s.checks += 1;
            s.findings = findings;
            s.check_error = None;
            s.self_refreshes += refreshed;
        });
    }
}

// ---------------------------------------------------------------------------
// The background tasks
// ---------------------------------------------------------------------------

/// The TimescaleDB work of a store: the refresh after writes and the watch.
/// Its tasks end when it is dropped (with the last clone of the store).
pub struct TimescaleRuntime {
    backlog: Arc<Backlog>,
    status: watch::Receiver<TimescaleStatus>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for TimescaleRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimescaleRuntime")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl TimescaleRuntime {
    /// Starts the tasks (on the current Tokio runtime).
    pub fn start(pool: PgPool, options: &TimescaleOptions) -> Self {
        let (tx, status) = watch::channel(TimescaleStatus {
            watch_every_secs: options.watch_every.as_secs(),
            ..TimescaleStatus::default()
        });
        let tx = Arc::new(tx);
        let backlog = Arc::new(Backlog::default());
        let tasks = vec![
            tokio::spawn(run_backfill_refresher(
                pool.clone(),
                Arc::clone(&backlog),
                Arc::clone(&tx),
            )),
            tokio::spawn(run_watcher(pool, options.clone(), tx)),
        ];
        Self {
            backlog,
            status,
            tasks,
        }
    }

    /// After a committed write: asks for a refresh of the buckets of the
    /// 1-minute bars opening at `minutes` (Unix seconds) that may be
    /// materialised. Never waits.
    pub fn after_write(&self, minutes: impl IntoIterator<Item = i64>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut request = Pending::default();
        request.add_minutes(minutes, now);
        if !request.is_empty() {
            self.backlog.put(&request);
            self.backlog.wake.notify_one();
        }
    }

    /// What it has seen and done (a channel: wait for changes with it).
    pub fn status(&self) -> watch::Receiver<TimescaleStatus> {
        self.status.clone()
    }
}

impl Drop for TimescaleRuntime {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M5: &Aggregate = &AGGREGATES[0];
    const D1: &Aggregate = &AGGREGATES[3];
    // 2026-01-01 10:03:20 UTC.
    const NOW: i64 = 1_767_261_800;

    #[test]
    fn preload_is_read_from_the_list_or_the_loader() {
        assert!(preloaded(Some("timescaledb"), false));
        assert!(preloaded(
            Some("pg_stat_statements, \"timescaledb\""),
            false
        ));
        assert!(preloaded(Some("$libdir/timescaledb,auto_explain"), false));
        assert!(!preloaded(Some(""), false));
        assert!(!preloaded(Some("pg_stat_statements"), false));
        assert!(!preloaded(Some("timescaledb_toolkit"), false));
        // Not readable without pg_read_all_settings: the loader's setting says.
        assert!(!preloaded(None, false));
        assert!(preloaded(None, true));
    }

    #[test]
    fn the_version_marker_round_trips() {
        assert_eq!(marked_version(Some(&marker(VERSION))), Some(VERSION));
        assert_eq!(marked_version(Some("candela timescale v17")), Some(17));
        assert_eq!(marked_version(Some("some comment")), None);
        assert_eq!(marked_version(None), None);
    }

    fn found(kind: Kind, version: Option<u32>, watermark: Option<i64>) -> Found {
        Found {
            kind,
            version,
            materialized_only: false,
            policy_ok: version == Some(VERSION),
            has_policy: kind == Kind::Aggregate,
            watermark,
        }
    }

    #[test]
    fn the_upgrade_builds_repairs_or_leaves_alone() {
        let current = M5.bucket_start(NOW);
        assert_eq!(plan(M5, &found(Kind::View, None, None), NOW), Plan::Build);
        assert_eq!(
            plan(M5, &found(Kind::Missing, None, None), NOW),
            Plan::Build
        );
        // Version 1, materialised past the start of the current bucket (its
        // (NULL, NULL) refresh): rebuilt.
        assert_eq!(
            plan(M5, &found(Kind::Aggregate, None, Some(current + 300)), NOW),
            Plan::Build
        );
        // Version 1 with a watermark at or before the current bucket: its
        // policy is replaced.
        assert_eq!(
            plan(M5, &found(Kind::Aggregate, None, Some(current)), NOW),
            Plan::Repair {
                policy: true,
                realtime: false,
                mark: true
            }
        );
        assert_eq!(
            plan(M5, &found(Kind::Aggregate, None, None), NOW),
            Plan::Repair {
                policy: true,
                realtime: false,
                mark: true
            }
        );
        assert_eq!(
            plan(
                M5,
                &found(Kind::Aggregate, Some(VERSION), Some(current)),
                NOW
            ),
            Plan::Nothing
        );
        let mut drifted = found(Kind::Aggregate, Some(VERSION), Some(current));
        drifted.policy_ok = false;
        drifted.materialized_only = true;
        assert_eq!(
            plan(M5, &drifted, NOW),
            Plan::Repair {
                policy: true,
                realtime: true,
                mark: false
            }
        );
        assert_eq!(
            plan(M5, &found(Kind::Aggregate, Some(VERSION + 1), None), NOW),
            Plan::Nothing
        );
    }

    #[test]
    fn backfill_windows_stay_inside_the_materialised_region() {
        let current = M5.bucket_start(NOW);
        let wm = Some(current);
        let old = (current - 3_600, current - 3_300);
        assert_eq!(
            refresh_window(RefreshMode::Backfill, M5, old, wm, NOW),
            Some((Some(old.0), old.1))
        );
        // Nothing materialised, or the buckets above the watermark:
        // real-time aggregation already sees them.
        assert_eq!(
            refresh_window(RefreshMode::Backfill, M5, old, None, NOW),
            None
        );
        assert_eq!(
            refresh_window(RefreshMode::Backfill, M5, old, Some(old.0), NOW),
            None
        );
        // A range across the watermark stops there.
        assert_eq!(
            refresh_window(
                RefreshMode::Backfill,
                M5,
                (current - 600, current),
                Some(current - 300),
                NOW
            ),
            Some((Some(current - 600), current - 300))
        );
    }

    #[test]
    fn advance_windows_start_at_the_watermark_and_end_before_the_current_bucket() {
        let current = D1.bucket_start(NOW);
        let recent = (current - 3 * 86_400, current);
        // No gap: a watermark below the window pulls its start down.
        assert_eq!(
            refresh_window(
                RefreshMode::Advance,
                D1,
                recent,
                Some(current - 10 * 86_400),
                NOW
            ),
            Some((Some(current - 10 * 86_400), current))
        );
        assert_eq!(
            refresh_window(RefreshMode::Advance, D1, recent, None, NOW),
            Some((None, current))
        );
        // Never into the current bucket, whatever is asked.
        assert_eq!(
            refresh_window(
                RefreshMode::Advance,
                D1,
                (current - 86_400, current + 86_400),
                Some(current),
                NOW
            ),
            Some((Some(current - 86_400), current))
        );
        assert_eq!(
            refresh_window(
                RefreshMode::Advance,
                D1,
                (current, current + 86_400),
                Some(current),
                NOW
            ),
            None
        );
    }

    #[test]
    fn the_refresh_call_is_literal() {
        assert_eq!(
            refresh_call("bars_5m", (None, 600)),
            "CALL refresh_continuous_aggregate('bars_5m', NULL, to_timestamp(600))"
        );
        assert_eq!(
            refresh_call("bars_1h", (Some(0), 3600)),
            "CALL refresh_continuous_aggregate('bars_1h', to_timestamp(0), to_timestamp(3600))"
        );
    }

    #[test]
    fn writes_ask_for_the_buckets_before_the_current_one_coalesced() {
        // 10:23:20.
        let now = NOW + 20 * 60;
        let m5 = M5.bucket_start(now);
        let mut p = Pending::default();
        // The current minute: every aggregate's current bucket.
        p.add_minutes([now - now % 60], now);
        assert!(p.is_empty());
        // 10:19 and 10:16: the previous 5-minute bucket; the current
        // 15-minute (10:15), hour and day buckets.
        p.add_minutes([m5 - 60, m5 - 240], now);
        assert_eq!(p.ranges(0), &[(m5 - 300, m5)]);
        assert!(p.ranges(1).is_empty() && p.ranges(2).is_empty() && p.ranges(3).is_empty());
        // 10:14: the 5-minute bucket before (merged), the previous 15 minutes.
        p.add_minutes([m5 - 360], now);
        assert_eq!(p.ranges(0), &[(m5 - 600, m5)]);
        assert_eq!(p.ranges(1), &[(m5 - 1_200, m5 - 300)]);
        assert!(p.ranges(2).is_empty() && p.ranges(3).is_empty());
        // A day-old minute: every aggregate.
        p.add_minutes([m5 - 86_400], now);
        assert_eq!(p.ranges(0).len(), 2);
        assert_eq!(
            p.ranges(3),
            &[(D1.bucket_start(now) - 86_400, D1.bucket_start(now))]
        );
        let mut q = Pending::default();
        q.merge(&p);
        q.merge(&p);
        assert_eq!(q, p);
    }

    #[test]
    fn many_scattered_ranges_fold_into_their_hull() {
        let mut p = Pending::default();
        for k in 0..(MAX_RANGES as i64 + 1) {
            p.add(0, (k * 1_000, k * 1_000 + 300));
        }
        assert_eq!(p.ranges(0), &[(0, MAX_RANGES as i64 * 1_000 + 300)]);
    }

    fn job(relation: &str, id: i32) -> PolicyJob {
        PolicyJob {
            relation: relation.into(),
            job_id: id,
            scheduled: true,
            schedule_secs: 60,
            last_run_status: Some("Success".into()),
            job_status: Some("Scheduled".into()),
            total_runs: 5,
            total_failures: 0,
            next_start: Some(NOW + 30),
            last_error: None,
            last_error_code: None,
        }
    }

    /// Four working jobs, next due half a minute after `now`.
    fn healthy_at(now: i64) -> Vec<PolicyJob> {
        AGGREGATES
            .iter()
            .enumerate()
            .map(|(i, a)| PolicyJob {
                next_start: Some(now + 30),
                ..job(a.relation, 1000 + i as i32)
            })
            .collect()
    }

    fn healthy() -> Vec<PolicyJob> {
        healthy_at(NOW)
    }

    #[test]
    fn working_policies_are_quiet() {
        let mut w = PolicyWatch::new(Duration::from_secs(900));
        let findings = w.assess(&healthy(), NOW);
        assert!(findings.is_empty());
        assert_eq!(w.log_action(&findings, NOW), LogAction::Quiet);
        // A job that never ran, just created: not overdue yet.
        let mut jobs = healthy();
        jobs[0].last_run_status = None;
        jobs[0].total_runs = 0;
        jobs[0].next_start = None;
        assert!(w.assess(&jobs, NOW + 60).is_empty());
    }

    #[test]
    fn failing_paused_overdue_and_missing_policies_are_found() {
        let mut w = PolicyWatch::new(Duration::from_secs(900));
        let mut jobs = healthy();
        // bars_5m: the PostgreSQL 15.20 failure.
        jobs[0].last_run_status = Some("Failed".into());
        jobs[0].total_failures = 3;
        jobs[0].last_error = Some("cannot drop portal \"\" while it is being set up".into());
        jobs[0].last_error_code = Some("24000".into());
        // bars_15m: paused.
        jobs[1].scheduled = false;
        // bars_1h: its next start long past (no scheduler).
        jobs[2].next_start = Some(NOW - 3_600);
        // bars_1d: no policy.
        jobs.remove(3);
        let findings = w.assess(&jobs, NOW);
        assert_eq!(
            findings,
            vec![
                Finding {
                    relation: "bars_5m",
                    problem: PolicyProblem::Failed {
                        job_id: 1000,
                        failures: 3,
                        error: Some("cannot drop portal \"\" while it is being set up".into())
                    }
                },
                Finding {
                    relation: "bars_15m",
                    problem: PolicyProblem::Paused { job_id: 1001 }
                },
                Finding {
                    relation: "bars_1h",
                    problem: PolicyProblem::Overdue {
                        job_id: 1002,
                        late_secs: 3_600
                    }
                },
                Finding {
                    relation: "bars_1d",
                    problem: PolicyProblem::Missing
                },
            ]
        );
        let status = TimescaleStatus {
            findings: findings.clone(),
            watch_every_secs: 60,
            ..TimescaleStatus::default()
        };
        let note = status.note().expect("a note");
        assert!(note.contains("job 1000 failed"), "{note}");
        assert!(note.contains("cannot drop portal"), "{note}");
        assert!(note.contains("bars_1d: no refresh policy"), "{note}");
    }

    #[test]
    fn a_run_that_met_a_concurrent_refresh_is_no_problem() {
        let mut w = PolicyWatch::new(Duration::from_secs(900));
        let mut jobs = healthy();
        jobs[2].last_run_status = Some("Failed".into());
        jobs[2].total_failures = 1;
        jobs[2].last_error = Some(
            "could not refresh continuous aggregate \"bars_1h\" due to a concurrent refresh".into(),
        );
        jobs[2].last_error_code = Some(CONCURRENT_REFRESH.into());
        assert!(w.assess(&jobs, NOW).is_empty());
    }

    #[test]
    fn a_run_in_progress_changes_nothing() {
        let mut w = PolicyWatch::new(Duration::from_secs(900));
        let mut jobs = healthy();
        jobs[0].last_run_status = Some("Failed".into());
        jobs[0].total_failures = 1;
        let failing = w.assess(&jobs, NOW);
        assert_eq!(failing.len(), 1);
        assert_eq!(w.log_action(&failing, NOW), LogAction::Report);
        // Retried: while it runs its status reads NULL (or Running).
        jobs[0].last_run_status = None;
        jobs[0].total_runs += 1;
        assert_eq!(w.assess(&jobs, NOW + 60), failing);
        jobs[0].job_status = Some("Running".into());
        let still = w.assess(&jobs, NOW + 61);
        assert_eq!(still, failing);
        assert_eq!(w.log_action(&still, NOW + 61), LogAction::Quiet);
        // A healthy job starting a run stays healthy.
        jobs[1].last_run_status = None;
        jobs[1].job_status = Some("Running".into());
        assert_eq!(w.assess(&jobs, NOW + 62), failing);
    }

    #[test]
    fn a_job_that_never_runs_becomes_overdue() {
        let mut w = PolicyWatch::new(Duration::from_secs(900));
        let mut jobs = healthy();
        jobs[3].last_run_status = None;
        jobs[3].total_runs = 0;
        jobs[3].next_start = None;
        assert!(w.assess(&jobs, NOW).is_empty());
        let later = NOW + 60 + GRACE_SECS + 1;
        assert_eq!(
            w.assess(&jobs, later),
            vec![Finding {
                relation: "bars_1d",
                problem: PolicyProblem::Overdue {
                    job_id: 1003,
                    late_secs: 60 + GRACE_SECS + 1
                }
            }]
        );
    }

    #[test]
    fn problems_are_reported_on_change_reminded_and_cleared() {
        let mut w = PolicyWatch::new(Duration::from_secs(900));
        let mut jobs = healthy();
        jobs[0].last_run_status = Some("Failed".into());
        jobs[0].total_failures = 1;
        let f1 = w.assess(&jobs, NOW);
        assert_eq!(w.log_action(&f1, NOW), LogAction::Report);
        // The same problem with one more failure and another message: quiet.
        jobs[0].total_failures = 2;
        jobs[0].last_error = Some("other".into());
        let f2 = w.assess(&jobs, NOW + 60);
        assert_eq!(w.log_action(&f2, NOW + 60), LogAction::Quiet);
        // Still there after the reminder period.
        assert_eq!(w.log_action(&f2, NOW + 900), LogAction::Remind);
        assert_eq!(w.log_action(&f2, NOW + 960), LogAction::Quiet);
        // Another job fails too: reported at once.
        jobs[1].last_run_status = Some("Failed".into());
        let f3 = w.assess(&jobs, NOW + 1_000);
        assert_eq!(w.log_action(&f3, NOW + 1_000), LogAction::Report);
        let f4 = w.assess(&healthy_at(NOW + 1_100), NOW + 1_100);
        assert_eq!(w.log_action(&f4, NOW + 1_100), LogAction::Recovered);
        assert_eq!(w.log_action(&f4, NOW + 1_200), LogAction::Quiet);
    }
}
