//! What the multi-process data-plane tests share: one database, one broker
//! topic and group, the CryptoCompare imitation in the test process (so the
//! test can recompute every trade), and the configuration every node of such
//! a test gets.

#![allow(dead_code)]

use candela_actors::domain::Instrument;
use candela_actors::imitation::{Imitation, ImitationConfig, ImitationHandle, TradeModel};
use candela_testkit::cluster::{self, NodeProcess};
use candela_testkit::{broker, oracle, unique, TestDb};
use sqlx::Row;

/// The shared services of one test.
pub struct DataPlane {
    /// A fresh database.
    pub db: TestDb,
    /// A pool on it.
    pub pool: sqlx::PgPool,
    /// The imitation, until [`Self::stop_source`].
    im: Option<ImitationHandle>,
    /// The broker.
    pub bootstrap: String,
    /// The tick topic.
    pub topic: String,
    /// The fixed consumers' group.
    pub group: String,
    /// The Redis key prefix.
    pub redis_prefix: String,
}

impl DataPlane {
    /// Fresh services, the imitation streaming `trades_per_sec` per instrument.
    pub async fn start(trades_per_sec: f64) -> Self {
        Self::start_with(ImitationConfig {
            trades_per_sec,
            heartbeat_interval_ms: 1_000,
            ..ImitationConfig::default()
        })
        .await
    }

    /// Fresh services, the imitation configured by `imitation`.
    pub async fn start_with(imitation: ImitationConfig) -> Self {
        let db = TestDb::new().await;
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let im = Imitation::serve(imitation, listener).await.unwrap();
        Self {
            db,
            pool,
            im: Some(im),
            bootstrap: broker::shared_bootstrap().to_owned(),
            topic: unique("tick-data"),
            group: unique("group"),
            redis_prefix: unique("candela"),
        }
    }

    /// The configuration of a node of this test: `roles`, `workers` fixed
    /// consumers, the topic with `partitions` partitions, `instruments`
    /// streamed live (ticks only: no backfill, no repair), quick failure
    /// detection.
    pub fn configure(
        &self,
        node: &mut NodeProcess,
        roles: &str,
        workers: usize,
        partitions: i32,
        instruments: &[&str],
    ) {
        let instruments: Vec<String> = instruments.iter().map(|s| (*s).to_owned()).collect();
        node.set(
            "CANDELA_CLUSTER_COOKIE",
            "candela-data-plane-test-cookie-0123456789",
        )
        .set("CANDELA_ADMIN_TOKEN", TOKEN)
        .set("CANDELA__NODE__ROLES", roles)
        .set("CANDELA__CONSUMER__WORKERS", workers.to_string())
        .set(
            "CANDELA__KAFKA__BROKERS",
            cluster::toml_list(std::slice::from_ref(&self.bootstrap)),
        )
        .set("CANDELA__KAFKA__TICK_TOPIC", &self.topic)
        .set(
            "CANDELA__KAFKA__TICK_TOPIC_PARTITIONS",
            partitions.to_string(),
        )
        .set("CANDELA__POSTGRES__URL", &self.db.url)
        .set("CANDELA__POSTGRES__MAX_CONNECTIONS", "4")
        .set("CANDELA__REDIS__URL", candela_testkit::redis_url())
        .set("CANDELA__REDIS__KEY_PREFIX", &self.redis_prefix)
        .set("CANDELA__SOURCE__KIND", "cryptocompare")
        .set(
            "CANDELA__SOURCE__CRYPTOCOMPARE__REST_URL",
            self.im().rest_url(),
        )
        .set("CANDELA__SOURCE__CRYPTOCOMPARE__WS_URL", self.im().ws_url())
        .set("CANDELA__SOURCE__CRYPTOCOMPARE__RECONNECT_MIN_MS", "100")
        .set(
            "CANDELA__INGEST__INSTRUMENTS",
            cluster::toml_list(&instruments),
        )
        .set("CANDELA__INGEST__BACKFILL_MINUTES", "0")
        .set("CANDELA__INGEST__REPAIR_MINUTES", "0")
        .set("CANDELA__CONSUMER__GROUP", &self.group)
        .set("CANDELA__CONSUMER__BATCH_MAX", "200")
        .set("CANDELA__DATASTORE__POOL_SIZE", "2")
        .set("CANDELA__CLUSTER__HEARTBEAT_MS", "250")
        .set("CANDELA__CLUSTER__HEARTBEAT_MISSES", "3")
        .set("CANDELA__CLUSTER__RECONNECT_MIN_MS", "100")
        .set("CANDELA__CLUSTER__RECONNECT_MAX_MS", "1000");
    }

