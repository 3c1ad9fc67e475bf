//! The node's configuration: `cluster.toml`, then environment overrides.
//!
//! Every field can be overridden by an environment variable named after its
//! path: `CANDELA__<SECTION>__<FIELD>` (case-insensitive, `__` between levels),
//! e.g. `CANDELA__POSTGRES__URL=postgres://…` or `CANDELA__NODE__ROLES=["api"]`.
//! The value is read as a TOML value when it parses as one (numbers, booleans,
//! arrays), otherwise as a string. Unknown keys — in the file or in an override
//! — and invalid values are refused at start-up with a message naming the
//! field.
//!
//! Secrets are never in the file: the file names the environment variable
//! that holds them (`cookie_env`, `api_key_env`, `token_env`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use candela_actors::cryptocompare::CryptoCompareConfig;
use candela_actors::domain::Instrument;
use candela_actors::imitation::ImitationConfig;
use candela_actors::kafka::KafkaConfig;

/// The prefix of override variables.
pub const ENV_PREFIX: &str = "CANDELA__";

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid TOML, or names an unknown field,
    /// or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value is of the right type but not acceptable.
    #[error("invalid value for `{field}`: {reason}")]
    Value {
        /// The field, as a dotted path.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the Producer (CryptoCompare → Kafka).
    Producer,
    /// Runs the Consumer for fixed topics (Kafka → PostgreSQL → Redis).
    Consumer,
    /// Runs the Datastore pool.
    Datastore,
    /// Serves the HTTP API (needs `datastore`).
    Api,
    /// Runs the Coordinator (dynamic topics; on one node or several: one
    /// active, the others standing by).
    Coordinator,
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node.
    #[serde(default)]
    pub node: NodeConfig,
    /// The Kafka-compatible broker.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// PostgreSQL / TimescaleDB.
    #[serde(default)]
    pub postgres: PostgresConfig,
    /// Redis.
    #[serde(default)]
    pub redis: RedisConfig,
    /// Where trades come from.
    #[serde(default)]
    pub source: SourceConfig,
    /// What to ingest.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The consumer.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    /// The datastore.
    #[serde(default)]
    pub datastore: DatastoreConfig,
    /// Dynamic topics: the Coordinator and the Consumers for dynamic topics.
    #[serde(default)]
    pub dynamic: DynamicConfig,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// The cluster: this node's listener, its peers, failure detection.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The admin endpoint.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The ops listener (`/metrics`, `/health`, `/ready`).
    #[serde(default)]
    pub ops: OpsConfig,
    /// Which backends: the real ones or the embedded ones.
    #[serde(default)]
    pub backends: BackendsConfig,
    /// When the data plane's supervisors restart a failed actor, and when
    /// they give up.
    #[serde(default)]
    pub restart: RestartConfig,
}

/// The data plane's restart policy (`candela_actors::supervisor`): a failed
/// actor is restarted after a back-off that doubles from `backoff_min_ms` to
/// `backoff_max_ms`; when one fails more than `max_restarts` times within
/// `window_secs` of its own running time (back-offs not counted), its
/// supervisor gives up and the node exits with an error. Failures marked
/// transient (the database or the broker away) are restarted but not
/// counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// Most counted failures of one actor within the window (1 to 1000).
    pub max_restarts: u32,
    /// The window, in seconds of the actor's running time (1 to 86400).
    pub window_secs: u64,
    /// First back-off, in milliseconds (1 to backoff_max_ms).
    pub backoff_min_ms: u64,
    /// Longest back-off, in milliseconds (at most 600000).
    pub backoff_max_ms: u64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window_secs: 60,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

impl RestartConfig {
    /// The supervisors' policy.
    pub fn policy(&self) -> candela_actors::supervisor::RestartPolicy {
        candela_actors::supervisor::RestartPolicy {
            max_restarts: self.max_restarts,
            window: std::time::Duration::from_secs(self.window_secs),
            backoff_min: std::time::Duration::from_millis(self.backoff_min_ms),
            backoff_max: std::time::Duration::from_millis(self.backoff_max_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: &str| ConfigError::Value {
            field: format!("restart.{field}"),
            reason: reason.into(),
        };
        if !(1..=1_000).contains(&self.max_restarts) {
            return Err(bad("max_restarts", "must be 1 to 1000"));
        }
        if !(1..=86_400).contains(&self.window_secs) {
            return Err(bad("window_secs", "must be 1 to 86400"));
        }
        if self.backoff_max_ms > 600_000 {
            return Err(bad("backoff_max_ms", "must be at most 600000"));
        }
        if self.backoff_min_ms == 0 || self.backoff_min_ms > self.backoff_max_ms {
            return Err(bad("backoff_min_ms", "must be 1 to backoff_max_ms"));
        }
        Ok(())
    }
}

/// The record bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// Kafka / Redpanda (the brokers of `[kafka]`).
    Kafka,
    /// The in-process bus (one node only; nothing to install).
    Memory,
}

/// The system of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// PostgreSQL / TimescaleDB (`[postgres]`).
    Postgres,
    /// SQLite in `backends.data_dir` (one node only).
    Sqlite,
}

/// The cache of recent bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// Redis (`[redis]`).
    Redis,
    /// In the node's memory (one node only).
    Memory,
}

/// Which backends the node runs on. The defaults are the embedded ones, so a
/// node started without configuration needs no external service; each line
/// switches one backend to the real thing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendsConfig {
    /// `kafka` or `memory`.
    pub bus: BusKind,
    /// `postgres` or `sqlite`.
    pub store: StoreKind,
    /// `redis` or `memory`.
    pub cache: CacheKind,
    /// Where the embedded store keeps its files.
    pub data_dir: String,
}

impl Default for BackendsConfig {
    fn default() -> Self {
        Self {
            bus: BusKind::Memory,
            store: StoreKind::Sqlite,
            cache: CacheKind::Memory,
            data_dir: "data".into(),
        }
    }
}

