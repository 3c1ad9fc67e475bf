-- The reconciliation rule's tables, as in PostgreSQL (see
-- migrations/20261202000002_reconcile_and_tick_identity.sql): the live bar
-- and the best history answer of each minute kept apart, `bars_1m` holding
-- the chosen bar, and versions from one counter (every change of any row
-- takes the next), indexed for "every change of an instrument after V".
-- The tick identity is already (instrument, trade_id) here.

CREATE TABLE live_1m (
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
    PRIMARY KEY (instrument, open_time)
) WITHOUT ROWID;
INSERT INTO live_1m
SELECT instrument, open_time, open, high, low, close, volume_base, volume_quote,
       trades, first_ns, first_id, last_ns, last_id
FROM bars_1m WHERE source = 'live';

CREATE TABLE history_1m (
    instrument   TEXT    NOT NULL,
    open_time    INTEGER NOT NULL,
    open         TEXT    NOT NULL,
    high         TEXT    NOT NULL,
    low          TEXT    NOT NULL,
    close        TEXT    NOT NULL,
    volume_base  TEXT    NOT NULL,
    volume_quote TEXT    NOT NULL,
    PRIMARY KEY (instrument, open_time)
) WITHOUT ROWID;
INSERT INTO history_1m
SELECT instrument, open_time, open, high, low, close, volume_base, volume_quote
FROM bars_1m WHERE source = 'history' AND CAST(volume_base AS REAL) > 0;

CREATE TABLE counters (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value)
SELECT 'bars_version', coalesce(max(version), 1) FROM bars_1m;

CREATE INDEX bars_1m_by_version ON bars_1m (instrument, version);
