-- The dynamic instruments (see migrations/20261202000001_dynamic_instruments.sql).
CREATE TABLE dynamic_instruments (
    instrument     TEXT    NOT NULL PRIMARY KEY,
    topic          TEXT    NOT NULL,
    consumer_group TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    state          TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'removing'))
);
