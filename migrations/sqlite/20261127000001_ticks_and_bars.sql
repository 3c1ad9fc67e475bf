-- The embedded system of record (actors/src/embedded/sqlite.rs): the same
-- tables as the PostgreSQL schema in the parent folder, in SQLite.
--
-- Prices, quantities and volumes are exact decimal strings (TEXT, as
-- rust_decimal writes them, scale included); sums, minima and maxima are
-- computed in Rust, never in floating point. Times are integers (Unix
-- seconds for open_time, ns for trades). The coarser intervals (5m, 15m, 1h,
-- 1d) are computed from bars_1m when read, as the PostgreSQL views are.

-- One row per distinct trade; (instrument, trade_id) is its identity.
-- The checks mirror PostgreSQL's (a decimal string read as a number only to
-- check its sign).
CREATE TABLE ticks (
    instrument    TEXT    NOT NULL,
    trade_id      TEXT    NOT NULL,
    trade_time_ns INTEGER NOT NULL,
    price         TEXT    NOT NULL CHECK (CAST(price AS REAL) > 0),
    quantity      TEXT    NOT NULL CHECK (CAST(quantity AS REAL) >= 0),
    side          TEXT    NOT NULL CHECK (side IN ('buy', 'sell', 'unknown')),
    received_ns   INTEGER NOT NULL,
    PRIMARY KEY (instrument, trade_id)
) WITHOUT ROWID;

-- One row per instrument and minute; `source` and `version` as in PostgreSQL.
CREATE TABLE bars_1m (
    instrument   TEXT    NOT NULL,
    open_time    INTEGER NOT NULL,
    open         TEXT    NOT NULL,
    high         TEXT    NOT NULL,
    low          TEXT    NOT NULL,
    close        TEXT    NOT NULL,
    volume_base  TEXT    NOT NULL,
    volume_quote TEXT    NOT NULL,
    trades       INTEGER NOT NULL,
    first_ns     INTEGER NOT NULL,
    first_id     TEXT    NOT NULL,
    last_ns      INTEGER NOT NULL,
    last_id      TEXT    NOT NULL,
    source       TEXT    NOT NULL CHECK (source IN ('live', 'history')),
    version      INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (instrument, open_time)
) WITHOUT ROWID;
