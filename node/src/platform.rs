//! The data plane of a node, by role: the source (CryptoCompare or its
//! imitation), the Producer, the Consumer for fixed topics, the Coordinator,
//! the node's agent, the Datastore pool and the HTTP API, each under a
//! supervisor.
//!
//! ```text
//!  candela.dynamic/<node> (supervisor, children added at run time)
//!     └── consumer-dynamic/<node>/<n>   started by the agent   (cluster-named)
//!  candela.platform/<node> (supervisor)
//!     ├── producer/<node>         role producer                (cluster-named)
//!     ├── consumer-fixed/<node>   role consumer (`consumer-fixed/<node>/1` … `/W`
//!     │                            with `consumer.workers` = W > 1), placed
//!     │                            on partitions by `cluster::placement`
//!     ├── coordinator/<node>      role coordinator   (cluster name `coordinator`)
//!     └── agent/<node>            every node                   (cluster-named)
//!  datastore/<node>-supervisor
//!     └── datastore/<node>/0 … N-1  role datastore (Data Not Found → coordinator)
//!  HTTP API                       role api
//! ```
//!
//! **When a supervisor gives up.** Each supervisor restarts a failed child
//! with back-off (`[restart]` in the configuration); a child that fails more
//! than `restart.max_restarts` times within `restart.window_secs` of its own
//! running time is a crash loop (failures marked transient — the database or
//! the broker away — do not count). What giving up does, per supervisor:
//!
//! | supervisor | on giving up |
//! |---|---|
//! | `candela.platform/<node>` | stops the producer, the fixed consumers (their placement announcement ends with their streams: the other consumer nodes take their partitions at once), the coordinator and the agent; the node logs why and exits non-zero |
//! | `candela.dynamic/<node>` | stops the node's dynamic consumers; the node exits non-zero (the coordinator starts them elsewhere on the next request) |
//! | `datastore/<node>-supervisor` | stops the datastore pool; the node exits non-zero (the API would answer nothing) |
//!
//! The node exits rather than run on half-alive: its process supervisor
//! (systemd, compose) starts it again, and meanwhile its peers carry its work.
//!
//! Cluster names are registered on the process groups of `cluster::names`
//! (they work in one process without the cluster layer too, so `candela run`
//! with every role serves the Data Not Found path on its own).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorRef};

