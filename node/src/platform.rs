//! The data plane of a node, by role: the source (CryptoCompare or its
//! imitation), the Producer, the Consumer for fixed topics, the Datastore pool
//! and the HTTP API, each under a supervisor.
//!
//! ```text
//!  candela.platform/<node> (supervisor)
//!     ├── producer/<node>         role producer
//!     └── consumer-fixed/<node>   role consumer
//!  datastore/<node>-supervisor
//!     └── datastore/<node>/0 … N-1  role datastore
//!  HTTP API                       role api
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorRef};
use sqlx::{Connection, Executor};

use candela_actors::consumer::fixed::{FixedConsumer, FixedConsumerArgs};
use candela_actors::consumer::ConsumerMetrics;
use candela_actors::cryptocompare::{ApiKey, CryptoCompareConfig, HistoryClient, LiveFeed};
use candela_actors::datastore::{start_pool, DatastoreArgs};
use candela_actors::imitation::{Imitation, ImitationHandle};
use candela_actors::kafka::schema::decode_for_pipeline;
use candela_actors::kafka::{KafkaPublisher, KafkaStreams};
use candela_actors::producer::{fetch_history, Producer, ProducerArgs, ProducerMsg, Target};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::BarStore;
use candela_actors::supervisor::{
    ChildSpec, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use candela_api::server::{ApiConfig, ApiState};

use crate::config::{Config, Role, SourceKind};

type NodeProducer = Producer<HistoryClient, LiveFeed, KafkaPublisher>;
type NodeConsumer = FixedConsumer<KafkaStreams, KafkaPublisher, PgStore, RedisCache>;

/// A running data plane.
pub struct Platform {
    /// The supervisor of the producer and the consumer.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// The supervisor of the datastore pool, if this node runs one.
    pub datastore: Option<ActorRef<SupervisorMsg>>,
    /// Where the HTTP API listens, if this node serves it.
    pub api_addr: Option<std::net::SocketAddr>,
    /// The in-process imitation, if this node uses it.
    pub imitation: Option<ImitationHandle>,
    api_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_api: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Platform {
    /// Stops the API and every actor.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.api_task.take() {
            let _ = task.await;
        }
        if let Some(ds) = self.datastore.take() {
            ds.stop(None);
        }
        self.supervisor.stop(None);
        if let Some(im) = self.imitation.take() {
            im.shutdown().await;
        }
    }
}

/// The restart policy of the data plane: patient with dependencies that are
/// down (back-off up to 30 s), escalating only on a fast failure loop.
fn policy() -> RestartPolicy {
    RestartPolicy {
        max_restarts: 10,
        window: Duration::from_secs(60),
        backoff_min: Duration::from_millis(500),
        backoff_max: Duration::from_secs(30),
    }
}

/// Creates the database named in `url` when it does not exist yet.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    if sqlx::PgConnection::connect(url).await.is_ok() {
        return Ok(());
    }
    let (server, name) = url
        .rsplit_once('/')
        .context("postgres.url has no database name")?;
    let name = name.split('?').next().unwrap_or(name);
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "postgres.url: database name `{name}` must be letters, digits or `_`"
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("postgres.url: cannot reach the server at {server}"))?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .with_context(|| format!("creating database {name}"))?;
    tracing::info!(database = name, "created the database");
    Ok(())
}

/// The CryptoCompare client configuration, starting the imitation if asked.
async fn source(config: &Config) -> anyhow::Result<(CryptoCompareConfig, Option<ImitationHandle>)> {
    let mut cc = config.source.cryptocompare.clone();
    match config.source.kind {
        SourceKind::Imitation => {
            let listener = tokio::net::TcpListener::bind(config.source.imitation_listen)
                .await
                .with_context(|| {
                    format!(
                        "source.imitation_listen: cannot listen on {}",
                        config.source.imitation_listen
                    )
                })?;
            let im = Imitation::serve(config.source.imitation.clone(), listener).await?;
            cc.rest_url = im.rest_url();
            cc.ws_url = im.ws_url();
            cc.api_key = config.source.imitation.api_key.clone();
            tracing::info!(rest = %cc.rest_url, ws = %cc.ws_url, "using the CryptoCompare imitation");
            Ok((cc, Some(im)))
        }
        SourceKind::Cryptocompare => {
            if let Ok(key) = std::env::var(&config.source.api_key_env) {
                cc.api_key = Some(ApiKey::new(key));
            }
            Ok((cc, None))
        }
    }
}

