-- The tick key compares bytes. `instrument` and `trade_id` were compared with
-- the database's collation (e.g. C.UTF-8 or en_US.UTF-8: strcoll on every
-- comparison of every index descent); with COLLATE "C" they compare with
-- memcmp. Equality, hence the identity of a tick, is unchanged (both are
-- deterministic collations: equal means byte-equal); only the index order of
-- the text columns changes, which nothing relies on. The table is not
-- rewritten; its primary key index is rebuilt.
ALTER TABLE ticks
    ALTER COLUMN instrument TYPE text COLLATE "C",
    ALTER COLUMN trade_id TYPE text COLLATE "C";