impl BackendsConfig {
    /// Refuses embedded backends on a node with peers: they live inside one
    /// process, so nodes would not share them.
    pub fn check_shared(&self, peers: &[String]) -> Result<(), ConfigError> {
        if peers.is_empty() {
            return Ok(());
        }
        let embedded = [
            ("backends.bus", self.bus == BusKind::Memory, "kafka"),
            (
                "backends.store",
                self.store == StoreKind::Sqlite,
                "postgres",
            ),
            ("backends.cache", self.cache == CacheKind::Memory, "redis"),
        ];
        match embedded.into_iter().find(|(_, is, _)| *is) {
            Some((field, _, real)) => Err(ConfigError::Value {
                field: field.into(),
                reason: format!(
                    "the embedded backend lives inside one process; a node with cluster.peers needs `{real}`"
                ),
            }),
            None => Ok(()),
        }
    }
}

/// The ops listener every node has: `/metrics`, `/health`, `/ready`, no
/// token, nothing else (`node/src/ops.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Where it listens. Absent: `127.0.0.1:9464` ([`DEFAULT_OPS_LISTEN`]),
    /// or, when that port is taken (several nodes on one host), a free
    /// loopback port, logged. Set, it must be free: the node refuses to
    /// start otherwise.
    pub listen: Option<SocketAddr>,
}

/// The ops listener's address when `ops.listen` is absent.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9464";

/// The admin endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The environment variable holding the admin bearer token (unset: the
    /// admin endpoint refuses every request).
    pub token_env: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token_env: "CANDELA_ADMIN_TOKEN".into(),
        }
    }
}

/// This node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// What the node runs.
    pub roles: Vec<Role>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "node-a".into(),
            // Every role: a node started without configuration serves any
            // pair the source lists, on demand (the coordinator).
            roles: vec![
                Role::Producer,
                Role::Consumer,
                Role::Datastore,
                Role::Api,
                Role::Coordinator,
            ],
        }
    }
}

/// PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL (may carry a password: prefer the override variable).
    pub url: String,
    /// Connection pool size.
    pub max_connections: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/candela".into(),
            max_connections: 8,
        }
    }
}

/// Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Connection URL.
    pub url: String,
    /// Prefix of every key.
    pub key_prefix: String,
    /// How long 1-minute bars stay in the cache, in seconds.
    pub window_secs: i64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "candela".into(),
            window_secs: 86_400,
        }
    }
}

/// Which source of trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The project's local imitation of CryptoCompare, started in-process.
    Imitation,
    /// CryptoCompare itself (or any server at `cryptocompare.rest_url` / `ws_url`).
    Cryptocompare,
}

/// Where trades come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `imitation` or `cryptocompare`.
    pub kind: SourceKind,
    /// The environment variable holding the CryptoCompare API key.
    pub api_key_env: String,
    /// The client's settings (addresses, time-outs, back-offs).
    pub cryptocompare: CryptoCompareConfig,
    /// The imitation's settings, when `kind = "imitation"` (`[source.imitation]`,
    /// unknown keys refused): `seed`, `trades_per_sec`, … and `pairs`, the
    /// `MARKET:BASE-QUOTE` pairs it lists (default:
    /// [`candela_actors::imitation::DEFAULT_PAIRS`]). Like CryptoCompare it
    /// refuses every other pair: history answers "<market> market does not
    /// exist for this coin pair (BASE-QUOTE)", a live subscription a `500`
    /// `INVALID_SUB`. Every `ingest.instruments` entry must be listed.
    /// `rest_delay_ms` delays every history answer (a slow source).
    pub imitation: ImitationConfig,
    /// Where the in-process imitation listens (`127.0.0.1:0`: any free port).
    pub imitation_listen: SocketAddr,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::Imitation,
            api_key_env: "CRYPTOCOMPARE_API_KEY".into(),
            cryptocompare: CryptoCompareConfig::default(),
            imitation: ImitationConfig::default(),
            imitation_listen: "127.0.0.1:0".parse().expect("address"),
        }
    }
}

/// What to ingest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Instruments streamed live from start-up, `MARKET:BASE-QUOTE`.
    pub instruments: Vec<String>,
    /// How many closed minutes of history to fetch for each at start-up.
    pub backfill_minutes: i64,
    /// Instruments backfilled at once (1 to 64); the source's rate limit
    /// (`source.cryptocompare.rest_per_second`, `rest_per_minute`) paces
    /// their requests together.
    pub backfill_concurrency: usize,
    /// Most records per publish.
    pub batch_max: usize,
    /// Repair: every `repair_interval_secs`, the last `repair_minutes` closed
    /// minutes of each instrument are fetched from history again, so minutes the
    /// live stream missed (a disconnect, the partial minute at start-up) are
    /// repaired by the reconciliation rule. 0 turns it off.
    pub repair_minutes: i64,
    /// How often the repair runs, in seconds.
    pub repair_interval_secs: u64,
    /// Producers with this set stream one at a time: the one holding the
    /// producer lease in PostgreSQL (`node/src/standby.rs`); the others
    /// stand by and take over when its lease lapses (the timing of
    /// `consumer.lease_*`). Needs `backends.store = "postgres"`.
    pub active_standby: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            instruments: vec![
                "Coinbase:BTC-USD".into(),
                "Coinbase:ETH-USD".into(),
                "Kraken:BTC-EUR".into(),
            ],
            backfill_minutes: 120,
            backfill_concurrency: 8,
            batch_max: 5_000,
            repair_minutes: 5,
            repair_interval_secs: 60,
            active_standby: false,
        }
    }
}

