//! The Producer actor on the real broker, fed by the CryptoCompare imitation:
//! live trades with replays, a dropped connection, late and out-of-order
//! trades and malformed frames reach `tick-data` exactly once each, in arrival
//! order per instrument; history arrives whole; a failed publish is the
//! seed's Error, and the supervisor's restart is its RESET.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use candela_actors::call::{call_result, Failed};
use candela_actors::cryptocompare::{HistoryClient, Interval as CcInterval, LiveFeed};
use candela_actors::domain::{Instrument, Record, Tick};
use candela_actors::imitation::ImitationConfig;
use candela_actors::kafka::schema::decode_record;
use candela_actors::kafka::{KafkaConfig, KafkaPublisher};
use candela_actors::ports::BusError;
use candela_actors::producer::{
    fetch_history, Producer, ProducerArgs, ProducerError, ProducerMsg, Target,
};
use candela_actors::supervisor::{
    ChildSpec, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use common::{client_config, eventually, imitation};
use ractor::{Actor, ActorRef};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;

type P = Producer<HistoryClient, LiveFeed, KafkaPublisher>;

fn instruments() -> Vec<Instrument> {
    vec![
        Instrument::new("Coinbase", "BTC", "USD"),
        Instrument::new("Coinbase", "ETH", "USD"),
        Instrument::new("Kraken", "BTC", "EUR"),
    ]
}

/// A producer named `name` under a supervisor of its own.
async fn supervised_producer(
    name: &str,
    args: ProducerArgs<HistoryClient, LiveFeed, KafkaPublisher>,
) -> ActorRef<SupervisorMsg> {
    let spec = ChildSpec::of::<P>(name, args, |a, r| a.restarted = r > 0);
    let (sup, _) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            children: vec![spec],
            // Generous: one test keeps the broker down for a while.
            policy: RestartPolicy {
                max_restarts: 100,
                backoff_min: Duration::from_millis(20),
                backoff_max: Duration::from_millis(500),
                ..RestartPolicy::default()
            },
        },
    )
    .await
    .unwrap();
    sup
}

fn kafka_bus(config: &KafkaConfig) -> candela_actors::producer::BusFactory<KafkaPublisher> {
    let config = config.clone();
    Arc::new(move || {
        KafkaPublisher::new(&config).map_err(|e| candela_actors::ports::BusError::Client {
            reason: e.to_string(),
        })
    })
}

fn producer(name: &str) -> Option<ActorRef<ProducerMsg>> {
    ractor::registry::where_is(name).map(Into::into)
}

