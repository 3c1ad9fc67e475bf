//! The Datastore's Data Not Found path against its requester, on the real
//! PostgreSQL and Redis: a requester that never delivers ends in a clear
//! timeout (`DataError::Timeout`, HTTP 504), one that refuses in "not
//! available" (HTTP 404), and the member that ended in Error is restarted.
//! An instrument the platform ingests is held before its first bar is
//! stored: no fetch, an empty answer. A Coordinator killed while a request
//! waits on it fails that request at once, with an error that says so.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use candela_actors::call::CallError;
use candela_actors::consumer::dynamic::DynamicConsumerMsg;
use candela_actors::coordinator::directory::{
    CONSUMER_AGENTS, COORDINATOR_NAME, DYNAMIC_CONSUMERS, PRODUCERS,
};
use candela_actors::coordinator::{
    AgentMsg, Coordinator, CoordinatorArgs, CoordinatorSettings, Directory,
};
use candela_actors::datastore::fetch::CoordinatorFetcher;
use candela_actors::datastore::DatastorePool;
use candela_actors::datastore::{
    start_pool, BarQuery, DataError, DatastoreArgs, FetchError, FetchRequester, WaitForData,
};
use candela_actors::domain::{Instrument, Interval};
use candela_actors::embedded::{MemoryBus, SqliteStore};
use candela_actors::producer::{FetchReport, ProducerError, ProducerMsg};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::supervisor::{RestartPolicy, SupervisorMsg};
use candela_testkit::{unique, TestDb};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

/// Sends the instructions, then the data never comes.
struct Never;

impl FetchRequester for Never {
    fn request_fetch(
        &self,
        _: &Instrument,
    ) -> Pin<Box<dyn Future<Output = Result<WaitForData, FetchError>> + Send + '_>> {
        Box::pin(async {
            let wait: WaitForData = Box::pin(std::future::pending());
            Ok(wait)
        })
    }
}

/// Cannot even send the instructions.
struct Refuses;

impl FetchRequester for Refuses {
    fn request_fetch(
        &self,
        _: &Instrument,
    ) -> Pin<Box<dyn Future<Output = Result<WaitForData, FetchError>> + Send + '_>> {
        Box::pin(async {
            Err(FetchError::NoCoordinator(CallError::unreachable(
                COORDINATOR_NAME,
                "no actor holds this cluster name",
            )))
        })
    }
}

async fn answer(fetcher: Arc<dyn FetchRequester>) -> Result<(), DataError> {
    answer_with(fetcher, &[]).await.map(|_| ())
}

/// A pool of one datastore on a fresh database (and its own cache keys),
/// whose platform ingests `ingested`, fetching with the requester
/// `fetcher` makes for its store and waiting at most `fetch_timeout`.
async fn pool(
    fetcher: impl FnOnce(Arc<PgStore>) -> Arc<dyn FetchRequester>,
    ingested: &[&str],
    fetch_timeout: Duration,
) -> (TestDb, ActorRef<SupervisorMsg>, DatastorePool) {
    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 2).await.unwrap());
    let cache = Arc::new(
        RedisCache::connect(&candela_testkit::redis_url(), &unique("fetch"), 86_400)
            .await
            .unwrap(),
    );
    let (sup, pool) = start_pool(
        &unique("ds-fetch"),
        1,
        DatastoreArgs {
            instance: String::new(),
            store: Arc::clone(&store),
            cache,
            fetcher: Some(fetcher(store)),
            ingested: Arc::new(ingested.iter().map(|i| i.parse().unwrap()).collect()),
            cache_window_secs: 86_400,
            fetch_timeout,
            busy: Default::default(),
            restarted: false,
        },
        RestartPolicy {
            backoff_min: Duration::from_millis(5),
            ..RestartPolicy::default()
        },
        fetch_timeout + Duration::from_secs(10),
    )
    .await
    .unwrap();
    (db, sup, pool)
}

/// A request for `Binance:SOL-USDT`, which nothing stored.
fn sol() -> BarQuery {
    BarQuery {
        instrument: "Binance:SOL-USDT".parse().unwrap(),
        interval: Interval::M1,
        from: 0,
        to: 4_000_000_000,
        limit: 10,
        fetch: true,
        by_hour: None,
    }
}