/// The consumer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// The Kafka consumer group.
    pub group: String,
    /// Most messages per batch (one database transaction).
    pub batch_max: usize,
    /// Longest wait for a batch's first message, in milliseconds.
    pub batch_wait_ms: u64,
    /// Consumers of the fixed topic on this node, each with its own share of
    /// the partitions and its own database transaction at a time (1 to 32;
    /// more than the topic's partitions leaves some idle). Each holds a
    /// connection of `postgres.max_connections` while it writes.
    pub workers: usize,
    /// The watchdog: a consumer whose batch has been in flight this many
    /// seconds without finishing (a database call that hangs, a lock) is
    /// reported and restarted through its supervisor (RESET); 0: off.
    pub stall_secs: u64,
    /// `/ready` fails on this node while a partition it reads lags by more
    /// than this many messages; 0: lag never makes it unready.
    pub ready_max_lag: u64,
    /// With PostgreSQL and Kafka: a consumer reads a partition only while it
    /// holds the partition's lease (`candela_actors::kafka::lease`), which
    /// lapses this long after its last renewal. A partition whose reader
    /// died stays unread at most `lease_ttl_ms + lease_grace_ms +
    /// lease_renew_ms`.
    pub lease_ttl_ms: u64,
    /// How often leases are renewed; at most a third of `lease_ttl_ms`.
    pub lease_renew_ms: u64,
    /// How long a lapsed lease in nobody's share waits for its share's owner
    /// before any consumer takes it.
    pub lease_grace_ms: u64,
}

impl ConsumerConfig {
    /// The lease timing.
    pub fn leases(&self) -> candela_actors::kafka::lease::LeaseConfig {
        candela_actors::kafka::lease::LeaseConfig {
            ttl: std::time::Duration::from_millis(self.lease_ttl_ms),
            renew: std::time::Duration::from_millis(self.lease_renew_ms),
            grace: std::time::Duration::from_millis(self.lease_grace_ms),
        }
    }
}

/// The shortest cluster cookie accepted, in bytes.
pub const MIN_COOKIE_BYTES: usize = 32;

/// The longest backfill: ten years of minutes (fetched a week at a time).
pub const MAX_BACKFILL_MINUTES: i64 = 10 * 366 * 1_440;
/// The longest repair: a day of minutes.
pub const MAX_REPAIR_MINUTES: i64 = 1_440;
/// The longest cache window: a year.
pub const MAX_CACHE_WINDOW_SECS: i64 = 366 * 86_400;

/// The most fixed-topic consumers one node runs.
pub const MAX_CONSUMER_WORKERS: usize = 32;

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group: "candela-consumers".into(),
            batch_max: 5_000,
            batch_wait_ms: 100,
            workers: 1,
            stall_secs: 120,
            ready_max_lag: 1_000_000,
            lease_ttl_ms: 6_000,
            lease_renew_ms: 1_000,
            lease_grace_ms: 2_000,
        }
    }
}

/// The datastore.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatastoreConfig {
    /// Actors in the pool.
    pub pool_size: usize,
    /// Longest wait for data fetched on demand, in seconds.
    pub fetch_timeout_secs: u64,
    /// Longest wait for an answer, in milliseconds.
    pub request_timeout_ms: u64,
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        Self {
            pool_size: 4,
            fetch_timeout_secs: 60,
            request_timeout_ms: 10_000,
        }
    }
}

/// Dynamic topics (the Data Not Found path): how the Coordinator names and
/// creates them, how much history a new one gets, and how its consumers join.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicConfig {
    /// Topic of instrument `M:B-Q` is `{topic_prefix}.M.B-Q`.
    pub topic_prefix: String,
    /// Partitions of each dynamic topic.
    pub partitions: i32,
    /// Closed minutes of history published to a new dynamic topic.
    pub history_minutes: i64,
    /// The consumer group of dynamic topic `t` is `{group_prefix}.{t}`.
    pub group_prefix: String,
    /// Longest wait for a consumer's or an agent's answer, in milliseconds.
    pub call_timeout_ms: u64,
    /// Longest wait for the producer to publish a new topic's history, in
    /// milliseconds.
    pub producer_timeout_ms: u64,
    /// How often a waiting request checks the store, in milliseconds.
    pub poll_ms: u64,
    /// The most dynamic instruments the platform serves (1 to 10000):
    /// asked for one more, it answers 403.
    pub max_instruments: usize,
    /// The most new dynamic instruments a minute (1 to 600): asked for more,
    /// it answers 429 with the wait.
    pub creations_per_minute: u32,
    /// How often the active coordinator reconciles the dynamic instruments
    /// with the running actors besides on every membership change, in
    /// seconds.
    pub reconcile_secs: u64,
    /// Closed minutes of history a producer told again publishes (the gap
    /// of its restart).
    pub reconcile_history_minutes: i64,
    /// The most instruments one node fetches on demand at a time (the
    /// datastore answers 429 for another until one ends); taken as at most
    /// `datastore.pool_size - 1`, so requests for held instruments always
    /// find a free datastore.
    pub max_concurrent_fetches: usize,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            topic_prefix: candela_actors::coordinator::topic::DEFAULT_PREFIX.into(),
            partitions: 1,
            history_minutes: 120,
            group_prefix: "candela-dynamic".into(),
            call_timeout_ms: 10_000,
            producer_timeout_ms: 50_000,
            poll_ms: 200,
            max_instruments: 50,
            creations_per_minute: 10,
            reconcile_secs: 30,
            reconcile_history_minutes: 30,
            max_concurrent_fetches: 2,
        }
    }
}