/// Reads every record of `topic` from the beginning until `quiet` passes
/// without a new one; returns (partition, record) in partition order.
async fn read_topic(bootstrap: &str, topic: &str, quiet: Duration) -> Vec<(i32, Record)> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", common::unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(quiet, c.recv()).await {
            Err(_) => return out,
            Ok(Err(e)) => panic!("consumer error: {e}"),
            Ok(Ok(m)) => {
                let record = decode_record(m.payload().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("not a record on {topic}: {e}"));
                out.push((m.partition(), record));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_trades_reach_the_topic_exactly_once_in_arrival_order() {
    let im = imitation(ImitationConfig {
        trades_per_sec: 25.0,
        heartbeat_interval_ms: 500,
        late_release_ms: 300,
        ..ImitationConfig::default()
    })
    .await;
    let kafka = common::config();
    let topic = common::unique("tick-data");
    let name = common::unique("producer");
    let cc = client_config(&im, None);
    let _sup = supervised_producer(
        &name,
        ProducerArgs {
            instance: name.clone(),
            history: Arc::new(HistoryClient::new(cc.clone()).unwrap()),
            live: Arc::new(LiveFeed { config: cc }),
            make_bus: kafka_bus(&kafka),
            fixed_topic: topic.clone(),
            fixed_partitions: 3,
            live_instruments: instruments(),
            batch_max: 500,
            dynamic: Default::default(),
            restarted: false,
        },
    )
    .await;

    // Let trades flow, then go through every fault the feed knows.
    let published = |n: u64| {
        let name = name.clone();
        async move {
            let p = producer(&name)?;
            let status = ractor::call_t!(p, ProducerMsg::Status, 2_000).ok()?;
            (status.published_trades >= n).then_some(status)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while published(40).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no trades published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    im.replay_recent(10);
    im.send_late(6);
    im.send_malformed(4);
    // Events, not pauses: the faults were sent, then the client is back.
    common::eventually("the faults to be sent", 20, || {
        let c = im.counters();
        c.malformed_sent >= 4 && c.trades_late >= 6
    })
    .await;
    let opened = im.counters().connections_opened;
    im.drop_connections();
    common::eventually("the client to reconnect", 20, || {
        let c = im.counters();
        c.connections_opened > opened && c.connections_active >= 1
    })
    .await;
    im.replay_recent(10);
    im.send_late(6);
    let before = published(0).await.unwrap().published_trades;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while published(before + 60).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "trades stopped after the faults"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stop the feed and let the last batch be acknowledged.
    let p = producer(&name).unwrap();
    for i in instruments() {
        p.cast(ProducerMsg::StopLive { instrument: i }).unwrap();
    }
    assert!(im.counters().malformed_sent >= 4, "the faults happened");

    // Read until the topic is quiet; the counters are read after, so
    // nothing published is left out of either.
    let records = read_topic(&kafka.bootstrap_servers(), &topic, Duration::from_secs(3)).await;
    let status = ractor::call_t!(p, ProducerMsg::Status, 2_000).unwrap();
    let ticks: Vec<Tick> = records
        .iter()
        .map(|(_, r)| match r {
            Record::Trade(t) => t.clone(),
            Record::Bar(b) => panic!("unexpected bar {b:?}"),
        })
        .collect();
    assert_eq!(
        ticks.len() as u64,
        status.published_trades,
        "nothing else on the topic"
    );

    // Exactly the imitation's trades over the covered time: no duplicate
    // (replays, reconnect), none missing, late ones included.
    let out_of_order = common::assert_exact(&im.model(), &instruments(), &ticks);
    assert!(out_of_order > 0, "late trades were sent and kept");

    // Each instrument on one partition, in order of arrival at the producer.
    let mut partition_of: BTreeMap<Instrument, i32> = BTreeMap::new();
    for (partition, record) in &records {
        let i = record.instrument().clone();
        assert_eq!(
            *partition_of.entry(i.clone()).or_insert(*partition),
            *partition,
            "{i} split"
        );
    }
    for i in instruments() {
        let arrivals: Vec<i64> = ticks
            .iter()
            .filter(|t| t.instrument == i)
            .map(|t| t.received_ns)
            .collect();
        assert!(
            arrivals.windows(2).all(|w| w[0] <= w[1]),
            "{i} out of arrival order"
        );
    }

    // The run shows the seed's cycle, never an error.
    let run = status.run.unwrap();
    assert_eq!(run.state, "Idle");
    assert_eq!(run.rejected_total, 0);
    assert!(run.recent.iter().any(|s| s.event == "DATA_READY(fixed)"));
    assert!(run.recent.iter().all(|s| s.to != "Error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_longer_than_a_page_is_published_whole() {
    let im = imitation(ImitationConfig::default()).await;
    let kafka = common::config();
    let topic = common::unique("tick-data");
    let dynamic = common::unique("dynamic");
    let name = common::unique("producer");
    let cc = client_config(&im, None);
    let _sup = supervised_producer(
        &name,
        ProducerArgs {
            instance: name.clone(),
            history: Arc::new(HistoryClient::new(cc.clone()).unwrap()),
            live: Arc::new(LiveFeed { config: cc }),
            make_bus: kafka_bus(&kafka),
            fixed_topic: topic.clone(),
            fixed_partitions: 2,
            live_instruments: vec![],
            batch_max: 1_000,
            dynamic: Default::default(),
            restarted: false,
        },
    )
    .await;
    let p = {
        let mut p = None;
        eventually("producer", 10, || {
            p = producer(&name);
            p.is_some()
        })
        .await;
        p.unwrap()
    };
    let i = Instrument::new("Coinbase", "BTC", "USD");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let to = now - now % 60 - 120;
    let from = to - 2_500 * 60;

    // A page is rate-limited on the way: retried.
    im.rate_limit_next(1, candela_actors::imitation::RateLimitStyle::Body);
    let report = fetch_history(
        &p,
        i.clone(),
        from,
        to,
        Target::Fixed,
        Duration::from_millis(60_000),
    )
    .await
    .unwrap();
    assert_eq!(report.bars, 2_501);

    let records = read_topic(&kafka.bootstrap_servers(), &topic, Duration::from_secs(3)).await;
    let expected = im.bars(CcInterval::Minute, &i, from, to);
    let got: Vec<_> = records
        .iter()
        .map(|(_, r)| match r {
            Record::Bar(b) => (
                b.open_time,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume_base,
                b.volume_quote,
            ),
            Record::Trade(_) => panic!("unexpected trade"),
        })
        .collect();
    let want: Vec<_> = expected
        .iter()
        .map(|b| {
            (
                b.time,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume_from,
                b.volume_to,
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "every minute once, in order, equal to the source"
    );

    // To a dynamic topic: the topic is created first, then DATA_READY(dynamic).
    call_result(
        &p.get_cell(),
        "producer",
        |reply| ProducerMsg::CreateTopic {
            topic: dynamic.clone(),
            partitions: 1,
            reply,
        },
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let report = fetch_history(
        &p,
        i.clone(),
        to - 600,
        to,
        Target::Dynamic(dynamic.clone()),
        Duration::from_millis(60_000),
    )
    .await
    .unwrap();
    assert_eq!(report.bars, 11);
    assert_eq!(
        read_topic(&kafka.bootstrap_servers(), &dynamic, Duration::from_secs(3))
            .await
            .len(),
        11
    );
    let run = ractor::call_t!(p, ProducerMsg::Status, 2_000)
        .unwrap()
        .run
        .unwrap();
    let events: Vec<&str> = run.recent.iter().map(|s| s.event.as_str()).collect();
    assert!(
        events.ends_with(&[
            "CREATE_DYNAMIC_TOPIC",
            "CREATE_TOPIC_SUCCESS",
            "FETCH_DATA",
            "DATA_READY(dynamic)",
            "PUBLISH_SUCCESS"
        ]),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_is_error_and_the_restart_is_reset() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("candela_actors=info")
        .with_test_writer()
        .try_init();
    let im = imitation(ImitationConfig::default()).await;
    // A broker of this test's own, so that it can be stopped.
    let mut broker = common::broker::Tansu::start(common::broker::Storage::Sqlite);
    let kafka = KafkaConfig {
        delivery_timeout_ms: 1_500,
        admin_timeout_ms: 3_000,
        ..KafkaConfig::for_brokers(&broker.bootstrap())
    };
    let topic = common::unique("tick-data");
    let name = common::unique("producer");
    let cc = client_config(&im, None);
    let sup = supervised_producer(
        &name,
        ProducerArgs {
            instance: name.clone(),
            history: Arc::new(HistoryClient::new(cc.clone()).unwrap()),
            live: Arc::new(LiveFeed { config: cc }),
            make_bus: kafka_bus(&kafka),
            fixed_topic: topic.clone(),
            fixed_partitions: 1,
            live_instruments: vec![],
            batch_max: 100,
            dynamic: Default::default(),
            restarted: false,
        },
    )
    .await;
    let i = Instrument::new("Coinbase", "BTC", "USD");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let to = now - now % 60 - 60;
    let wait_for_producer = || async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = producer(&name) {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "producer not running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while producer(&name).is_none() {
        let status = ractor::call_t!(sup, SupervisorMsg::Status, 2_000);
        assert!(
            tokio::time::Instant::now() < deadline,
            "producer not running: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = wait_for_producer().await;
    fetch_history(
        &p,
        i.clone(),
        to - 300,
        to,
        Target::Fixed,
        Duration::from_millis(30_000),
    )
    .await
    .unwrap();

    // The broker goes away: the publish fails, the caller hears why, the
    // machine enters Error and the actor fails.
    broker.stop();
    let err = fetch_history(
        &p,
        i.clone(),
        to - 120,
        to,
        Target::Fixed,
        Duration::from_millis(30_000),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Failed::Refused {
                error: ProducerError::Publish(BusError::Undelivered { .. }),
                ..
            }
        ),
        "{err}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = ractor::call_t!(sup, SupervisorMsg::Status, 2_000).unwrap();
        if status[0].restarts >= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The broker returns: the restarted producer (same name, fresh state)
    // starts its run with RESET and works again.
    broker.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let p = loop {
        let p = wait_for_producer().await;
        let result = fetch_history(
            &p,
            i.clone(),
            to - 60,
            to,
            Target::Fixed,
            Duration::from_secs(30),
        )
        .await;
        if result.is_ok() {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "producer did not recover: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run = ractor::call_t!(p, ProducerMsg::Status, 2_000)
        .unwrap()
        .run
        .unwrap();
    let first = &run.recent[0];
    assert_eq!(
        (first.from.as_str(), first.event.as_str(), first.to.as_str()),
        ("Error", "RESET", "Idle")
    );
    // The supervisor hears of the restart it started (its report may trail
    // the child's first answers by a moment).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = ractor::call_t!(sup, SupervisorMsg::Status, 2_000).unwrap();
        assert!(status[0].restarts >= 1);
        if status[0].running {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restart was not reported: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
