//! The platform's metrics: names, labels and descriptions in one place, and
//! the helpers the actors record through (the `metrics` facade; a node
//! installs the Prometheus recorder, `node/src/ops.rs`; without a recorder,
//! as in most tests, recording costs nothing).
//!
//! Conventions (Prometheus'): every name starts with `candela_`, counters end
//! in `_total`, durations are histograms in `_seconds`. Labels are bounded:
//! an instrument (the configured ones and the bounded dynamic ones), a
//! machine and its states, a refusal kind, an HTTP route pattern and status,
//! a supervised child's name. Never a trade id, an offset, a free text or a
//! raw request path.

use std::time::Duration;

/// Ticks the producer received from the source, by instrument.
pub const TICKS_RECEIVED: &str = "candela_ticks_received_total";
/// Ticks the producer published to the bus (acknowledged).
pub const TICKS_PUBLISHED: &str = "candela_ticks_published_total";
/// History bars the producer published (backfill, repair, on-demand fetch).
pub const HISTORY_BARS_PUBLISHED: &str = "candela_history_bars_published_total";
/// The live source's (WebSocket) events, by `event`: `connects`,
/// `reconnects`, `stale_reconnects`, `frames`, `trades`, `heartbeats`,
/// `duplicates_dropped`, `malformed`, `invalid`, `unsubscribed`,
/// `unknown`, `unauthorized`, `too_many`, `server_errors`.
pub const SOURCE_LIVE_EVENTS: &str = "candela_source_live_events_total";
/// The history source's (REST) events, by `event`: `request`,
/// `throttled` (waited for the client's own budget), `rate_limited` (a
/// retry after the source's rate-limit answer), `error`.
pub const SOURCE_REST_EVENTS: &str = "candela_source_rest_events_total";
/// Bar requests the datastore answered, by where from (`served`: `cache`,
/// `store`, `fetched`) or `error`.
pub const DATASTORE_REQUESTS: &str = "candela_datastore_requests_total";
/// Cache reads of 1-minute ranges, by `outcome`: `hit` (the cache held the
/// whole range), `miss`, `error` (unreachable: the database answered).
pub const CACHE_READS: &str = "candela_cache_reads_total";
/// This node's cluster peers, by `state`: `connecting`, `connected`,
/// `suspect`, `down`.
pub const CLUSTER_PEERS: &str = "candela_cluster_peers";
/// Heartbeat round trips to each peer (`peer`: a configured node name).
pub const CLUSTER_HEARTBEAT_SECONDS: &str = "candela_cluster_heartbeat_rtt_seconds";
/// Messages of a partition after its committed offset (its high watermark
/// as the consumer's last fetch saw it, minus the commit), by `topic` and
/// `partition`.
pub const CONSUMER_LAG: &str = "candela_consumer_lag_messages";
/// Partition leases this node's placed consumers hold, by `topic`.
pub const PARTITION_LEASES: &str = "candela_partition_leases_held";
/// 1 while this node's producer is the active one of `ingest.active_standby`
/// producers (it holds the producer lease), 0 while it stands by.
pub const PRODUCER_ACTIVE: &str = "candela_producer_active";
/// Lease rounds that failed (the database refused or was unreachable).
pub const PARTITION_LEASE_ERRORS: &str = "candela_partition_lease_errors_total";
/// Consumers the watchdog found stuck (a batch in flight past
/// `consumer.stall_secs`) and restarted, by `consumer`.
pub const CONSUMER_STALLS: &str = "candela_consumer_stalls_total";
/// Minutes the backfill covers, by `instrument`.
pub const BACKFILL_MINUTES_TOTAL: &str = "candela_backfill_minutes";
/// Minutes of the backfill fetched and published so far, by `instrument`.
pub const BACKFILL_MINUTES_DONE: &str = "candela_backfill_minutes_done";
/// The backfill's estimate of the seconds left, by `instrument` (0 once
/// done).
pub const BACKFILL_ETA_SECONDS: &str = "candela_backfill_eta_seconds";
/// Backfill chunks given up after every attempt failed, by `instrument`.
pub const BACKFILL_FAILED_CHUNKS: &str = "candela_backfill_failed_chunks_total";
/// Each actor's current state: 1 for the state its machine is in, 0 for
/// the states it left (by `machine`, `instance`: the actor's name, and
/// `state`).
pub const ACTOR_STATE: &str = "candela_actor_state";
/// Messages a consumer received from the bus.
pub const CONSUMER_MESSAGES: &str = "candela_consumer_messages_total";
/// Ticks in batches a consumer committed, by instrument (new and repeated).
pub const CONSUMER_TICKS: &str = "candela_consumer_ticks_total";
/// Ticks stored for the first time.
pub const TICKS_STORED: &str = "candela_ticks_stored_total";
/// Ticks that were stored already (replays, redeliveries).
pub const TICKS_DUPLICATE: &str = "candela_ticks_duplicate_total";
/// History bars that created or repaired a minute.
pub const HISTORY_BARS_APPLIED: &str = "candela_history_bars_applied_total";
/// Records sent to the dead-letter topic, by kind (`reason`).
pub const DEAD_LETTERS: &str = "candela_dead_letters_total";
/// Failed consumer cycles (each ends in the machine's Error state).
pub const CONSUMER_FAILURES: &str = "candela_consumer_failures_total";
/// Cache updates skipped because the cache was unreachable.
pub const CACHE_SKIPPED: &str = "candela_cache_updates_skipped_total";
/// Time of a batch's database write (one transaction, or its bisection).
pub const BATCH_WRITE_SECONDS: &str = "candela_consumer_batch_write_seconds";
/// From the producer's receipt of a tick to the end of the consumer cycle
/// that stored and cached it.
pub const VISIBILITY_SECONDS: &str = "candela_tick_visibility_seconds";
/// Transitions of the actors' machines, by machine, from and to.
pub const FSM_TRANSITIONS: &str = "candela_fsm_transitions_total";
/// Events a machine had no transition for, by machine and state.
pub const FSM_REJECTED: &str = "candela_fsm_rejected_total";
/// Restarts of supervised actors, by child.
pub const ACTOR_RESTARTS: &str = "candela_actor_restarts_total";
/// Hours of 1-minute bars an `/api/v1/ohlcv` answer took from the node's
/// encoded memo (`reused`) or encoded again (`encoded`: new, changed, or
/// its closed flags ran out).
pub const API_MEMO_HOURS: &str = "candela_api_memo_hours_total";
/// `/api/v1/ohlcv` answers of 1-minute bars, by how they were made:
/// `memo` (from the node's encoded hours, the cache's events saying none
/// moved: no round trip) or `store` (the Datastore asked).
pub const API_MEMO_ANSWERS: &str = "candela_api_memo_answers_total";
/// Cache event messages that could not be read (each makes the readers
/// forget what they knew of the cache).
pub const CACHE_EVENTS_REFUSED: &str = "candela_cache_events_refused_total";
/// HTTP requests answered, by route pattern, method and status.
pub const HTTP_REQUESTS: &str = "candela_http_requests_total";
/// Time to answer an HTTP request (to its headers), by route pattern.
pub const HTTP_SECONDS: &str = "candela_http_request_duration_seconds";