impl DynamicConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| ConfigError::Value {
            field: format!("dynamic.{field}"),
            reason,
        };
        candela_actors::coordinator::topic::check_prefix(&self.topic_prefix)
            .map_err(|e| bad("topic_prefix", e.to_string()))?;
        if !(1..=1_000).contains(&self.partitions) {
            return Err(bad("partitions", "must be 1 to 1000".into()));
        }
        if !(1..=10_080).contains(&self.history_minutes) {
            return Err(bad("history_minutes", "must be 1 to 10080 (a week)".into()));
        }
        if self.group_prefix.is_empty()
            || !self
                .group_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(bad(
                "group_prefix",
                "must be letters, digits, `.`, `_` or `-`".into(),
            ));
        }
        for (field, n) in [
            ("call_timeout_ms", self.call_timeout_ms),
            ("producer_timeout_ms", self.producer_timeout_ms),
            ("poll_ms", self.poll_ms),
            ("reconcile_secs", self.reconcile_secs),
        ] {
            if n == 0 {
                return Err(bad(field, "must be at least 1".into()));
            }
        }
        if !(1..=10_000).contains(&self.max_instruments) {
            return Err(bad("max_instruments", "must be 1 to 10000".into()));
        }
        if !(1..=600).contains(&self.creations_per_minute) {
            return Err(bad("creations_per_minute", "must be 1 to 600".into()));
        }
        if !(1..=1_440).contains(&self.reconcile_history_minutes) {
            return Err(bad(
                "reconcile_history_minutes",
                "must be 1 to 1440 (a day)".into(),
            ));
        }
        if self.max_concurrent_fetches == 0 {
            return Err(bad("max_concurrent_fetches", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Listen address (loopback by default).
    pub listen: SocketAddr,
    /// The largest `limit` a request may ask for (1 to 10000; the API's
    /// document states this node's).
    pub max_limit: u32,
    /// Seconds after its end an interval counts as closed in the stream.
    pub stream_grace_secs: i64,
    /// Every this many seconds the node's stream hub asks the store for
    /// changes its feed may have missed (a backstop: changes are pushed).
    pub stream_resync_secs: u64,
    /// Most live streams this node serves at once (503 beyond).
    pub max_streams: usize,
    /// MiB of encoded bars this node keeps to answer `/api/v1/ohlcv` from
    /// (hours of 1-minute bars, dropped least recently used first).
    pub memo_mib: u64,
    /// MiB of compressed answers (gzip, brotli) this node keeps.
    pub compressed_mib: u64,
    /// Milliseconds a 1-minute answer may come from the memo alone (no
    /// round trip to the cache) after a read of its hours, while the
    /// cache's events say none moved; 0: always ask the cache.
    pub memo_trust_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("address"),
            max_limit: 10_000,
            stream_grace_secs: 2,
            stream_resync_secs: 10,
            max_streams: 4_096,
            memo_mib: 64,
            compressed_mib: 32,
            memo_trust_ms: 2_000,
        }
    }
}

/// The cluster layer: where this node listens for its peers, whom it dials,
/// and how it notices a failed peer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Where this node's cluster server listens (loopback by default; a
    /// multi-host cluster sets the host's own address).
    pub listen: SocketAddr,
    /// The environment variable holding the cluster's shared cookie; a node
    /// refuses to start its cluster layer without one.
    pub cookie_env: String,
    /// The other nodes, `name@host:port`; each is dialled, and re-dialled
    /// after a loss.
    pub peers: Vec<String>,
    /// How often each connected peer is sent a heartbeat, in milliseconds.
    pub heartbeat_ms: u64,
    /// Heartbeats missed in a row after which the peer's session is dropped.
    pub heartbeat_misses: u32,
    /// First delay before re-dialling a lost peer, in milliseconds.
    pub reconnect_min_ms: u64,
    /// Longest delay between dial attempts, in milliseconds.
    pub reconnect_max_ms: u64,
    /// Where the cluster status endpoint listens (`GET /cluster/status`);
    /// off when absent.
    pub status_listen: Option<SocketAddr>,
    /// How nodes talk: `tls` (mutual TLS, the default) or `plain` (TCP,
    /// only with a loopback `listen` and loopback peers: development).
    pub transport: Transport,
    /// The TLS files (`transport = "tls"`).
    pub tls: Option<crate::cluster::tls::TlsFiles>,
}

/// How nodes talk to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Mutual TLS with the cluster's CA.
    #[default]
    Tls,
    /// Plain TCP: loopback development only.
    Plain,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4370".parse().expect("address"),
            cookie_env: "CANDELA_CLUSTER_COOKIE".into(),
            peers: Vec::new(),
            heartbeat_ms: 1_000,
            heartbeat_misses: 3,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
            status_listen: None,
            transport: Transport::Tls,
            tls: None,
        }
    }
}

/// A peer from `cluster.peers`: `name@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's `node.name`.
    pub name: String,
    /// Where it listens, `host:port`.
    pub addr: String,
}