/// The answer to [`sol`] from a pool whose platform ingests `ingested`;
/// asked twice (the second time of a member restarted if the first ended in
/// Error): the answers must agree.
async fn answer_with(
    fetcher: Arc<dyn FetchRequester>,
    ingested: &[&str],
) -> Result<usize, DataError> {
    let (_db, sup, pool) = pool(|_| fetcher, ingested, Duration::from_secs(1)).await;
    let result = pool.request(sol()).await.map(|a| a.bars.len());
    // The member failed after answering (Error) and comes back (RESET).
    let again = pool.request(sol()).await.map(|a| a.bars.len());
    assert_eq!(
        std::mem::discriminant(&result),
        std::mem::discriminant(&again)
    );
    sup.stop(None);
    result
}

#[tokio::test]
async fn data_that_never_arrives_is_a_clear_timeout() {
    match answer(Arc::new(Never)).await {
        Err(DataError::Timeout(msg)) => {
            assert!(msg.contains("Binance:SOL-USDT"), "{msg}");
            assert!(msg.contains("within 1 s"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_requester_that_cannot_ask_is_not_available() {
    match answer(Arc::new(Refuses)).await {
        Err(DataError::NotAvailable(msg)) => {
            assert!(msg.contains("no coordinator to ask"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_ingested_instrument_without_bars_yet_is_an_empty_answer_not_a_fetch() {
    // `Refuses` would make any fetch fail: the answer shows none was asked.
    match answer_with(Arc::new(Refuses), &["Binance:SOL-USDT"]).await {
        Ok(0) => {}
        other => panic!("{other:?}"),
    }
}

/// Finds actors of this process by registry name; `aliases` maps cluster
/// names to registry names (tests run side by side in one process).
struct Local {
    aliases: Vec<(String, String)>,
    roles: Vec<(&'static str, String)>,
}

impl Local {
    fn registry_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases
            .iter()
            .find(|(alias, _)| alias == name)
            .map_or(name, |(_, real)| real.as_str())
    }
}

impl Directory for Local {
    fn resolve(&self, name: &str) -> Result<ActorCell, CallError> {
        ractor::registry::where_is(self.registry_name(name))
            .ok_or_else(|| CallError::unreachable(name, "no actor holds this name"))
    }

    fn members(&self, role: &str) -> Vec<ActorCell> {
        self.roles
            .iter()
            .filter(|(r, _)| *r == role)
            .filter_map(|(_, name)| ractor::registry::where_is(name.clone()))
            .collect()
    }
}

/// An agent that "starts" the consumer stand-in: answers with its name.
struct AgentStandIn;

impl Actor for AgentStandIn {
    type Msg = AgentMsg;
    type State = String;
    type Arguments = String;

    async fn pre_start(
        &self,
        _: ActorRef<AgentMsg>,
        consumer: String,
    ) -> Result<String, ActorProcessingErr> {
        Ok(consumer)
    }

    async fn handle(
        &self,
        _: ActorRef<AgentMsg>,
        msg: AgentMsg,
        consumer: &mut String,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::StartDynamicConsumer(reply) => {
                let _ = reply.send(Ok(consumer.clone()));
            }
            AgentMsg::StopDynamicConsumer(_, reply) => {
                let _ = reply.send(Ok(true));
            }
        }
        Ok(())
    }
}

/// A dynamic consumer that accepts any topic.
struct ConsumerStandIn;

impl Actor for ConsumerStandIn {
    type Msg = DynamicConsumerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<DynamicConsumerMsg>,
        _: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<DynamicConsumerMsg>,
        msg: DynamicConsumerMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let DynamicConsumerMsg::Subscribe(_, reply) = msg {
            let _ = reply.send(Ok(()));
        }
        Ok(())
    }
}

/// A producer whose history fetch never ends: it says when it was asked and
/// keeps the reply port unanswered.
struct SlowProducer;

type Asked = std::sync::Mutex<Option<oneshot::Sender<()>>>;

impl Actor for SlowProducer {
    type Msg = ProducerMsg;
    type State = (
        Arc<Asked>,
        Vec<RpcReplyPort<Result<FetchReport, ProducerError>>>,
    );
    type Arguments = Arc<Asked>;

    async fn pre_start(
        &self,
        _: ActorRef<ProducerMsg>,
        asked: Arc<Asked>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok((asked, Vec::new()))
    }

    async fn handle(
        &self,
        _: ActorRef<ProducerMsg>,
        msg: ProducerMsg,
        (asked, held): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProducerMsg::Probe { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            ProducerMsg::ServeDynamic { reply, .. } => {
                held.push(reply);
                if let Some(tx) = asked.lock().unwrap().take() {
                    let _ = tx.send(());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_killed_during_the_call_fails_the_request_at_once() {
    let (coordinator_name, agent_name, consumer_name, producer_name) = (
        unique("coordinator"),
        unique("agent"),
        unique("consumer-dynamic"),
        unique("producer"),
    );
    let directory: Arc<dyn Directory> = Arc::new(Local {
        aliases: vec![(COORDINATOR_NAME.to_owned(), coordinator_name.clone())],
        roles: vec![
            (CONSUMER_AGENTS, agent_name.clone()),
            (PRODUCERS, producer_name.clone()),
        ],
    });
    assert!(directory.members(DYNAMIC_CONSUMERS).is_empty());
    let (asked_tx, asked) = oneshot::channel();
    let (producer, _) = Actor::spawn(
        Some(producer_name),
        SlowProducer,
        Arc::new(std::sync::Mutex::new(Some(asked_tx))),
    )
    .await
    .unwrap();
    let (consumer, _) = Actor::spawn(Some(consumer_name.clone()), ConsumerStandIn, ())
        .await
        .unwrap();
    let (agent, _) = Actor::spawn(Some(agent_name), AgentStandIn, consumer_name)
        .await
        .unwrap();
    // Every wait is long: only the kill can end the request early.
    let long = Duration::from_secs(60);
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteStore::open(registry_dir.path()).await.unwrap());
    let (coordinator, _) = Actor::spawn(
        Some(coordinator_name),
        Coordinator::<MemoryBus>::default(),
        CoordinatorArgs {
            instance: "coordinator/test".into(),
            bus: Arc::new(MemoryBus::new()),
            directory: Arc::clone(&directory),
            registry,
            settings: CoordinatorSettings {
                call_timeout: long,
                producer_timeout: long,
                ..CoordinatorSettings::default()
            },
            restarted: false,
        },
    )
    .await
    .unwrap();
    let (_db, sup, pool) = pool(
        |store| {
            Arc::new(CoordinatorFetcher::new(
                directory,
                store,
                Duration::from_millis(50),
                long,
                2,
            ))
        },
        &[],
        long,
    )
    .await;
    let request = tokio::spawn(async move { pool.request(sol()).await });

    // The coordinator is waiting on the producer's history: kill it.
    tokio::time::timeout(Duration::from_secs(30), asked)
        .await
        .expect("the coordinator never asked the producer")
        .unwrap();
    coordinator.kill();
    // Not a timing check: a request that did not hear of the kill would wait
    // out its 60 s time-out and say so; 20 s leaves a loaded machine room.
    let answer = tokio::time::timeout(Duration::from_secs(20), request)
        .await
        .expect("the request still waits 20 s after the coordinator was killed")
        .unwrap();
    // Not a time-out ("it may still arrive"), not "not available": the
    // fetch broke off, and the answer says why.
    match answer {
        Err(DataError::FetchFailed(msg)) => {
            assert!(msg.contains("Binance:SOL-USDT"), "{msg}");
            assert!(
                msg.contains("`coordinator` stopped before answering"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    for actor in [producer.get_cell(), consumer.get_cell(), agent.get_cell()] {
        actor.stop(None);
    }
    sup.stop(None);
}

/// How often each stand-in was asked.
#[derive(Default)]
struct Calls {
    probes: std::sync::atomic::AtomicUsize,
    serves: std::sync::atomic::AtomicUsize,
    starts: std::sync::atomic::AtomicUsize,
}

fn count(c: &std::sync::atomic::AtomicUsize) -> usize {
    c.load(std::sync::atomic::Ordering::SeqCst)
}

/// A producer whose source lists no pair (`unknown`), or lists every pair
/// and is slow: a history request is answered only once `release` is true.
struct ProducerStandIn;

struct ProducerSetup {
    calls: Arc<Calls>,
    unknown: bool,
    release: tokio::sync::watch::Receiver<bool>,
}

impl Actor for ProducerStandIn {
    type Msg = ProducerMsg;
    type State = ProducerSetup;
    type Arguments = ProducerSetup;

    async fn pre_start(
        &self,
        _: ActorRef<ProducerMsg>,
        setup: ProducerSetup,
    ) -> Result<ProducerSetup, ActorProcessingErr> {
        Ok(setup)
    }

    async fn handle(
        &self,
        _: ActorRef<ProducerMsg>,
        msg: ProducerMsg,
        setup: &mut ProducerSetup,
    ) -> Result<(), ActorProcessingErr> {
        use std::sync::atomic::Ordering::SeqCst;
        match msg {
            ProducerMsg::Probe { instrument, reply } => {
                setup.calls.probes.fetch_add(1, SeqCst);
                let answer = if setup.unknown {
                    Err(ProducerError::History {
                        error: candela_actors::ports::SourceError::UnknownPair {
                            instrument: instrument.to_string(),
                            message: format!(
                                "market does not exist for this coin pair ({}-{})",
                                instrument.base, instrument.quote
                            ),
                        },
                        instrument,
                    })
                } else {
                    Ok(())
                };
                let _ = reply.send(answer);
            }
            ProducerMsg::ServeDynamic { reply, .. } => {
                setup.calls.serves.fetch_add(1, SeqCst);
                let mut release = setup.release.clone();
                tokio::spawn(async move {
                    let _ = release.wait_for(|go| *go).await;
                    let _ = reply.send(Ok(FetchReport {
                        bars: 0,
                        traded_bars: 0,
                        elapsed_ms: 0,
                    }));
                });
            }
            ProducerMsg::Status(reply) => {
                let _ = reply.send(Default::default());
            }
            _ => {}
        }
        Ok(())
    }
}

/// An agent that counts the consumers it is asked to start.
struct CountingAgent;

impl Actor for CountingAgent {
    type Msg = AgentMsg;
    type State = (String, Arc<Calls>);
    type Arguments = (String, Arc<Calls>);

    async fn pre_start(
        &self,
        _: ActorRef<AgentMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<AgentMsg>,
        msg: AgentMsg,
        (consumer, calls): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::StartDynamicConsumer(reply) => {
                calls
                    .starts
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = reply.send(Ok(consumer.clone()));
            }
            AgentMsg::StopDynamicConsumer(_, reply) => {
                let _ = reply.send(Ok(true));
            }
        }
        Ok(())
    }
}

/// A coordinator (its registry a SQLite file, its bus in memory), a
/// producer stand-in, an agent and a consumer stand-in, and a pool of
/// `pool_size` datastores fetching at most 2 instruments at a time.
struct Scene {
    calls: Arc<Calls>,
    release: tokio::sync::watch::Sender<bool>,
    bus: Arc<MemoryBus>,
    registry: Arc<SqliteStore>,
    coordinator: ActorRef<candela_actors::coordinator::CoordinatorMsg>,
    actors: Vec<ActorCell>,
    pool: Arc<DatastorePool>,
    datastores: ActorRef<SupervisorMsg>,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn scene(unknown: bool, pool_size: usize, ingested: &[&str]) -> Scene {
    let (coordinator_name, agent_name, consumer_name, producer_name) = (
        unique("coordinator"),
        unique("agent"),
        unique("consumer-dynamic"),
        unique("producer"),
    );
    let directory: Arc<dyn Directory> = Arc::new(Local {
        aliases: vec![(COORDINATOR_NAME.to_owned(), coordinator_name.clone())],
        roles: vec![
            (CONSUMER_AGENTS, agent_name.clone()),
            (PRODUCERS, producer_name.clone()),
        ],
    });
    let calls = Arc::new(Calls::default());
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let (producer, _) = Actor::spawn(
        Some(producer_name),
        ProducerStandIn,
        ProducerSetup {
            calls: Arc::clone(&calls),
            unknown,
            release: release_rx,
        },
    )
    .await
    .unwrap();
    let (consumer, _) = Actor::spawn(Some(consumer_name.clone()), ConsumerStandIn, ())
        .await
        .unwrap();
    let (agent, _) = Actor::spawn(
        Some(agent_name),
        CountingAgent,
        (consumer_name, Arc::clone(&calls)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
    let bus = Arc::new(MemoryBus::new());
    let long = Duration::from_secs(60);
    let (coordinator, _) = Actor::spawn(
        Some(coordinator_name),
        Coordinator::<MemoryBus>::default(),
        CoordinatorArgs {
            instance: "coordinator/test".into(),
            bus: Arc::clone(&bus),
            directory: Arc::clone(&directory),
            registry: Arc::clone(&registry)
                as Arc<dyn candela_actors::store::dynamic::DynamicRegistry>,
            settings: CoordinatorSettings {
                call_timeout: long,
                producer_timeout: long,
                creations_per_minute: 600,
                max_instruments: 1_000,
                ..CoordinatorSettings::default()
            },
            restarted: false,
        },
    )
    .await
    .unwrap();
    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 4).await.unwrap());
    let cache = Arc::new(
        RedisCache::connect(&candela_testkit::redis_url(), &unique("fetch"), 86_400)
            .await
            .unwrap(),
    );
    let fetcher: Arc<dyn FetchRequester> = Arc::new(CoordinatorFetcher::new(
        directory,
        Arc::clone(&store),
        Duration::from_millis(50),
        long,
        2,
    ));
    let (datastores, pool) = start_pool(
        &unique("ds-scene"),
        pool_size,
        DatastoreArgs {
            instance: String::new(),
            store,
            cache,
            fetcher: Some(fetcher),
            ingested: Arc::new(ingested.iter().map(|i| i.parse().unwrap()).collect()),
            cache_window_secs: 86_400,
            fetch_timeout: long,
            busy: Default::default(),
            restarted: false,
        },
        RestartPolicy {
            backoff_min: Duration::from_millis(5),
            ..RestartPolicy::default()
        },
        long + Duration::from_secs(10),
    )
    .await
    .unwrap();
    Scene {
        calls,
        release,
        bus,
        registry,
        coordinator,
        actors: vec![producer.get_cell(), consumer.get_cell(), agent.get_cell()],
        pool: Arc::new(pool),
        datastores,
        _db: db,
        _dir: dir,
    }
}

impl Scene {
    async fn datastore_restarts(&self) -> u32 {
        ractor::call_t!(self.datastores, SupervisorMsg::Status, 5_000)
            .unwrap()
            .iter()
            .map(|c| c.restarts)
            .sum()
    }

    fn dynamic_topics(&self) -> Vec<String> {
        self.bus
            .topics()
            .into_iter()
            .filter(|t| t.starts_with(candela_actors::coordinator::topic::DEFAULT_PREFIX))
            .collect()
    }

    fn stop(self) {
        for a in &self.actors {
            a.stop(None);
        }
        self.coordinator.stop(None);
        self.datastores.stop(None);
    }
}

fn query(instrument: &str) -> BarQuery {
    BarQuery {
        instrument: instrument.parse().unwrap(),
        ..sol()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_the_source_does_not_list_is_a_404_that_creates_and_restarts_nothing() {
    let s = scene(true, 2, &[]).await;
    for n in 0..100 {
        let name = format!("Nowhere:ZZ{n}-USD");
        match s.pool.request(query(&name)).await {
            Err(DataError::NotAvailable(msg)) => {
                assert!(msg.contains("does not list"), "{msg}");
                assert!(msg.contains(&name), "{msg}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(count(&s.calls.probes), 100, "one probe each");
    assert_eq!(count(&s.calls.serves), 0, "nothing served");
    assert_eq!(count(&s.calls.starts), 0, "no consumer started");
    assert!(s.dynamic_topics().is_empty(), "{:?}", s.dynamic_topics());
    use candela_actors::store::dynamic::DynamicRegistry;
    assert!(s.registry.list().await.unwrap().is_empty());
    assert_eq!(s.datastore_restarts().await, 0, "no datastore restarted");
    assert_eq!(
        s.coordinator.get_status(),
        ractor::ActorStatus::Running,
        "the coordinator never failed"
    );
    let status = ractor::call_t!(
        s.coordinator,
        candela_actors::coordinator::CoordinatorMsg::Status,
        5_000
    )
    .unwrap();
    assert_eq!(status.run.transitions_total, 0, "no machine step");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_requests_for_one_new_instrument_make_one_while_held_ones_are_served() {
    let s = scene(false, 3, &["Coinbase:BTC-USD"]).await;
    let requests: Vec<_> = (0..5)
        .map(|_| {
            let pool = Arc::clone(&s.pool);
            tokio::spawn(async move { pool.request(sol()).await })
        })
        .collect();
    // The slow source holds the history: the five wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while count(&s.calls.serves) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the producer was never asked"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Meanwhile an instrument the platform holds is answered, again and
    // again, while the five still wait.
    for _ in 0..20 {
        let held = s.pool.request(query("Coinbase:BTC-USD")).await;
        assert!(held.is_ok(), "{held:?}");
    }
    assert!(
        requests.iter().all(|r| !r.is_finished()),
        "the five wait for the slow source"
    );
    s.release.send(true).unwrap();
    for r in requests {
        let answer = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("answered once the source answered")
            .unwrap();
        assert!(answer.is_ok(), "{answer:?}");
    }
    assert_eq!(count(&s.calls.probes), 1, "one probe");
    assert_eq!(count(&s.calls.serves), 1, "one creation");
    assert_eq!(count(&s.calls.starts), 1, "one consumer");
    assert_eq!(s.dynamic_topics().len(), 1, "{:?}", s.dynamic_topics());
    use candela_actors::store::dynamic::DynamicRegistry;
    assert_eq!(s.registry.list().await.unwrap().len(), 1);
    assert_eq!(s.datastore_restarts().await, 0);
    s.stop();
}