    /// The imitation (running).
    pub fn im(&self) -> &ImitationHandle {
        self.im.as_ref().expect("the imitation runs")
    }

    /// Stops the imitation (the flow of trades ends); answers its trade
    /// model, from which the reference recomputes every trade.
    pub async fn stop_source(&mut self) -> TradeModel {
        let im = self.im.take().expect("the imitation runs");
        let model = im.model();
        im.shutdown().await;
        model
    }

    /// How many ticks are stored.
    pub async fn stored(&self) -> i64 {
        sqlx::query("SELECT count(*) FROM ticks")
            .fetch_one(&self.pool)
            .await
            .map(|r| r.get::<i64, _>(0))
            .unwrap_or(0)
    }

    /// Every published tick is stored, and the API on `api` serves, for each
    /// instrument and interval, the bars the independent reference computes
    /// from the imitation's trades (`model`: the imitation's, taken before
    /// it was shut down).
    pub async fn assert_served_bars_equal_reference(
        &self,
        api: &str,
        model: &TradeModel,
        instruments: &[&str],
    ) {
        cluster::assert_served_bars_equal_reference(api, &self.pool, instruments, |i, from, to| {
            reference_trades(model, i, from, to)
        })
        .await;
    }
}

impl DataPlane {
    /// The ports of this test's services on loopback (broker, database,
    /// Redis, the imitation), each once: what a node in a network namespace
    /// must reach.
    pub fn service_ports(&self) -> Vec<u16> {
        let ports: std::collections::BTreeSet<u16> = [
            port_of(&self.bootstrap),
            port_of(&self.db.url),
            port_of(&candela_testkit::redis_url()),
            port_of(&self.im().rest_url()),
            port_of(&self.im().ws_url()),
        ]
        .into_iter()
        .collect();
        ports.into_iter().collect()
    }

    /// Nodes named `names`, node `i` in namespace `i` of `net`, reaching
    /// this test's services, wired as a full mesh (not started).
    pub async fn nodes_in(
        &self,
        net: &mut candela_testkit::netns::Net,
        names: &[&str],
    ) -> Vec<NodeProcess> {
        let services = self.service_ports();
        let mut nodes: Vec<NodeProcess> = names.iter().map(|n| node(n)).collect();
        for (i, n) in nodes.iter_mut().enumerate() {
            n.in_namespace(net, i, &services)
                .await
                .expect("the node's namespace");
        }
        cluster::mesh(&mut nodes);
        nodes
    }
}

/// The port of a `scheme://[user@]host:port/…` URL (or `host:port`).
pub fn port_of(url: &str) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split(['/', '?']).next().unwrap();
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    host_port.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// `GET /admin/cluster` on `node` with the token, when it answers 200.
pub async fn admin_view(node: &NodeProcess) -> Option<serde_json::Value> {
    let r = cluster::http(10)
        .get(format!("{}/admin/cluster", node.api()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?;
    (r.status() == 200).then_some(r.json().await.ok()?)
}

/// The admin token of every node of these tests.
pub const TOKEN: &str = "candela-data-plane-test-admin-token";

/// The nodes of a test: the `candela` binary, the shipped `cluster.toml`.
pub fn node(name: &str) -> NodeProcess {
    NodeProcess::new(
        std::path::Path::new(env!("CARGO_BIN_EXE_candela")),
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml")),
        name,
    )
}

/// The imitation's trades of `instrument` from `from_ns` to `to_ns`, as the
/// reference takes them.
pub fn reference_trades(
    model: &TradeModel,
    instrument: &str,
    from_ns: i64,
    to_ns: i64,
) -> Vec<oracle::Trade> {
    let i: Instrument = instrument.parse().unwrap();
    model
        .trades_between(&i, from_ns, to_ns)
        .iter()
        .map(|t| {
            let tick = t.to_tick(&i);
            oracle::Trade {
                instrument: i.to_string(),
                id: tick.trade_id,
                time_ns: tick.trade_time_ns,
                price: tick.price,
                quantity: tick.quantity,
            }
        })
        .collect()
}

/// The clock, Unix seconds.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
