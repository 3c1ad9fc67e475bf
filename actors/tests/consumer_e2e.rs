//! The fixed consumer end to end on the real services: a tansu broker
//! (`common::broker`), PostgreSQL (a fresh database per test, candela-testkit)
//! and Redis (a key prefix per test). Trades arrive with replays, late and out
//! of order, with history bars and garbage; the consumer actor is killed
//! mid-stream and restarted by the supervisor (RESET); the bars in PostgreSQL
//! must be exactly the bars of the distinct trades, computed here
//! independently.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::consumer::fixed::{
    ConsumerStatus, FixedConsumer, FixedConsumerArgs, FixedConsumerMsg,
};
use candela_actors::consumer::{ConsumerMetrics, OpenStream};
use candela_actors::domain::{
    aggregate, Bar, HistoryBar, Instrument, Interval, Record, Side, Tick, TradeMark,
};
use candela_actors::kafka::{
    dead_letter_topic, decode_for_pipeline, decode_record, KafkaPublisher, KafkaStreams,
};
use candela_actors::ports::{MessageStream, RecordBus};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::redis_cache::RedisCache;
use candela_actors::store::{BarStore, StoredBar, WriteBatch};
use candela_actors::supervisor::{
    ChildSpec, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use candela_testkit::TestDb;
use ractor::{Actor, ActorRef};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rust_decimal::Decimal;

type Fixed = FixedConsumer<KafkaStreams, KafkaPublisher, PgStore, RedisCache>;
type Args = FixedConsumerArgs<KafkaStreams, KafkaPublisher, PgStore, RedisCache>;

const BATCH_MAX: usize = 100;
/// Two days before and after the data, so every bar is in range.
const SPAN: i64 = 2 * 86_400;

/// The start of the data: a few minutes before a UTC day boundary, so the
/// trades cross minutes, hours and a day.
fn start() -> i64 {
    // 2023-11-15T00:00:00Z, a UTC midnight.
    const MIDNIGHT: i64 = 1_700_006_400;
    MIDNIGHT - 45 * 60
}

/// `n` distinct trades over ~90 minutes around a day boundary, round-robin
/// over `instruments`, in a scrambled (out-of-order) sequence.
fn trades(instruments: &[Instrument], n: usize) -> Vec<Tick> {
    let base = start();
    (0..n)
        .map(|i| {
            // 7919 is prime: times visit the span in a scrambled order.
            let offset_ms = (i as i64 * 7_919_123) % (90 * 60 * 1000);
            Tick {
                instrument: instruments[i % instruments.len()].clone(),
                trade_id: (50_000 + i).to_string(),
                trade_time_ns: (base * 1000 + offset_ms) * 1_000_000 + (i as i64 % 1000),
                price: Decimal::new(3_000_000 + ((i as i64 * 7919) % 20_000), 2),
                quantity: Decimal::new(1 + (i as i64 * 31) % 5_000, 5),
                side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
                received_ns: 0,
            }
        })
        .collect()
}

/// Closed minutes of `instrument` (an instrument without live trades).
fn history(instrument: &Instrument) -> Vec<HistoryBar> {
    [0i64, 1, 4, 5, 16, 61, 62]
        .iter()
        .map(|&m| HistoryBar {
            instrument: instrument.clone(),
            open_time: start() + m * 60,
            open: Decimal::new(100 + m, 0),
            high: Decimal::new(110 + m, 0),
            low: Decimal::new(90 + m, 0),
            close: Decimal::new(105 + m, 0),
            volume_base: Decimal::new(15 + m, 1),
            volume_quote: Decimal::new(1_500 + m, 0),
        })
        .collect()
}

/// How the store turns a history bar into a 1-minute row (no trades, first and
/// last at the minute's edges), for the independent expectation.
fn history_as_bar(h: &HistoryBar) -> Bar {
    Bar {
        instrument: h.instrument.clone(),
        interval: Interval::M1,
        open_time: h.open_time,
        open: h.open,
        high: h.high,
        low: h.low,
        close: h.close,
        volume_base: h.volume_base,
        volume_quote: h.volume_quote,
        trades: 0,
        first: TradeMark {
            time_ns: h.open_time * 1_000_000_000,
            id: String::new(),
        },
        last: TradeMark {
            time_ns: h.open_time * 1_000_000_000 + 59_999_999_999,
            id: String::new(),
        },
    }
}

type Ohlcv = (
    i64,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    u64,
);

fn ohlcv(b: &Bar) -> Ohlcv {
    (
        b.open_time,
        b.open,
        b.high,
        b.low,
        b.close,
        b.volume_base,
        b.volume_quote,
        b.trades,
    )
}

/// The expected bars of every interval, per instrument: from the distinct
/// trades (`aggregate`) and the history minutes (widened and merged).
fn expected(
    distinct: &[Tick],
    history: &[HistoryBar],
) -> BTreeMap<(Instrument, Interval), Vec<Ohlcv>> {
    let mut out: BTreeMap<(Instrument, Interval), Vec<Ohlcv>> = BTreeMap::new();
    for interval in Interval::ALL {
        for b in aggregate(distinct, interval) {
            out.entry((b.instrument.clone(), interval))
                .or_default()
                .push(ohlcv(&b));
        }
        let mut merged: BTreeMap<(Instrument, i64), Bar> = BTreeMap::new();
        for h in history {
            let b = history_as_bar(h).widen(interval);
            merged
                .entry((b.instrument.clone(), b.open_time))
                .and_modify(|m| *m = m.merge(&b))
                .or_insert(b);
        }
        for b in merged.into_values() {
            out.entry((b.instrument.clone(), interval))
                .or_default()
                .push(ohlcv(&b));
        }
    }
    out
}

async fn stored(
    store: &PgStore,
    instruments: &[Instrument],
) -> BTreeMap<(Instrument, Interval), Vec<StoredBar>> {
    let mut out = BTreeMap::new();
    for i in instruments {
        for interval in Interval::ALL {
            let bars = store
                .bars(i, interval, start() - SPAN, start() + SPAN, 100_000)
                .await
                .unwrap();
            if !bars.is_empty() {
                out.insert((i.clone(), interval), bars);
            }
        }
    }
    out
}

fn as_ohlcv(
    stored: &BTreeMap<(Instrument, Interval), Vec<StoredBar>>,
) -> BTreeMap<(Instrument, Interval), Vec<Ohlcv>> {
    stored
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|b| ohlcv(&b.bar)).collect()))
        .collect()
}