/// Every metric with its help text, for the recorder's `# HELP` lines; the
/// known label values of a few counters registered at 0.
pub fn describe() {
    metrics::describe_gauge!(ACTOR_STATE, "1 for the state each actor's machine is in");
    metrics::describe_gauge!(BACKFILL_MINUTES_TOTAL, "Minutes the backfill covers");
    metrics::describe_gauge!(
        BACKFILL_MINUTES_DONE,
        "Backfill minutes fetched and published"
    );
    metrics::describe_gauge!(
        BACKFILL_ETA_SECONDS,
        "Estimated seconds until the backfill of an instrument is done"
    );
    metrics::describe_counter!(
        BACKFILL_FAILED_CHUNKS,
        "Backfill chunks given up after every attempt failed"
    );
    // Known label values start at 0, so rates and ratios exist before the
    // first event (Prometheus' advice for bounded label sets).
    for reason in ["malformed", "type", "version"] {
        metrics::counter!(DEAD_LETTERS, "reason" => reason).absolute(0);
    }
    for outcome in ["hit", "miss", "error"] {
        metrics::counter!(CACHE_READS, "outcome" => outcome).absolute(0);
    }
    metrics::describe_counter!(CONSUMER_STALLS, "Consumers found stuck and restarted");
    metrics::describe_gauge!(
        CONSUMER_LAG,
        "Messages after the committed offset, per partition"
    );
    metrics::describe_gauge!(CLUSTER_PEERS, "Cluster peers by state");
    metrics::describe_gauge!(
        PARTITION_LEASES,
        "Partition leases this node's consumers hold, per topic"
    );
    metrics::describe_counter!(PARTITION_LEASE_ERRORS, "Partition lease rounds that failed");
    metrics::counter!(PARTITION_LEASE_ERRORS).absolute(0);
    metrics::describe_gauge!(
        PRODUCER_ACTIVE,
        "1 while this node's producer is the active one (active/standby producers)"
    );
    metrics::describe_histogram!(
        CLUSTER_HEARTBEAT_SECONDS,
        metrics::Unit::Seconds,
        "Heartbeat round trip to each peer"
    );
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        TICKS_RECEIVED,
        "Ticks the producer received from the source"
    );
    describe_counter!(TICKS_PUBLISHED, "Ticks the producer published to the bus");
    describe_counter!(
        API_MEMO_HOURS,
        "Hours of bars /api/v1/ohlcv reused from its encoded memo or encoded again"
    );
    describe_counter!(
        API_MEMO_ANSWERS,
        "/api/v1/ohlcv answers made from the node's memo alone or with the datastore"
    );
    for how in ["memo", "store"] {
        metrics::counter!(API_MEMO_ANSWERS, "how" => how).absolute(0);
    }
    describe_counter!(
        CACHE_EVENTS_REFUSED,
        "Cache event messages that could not be read"
    );
    metrics::counter!(CACHE_EVENTS_REFUSED).absolute(0);
    describe_counter!(
        HISTORY_BARS_PUBLISHED,
        "History bars the producer published"
    );
    describe_counter!(SOURCE_LIVE_EVENTS, "Live source (WebSocket) events");
    describe_counter!(
        SOURCE_REST_EVENTS,
        "History source (REST) requests, rate limits, errors"
    );
    describe_counter!(
        CACHE_READS,
        "Cache reads of 1-minute ranges: hit, miss, error"
    );
    describe_counter!(
        DATASTORE_REQUESTS,
        "Bar requests the datastore answered, by source"
    );
    describe_counter!(
        CONSUMER_MESSAGES,
        "Messages consumers received from the bus"
    );
    describe_counter!(CONSUMER_TICKS, "Ticks in batches consumers committed");
    describe_counter!(TICKS_STORED, "Ticks stored for the first time");
    describe_counter!(TICKS_DUPLICATE, "Ticks that were already stored");
    describe_counter!(
        HISTORY_BARS_APPLIED,
        "History bars that created or repaired a minute"
    );
    describe_counter!(DEAD_LETTERS, "Records sent to the dead-letter topic");
    describe_counter!(CONSUMER_FAILURES, "Failed consumer cycles");
    describe_counter!(CACHE_SKIPPED, "Cache updates skipped: cache unreachable");
    describe_histogram!(
        BATCH_WRITE_SECONDS,
        Unit::Seconds,
        "Database write of a consumer batch"
    );
    describe_histogram!(
        VISIBILITY_SECONDS,
        Unit::Seconds,
        "Tick receipt to stored and cached"
    );
    describe_counter!(FSM_TRANSITIONS, "Transitions of the actors' machines");
    describe_counter!(FSM_REJECTED, "Events a machine had no transition for");
    describe_counter!(ACTOR_RESTARTS, "Restarts of supervised actors");
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered");
    describe_histogram!(
        HTTP_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request"
    );
}

/// Histogram buckets for latencies, in seconds: 1 ms to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Records a duration in a histogram.
pub fn observe(name: &'static str, d: Duration) {
    metrics::histogram!(name).record(d.as_secs_f64());
}

/// The span of one actor instance: every log line of its handlers, and of
/// the tasks they spawn in it, carries the actor's machine and name (no
/// hand-repeated `instance` fields).
pub fn actor_span(machine: &'static str, name: &str) -> tracing::Span {
    tracing::info_span!("actor", machine, actor = %name)
}

/// Runs one handler step of an actor inside its span.
pub async fn in_span<T>(
    span: &tracing::Span,
    step: impl std::future::Future<Output = Result<T, ractor::ActorProcessingErr>>,
) -> Result<T, ractor::ActorProcessingErr> {
    use tracing::Instrument as _;
    step.instrument(span.clone()).await
}

/// `tokio::spawn` of a task that stays in the current span (an actor's
/// task logs as its actor).
pub fn spawn_in_span<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument as _;
    tokio::spawn(task.in_current_span())
}
