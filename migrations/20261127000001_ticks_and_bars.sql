-- Ticks and 1-minute bars: the system of record.
--
-- Runs on plain PostgreSQL. When the timescaledb extension is available the
-- node additionally turns `ticks` and `bars_1m` into hypertables and replaces
-- the coarser views with continuous aggregates (see actors/src/store/timescale.rs);
-- the relation names stay the same, so queries do not change.

-- One row per distinct trade; (instrument, trade_id) is its identity. The
-- trade time is part of the key because a hypertable's unique keys must hold
-- its partitioning column (a trade's time never changes, so this is the same
-- identity).
CREATE TABLE ticks (
    instrument    text        NOT NULL,
    trade_id      text        NOT NULL,
    trade_time    timestamptz NOT NULL,
    trade_time_ns bigint      NOT NULL,
    price         numeric     NOT NULL CHECK (price > 0),
    quantity      numeric     NOT NULL CHECK (quantity >= 0),
    side          text        NOT NULL CHECK (side IN ('buy', 'sell', 'unknown')),
    received_ns   bigint      NOT NULL,
    PRIMARY KEY (instrument, trade_id, trade_time)
);

CREATE INDEX ticks_by_time ON ticks (instrument, trade_time);

-- One row per instrument and minute. `source` says how the row was made:
-- 'live' = merged from distinct live ticks; 'history' = a closed minute from
-- CryptoCompare's REST history (see the reconciliation rule in
-- actors/src/store/postgres.rs). first_*/last_* locate the first and last trade
-- so that partial bars merge exactly (open/close ties broken by trade id).
CREATE TABLE bars_1m (
    instrument   text        NOT NULL,
    open_time    timestamptz NOT NULL,
    open         numeric     NOT NULL,
    high         numeric     NOT NULL,
    low          numeric     NOT NULL,
    close        numeric     NOT NULL,
    volume_base  numeric     NOT NULL,
    volume_quote numeric     NOT NULL,
    trades       bigint      NOT NULL,
    first_ns     bigint      NOT NULL,
    first_id     text        NOT NULL,
    last_ns      bigint      NOT NULL,
    last_id      text        NOT NULL,
    source       text        NOT NULL CHECK (source IN ('live', 'history')),
    -- Incremented on every change of the row: the cache keeps the highest
    -- version it has seen, so a late writer cannot put an older bar back.
    version      bigint      NOT NULL DEFAULT 1,
    PRIMARY KEY (instrument, open_time)
);

-- Coarser intervals over bars_1m, with the same columns. Open and close come
-- from the 1-minute bars with the earliest first trade and the latest last
-- trade (minutes never tie).
CREATE VIEW bars_5m AS
SELECT instrument,
       date_bin('5 minutes', open_time, TIMESTAMPTZ 'epoch') AS open_time,
       (array_agg(open ORDER BY first_ns))[1] AS open,
       max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY last_ns DESC))[1] AS close,
       sum(volume_base) AS volume_base, sum(volume_quote) AS volume_quote,
       sum(trades)::bigint AS trades,
       min(first_ns) AS first_ns, max(last_ns) AS last_ns
FROM bars_1m GROUP BY 1, 2;

CREATE VIEW bars_15m AS
SELECT instrument,
       date_bin('15 minutes', open_time, TIMESTAMPTZ 'epoch') AS open_time,
       (array_agg(open ORDER BY first_ns))[1] AS open,
       max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY last_ns DESC))[1] AS close,
       sum(volume_base) AS volume_base, sum(volume_quote) AS volume_quote,
       sum(trades)::bigint AS trades,
       min(first_ns) AS first_ns, max(last_ns) AS last_ns
FROM bars_1m GROUP BY 1, 2;

CREATE VIEW bars_1h AS
SELECT instrument,
       date_bin('1 hour', open_time, TIMESTAMPTZ 'epoch') AS open_time,
       (array_agg(open ORDER BY first_ns))[1] AS open,
       max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY last_ns DESC))[1] AS close,
       sum(volume_base) AS volume_base, sum(volume_quote) AS volume_quote,
       sum(trades)::bigint AS trades,
       min(first_ns) AS first_ns, max(last_ns) AS last_ns
FROM bars_1m GROUP BY 1, 2;

CREATE VIEW bars_1d AS
SELECT instrument,
       date_bin('1 day', open_time, TIMESTAMPTZ 'epoch') AS open_time,
       (array_agg(open ORDER BY first_ns))[1] AS open,
       max(high) AS high, min(low) AS low,
       (array_agg(close ORDER BY last_ns DESC))[1] AS close,
       sum(volume_base) AS volume_base, sum(volume_quote) AS volume_quote,
       sum(trades)::bigint AS trades,
       min(first_ns) AS first_ns, max(last_ns) AS last_ns
FROM bars_1m GROUP BY 1, 2;