impl std::str::FromStr for PeerAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (name, addr) = text
            .split_once('@')
            .ok_or_else(|| format!("`{text}` is not `name@host:port`"))?;
        valid_node_name(name)?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` has no port (`name@host:port`)"))?;
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("`{text}`: `{port}` is not a port")),
        }
        Ok(Self {
            name: name.to_owned(),
            addr: addr.to_owned(),
        })
    }
}

impl ClusterConfig {
    /// The peers, parsed (validation has checked them).
    pub fn peers(&self) -> Vec<PeerAddr> {
        self.peers.iter().filter_map(|p| p.parse().ok()).collect()
    }

    /// Reads the cookie from the variable named by `cookie_env`.
    pub fn cookie(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        match env(&self.cookie_env) {
            Some(cookie) if cookie.trim().len() < MIN_COOKIE_BYTES && !cookie.trim().is_empty() => {
                Err(ConfigError::Value {
                    field: "cluster.cookie_env".into(),
                    reason: format!(
                        "the cookie in `{}` has {} bytes; it must have at least {MIN_COOKIE_BYTES} bytes (e.g. `openssl rand -hex 32`): a short cookie can be guessed offline from one recorded handshake",
                        self.cookie_env,
                        cookie.trim().len()
                    ),
                })
            }
            Some(cookie) if !cookie.trim().is_empty() => Ok(cookie),
            _ => Err(ConfigError::Value {
                field: "cluster.cookie_env".into(),
                reason: format!(
                    "the cluster needs a shared cookie: set the environment variable `{}`",
                    self.cookie_env
                ),
            }),
        }
    }

    /// Checks how nodes will talk, before the cluster layer starts (a node
    /// run on its own never needs it): plain TCP only on loopback, TLS with
    /// its files.
    pub fn check_transport(&self) -> Result<(), ConfigError> {
        let bad = |field: String, reason: String| ConfigError::Value { field, reason };
        if self.transport == Transport::Plain {
            let loopback_host = |host: &str| {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host == "localhost"
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            };
            let off_host = (!self.listen.ip().is_loopback())
                .then(|| self.listen.to_string())
                .or_else(|| {
                    self.peers().into_iter().find_map(|p| {
                        let host = p.addr.rsplit_once(':').map_or("", |(h, _)| h).to_owned();
                        (!loopback_host(&host)).then_some(p.addr)
                    })
                });
            if let Some(addr) = off_host {
                return Err(bad(
                    "cluster.transport".into(),
                    format!("plain TCP between nodes is for loopback development only, and `{addr}` is not loopback: set transport = \"tls\" with [cluster.tls] (ca, cert, key; `candela certs` makes development ones)"),
                ));
            }
        } else if self.tls.is_none() {
            return Err(bad(
                "cluster.tls".into(),
                "cluster.transport is \"tls\" (the default) but [cluster.tls] is missing: give ca, cert and key (`candela certs` makes development ones), or set transport = \"plain\" for loopback development".into(),
            ));
        }
        Ok(())
    }

    fn validate(&self, node: &str) -> Result<(), ConfigError> {
        let bad = |field: String, reason: String| ConfigError::Value { field, reason };
        let mut names = BTreeSet::new();
        for (i, text) in self.peers.iter().enumerate() {
            let field = format!("cluster.peers[{i}]");
            let peer: PeerAddr = text.parse().map_err(|e| bad(field.clone(), e))?;
            if peer.name == node {
                return Err(bad(
                    field,
                    format!("`{}` is this node (node.name)", peer.name),
                ));
            }
            if !names.insert(peer.name.clone()) {
                return Err(bad(field, format!("`{}` is listed twice", peer.name)));
            }
        }
        if self.cookie_env.is_empty() {
            return Err(bad(
                "cluster.cookie_env".into(),
                "must name a variable".into(),
            ));
        }
        for (field, n) in [
            ("cluster.heartbeat_ms", self.heartbeat_ms),
            ("cluster.heartbeat_misses", u64::from(self.heartbeat_misses)),
            ("cluster.reconnect_min_ms", self.reconnect_min_ms),
        ] {
            if n == 0 {
                return Err(bad(field.into(), "must be at least 1".into()));
            }
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(bad(
                "cluster.reconnect_max_ms".into(),
                "must not be below reconnect_min_ms".into(),
            ));
        }
        Ok(())
    }
}

/// A node name: letters, digits, `-` or `_`.
fn valid_node_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!("`{name}` must be letters, digits, `-` or `_`"));
    }
    Ok(())
}

impl Config {
    /// Reads `path`, applies the environment's overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, std::env::vars())
    }

    /// Parses `text`, applies the overrides among `env`, and validates.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        for (key, value) in env {
            let Some(path) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
            set_path(&mut table, &path, parse_value(&value)).map_err(|reason| {
                ConfigError::Value {
                    field: path.join("."),
                    reason,
                }
            })?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// The instruments to ingest, parsed.
    pub fn instruments(&self) -> Vec<Instrument> {
        self.ingest
            .instruments
            .iter()
            .filter_map(|i| i.parse().ok())
            .collect()
    }

    /// Whether this node has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.node.roles.contains(&role)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| ConfigError::Value {
            field: field.into(),
            reason,
        };
        valid_node_name(&self.node.name).map_err(|reason| bad("node.name", reason))?;
        let roles: BTreeSet<_> = self.node.roles.iter().collect();
        if roles.len() != self.node.roles.len() {
            return Err(bad("node.roles", "a role is listed twice".into()));
        }
        if self.has(Role::Api) && !self.has(Role::Datastore) {
            return Err(bad(
                "node.roles",
                "`api` needs `datastore` on the same node".into(),
            ));
        }
        if self.backends.data_dir.trim().is_empty() {
            return Err(bad("backends.data_dir", "must name a folder".into()));
        }
        for (i, text) in self.ingest.instruments.iter().enumerate() {
            text.parse::<Instrument>()
                .map_err(|e| bad(&format!("ingest.instruments[{i}]"), e.to_string()))?;
        }
        if !(0..=MAX_BACKFILL_MINUTES).contains(&self.ingest.backfill_minutes) {
            return Err(bad(
                "ingest.backfill_minutes",
                format!("must be 0 to {MAX_BACKFILL_MINUTES} (ten years)"),
            ));
        }
        if !(1..=64).contains(&self.ingest.backfill_concurrency) {
            return Err(bad("ingest.backfill_concurrency", "must be 1 to 64".into()));
        }
        if !(0..=MAX_REPAIR_MINUTES).contains(&self.ingest.repair_minutes) {
            return Err(bad(
                "ingest.repair_minutes",
                format!("must be 0 to {MAX_REPAIR_MINUTES} (a day)"),
            ));
        }
        if self.ingest.repair_minutes > 0 && self.ingest.repair_interval_secs == 0 {
            return Err(bad(
                "ingest.repair_interval_secs",
                "must be at least 1 when repair_minutes is set".into(),
            ));
        }
        if !(60..=MAX_CACHE_WINDOW_SECS).contains(&self.redis.window_secs) {
            return Err(bad(
                "redis.window_secs",
                format!("must be 60 to {MAX_CACHE_WINDOW_SECS} (a year)"),
            ));
        }
        for (field, n) in [
            ("ingest.batch_max", self.ingest.batch_max),
            ("consumer.batch_max", self.consumer.batch_max),
            ("datastore.pool_size", self.datastore.pool_size),
        ] {
            if n == 0 {
                return Err(bad(field, "must be at least 1".into()));
            }
        }
        self.restart.validate()?;

        if !(1..=MAX_CONSUMER_WORKERS).contains(&self.consumer.workers) {
            return Err(bad(
                "consumer.workers",
                format!("must be 1 to {MAX_CONSUMER_WORKERS}"),
            ));
        }
        if self.ingest.active_standby && self.backends.store != StoreKind::Postgres {
            return Err(bad(
                "ingest.active_standby",
                "needs backends.store = \"postgres\" (the producer lease lives there)".into(),
            ));
        }
        let c = &self.consumer;
        if !(50..=60_000).contains(&c.lease_renew_ms) {
            return Err(bad("consumer.lease_renew_ms", "must be 50 to 60000".into()));
        }
        if c.lease_ttl_ms < 3 * c.lease_renew_ms || c.lease_ttl_ms > 600_000 {
            return Err(bad(
                "consumer.lease_ttl_ms",
                format!(
                    "must be at least 3 × consumer.lease_renew_ms ({}) and at most 600000",
                    3 * c.lease_renew_ms
                ),
            ));
        }
        if c.lease_grace_ms > 600_000 {
            return Err(bad(
                "consumer.lease_grace_ms",
                "must be at most 600000".into(),
            ));
        }
        // Each fixed consumer holds a connection while it writes; one more
        // is left for everything else (readiness, datastore, repairs).
        if self.backends.store == StoreKind::Postgres
            && self.has(Role::Consumer)
            && (self.postgres.max_connections as usize) <= self.consumer.workers
        {
            return Err(bad(
                "postgres.max_connections",
                format!(
                    "must be more than consumer.workers ({}): each consumer holds a connection while it writes",
                    self.consumer.workers
                ),
            ));
        }
        if self.kafka.brokers.is_empty() {
            return Err(bad("kafka.brokers", "at least one broker is needed".into()));
        }
        self.kafka
            .validate()
            .map_err(|e| bad("kafka", e.to_string()))?;
        for (field, url, schemes) in [
            (
                "postgres.url",
                &self.postgres.url,
                &["postgres://", "postgresql://"][..],
            ),
            ("redis.url", &self.redis.url, &["redis://", "rediss://"][..]),
        ] {
            if !schemes.iter().any(|s| url.starts_with(s)) {
                return Err(bad(
                    field,
                    format!("must start with {}", schemes.join(" or ")),
                ));
            }
        }
        if self.source.kind == SourceKind::Cryptocompare {
            self.source
                .cryptocompare
                .validate()
                .map_err(|e| bad("source.cryptocompare", e.to_string()))?;
        }
        if self.source.kind == SourceKind::Imitation {
            let imitation = &self.source.imitation;
            imitation
                .validate()
                .map_err(|e| bad("source.imitation", e.to_string()))?;
            for (i, instrument) in self.instruments().iter().enumerate() {
                if !imitation.lists(instrument).unwrap_or(false) {
                    return Err(bad(
                        &format!("ingest.instruments[{i}]"),
                        format!("the imitation does not list `{instrument}` (it would refuse its history and live trades, as CryptoCompare refuses a pair it does not list): add it to source.imitation.pairs"),
                    ));
                }
            }
        }
        self.dynamic.validate()?;
        self.cluster.validate(&self.node.name)?;
        if !(1..=10_000).contains(&self.api.max_limit) {
            // 10000: the bound the API's document states statically.
            return Err(bad("api.max_limit", "must be 1 to 10000".into()));
        }
        if !(1..=100_000).contains(&self.api.max_streams) {
            return Err(bad("api.max_streams", "must be 1 to 100000".into()));
        }
        for (name, mib) in [
            ("api.memo_mib", self.api.memo_mib),
            ("api.compressed_mib", self.api.compressed_mib),
        ] {
            if !(1..=65_536).contains(&mib) {
                return Err(bad(name, "must be 1 to 65536 (MiB)".into()));
            }
        }
        if self.api.memo_trust_ms > 60_000 {
            return Err(bad("api.memo_trust_ms", "must be 0 to 60000".into()));
        }
        if !(1..=3_600).contains(&self.api.stream_resync_secs) {
            return Err(bad("api.stream_resync_secs", "must be 1 to 3600".into()));
        }
        if !(0..=300).contains(&self.api.stream_grace_secs) {
            return Err(bad("api.stream_grace_secs", "must be 0 to 300".into()));
        }
        Ok(())
    }
}

/// Reads an override: a TOML value if it parses as one, else a string.
fn parse_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty path".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [head, rest @ ..] => {
            let entry = table
                .entry(head.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{head}` is not a section")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn the_shipped_cluster_toml_parses() {
        let text = include_str!("../../cluster.toml");
        let config = Config::parse(text, env(&[])).unwrap();
        assert!(!config.instruments().is_empty());
        assert!(config.has(Role::Api));
        assert!(config.cluster.listen.ip().is_loopback());
        assert_eq!(config.cluster.heartbeat_ms, 1_000);
        assert_eq!(config.cluster.heartbeat_misses, 3);
        assert_eq!(
            config.cluster.peers()[0],
            PeerAddr {
                name: "node-b".into(),
                addr: "127.0.0.1:4371".into()
            }
        );
    }

    #[test]
    fn the_imitation_lists_pairs_and_ingest_uses_listed_ones_only() {
        let config = Config::parse("", env(&[])).unwrap();
        assert_eq!(
            config.source.imitation.pairs.len(),
            candela_actors::imitation::DEFAULT_PAIRS.len()
        );
        for i in config.instruments() {
            assert!(config.source.imitation.lists(&i).unwrap(), "{i}");
        }
        let text = "[source.imitation]\npairs = [\"Coinbase:BTC-USD\", \"Kraken:SOL-EUR\"]\nrest_delay_ms = 250\n[ingest]\ninstruments = [\"Kraken:SOL-EUR\"]\n";
        let config = Config::parse(text, env(&[])).unwrap();
        assert_eq!(
            config.source.imitation.pairs,
            ["Coinbase:BTC-USD", "Kraken:SOL-EUR"]
        );
        assert_eq!(config.source.imitation.rest_delay_ms, 250);
        let config = Config::parse(
            "",
            env(&[
                ("CANDELA__SOURCE__IMITATION__PAIRS", "[\"Gemini:BTC-USD\"]"),
                ("CANDELA__INGEST__INSTRUMENTS", "[\"Gemini:BTC-USD\"]"),
            ]),
        )
        .unwrap();
        assert_eq!(config.source.imitation.pairs, ["Gemini:BTC-USD"]);

        // An instrument the imitation does not list is refused, naming it.
        let err = Config::parse(
            "",
            env(&[("CANDELA__INGEST__INSTRUMENTS", "[\"Coinbase:FOO-BAR\"]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ingest.instruments[0]") && err.contains("source.imitation.pairs"),
            "{err}"
        );
        // ... but not when the source is CryptoCompare itself.
        Config::parse(
            "",
            env(&[
                ("CANDELA__INGEST__INSTRUMENTS", "[\"Coinbase:FOO-BAR\"]"),
                ("CANDELA__SOURCE__KIND", "cryptocompare"),
            ]),
        )
        .unwrap();
        // A malformed pair, and an unknown key, are refused.
        let err = Config::parse("[source.imitation]\npairs = [\"BTCUSD\"]\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.imitation") && err.contains("pairs[0]"),
            "{err}"
        );
        let err = Config::parse("[source.imitation]\nmarkets = [\"Coinbase\"]\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("markets"), "{err}");
    }

    #[test]
    fn backends_default_to_embedded_and_switch_one_line_at_a_time() {
        let config = Config::parse("", env(&[])).unwrap();
        assert_eq!(config.backends.bus, BusKind::Memory);
        assert_eq!(config.backends.store, StoreKind::Sqlite);
        assert_eq!(config.backends.cache, CacheKind::Memory);
        let config = Config::parse("[backends]\nstore = \"postgres\"\n", env(&[])).unwrap();
        assert_eq!(config.backends.store, StoreKind::Postgres);
        assert_eq!(config.backends.bus, BusKind::Memory);
        let config = Config::parse("", env(&[("CANDELA__BACKENDS__BUS", "kafka")])).unwrap();
        assert_eq!(config.backends.bus, BusKind::Kafka);
        let err = Config::parse("", env(&[("CANDELA__BACKENDS__CACHE", "memcached")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("memcached"), "{err}");
        let err = Config::parse("[backends]\ndata_dir = \" \"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("backends.data_dir"), "{err}");
    }

    #[test]
    fn embedded_backends_are_refused_on_a_node_with_peers() {
        let shipped = Config::parse(include_str!("../../cluster.toml"), env(&[])).unwrap();
        shipped
            .backends
            .check_shared(&shipped.cluster.peers)
            .unwrap();
        let config = Config::parse(
            include_str!("../../cluster.toml"),
            env(&[("CANDELA__BACKENDS__STORE", "sqlite")]),
        )
        .unwrap();
        let err = config
            .backends
            .check_shared(&config.cluster.peers)
            .unwrap_err()
            .to_string();
        assert!(err.contains("backends.store"), "{err}");
        config.backends.check_shared(&[]).unwrap();
    }

    #[test]
    fn active_standby_producers_need_postgres() {
        let err = Config::parse(
            "",
            env(&[
                ("CANDELA__INGEST__ACTIVE_STANDBY", "true"),
                ("CANDELA__BACKENDS__STORE", "sqlite"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ingest.active_standby"), "{err}");
        let config = Config::parse(
            "",
            env(&[
                ("CANDELA__INGEST__ACTIVE_STANDBY", "true"),
                ("CANDELA__BACKENDS__STORE", "postgres"),
            ]),
        )
        .unwrap();
        assert!(config.ingest.active_standby);
    }

    #[test]
    fn consumer_workers_are_bounded_and_need_connections() {
        let config = Config::parse("", env(&[])).unwrap();
        assert_eq!(config.consumer.workers, 1);
        for (overrides, field) in [
            (
                vec![("CANDELA__CONSUMER__WORKERS", "0")],
                "consumer.workers",
            ),
            (
                vec![("CANDELA__CONSUMER__WORKERS", "33")],
                "consumer.workers",
            ),
            (
                vec![("CANDELA__CONSUMER__LEASE_RENEW_MS", "10")],
                "consumer.lease_renew_ms",
            ),
            (
                vec![
                    ("CANDELA__CONSUMER__LEASE_RENEW_MS", "1000"),
                    ("CANDELA__CONSUMER__LEASE_TTL_MS", "2000"),
                ],
                "consumer.lease_ttl_ms",
            ),
            (
                vec![
                    ("CANDELA__BACKENDS__STORE", "postgres"),
                    ("CANDELA__CONSUMER__WORKERS", "4"),
                    ("CANDELA__POSTGRES__MAX_CONNECTIONS", "4"),
                ],
                "postgres.max_connections",
            ),
        ] {
            let err = Config::parse("", env(&overrides)).unwrap_err().to_string();
            assert!(err.contains(field), "{overrides:?}: {err}");
        }
        let config = Config::parse(
            "",
            env(&[
                ("CANDELA__BACKENDS__STORE", "postgres"),
                ("CANDELA__CONSUMER__WORKERS", "4"),
                ("CANDELA__POSTGRES__MAX_CONNECTIONS", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(config.consumer.workers, 4);
    }

    #[test]
    fn cluster_defaults_are_loopback_and_overridable() {
        let config = Config::parse("", env(&[])).unwrap();
        assert!(config.cluster.listen.ip().is_loopback());
        assert!(config.cluster.peers.is_empty());
        assert_eq!(config.cluster.status_listen, None);
        let config = Config::parse(
            "",
            env(&[
                (
                    "CANDELA__CLUSTER__PEERS",
                    "[\"b@127.0.0.1:7001\", \"c@localhost:7002\"]",
                ),
                ("CANDELA__CLUSTER__LISTEN", "127.0.0.1:7000"),
                ("CANDELA__CLUSTER__HEARTBEAT_MS", "200"),
                ("CANDELA__CLUSTER__STATUS_LISTEN", "127.0.0.1:7100"),
            ]),
        )
        .unwrap();
        assert_eq!(config.cluster.listen.port(), 7000);
        assert_eq!(config.cluster.heartbeat_ms, 200);
        assert_eq!(config.cluster.status_listen.unwrap().port(), 7100);
        let peers = config.cluster.peers();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[1].name, "c");
        assert_eq!(peers[1].addr, "localhost:7002");
    }

    #[test]
    fn bad_cluster_settings_name_the_field() {
        for (text, overrides, field) in [
            ("[cluster]\nheartbeat = 5\n", vec![], "heartbeat"),
            ("", vec![("CANDELA__CLUSTER__PEER", "[]")], "peer"),
            (
                "[cluster]\npeers = [\"b:7001\"]\n",
                vec![],
                "cluster.peers[0]",
            ),
            ("[cluster]\npeers = [\"b@h\"]\n", vec![], "cluster.peers[0]"),
            (
                "[cluster]\npeers = [\"b@h:0\"]\n",
                vec![],
                "cluster.peers[0]",
            ),
            (
                "[cluster]\npeers = [\"b@h:1\", \"b@h:2\"]\n",
                vec![],
                "cluster.peers[1]",
            ),
            (
                "[cluster]\npeers = [\"node-a@h:1\"]\n",
                vec![],
                "cluster.peers[0]",
            ),
            (
                "[cluster]\nheartbeat_misses = 0\n",
                vec![],
                "cluster.heartbeat_misses",
            ),
            (
                "[cluster]\nreconnect_min_ms = 500\nreconnect_max_ms = 100\n",
                vec![],
                "cluster.reconnect_max_ms",
            ),
        ] {
            let err = Config::parse(text, env(&overrides))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{text:?}: {err}");
        }
    }

    #[test]
    fn dynamic_settings_default_and_refuse_bad_values() {
        let config = Config::parse("", env(&[])).unwrap();
        assert_eq!(config.dynamic.topic_prefix, "tick-data.dyn");
        assert!(config.has(Role::Coordinator));
        let shipped = Config::parse(include_str!("../../cluster.toml"), env(&[])).unwrap();
        assert!(shipped.has(Role::Coordinator));
        assert_eq!(shipped.dynamic.history_minutes, 120);
        for (key, value, field) in [
            (
                "CANDELA__DYNAMIC__TOPIC_PREFIX",
                "a b",
                "dynamic.topic_prefix",
            ),
            (
                "CANDELA__DYNAMIC__TOPIC_PREFIX",
                "x.",
                "dynamic.topic_prefix",
            ),
            ("CANDELA__DYNAMIC__PARTITIONS", "0", "dynamic.partitions"),
            (
                "CANDELA__DYNAMIC__HISTORY_MINUTES",
                "0",
                "dynamic.history_minutes",
            ),
            (
                "CANDELA__DYNAMIC__GROUP_PREFIX",
                "g/h",
                "dynamic.group_prefix",
            ),
            ("CANDELA__DYNAMIC__POLL_MS", "0", "dynamic.poll_ms"),
        ] {
            let err = Config::parse("", env(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{key}={value}: {err}");
        }
        let config =
            Config::parse("", env(&[("CANDELA__NODE__ROLES", "[\"coordinator\"]")])).unwrap();
        assert_eq!(config.node.roles, vec![Role::Coordinator]);
    }

    #[test]
    fn a_cluster_without_a_cookie_is_refused() {
        let config = Config::parse("", env(&[])).unwrap();
        let err = config.cluster.cookie(|_| None).unwrap_err().to_string();
        assert!(err.contains("CANDELA_CLUSTER_COOKIE"), "{err}");
        assert!(config.cluster.cookie(|_| Some("  ".into())).is_err());
        let long = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            config
                .cluster
                .cookie(|v| (v == "CANDELA_CLUSTER_COOKIE").then(|| long.into()))
                .unwrap(),
            long
        );
        // Shorter than 32 bytes: refused, with the reason.
        let err = config
            .cluster
            .cookie(|_| Some("s3cret".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
        assert!(config.cluster.cookie(|_| Some(long[..31].into())).is_err());
    }

    #[test]
    fn environment_overrides_any_field() {
        let config = Config::parse(
            "[postgres]\nurl = \"postgres://a@h/db\"\n",
            env(&[
                ("CANDELA__POSTGRES__URL", "postgres://b@h/other"),
                ("CANDELA__API__MAX_STREAMS", "250"),
                ("CANDELA__NODE__ROLES", "[\"producer\"]"),
                ("CANDELA__KAFKA__BROKERS", "[\"127.0.0.1:1234\"]"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.postgres.url, "postgres://b@h/other");
        assert_eq!(config.api.max_streams, 250);
        assert_eq!(config.node.roles, vec![Role::Producer]);
        assert_eq!(config.kafka.brokers, vec!["127.0.0.1:1234".to_owned()]);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_field() {
        let err = Config::parse("[postgres]\nurll = \"x\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
        let err = Config::parse("", env(&[("CANDELA__REDIS__NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
        let err = Config::parse("[ingest]\ninstruments = [\"BTCUSD\"]\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest.instruments[0]"), "{err}");
        let err = Config::parse("[node]\nroles = [\"api\"]\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("node.roles"), "{err}");
        let err = Config::parse("[node]\nroles = [\"wizard\"]\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wizard"), "{err}");
        let err = Config::parse("[api]\nlisten = \"nowhere\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid"), "{err}");
        let err = Config::parse("[postgres]\nurl = \"mysql://x\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgres.url"), "{err}");
    }

    #[test]
    fn plain_tcp_only_on_loopback_and_tls_with_its_files() {
        let with = |vars: &[(&str, &str)]| {
            Config::parse(
                "",
                vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .unwrap()
        };
        let plain = |listen: &str, peers: &str| {
            with(&[
                ("CANDELA__CLUSTER__TRANSPORT", "plain"),
                ("CANDELA__CLUSTER__LISTEN", listen),
                ("CANDELA__CLUSTER__PEERS", peers),
            ])
            .cluster
            .check_transport()
        };
        assert!(plain(
            "127.0.0.1:4370",
            r#"["b@127.0.0.1:4371", "c@localhost:4372"]"#
        )
        .is_ok());
        let err = plain("10.0.0.1:4370", "[]").unwrap_err().to_string();
        assert!(err.contains("loopback development only"), "{err}");
        let err = plain("127.0.0.1:4370", r#"["b@10.0.0.2:4371"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.0.0.2:4371"), "{err}");
        // TLS is the default, and needs its files.
        let err = with(&[]).cluster.check_transport().unwrap_err().to_string();
        assert!(err.contains("[cluster.tls] is missing"), "{err}");
        let tls = with(&[
            ("CANDELA__CLUSTER__TLS__CA", "/c/ca.pem"),
            ("CANDELA__CLUSTER__TLS__CERT", "/c/a.pem"),
            ("CANDELA__CLUSTER__TLS__KEY", "/c/a.key"),
        ]);
        assert!(tls.cluster.check_transport().is_ok());
        assert_eq!(tls.cluster.tls.unwrap().server_name, "candela-cluster");
    }
}
