//! The TimescaleDB upgrade of the schema, applied when the extension is
//! available (plain PostgreSQL keeps the tables and views of the migrations).
//!
//! * `ticks` and `bars_1m` become hypertables (partitioned by time; their keys
//!   already hold the time column);
//! * the views `bars_5m`, `bars_15m`, `bars_1h`, `bars_1d` are replaced by
//!   continuous aggregates of the same names and columns, with real-time
//!   aggregation on (`materialized_only = false`, which is off by default since
//!   TimescaleDB 2.13) and a refresh policy, so queries do not change.
//!
//! Open and close of a coarse bar come from `first(open, first_ns)` and
//! `last(close, last_ns)`: the minutes of one bucket never tie. A late tick
//! that changes an already materialized minute reaches the aggregate at the
//! next policy refresh (every minute, over the last three days); until then
//! the 1-minute bars are already right.
//!
//! Each statement runs on its own (continuous aggregates cannot be created in
//! a transaction). The upgrade is idempotent: it does nothing once `bars_1m` is
//! a hypertable.

use sqlx::{Executor, PgPool, Row};

use super::StoreError;

/// Whether the upgrade ran (now or before), or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timescale {
    /// The extension is not available on this server.
    Unavailable,
    /// The schema is on hypertables and continuous aggregates.
    Enabled,
}

const INTERVALS: [(&str, &str); 4] = [
    ("5m", "5 minutes"),
    ("15m", "15 minutes"),
    ("1h", "1 hour"),
    ("1d", "1 day"),
];

/// Upgrades the schema when TimescaleDB is available.
pub async fn upgrade(pool: &PgPool) -> Result<Timescale, StoreError> {
    let available = sqlx::query("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        .fetch_optional(pool)
        .await?
        .is_some();
    if !available {
        return Ok(Timescale::Unavailable);
    }
    if let Err(err) = pool
        .execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        // Installed but not loaded (shared_preload_libraries): stay plain.
        tracing::warn!(error = %err, "timescaledb is installed but cannot be enabled; using plain PostgreSQL");
        return Ok(Timescale::Unavailable);
    }
    let done = sqlx::query(
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'bars_1m'",
    )
    .fetch_one(pool)
    .await?
    .try_get::<i64, _>(0)?
        > 0;
    if done {
        return Ok(Timescale::Enabled);
    }
    for sql in statements() {
        pool.execute(sql.as_str()).await?;
    }
    tracing::info!("schema upgraded to TimescaleDB hypertables and continuous aggregates");
    Ok(Timescale::Enabled)
}

/// The upgrade, statement by statement.
pub fn statements() -> Vec<String> {
    let mut out = vec![
        "SELECT create_hypertable('ticks', by_range('trade_time', INTERVAL '1 day'), migrate_data => true, if_not_exists => true)".to_owned(),
        "SELECT create_hypertable('bars_1m', by_range('open_time', INTERVAL '7 days'), migrate_data => true, if_not_exists => true)".to_owned(),
    ];
    for (name, width) in INTERVALS {
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
