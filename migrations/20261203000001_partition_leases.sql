-- Partition leases: which fixed consumer reads which partition of a topic.
-- Placement from each node's view of the cluster can leave a partition
-- unread while the views disagree (a partial network partition); a consumer
-- reads a partition only while it holds the partition's lease here, so the
-- database, which every consumer node reaches, is the one arbiter. See
-- actors/src/kafka/lease.rs and docs/cluster.md ("Partition leases").
--
-- owner:      the member (`node#worker`) holding the lease, NULL when free;
-- token:      the lease's generation, raised each time a member takes it
--             (a fencing token: logs and the admin view name it);
-- expires_at: the database's time the lease lapses unless renewed;
-- wanted_by:  a member whose share gives it this partition while another
--             holds it; the holder gives it up when it lies outside its own
--             share and the request is fresh;
-- wanted_at:  when the request was last made (every round of the member
--             that wants it): a request older than the lease time is stale
--             (its member died or lost the database) and is ignored.
CREATE TABLE partition_leases (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL CHECK (partition >= 0),
    owner          text,
    token          bigint      NOT NULL DEFAULT 0,
    expires_at     timestamptz NOT NULL DEFAULT '-infinity',
    wanted_by      text,
    wanted_at      timestamptz,
    PRIMARY KEY (consumer_group, topic, partition)
);