/// Publishes garbage with a plain producer; returns the payloads.
async fn publish_garbage(
    config: &candela_actors::kafka::KafkaConfig,
    topic: &str,
    tag: &str,
) -> Vec<Vec<u8>> {
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap_servers())
        .create()
        .unwrap();
    let payloads: Vec<Vec<u8>> = vec![
        format!("garbage {tag}").into_bytes(),
        format!(r#"{{"v":1,"type":"candle","tag":"{tag}"}}"#).into_bytes(),
    ];
    for p in &payloads {
        raw.send(
            FutureRecord::<str, [u8]>::to(topic)
                .key("Junk:X-Y")
                .payload(p),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    payloads
}

struct Services {
    _db: TestDb,
    store: Arc<PgStore>,
    cache: Arc<RedisCache>,
    publisher: Arc<KafkaPublisher>,
    config: candela_actors::kafka::KafkaConfig,
    topic: String,
}

async fn services() -> Services {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let db = TestDb::new().await;
    let store = Arc::new(PgStore::connect(&db.url, 4).await.unwrap());
    let cache = Arc::new(
        RedisCache::connect(
            &candela_testkit::redis_url(),
            &candela_testkit::unique("e2e"),
            10 * 365 * 86_400,
        )
        .await
        .unwrap(),
    );
    let config = common::config();
    let publisher = Arc::new(KafkaPublisher::new(&config).unwrap());
    let topic = common::unique("e2e");
    RecordBus::ensure_topic(&*publisher, &topic, 3)
        .await
        .unwrap();
    Services {
        _db: db,
        store,
        cache,
        publisher,
        config,
        topic,
    }
}

/// A supervisor with one fixed consumer under `name`.
async fn supervise(
    s: &Services,
    name: &str,
    group: &str,
    metrics: &Arc<ConsumerMetrics>,
) -> ActorRef<SupervisorMsg> {
    let args: Args = FixedConsumerArgs {
        instance: name.to_owned(),
        streams: Arc::new(KafkaStreams::new(s.config.clone())),
        group: group.to_owned(),
        topics: vec![s.topic.clone()],
        dead_letters: Arc::clone(&s.publisher),
        store: Arc::clone(&s.store),
        cache: Arc::clone(&s.cache),
        decode: decode_for_pipeline,
        batch_max: BATCH_MAX,
        batch_wait: Duration::from_millis(200),
        metrics: Arc::clone(metrics),
        restarted: false,
    };
    let spec = ChildSpec::of::<Fixed>(name, args, |a, r| a.restarted = r > 0);
    let (sup, _) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            children: vec![spec],
            policy: RestartPolicy {
                backoff_min: Duration::from_millis(50),
                ..RestartPolicy::default()
            },
        },
    )
    .await
    .unwrap();
    sup
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(name: &str) -> ConsumerStatus {
    let actor: ActorRef<FixedConsumerMsg> = ractor::registry::where_is(name)
        .expect("consumer running")
        .into();
    ractor::call_t!(actor, FixedConsumerMsg::Status, 5_000).unwrap()
}

/// Every payload on the dead-letter topic of `topic`.
async fn dead_letters(
    config: &candela_actors::kafka::KafkaConfig,
    topic: &str,
    want: usize,
) -> Vec<Vec<u8>> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", config.bootstrap_servers())
        .set("group.id", common::unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[&dead_letter_topic(topic)]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < want {
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Ok(m)) => out.push(m.payload().unwrap_or_default().to_vec()),
            Ok(Err(e)) => panic!("dead-letter reader: {e}"),
            Err(_) => break,
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_the_consumer_resumes_and_stores_exactly_the_bars_of_the_distinct_trades()
{
    let s = services().await;
    let mut instruments = common::instruments(4);
    let history_instrument = instruments.pop().unwrap();
    let all = trades(&instruments, 3_000);
    let bars = history(&history_instrument);
    let (first, second) = all.split_at(1_800);

    // Phase 1: the first trades (scrambled times: late and out of order), a
    // replay of some of them (CryptoCompare replays on subscribe), history
    // bars, garbage.
    let mut phase1: Vec<Record> = first.iter().cloned().map(Record::Trade).collect();
    phase1.extend(first[200..500].iter().cloned().map(Record::Trade));
    phase1.extend(bars[..4].iter().cloned().map(Record::Bar));
    let mut bar_records = 4;
    let mut published = phase1.len();
    RecordBus::publish(&*s.publisher, &s.topic, &phase1)
        .await
        .unwrap();
    let mut garbage = publish_garbage(&s.config, &s.topic, "one").await;

    let name = common::unique("consumer-fixed");
    let metrics = Arc::new(ConsumerMetrics::default());
    let sup = supervise(&s, &name, &common::unique("e2e-group"), &metrics).await;

    // Kill the consumer mid-stream.
    wait_for("a few batches", Duration::from_secs(60), async || {
        metrics.batches.load(Ordering::Relaxed) >= 3
    })
    .await;
    let killed = ractor::registry::where_is(name.clone()).unwrap();
    let killed_id = killed.get_id();
    killed.kill();
    // Right after the restart (the run keeps its most recent steps only), the
    // new actor's run begins with RESET.
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        match ractor::registry::where_is(name.clone()) {
            Some(c) if c.get_id() != killed_id => break c,
            _ => {
                assert!(Instant::now() < deadline, "no restart");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let early = status(&name).await;
    assert!(
        early.run.transitions_total as usize == early.run.recent.len(),
        "steps were dropped from the run: {:?}",
        early.run
    );
    let first_step = &early.run.recent[0];
    assert_eq!(
        (
            first_step.from.as_str(),
            first_step.event.as_str(),
            first_step.to.as_str()
        ),
        ("Error", "RESET", "Idle"),
        "{:?}",
        early.run.recent
    );

    // Phase 2: the rest, with late replays of phase-1 trades and a batch-internal
    // duplicate, the other history bars (one repeated), more garbage.
    let mut phase2: Vec<Record> = Vec::new();
    for (i, t) in second.iter().enumerate() {
        phase2.push(Record::Trade(t.clone()));
        if i % 10 == 0 {
            phase2.push(Record::Trade(first[i].clone()));
        }
        if i % 97 == 0 {
            phase2.push(Record::Trade(t.clone()));
        }
    }
    phase2.extend(bars[3..].iter().cloned().map(Record::Bar));
    bar_records += bars.len() - 3;
    published += phase2.len();
    RecordBus::publish(&*s.publisher, &s.topic, &phase2)
        .await
        .unwrap();
    garbage.extend(publish_garbage(&s.config, &s.topic, "two").await);
    published += garbage.len();

    let want = expected(&all, &bars);
    let mut everyone = instruments.clone();
    everyone.push(history_instrument.clone());
    let finished = Instant::now() + Duration::from_secs(120);
    loop {
        let got = as_ohlcv(&stored(&s.store, &everyone).await);
        let received = metrics.messages.load(Ordering::Relaxed) as usize;
        if received >= published && got == want {
            break;
        }
        if Instant::now() > finished {
            let differ: Vec<_> = want
                .keys()
                .chain(got.keys())
                .filter(|k| want.get(*k) != got.get(*k))
                .collect();
            panic!(
                "not done after 120 s: received {received} of {published}, metrics {:?}, \
                 supervisor {:?}, differing series {differ:?}",
                metrics.snapshot(),
                ractor::call_t!(sup, SupervisorMsg::Status, 2_000)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Exactly the bars of the distinct trades and the history minutes, every interval.
    let got = stored(&s.store, &everyone).await;
    assert_eq!(as_ohlcv(&got), want);
    // 1-minute bars of live trades also keep their first and last trade.
    for i in &instruments {
        let m1: Vec<Bar> = got[&(i.clone(), Interval::M1)]
            .iter()
            .map(|b| b.bar.clone())
            .collect();
        let mine: Vec<Tick> = all.iter().filter(|t| &t.instrument == i).cloned().collect();
        assert_eq!(m1, aggregate(&mine, Interval::M1), "{i}");
    }
    let m = metrics.snapshot();
    // Every distinct trade is stored once. (The counter may miss one batch:
    // the kill can land after its database commit and before the count, and
    // the redelivery then counts those trades as duplicates.)
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ticks")
        .fetch_one(s.store.pool())
        .await
        .unwrap();
    assert_eq!(rows as usize, all.len());
    assert!(
        m.new_ticks as usize <= all.len() && m.new_ticks as usize + BATCH_MAX >= all.len(),
        "{m:?}"
    );
    let replays = published - all.len() - bar_records - garbage.len();
    assert!(m.duplicate_ticks >= replays as u64, "{m:?}");
    // Resumed from the committed offsets: at most the batch in flight at the
    // kill came again.
    assert!(
        m.messages as usize <= published + BATCH_MAX,
        "{} messages for {published} published",
        m.messages
    );

    // The garbage is on the dead-letter topic (a redelivered batch may have
    // sent a letter twice).
    let letters = dead_letters(&s.config, &s.topic, garbage.len()).await;
    assert_eq!(
        letters.iter().collect::<BTreeSet<_>>(),
        garbage.iter().collect::<BTreeSet<_>>()
    );
    assert!(m.dead_lettered >= garbage.len() as u64);

    // The same actor to the end: one restart only.
    assert_eq!(
        ractor::registry::where_is(name.clone()).map(|c| c.get_id()),
        Some(restarted.get_id())
    );
    assert!(!status(&name).await.run.in_error);
    let children = ractor::call_t!(sup, SupervisorMsg::Status, 2_000).unwrap();
    assert_eq!(children[0].restarts, 1);
    sup.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_redelivered_after_the_database_commit_changes_no_bar() {
    let s = services().await;
    let mut instruments = common::instruments(3);
    let history_instrument = instruments.pop().unwrap();
    let mut records: Vec<Record> = trades(&instruments, 400)
        .into_iter()
        .map(Record::Trade)
        .collect();
    let bars = history(&history_instrument);
    records.extend(bars.iter().cloned().map(Record::Bar));
    RecordBus::publish(&*s.publisher, &s.topic, &records)
        .await
        .unwrap();
    let group = common::unique("crash-group");
    let topics = vec![s.topic.clone()];
    let streams = KafkaStreams::new(s.config.clone());

    // A consumer that dies between the database commit and the offset commit.
    let mut stream = streams.open(&group, &topics).await.unwrap();
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while batch.len() < records.len() && Instant::now() < deadline {
        batch.extend(
            stream
                .next_batch(records.len(), Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    assert_eq!(batch.len(), records.len());
    let (mut ticks, mut history_bars) = (Vec::new(), Vec::new());
    for m in &batch {
        match decode_record(&m.payload).unwrap() {
            Record::Trade(t) => ticks.push(t),
            Record::Bar(b) => history_bars.push(b),
        }
    }
    let outcome = s
        .store
        .write(WriteBatch {
            ticks: &ticks,
            history: &history_bars,
        })
        .await
        .unwrap();
    assert_eq!(outcome.new_ticks, 400);
    drop(stream); // no offset commit

    let mut everyone = instruments.clone();
    everyone.push(history_instrument);
    let before = stored(&s.store, &everyone).await;
    assert_eq!(
        as_ohlcv(&before),
        expected(&trades(&instruments, 400), &bars)
    );

    // It comes back (a fresh member of the same group, under the supervisor):
    // the batch is delivered again and changes nothing.
    let name = common::unique("consumer-fixed");
    let metrics = Arc::new(ConsumerMetrics::default());
    let sup = supervise(&s, &name, &group, &metrics).await;
    wait_for(
        "the redelivered batch",
        Duration::from_secs(60),
        async || {
            metrics.messages.load(Ordering::Relaxed) as usize >= records.len()
                && metrics.batches.load(Ordering::Relaxed) as usize
                    >= records.len().div_ceil(BATCH_MAX)
        },
    )
    .await;
    let m = metrics.snapshot();
    assert_eq!(m.messages as usize, records.len(), "{m:?}");
    assert_eq!(
        (m.new_ticks, m.duplicate_ticks, m.history_applied),
        (0, 400, 0)
    );
    let after = stored(&s.store, &everyone).await;
    assert_eq!(after, before, "a bar or a row version changed");

    // And now the offsets are committed: the next member gets nothing.
    sup.stop_and_wait(None, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut next = streams.open(&group, &topics).await.unwrap();
    let rest = next.next_batch(100, Duration::from_secs(10)).await.unwrap();
    assert!(rest.is_empty(), "{} messages after the commit", rest.len());
}
