-- The dynamic instruments: the instruments the platform was asked for on
-- demand (the Data Not Found path) and serves since. The coordinator keeps
-- them here so that they outlive every process: at start-up and on every
-- membership change it makes sure each has a producer streaming it and a
-- Consumer for dynamic topics reading its topic. Removing one is an admin
-- operation. Creating one twice is harmless (the primary key).
CREATE TABLE dynamic_instruments (
    instrument     text        NOT NULL PRIMARY KEY,
    topic          text        NOT NULL,
    consumer_group text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    state          text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'removing'))
);