use candela_actors::consumer::dynamic::{DynamicConsumer, DynamicConsumerArgs};
use candela_actors::consumer::fixed::{FixedConsumer, FixedConsumerArgs};
use candela_actors::consumer::ConsumerMetrics;
use candela_actors::coordinator::directory::{COORDINATORS, PRODUCERS};
use candela_actors::coordinator::{Coordinator, CoordinatorArgs, CoordinatorSettings};
use candela_actors::cryptocompare::{ApiKey, CryptoCompareConfig, HistoryClient, LiveFeed};
use candela_actors::datastore::fetch::CoordinatorFetcher;
use candela_actors::datastore::{start_pool, DatastoreArgs};
use candela_actors::feed::{BarSink, NoSink};
use candela_actors::imitation::{Imitation, ImitationHandle};
use candela_actors::kafka::lease::{Leased, Lessor};
use candela_actors::kafka::schema::decode_record;
use candela_actors::kafka::{AllPartitions, Placement};
use candela_actors::producer::{
    fetch_history, DynamicBook, Producer, ProducerArgs, ProducerMsg, Target,
};
use candela_actors::store::dynamic::DynamicRegistry;
use candela_actors::store::redis_feed::{self, FeedEvent, RedisPublisher};
use candela_actors::store::BarStore;
use candela_actors::supervisor::{
    ChildSpec, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use candela_api::feed::{BarHub, HubConfig, StoreFeed};
use candela_api::server::{ApiConfig, ApiState};

use crate::backends::{Backends, Bus, Cache, Store, Streams};
use crate::cluster::agent::{self, AgentArgs, ConsumerFactory};
use crate::cluster::election::Election;
use crate::cluster::names::{self, NameDirectory};
use crate::cluster::placement::{ConsumerNodes, RunningWorkers};
use crate::config::{CacheKind, Config, Role, SourceKind};

type NodeProducer = Producer<HistoryClient, LiveFeed, Bus>;
type NodeConsumer = FixedConsumer<Streams, Bus, Store, Cache>;
type NodeDynamicConsumer = DynamicConsumer<Streams, Bus, Store, Cache>;
type NodeCoordinator = Coordinator<Bus>;

/// A running data plane.
pub struct Platform {
    /// The data plane's supervisors, for [`Platform::stopped`].
    watched: Vec<(&'static str, ractor::ActorCell)>,
    /// The supervisor of the producer, the consumer, the coordinator and
    /// the agent.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// The supervisor of the Consumers for dynamic topics.
    pub dynamic: ActorRef<SupervisorMsg>,
    /// The supervisor of the datastore pool, if this node runs one.
    pub datastore: Option<ActorRef<SupervisorMsg>>,
    /// Where the HTTP API listens, if this node serves it.
    pub api_addr: Option<std::net::SocketAddr>,
    /// The in-process imitation, if this node uses it.
    pub imitation: Option<ImitationHandle>,
    api_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    stop_api: Option<tokio::sync::oneshot::Sender<()>>,
    /// Hands the Redis bar feed to the hub.
    feed_task: Option<tokio::task::JoinHandle<()>>,
    /// What `/ready` on the ops listener checks.
    checks: Vec<(String, crate::ops::Check)>,
    /// The consumer watchdog (`consumer.stall_secs`).
    watchdog_task: Option<tokio::task::JoinHandle<()>>,
    /// The backfill and the repair.
    history_tasks: Vec<tokio::task::JoinHandle<()>>,
    /// With `ingest.active_standby`: the producer lease's gate.
    producer_gate: Option<crate::standby::Gate>,
}

impl Platform {
    /// The checks of `/ready` on the ops listener: the store answers (when
    /// this node has one), the data plane's supervisors run.
    pub fn ready_checks(&self) -> Vec<(String, crate::ops::Check)> {
        self.checks.clone()
    }

    /// Waits until one of the data plane's supervisors stops by itself (it
    /// gave up: a child kept failing past its restart-intensity limit, and
    /// the supervisor stopped every child of its own first), and says which.
    /// The node then exits with an error rather than run on without, say,
    /// its consumers: the consumers that stopped have already withdrawn
    /// their placement announcement (the agent announces running consumers
    /// only), so the other consumer nodes take their partitions at once, and
    /// the process supervisor (systemd, compose) restarts the node.
    pub async fn stopped(&self) -> String {
        let waits = self.watched.iter().map(|(what, cell)| {
            Box::pin(async move {
                let _ = cell.wait(None).await;
                *what
            })
        });
        let (what, _, _) = futures_util::future::select_all(waits).await;
        format!("{what} gave up (restart intensity exceeded)")
    }

    /// Stops the API and every actor.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_api.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.api_task.take() {
            let _ = task.await;
        }
        if let Some(task) = self.feed_task.take() {
            task.abort();
        }
        if let Some(task) = self.watchdog_task.take() {
            task.abort();
        }
        // The intake's own fetches stop before the producer does.
        for task in self.history_tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        // An active producer stops and gives its lease back: a standby takes
        // over at its next round.
        if let Some(gate) = self.producer_gate.take() {
            gate.stop().await;
        }
        // Intake first (the producer is the supervisor's first child), then
        // the consumers, each after its current batch (committed), then the
        // rest; each supervisor stops its children in order and waits for
        // them, within a bound.
        let mut stopping = vec![
            ("the data plane supervisor", self.supervisor.get_cell()),
            ("the dynamic consumers' supervisor", self.dynamic.get_cell()),
        ];
        if let Some(ds) = self.datastore.take() {
            stopping.push(("the datastore supervisor", ds.get_cell()));
        }
        for (what, cell) in stopping {
            if cell
                .stop_and_wait(Some("shutdown".into()), Some(SHUTDOWN_TIMEOUT))
                .await
                .is_err()
            {
                tracing::warn!(what, timeout = ?SHUTDOWN_TIMEOUT, "did not stop in time: killed");
                cell.kill();
            }
        }
        if let Some(im) = self.imitation.take() {
            im.shutdown().await;
        }
    }
}