/// Starts this node's data plane; `cluster` adds the cluster layer's status
/// to the admin endpoint.
pub async fn start(config: &Config, cluster: bool) -> anyhow::Result<Platform> {
    let node = &config.node.name;
    let kafka = config.kafka.clone();
    let mut children = Vec::new();
    let mut imitation = None;

    let needs_store = config.has(Role::Consumer) || config.has(Role::Datastore);
    let (store, cache) = if needs_store {
        ensure_database(&config.postgres.url).await?;
        let store = Arc::new(
            PgStore::connect(&config.postgres.url, config.postgres.max_connections)
                .await
                .context("postgres.url: connecting and migrating")?,
        );
        let cache = Arc::new(
            RedisCache::connect(
                &config.redis.url,
                &config.redis.key_prefix,
                config.redis.window_secs,
            )
            .await
            .context("redis.url: connecting")?,
        );
        (Some(store), Some(cache))
    } else {
        (None, None)
    };

    if config.has(Role::Producer) {
        let (cc, im) = source(config).await?;
        imitation = im;
        let name = format!("producer/{node}");
        let k = kafka.clone();
        let args = ProducerArgs {
            instance: name.clone(),
            history: Arc::new(HistoryClient::new(cc.clone())?),
            live: Arc::new(LiveFeed { config: cc }),
            make_bus: Arc::new(move || KafkaPublisher::new(&k).map_err(|e| e.to_string())),
            fixed_topic: kafka.tick_topic.clone(),
            fixed_partitions: kafka.tick_topic_partitions,
            live_instruments: config.instruments(),
            batch_max: config.ingest.batch_max,
            restarted: false,
        };
        children.push(ChildSpec::of::<NodeProducer>(&name, args, |a, r| {
            a.restarted = r > 0
        }));
    }

    if config.has(Role::Consumer) {
        let name = format!("consumer-fixed/{node}");
        let k = kafka.clone();
        let args = FixedConsumerArgs {
            instance: name.clone(),
            streams: Arc::new(KafkaStreams::new(kafka.clone())),
            group: config.consumer.group.clone(),
            topics: vec![kafka.tick_topic.clone()],
            dead_letters: Arc::new(KafkaPublisher::new(&k)?),
            store: Arc::clone(store.as_ref().expect("store")),
            cache: Arc::clone(cache.as_ref().expect("cache")),
            decode: decode_for_pipeline,
            batch_max: config.consumer.batch_max,
            batch_wait: Duration::from_millis(config.consumer.batch_wait_ms),
            metrics: Arc::new(ConsumerMetrics::default()),
            restarted: false,
        };
        children.push(ChildSpec::of::<NodeConsumer>(&name, args, |a, r| {
            a.restarted = r > 0
        }));
    }

    let (supervisor, _) = Actor::spawn(
        Some(format!("candela.platform/{node}")),
        Supervisor,
        SupervisorArgs {
            children,
            policy: policy(),
        },
    )
    .await
    .context("starting the platform supervisor")?;

    let mut datastore = None;
    let mut api_addr = None;
    let mut api_task = None;
    let mut stop_api = None;
    if config.has(Role::Datastore) {
        let store = store.clone().expect("store");
        let prefix = format!("datastore/{node}");
        let (ds_sup, pool) = start_pool(
            &prefix,
            config.datastore.pool_size,
            DatastoreArgs {
                instance: String::new(),
                store: Arc::clone(&store),
                cache: cache.clone().expect("cache"),
                fetcher: None,
                cache_window_secs: config.redis.window_secs,
                fetch_timeout: Duration::from_secs(config.datastore.fetch_timeout_secs),
                restarted: false,
            },
            RestartPolicy {
                // A request for an unknown instrument ends in Error by the
                // seed's machine; the pool restarts that member quickly.
                max_restarts: 600,
                backoff_min: Duration::from_millis(5),
                backoff_max: Duration::from_secs(1),
                ..policy()
            },
            Duration::from_millis(config.datastore.request_timeout_ms),
        )
        .await
        .context("starting the datastore pool")?;
        datastore = Some(ds_sup);

        if config.has(Role::Api) {
            let s1 = Arc::clone(&store);
            let s2 = Arc::clone(&store);
            let state = Arc::new(ApiState {
                datastore: Arc::new(pool),
                instruments: Arc::new(move || {
                    let s = Arc::clone(&s1);
                    Box::pin(async move { s.instruments().await.map_err(|e| e.to_string()) })
                }),
                ready: Arc::new(move || {
                    let s = Arc::clone(&s2);
                    Box::pin(async move {
                        sqlx::query("SELECT 1")
                            .execute(s.pool())
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                }),
                config: ApiConfig {
                    max_limit: config.api.max_limit,
                    stream_poll_ms: config.api.stream_poll_ms,
                    stream_grace_secs: config.api.stream_grace_secs,
                    title: format!("candela ({node})"),
                },
                admin: candela_api::server::AdminConfig {
                    token: std::env::var(&config.admin.token_env)
                        .ok()
                        .filter(|t| !t.is_empty()),
                    supervisors: vec![
                        format!("candela.platform/{node}"),
                        format!("{prefix}-supervisor"),
                    ],
                    cluster_status: cluster.then(|| {
                        crate::cluster::inspect::admin_view(crate::cluster::inspect::ViewSettings {
                            node: node.clone(),
                            kafka: kafka.clone(),
                            timeout: Duration::from_secs(2),
                        })
                    }),
                },
            });
            let listener = std::net::TcpListener::bind(config.api.listen)
                .with_context(|| format!("api.listen: cannot listen on {}", config.api.listen))?;
            let addr = listener.local_addr()?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            api_task = Some(tokio::spawn(candela_api::serve(listener, state, async {
                let _ = rx.await;
            })));
            stop_api = Some(tx);
            api_addr = Some(addr);
        }
    }

    if config.has(Role::Producer) && config.ingest.backfill_minutes > 0 {
        tokio::spawn(backfill(
            format!("producer/{node}"),
            config.instruments(),
            config.ingest.backfill_minutes,
        ));
    }
    if config.has(Role::Producer) && config.ingest.repair_minutes > 0 {
        tokio::spawn(repair(
            format!("producer/{node}"),
            config.instruments(),
            config.ingest.repair_minutes,
            Duration::from_secs(config.ingest.repair_interval_secs),
        ));
    }

    Ok(Platform {
        supervisor,
        datastore,
        api_addr,
        imitation,
        api_task,
        stop_api,
    })
}

/// Every `every`, fetches the last `minutes` closed minutes of each instrument
/// again: history repairs the minutes the live stream missed (reconciliation
/// rule in `store::postgres`), and changes nothing where live was complete.
async fn repair(
    producer: String,
    instruments: Vec<candela_actors::domain::Instrument>,
    minutes: i64,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(cell) = ractor::registry::where_is(producer.clone()) else {
            continue; // being restarted
        };
        let actor: ActorRef<ProducerMsg> = cell.into();
        let to = last_closed_minute();
        for instrument in &instruments {
            if let Err(err) = fetch_history(
                &actor,
                instrument.clone(),
                to - (minutes - 1) * 60,
                to,
                Target::Fixed,
                Duration::from_secs(60),
            )
            .await
            {
                tracing::warn!(%instrument, error = %err, "history repair failed; next round retries");
            }
        }
    }
}

fn last_closed_minute() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    now - now.rem_euclid(60) - 60
}

/// Fetches the closed minutes of the last `minutes` for each instrument, once
/// the producer is up.
async fn backfill(
    producer: String,
    instruments: Vec<candela_actors::domain::Instrument>,
    minutes: i64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let actor: ActorRef<ProducerMsg> = loop {
        if let Some(cell) = ractor::registry::where_is(producer.clone()) {
            break cell.into();
        }
        if tokio::time::Instant::now() > deadline {
            tracing::warn!(%producer, "backfill skipped: the producer did not start");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let to = last_closed_minute();
    for instrument in instruments {
        match fetch_history(
            &actor,
            instrument.clone(),
            to - (minutes - 1) * 60,
            to,
            Target::Fixed,
            Duration::from_secs(300),
        )
        .await
        {
            Ok(report) => tracing::info!(%instrument, bars = report.bars, "history backfilled"),
            Err(err) => tracing::warn!(%instrument, error = %err, "history backfill failed"),
        }
    }
}