/// The consumer watchdog: looks at each fixed consumer's counters a few
/// times per `stall`; one whose batch has been in flight longer without
/// finishing is reported (log, `candela_consumer_stalls_total`) and killed,
/// so its supervisor restarts it (its machine's RESET; the unfinished batch,
/// uncommitted, comes again).
async fn watchdog(consumers: Vec<(String, Arc<ConsumerMetrics>)>, stall: Duration) {
    use candela_actors::consumer::watchdog::Watch;
    use std::sync::atomic::Ordering;
    let mut watches = vec![Watch::default(); consumers.len()];
    let mut tick = tokio::time::interval(
        (stall / 4).clamp(Duration::from_millis(250), Duration::from_secs(5)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = std::time::Instant::now();
        for ((name, m), watch) in consumers.iter().zip(watches.iter_mut()) {
            let in_flight = m.in_flight.load(Ordering::Relaxed);
            let Some(stuck) = watch.look(m.batches.load(Ordering::Relaxed), in_flight, now, stall)
            else {
                continue;
            };
            tracing::warn!(
                consumer = %name,
                stuck_secs = stuck.as_secs(),
                in_flight,
                "consumer stuck: a batch in flight without progress; restarting it (RESET)"
            );
            metrics::counter!(candela_actors::telemetry::CONSUMER_STALLS, "consumer" => name.clone())
                .increment(1);
            candela_actors::consumer::watchdog::record_stall(name);
            if let Some(cell) = ractor::registry::where_is(name.clone()) {
                cell.kill();
            }
        }
    }
}

/// The longest a supervisor of the platform may take to stop at shutdown
/// (its children stop one after another, each within
/// [`candela_actors::supervisor::SHUTDOWN_CHILD_TIMEOUT`]).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Starts this node's data plane (its admin endpoint's cluster view shows
/// the cluster layer's peers when it runs, this node alone otherwise).
pub async fn start(config: &Config) -> anyhow::Result<Platform> {
    let node = &config.node.name;
    let kafka = config.kafka.clone();
    // Patient with dependencies that are down (transient failures are not
    // counted), escalating on a crash loop.
    let policy = || config.restart.policy();
    let mut children = Vec::new();
    let mut imitation = None;

    let needs_store =
        config.has(Role::Consumer) || config.has(Role::Datastore) || config.has(Role::Coordinator);
    let backends = Backends::connect(config, needs_store).await?;
    tracing::info!(
        bus = ?config.backends.bus,
        store = ?config.backends.store,
        cache = ?config.backends.cache,
        "backends connected"
    );
    let (store, cache) = (backends.store.clone(), backends.cache.clone());

    // The live stream's hub (an API node), and where consumers hand what they
    // commit: Redis pub/sub when the cache is Redis (every API node follows
    // it), else this node's hub (one node: the embedded defaults).
    let hub = match (config.has(Role::Api), &store) {
        (true, Some(store)) => Some(BarHub::new(
            Arc::new(StoreFeed(Arc::clone(store))),
            HubConfig {
                resync: Duration::from_secs(config.api.stream_resync_secs.max(1)),
                ..HubConfig::default()
            },
        )),
        _ => None,
    };
    let redis_feed = config.backends.cache == CacheKind::Redis;
    let sink: Arc<dyn BarSink> = if redis_feed && config.has(Role::Consumer) {
        Arc::new(
            RedisPublisher::connect(&config.redis.url, &config.redis.key_prefix)
                .await
                .context("redis.url: connecting the bar feed")?,
        )
    } else if let Some(hub) = &hub {
        Arc::clone(hub) as Arc<dyn BarSink>
    } else {
        Arc::new(NoSink)
    };
    // What an API node knows of the cache's hours, kept current by the
    // cache's events: 1-minute answers without a round trip while nothing
    // moved. On Redis the bar feed's subscription brings the events (one
    // connection: the cache's event of a change comes before the feed's);
    // in process the cache tells the mirror directly.
    let mirror = (hub.is_some() && config.api.memo_trust_ms > 0).then(|| {
        Arc::new(candela_api::mirror::Mirror::new(Duration::from_millis(
            config.api.memo_trust_ms,
        )))
    });
    if let (Some(mirror), Some(Cache::Memory(memory))) = (&mirror, cache.as_deref()) {
        memory.listen(Arc::clone(mirror) as _);
    }
    let feed_task = match (&hub, redis_feed) {
        (Some(hub), true) => {
            let mut events = redis_feed::follow(
                &config.redis.url,
                &config.redis.key_prefix,
                Arc::default(),
                mirror.clone().map(|m| m as _),
            )
            .context("redis.url: following the bar feed")?;
            let hub = Arc::clone(hub);
            Some(tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        FeedEvent::Connected => hub.resync_all().await,
                        FeedEvent::Bars(bars) => hub.publish_bars(&bars),
                    }
                }
            }))
        }
        _ => None,
    };

    // The producer's dynamic targets (kept across its restarts), which the
    // repair covers too.
    let dynamic_book: DynamicBook = Default::default();
    // With `ingest.active_standby`: the producer, started only while this
    // node holds the producer lease.
    let mut gated_producer: Option<ChildSpec> = None;
    if config.has(Role::Producer) {
        let (cc, im) = source(config).await?;
        imitation = im;
        let name = format!("producer/{node}");
        let k = kafka.clone();
        let args = ProducerArgs {
            instance: name.clone(),
            history: Arc::new(HistoryClient::new(cc.clone())?),
            live: Arc::new(LiveFeed { config: cc }),
            make_bus: {
                let bus = backends.bus.clone();
                Arc::new(move || Backends::make_bus(&k, &bus))
            },
            fixed_topic: kafka.tick_topic.clone(),
            fixed_partitions: kafka.tick_topic_partitions,
            live_instruments: config.instruments(),
            batch_max: config.ingest.batch_max,
            dynamic: dynamic_book.clone(),
            restarted: false,
        };
        let spec = names::named_child(
            ChildSpec::of::<NodeProducer>(&name, args, |a, r| a.restarted = r > 0),
            PRODUCERS,
            &[],
        );
        if config.ingest.active_standby {
            // Started by the gate while this node holds the producer lease
            // (crate::standby).
            gated_producer = Some(spec);
        } else {
            children.push(spec);
        }
    }

    // This node's running fixed consumers, announced by the agent.
    let running = RunningWorkers::default();
    // The lease rounds' own connections (two), so that renewals never wait
    // behind the consumers' writes for the store's pool.
    let lease_pool = match store.as_deref() {
        Some(Store::Postgres(pg)) if config.has(Role::Consumer) => Some(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(config.consumer.leases().held_for())
                .connect_lazy_with((*pg.pool().connect_options()).clone()),
        ),
        _ => None,
    };
    // What the watchdog looks at: each fixed consumer's name and counters.
    let mut watched_consumers: Vec<(String, Arc<ConsumerMetrics>)> = Vec::new();
    if config.has(Role::Consumer) {
        let workers = config.consumer.workers;
        for worker in 0..workers {
            // One consumer keeps the plain name; several are numbered from 1.
            let name = if workers == 1 {
                format!("consumer-fixed/{node}")
            } else {
                format!("consumer-fixed/{node}/{}", worker + 1)
            };
            // Partitions are placed from the live consumer nodes, not by the
            // broker's group protocol (crate::cluster::placement), and, with
            // PostgreSQL and Kafka, read only under a lease every consumer
            // agrees on (candela_actors::kafka::lease).
            let view = Arc::new(ConsumerNodes {
                node: node.clone(),
                group: config.consumer.group.clone(),
                worker,
                running: running.clone(),
            });
            let placement: Arc<dyn Placement> = match (&lease_pool, &backends.streams) {
                (Some(pool), Streams::Kafka(_)) => {
                    let lessor = Lessor::new(
                        pool.clone(),
                        &config.consumer.group,
                        &view.member(),
                        config.consumer.leases(),
                    );
                    Leased::start(view, lessor)
                }
                _ => view,
            };
            let args = FixedConsumerArgs {
                instance: name.clone(),
                streams: Arc::new(backends.streams.placed(placement)),
                group: config.consumer.group.clone(),
                topics: vec![kafka.tick_topic.clone()],
                dead_letters: Arc::new(backends.bus.clone()),
                store: Arc::clone(store.as_ref().expect("store")),
                cache: Arc::clone(cache.as_ref().expect("cache")),
                sink: Arc::clone(&sink),
                decode: decode_record,
                batch_max: config.consumer.batch_max,
                batch_wait: Duration::from_millis(config.consumer.batch_wait_ms),
                metrics: {
                    let m = Arc::new(ConsumerMetrics::default());
                    watched_consumers.push((name.clone(), Arc::clone(&m)));
                    m
                },
                restarted: false,
            };
            children.push(ChildSpec::of::<NodeConsumer>(&name, args, |a, r| {
                a.restarted = r > 0
            }));
        }
    }

    if config.has(Role::Coordinator) {
        let name = format!("coordinator/{node}");
        let d = &config.dynamic;
        let registry: Arc<dyn DynamicRegistry> =
            store.clone().context("the coordinator needs the store")?;
        let args = CoordinatorArgs {
            instance: name.clone(),
            bus: Arc::new(backends.bus.clone()),
            directory: Arc::new(NameDirectory),
            registry,
            settings: CoordinatorSettings {
                topic_prefix: d.topic_prefix.clone(),
                group_prefix: d.group_prefix.clone(),
                partitions: d.partitions,
                history_minutes: d.history_minutes,
                reconcile_history_minutes: d.reconcile_history_minutes,
                call_timeout: Duration::from_millis(d.call_timeout_ms),
                producer_timeout: Duration::from_millis(d.producer_timeout_ms),
                max_instruments: d.max_instruments,
                creations_per_minute: d.creations_per_minute,
                reconcile_every: Duration::from_secs(d.reconcile_secs),
            },
            restarted: false,
        };
        // Registered as `coordinator/<node>` in the role group; the election
        // gives the cluster name `coordinator` to one of them.
        children.push(names::named_child(
            ChildSpec::of::<NodeCoordinator>(&name, args, |a, r| a.restarted = r > 0),
            COORDINATORS,
            &[],
        ));
        let node = node.clone();
        children.push(ChildSpec {
            name: format!("election/{node}"),
            start: Arc::new(move |sup, _| {
                let node = node.clone();
                Box::pin(async move {
                    Actor::spawn_linked(Some(format!("election/{node}")), Election, node, sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        });
    }

    // The dynamic consumers' supervisor: empty until the agent adds to it.
    let (dynamic, _) = Actor::spawn(
        Some(format!("candela.dynamic/{node}")),
        Supervisor,
        SupervisorArgs {
            children: Vec::new(),
            policy: policy(),
        },
    )
    .await
    .context("starting the dynamic consumers' supervisor")?;
    let factory: Option<ConsumerFactory> = if config.has(Role::Consumer) {
        // One consumer per dynamic topic (the coordinator's choice): it reads
        // every partition.
        let streams = Arc::new(backends.streams.placed(Arc::new(AllPartitions)));
        let dead_letters = Arc::new(backends.bus.clone());
        let store = Arc::clone(store.as_ref().expect("store"));
        let cache = Arc::clone(cache.as_ref().expect("cache"));
        let sink = Arc::clone(&sink);
        let group_prefix = config.dynamic.group_prefix.clone();
        let batch_max = config.consumer.batch_max;
        let batch_wait = Duration::from_millis(config.consumer.batch_wait_ms);
        Some(Arc::new(move |name: String| {
            NodeDynamicConsumer::child_spec(DynamicConsumerArgs {
                instance: name,
                streams: Arc::clone(&streams),
                group_prefix: group_prefix.clone(),
                dead_letters: Arc::clone(&dead_letters),
                store: Arc::clone(&store),
                cache: Arc::clone(&cache),
                sink: Arc::clone(&sink),
                decode: decode_record,
                batch_max,
                batch_wait,
                metrics: Arc::new(ConsumerMetrics::default()),
                assignment: Default::default(),
                restarted: false,
            })
        }))
    } else {
        None
    };
    children.push(agent::child_spec(AgentArgs {
        node: node.clone(),
        supervisor: dynamic.clone(),
        consumers: factory,
        fixed_workers: config.has(Role::Consumer).then(|| running.clone()),
        fixed_group: config.consumer.group.clone(),
        start_timeout: Duration::from_millis(config.dynamic.call_timeout_ms),
        max_consumers: config.dynamic.max_instruments,
    }));

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
                // The Data Not Found path: ask the coordinator, wherever it runs.
                fetcher: Some(Arc::new(CoordinatorFetcher::new(
                    Arc::new(NameDirectory),
                    Arc::clone(&store),
                    Duration::from_millis(config.dynamic.poll_ms),
                    Duration::from_secs(config.datastore.fetch_timeout_secs),
                    // A datastore always stays free for held instruments.
                    config
                        .dynamic
                        .max_concurrent_fetches
                        .min(config.datastore.pool_size.saturating_sub(1))
                        .max(1),
                ))),
                ingested: Arc::new(config.instruments().into_iter().collect()),
                cache_window_secs: config.redis.window_secs,
                fetch_timeout: Duration::from_secs(config.datastore.fetch_timeout_secs),
                busy: Default::default(),
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
            // A request may wait for data fetched on demand.
            Duration::from_millis(config.datastore.request_timeout_ms)
                + Duration::from_secs(config.datastore.fetch_timeout_secs),
        )
        .await
        .context("starting the datastore pool")?;
        datastore = Some(ds_sup);

        if config.has(Role::Api) {
            let s1 = Arc::clone(&store);
            let s2 = Arc::clone(&store);
            let s3 = Arc::clone(&store);
            let state =
                Arc::new(ApiState {
                    datastore: Arc::new(pool),
                    feed: hub.clone().expect("an API node has a hub"),
                    mirror,
                    streams: Arc::new(tokio::sync::Semaphore::new(config.api.max_streams)),
                    instruments: Arc::new(move || {
                        let s = Arc::clone(&s1);
                        Box::pin(async move { s.instruments().await.map_err(|e| e.to_string()) })
                    }),
                    ready: Arc::new(move || {
                        let s = Arc::clone(&s2);
                        Box::pin(async move { s.ping().await })
                    }),
                    config: ApiConfig {
                        max_limit: config.api.max_limit,
                        stream_grace_secs: config.api.stream_grace_secs,
                        max_streams: config.api.max_streams,
                        memo_bytes: config.api.memo_mib.saturating_mul(1 << 20),
                        compressed_bytes: config.api.compressed_mib.saturating_mul(1 << 20),
                        title: format!("candela ({node})"),
                        metrics: candela_api::server::MetricsText(crate::ops::recorder().map(
                            |h| Arc::new(move || h.render()) as candela_api::server::MetricsFn,
                        )),
                        // Visible in `/ready`, never a reason to be unready:
                        // TimescaleDB not preloaded, its refresh jobs failing.
                        ready_notes: candela_api::server::ReadyNotes(Some(Arc::new(
                            move || match s3.as_ref() {
                                Store::Postgres(pg) => pg.readiness_notes(),
                                Store::Sqlite(_) => Vec::new(),
                            },
                        ))),
                    },
                    admin: candela_api::server::AdminConfig {
                        token: std::env::var(&config.admin.token_env)
                            .ok()
                            .filter(|t| !t.is_empty()),
                        supervisors: vec![
                            format!("candela.platform/{node}"),
                            format!("candela.dynamic/{node}"),
                            format!("{prefix}-supervisor"),
                        ],
                        // With or without the cluster layer (then: this node alone).
                        cluster_status: Some(crate::cluster::inspect::admin_view(
                            crate::cluster::inspect::ViewSettings {
                                node: node.clone(),
                                kafka: matches!(config.backends.bus, crate::config::BusKind::Kafka)
                                    .then(|| kafka.clone()),
                                timeout: Duration::from_secs(2),
                            },
                        )),
                        dynamic: Some(dynamic_admin(Duration::from_millis(
                            config.dynamic.call_timeout_ms,
                        ))),
                    },
                });
            let listener = match crate::sockets::take("api", config.api.listen) {
                Some(handed) => handed,
                None => std::net::TcpListener::bind(config.api.listen).with_context(|| {
                    format!("api.listen: cannot listen on {}", config.api.listen)
                })?,
            };
            let addr = listener.local_addr()?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            api_task = Some(tokio::spawn(candela_api::serve(listener, state, async {
                let _ = rx.await;
            })));
            stop_api = Some(tx);
            api_addr = Some(addr);
        }
    }

    // The backfill and the repair: owned by the platform, stopped first at
    // shutdown (never left running detached).
    let mut history_tasks = Vec::new();
    // An active/standby producer backfills once it first becomes active.
    let (activated, first_active) = tokio::sync::oneshot::channel::<()>();
    let mut producer_gate = None;
    if let Some(spec) = gated_producer {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.consumer.leases().held_for())
            .connect_lazy(&config.postgres.url)
            .context("postgres.url: the producer lease")?;
        producer_gate = Some(crate::standby::start(
            Lessor::new(
                pool,
                crate::standby::PRODUCER_LEASE_GROUP,
                node,
                config.consumer.leases(),
            ),
            kafka.tick_topic.clone(),
            supervisor.clone(),
            spec,
            Some(Box::new(move || {
                let _ = activated.send(());
            })),
        ));
    } else {
        let _ = activated.send(());
    }
    if config.has(Role::Producer) && config.ingest.backfill_minutes > 0 {
        let run = backfill(
            format!("producer/{node}"),
            config.instruments(),
            config.ingest.backfill_minutes,
            config.ingest.backfill_concurrency,
        );
        history_tasks.push(tokio::spawn(async move {
            if first_active.await.is_ok() {
                run.await;
            }
        }));
    }
    if config.has(Role::Producer) && config.ingest.repair_minutes > 0 {
        history_tasks.push(tokio::spawn(repair(
            format!("producer/{node}"),
            config.instruments(),
            dynamic_book.clone(),
            config.ingest.repair_minutes,
            Duration::from_secs(config.ingest.repair_interval_secs),
        )));
    }

    let mut watched = vec![
        ("candela.platform", supervisor.get_cell()),
        ("candela.dynamic", dynamic.get_cell()),
    ];
    if let Some(ds) = &datastore {
        watched.push(("the datastore supervisor", ds.get_cell()));
    }
    let mut checks: Vec<(String, crate::ops::Check)> = Vec::new();
    if let Some(s) = &store {
        let s = Arc::clone(s);
        checks.push((
            "store".to_owned(),
            Arc::new(move || {
                let s = Arc::clone(&s);
                Box::pin(async move { s.ping().await.map(|()| "answers".to_owned()) })
            }),
        ));
    }
    if (config.has(Role::Producer) || config.has(Role::Consumer))
        && config.backends.bus == crate::config::BusKind::Kafka
    {
        let kafka = kafka.clone();
        checks.push((
            "broker".to_owned(),
            Arc::new(move || {
                let kafka = kafka.clone();
                Box::pin(async move {
                    match candela_actors::kafka::admin::topic_partitions(&kafka, &kafka.tick_topic)
                        .await
                    {
                        Ok(Some(n)) => {
                            Ok(format!("answers; {} has {n} partitions", kafka.tick_topic))
                        }
                        Ok(None) => Ok(format!("answers; {} not created yet", kafka.tick_topic)),
                        Err(e) => Err(format!("unreachable: {e}")),
                    }
                })
            }),
        ));
    }
    if config.has(Role::Consumer)
        && config.backends.bus == crate::config::BusKind::Kafka
        && config.consumer.ready_max_lag > 0
    {
        let max = i64::try_from(config.consumer.ready_max_lag).unwrap_or(i64::MAX);
        checks.push((
            "lag".to_owned(),
            Arc::new(move || {
                Box::pin(std::future::ready(
                    match candela_actors::kafka::consumer::max_consumer_lag() {
                        None => Ok("not reported yet".to_owned()),
                        Some(lag) if lag <= max => Ok(format!("largest partition lag {lag}")),
                        Some(lag) => Err(format!(
                            "a partition lags by {lag} messages (more than {max})"
                        )),
                    },
                ))
            }),
        ));
    }
    let cells: Vec<(&'static str, ractor::ActorCell)> = watched.clone();
    checks.push((
        "data plane".to_owned(),
        Arc::new(move || {
            let down: Vec<&str> = cells
                .iter()
                .filter(|(_, c)| c.get_status() != ractor::ActorStatus::Running)
                .map(|(what, _)| *what)
                .collect();
            Box::pin(std::future::ready(if down.is_empty() {
                Ok("supervisors running".to_owned())
            } else {
                Err(format!("stopped: {}", down.join(", ")))
            }))
        }),
    ));
    let stall = Duration::from_secs(config.consumer.stall_secs);
    let watchdog_task = (!stall.is_zero() && !watched_consumers.is_empty())
        .then(|| tokio::spawn(watchdog(watched_consumers, stall)));
    Ok(Platform {
        history_tasks,
        producer_gate,
        watchdog_task,
        checks,
        watched,
        supervisor,
        dynamic,
        datastore,
        api_addr,
        imitation,
        api_task,
        stop_api,
        feed_task,
    })
}

/// Every `every`, fetches the last `minutes` closed minutes of each instrument
/// again: history repairs the minutes the live stream missed (reconciliation
/// rule in `store::postgres`), and changes nothing where live was complete.
async fn repair(
    producer: String,
    instruments: Vec<candela_actors::domain::Instrument>,
    dynamic: DynamicBook,
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
        // The configured instruments, and the dynamic ones this producer
        // streams (their first, partial minute and any gap are repaired the
        // same way).
        let dynamic: Vec<(candela_actors::domain::Instrument, Target)> = dynamic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(i, topic)| (i.clone(), Target::Dynamic(topic.clone())))
            .collect();
        let all = instruments
            .iter()
            .map(|i| (i.clone(), Target::Fixed))
            .chain(dynamic);
        for (instrument, target) in all {
            if let Err(err) = fetch_history(
                &actor,
                instrument.clone(),
                to - (minutes - 1) * 60,
                to,
                target,
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

/// The admin endpoint's view of the dynamic instruments: through the
/// coordinator holding the cluster name, wherever it runs.
fn dynamic_admin(timeout: Duration) -> candela_api::server::DynamicAdmin {
    use candela_actors::coordinator::{directory::COORDINATOR_NAME, CoordinatorMsg, Directory};
    let call_list = move || -> candela_api::server::BoxFuture<Result<Vec<_>, String>> {
        Box::pin(async move {
            let cell = NameDirectory
                .resolve(COORDINATOR_NAME)
                .map_err(|e| e.to_string())?;
            candela_actors::call::call_result(
                &cell,
                COORDINATOR_NAME,
                CoordinatorMsg::List,
                timeout,
            )
            .await
            .map_err(|e| e.to_string())
        })
    };
    let call_remove = move |instrument| -> candela_api::server::BoxFuture<Result<bool, String>> {
        Box::pin(async move {
            let cell = NameDirectory
                .resolve(COORDINATOR_NAME)
                .map_err(|e| e.to_string())?;
            candela_actors::call::call_result(
                &cell,
                COORDINATOR_NAME,
                |reply| CoordinatorMsg::Remove(instrument, reply),
                timeout,
            )
            .await
            .map_err(|e| e.to_string())
        })
    };
    candela_api::server::DynamicAdmin {
        list: Arc::new(call_list),
        remove: Arc::new(call_remove),
    }
}

/// How many minutes one backfill request asks for.
const BACKFILL_CHUNK_MINUTES: i64 = 7 * 1_440;

/// Fetches the closed minutes of the last `minutes` for each instrument
/// through the producer `producer`, `concurrency` instruments at once
/// (`candela_actors::producer::backfill`), with a progress display on the
/// terminal when there is one.
async fn backfill(
    producer: String,
    instruments: Vec<candela_actors::domain::Instrument>,
    minutes: i64,
    concurrency: usize,
) {
    use candela_actors::producer::backfill::{self, Plan, Settings};
    let plan = Plan::last_minutes(last_closed_minute(), minutes, BACKFILL_CHUNK_MINUTES);
    let display = crate::progress::Display::start();
    let report = backfill::run(
        move || ractor::registry::where_is(producer.clone()).map(Into::into),
        instruments,
        plan,
        Settings {
            concurrency,
            ..Settings::default()
        },
    )
    .await;
    drop(display);
    let bars: u64 = report.iter().map(|r| r.bars).sum();
    let failed: u32 = report.iter().map(|r| r.failed_chunks).sum();
    tracing::info!(
        instruments = report.len(),
        bars,
        failed_chunks = failed,
        "backfill done"
    );
}
