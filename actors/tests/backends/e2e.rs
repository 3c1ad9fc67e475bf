//! The fixed consumer actor end to end on a whole stack (a bus, a store, a
//! cache): trades arrive with replays, late and out of order, with history
//! bars and garbage; the consumer is killed mid-stream and restarted by its
//! supervisor (RESET); the stored bars must be exactly the bars of the
//! distinct trades and the history minutes, computed by the test kit's
//! independent oracle (`candela_testkit::oracle`), every field, and
//! the cache must hold what the store holds. Poison records (each rule of
//! `domain::validate` broken once) and a record the database itself refuses
//! go to the dead-letter topic, once, and stop nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candela_actors::consumer::fixed::{
    ConsumerStatus, FixedConsumer, FixedConsumerArgs, FixedConsumerMsg,
};
use candela_actors::consumer::{ConsumerMetrics, OpenStream};
use candela_actors::domain::{HistoryBar, Instrument, Interval, Record, Side, Tick};
use candela_actors::embedded::SqliteStore;
use candela_actors::kafka::decode_record;
use candela_actors::ports::{MessageStream, RecordBus};
use candela_actors::store::postgres::PgStore;
use candela_actors::store::{BarCache, BarStore, StoredBar, WriteBatch};
use candela_actors::supervisor::{
    ChildSpec, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use candela_testkit::convert;
use candela_testkit::oracle::{self, RefBar};
use ractor::{Actor, ActorRef};
use rust_decimal::Decimal;

use super::bus::BusHarness;
use super::data::assert_marks;

pub const BATCH_MAX: usize = 100;
/// Two days before and after the data, so every bar is in range.
pub const SPAN: i64 = 2 * 86_400;

/// Both cases on `$make().await`, which returns `(guard, stack)` with a
/// fresh store, cache and topic.
#[macro_export]
macro_rules! e2e_contract_tests {
    ($make:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn killed_mid_stream_the_consumer_resumes_and_stores_exactly_the_bars_of_the_distinct_trades(
        ) {
            let (_guard, stack) = $make().await;
            $crate::backends::e2e::killed_mid_stream_the_consumer_resumes_and_stores_exactly_the_bars_of_the_distinct_trades(&stack).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_batch_redelivered_after_the_database_commit_changes_no_bar() {
            let (_guard, stack) = $make().await;
            $crate::backends::e2e::a_batch_redelivered_after_the_database_commit_changes_no_bar(&stack).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn poison_records_are_dead_lettered_once_and_every_good_trade_is_stored() {
            let (_guard, stack) = $make().await;
            $crate::backends::e2e::poison_records_are_dead_lettered_once_and_every_good_trade_is_stored(&stack).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_record_the_database_refuses_is_quarantined_and_the_rest_of_its_batch_stored() {
            let (_guard, stack) = $make().await;
            $crate::backends::e2e::a_record_the_database_refuses_is_quarantined_and_the_rest_of_its_batch_stored(&stack).await;
        }
    };
}

/// Counts a store's tick rows (each distinct trade is one).
pub trait TickRows {
    fn tick_rows(&self) -> impl std::future::Future<Output = i64> + Send;
}

impl TickRows for PgStore {
    async fn tick_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM ticks")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

impl TickRows for SqliteStore {
    async fn tick_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM ticks")
            .fetch_one(self.pool())
            .await
            .unwrap()
    }
}

/// What the end-to-end cases run on.
pub struct Stack<H, S, C> {
    /// The bus.
    pub bus: H,
    /// The store.
    pub store: Arc<S>,
    /// The cache (its window must keep 2023's minutes).
    pub cache: Arc<C>,
    /// The topic (created with 3 partitions).
    pub topic: String,
}

/// The start of the data: a few minutes before a UTC day boundary, so the
/// trades cross minutes, hours and a day.
pub fn start() -> i64 {
    // 2023-11-15T00:00:00Z, a UTC midnight.
    const MIDNIGHT: i64 = 1_700_006_400;
    MIDNIGHT - 45 * 60
}

/// `n` distinct trades over ~90 minutes around a day boundary, round-robin
/// over `instruments`, in a scrambled (out-of-order) sequence.
pub fn trades(instruments: &[Instrument], n: usize) -> Vec<Tick> {
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
pub fn history(instrument: &Instrument) -> Vec<HistoryBar> {
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

/// Bars per (instrument, interval).
pub type Series = BTreeMap<(Instrument, Interval), Vec<RefBar>>;

/// The bars every interval must have, per instrument, by the independent
/// oracle: the instruments with live `trades` from their distinct trades
/// (coarse intervals too), the instrument with `history` from its minutes
/// merged (the two sets of instruments are apart).
pub fn expected(trades: &[Tick], history: &[HistoryBar]) -> Series {
    let trades = convert::trades(trades);
    let history = convert::histories(history);
    assert!(
        history
            .iter()
            .all(|h| trades.iter().all(|t| t.instrument != h.instrument)),
        "an instrument with both trades and history"
    );
    let mut out = Series::new();
    for interval in Interval::ALL {
        let secs = interval.seconds();
        for b in oracle::bars(&trades, secs)
            .into_iter()
            .chain(oracle::series(&[], &history, secs))
        {
            out.entry((b.instrument.parse().unwrap(), interval))
                .or_default()
                .push(b);
        }
    }
    out
}

/// The first difference between two sets of series, readably, if any.
pub fn series_difference(got: &Series, want: &Series) -> Option<String> {
    let keys: BTreeSet<_> = got.keys().chain(want.keys()).collect();
    keys.into_iter().find_map(|k| {
        let none = Vec::new();
        let (g, w) = (got.get(k).unwrap_or(&none), want.get(k).unwrap_or(&none));
        oracle::bars_difference(g, w).map(|d| format!("{} {:?}: {d}", k.0, k.1))
    })
}

#[track_caller]
pub fn assert_series(what: &str, got: &Series, want: &Series) {
    if let Some(d) = series_difference(got, want) {
        panic!("{what}: the stored bars differ from the reference: {d}");
    }
}

pub async fn stored(
    store: &impl BarStore,
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

pub fn as_ref_bars(stored: &BTreeMap<(Instrument, Interval), Vec<StoredBar>>) -> Series {
    stored
        .iter()
        .map(|(k, v)| (k.clone(), convert::stored_bars(v)))
        .collect()
}

/// Publishes two undecodable messages; returns their payloads.
async fn publish_garbage(h: &impl BusHarness, topic: &str, tag: &str) -> Vec<Vec<u8>> {
    let payloads: Vec<Vec<u8>> = vec![
        format!("garbage {tag}").into_bytes(),
        format!(r#"{{"v":1,"type":"candle","tag":"{tag}"}}"#).into_bytes(),
    ];
    let messages: Vec<(Option<&str>, &[u8])> = payloads
        .iter()
        .map(|p| (Some("Junk:X-Y"), p.as_slice()))
        .collect();
    h.publish_raw(topic, &messages).await;
    payloads
}

type Fixed<H, S, C> = FixedConsumer<<H as BusHarness>::Streams, <H as BusHarness>::Bus, S, C>;

/// A supervisor with one fixed consumer under `name`.
async fn supervise<H, S, C>(
    s: &Stack<H, S, C>,
    name: &str,
    group: &str,
    metrics: &Arc<ConsumerMetrics>,
) -> ActorRef<SupervisorMsg>
where
    H: BusHarness,
    S: BarStore,
    C: BarCache,
{
    let args = FixedConsumerArgs {
        instance: name.to_owned(),
        streams: Arc::clone(s.bus.streams()),
        group: group.to_owned(),
        topics: vec![s.topic.clone()],
        dead_letters: Arc::clone(s.bus.bus()),
        store: Arc::clone(&s.store),
        cache: Arc::clone(&s.cache),
        sink: Arc::new(candela_actors::feed::NoSink),
        decode: decode_record,
        batch_max: BATCH_MAX,
        batch_wait: Duration::from_millis(200),
        metrics: Arc::clone(metrics),
        restarted: false,
    };
    let spec = ChildSpec::of::<Fixed<H, S, C>>(name, args, |a, r| a.restarted = r > 0);
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

pub async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
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

/// The cache, marked complete over the data, must answer what the store
/// holds: the consumer's puts left it at the stored rows' versions.
async fn assert_cache_matches_store(
    store: &impl BarStore,
    cache: &impl BarCache,
    instruments: &[Instrument],
) {
    for i in instruments {
        let from = start() - SPAN;
        super::cache::fill(cache, i, from, &[]).await;
        let cached = cache.get(i, from, start() + SPAN).await.unwrap();
        let db = store
            .bars(i, Interval::M1, from, start() + SPAN, 100_000)
            .await
            .unwrap();
        assert_eq!(cached, Some(db), "{i}: the cache differs from the store");
    }
}

/// The consumer, killed mid-stream, resumes and stores exactly the bars of
/// the distinct trades.
pub async fn killed_mid_stream_the_consumer_resumes_and_stores_exactly_the_bars_of_the_distinct_trades<
    H: BusHarness,
    S: BarStore + TickRows,
    C: BarCache,
>(
    s: &Stack<H, S, C>,
) {
    let mut instruments = crate::common::instruments(4);
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
    s.bus.bus().publish(&s.topic, &phase1).await.unwrap();
    let mut garbage = publish_garbage(&s.bus, &s.topic, "one").await;

    let name = crate::common::unique("consumer-fixed");
    let metrics = Arc::new(ConsumerMetrics::default());
    let sup = supervise(s, &name, &crate::common::unique("e2e-group"), &metrics).await;

    // Kill the consumer mid-stream.
    wait_for("a few batches", Duration::from_secs(60), async || {
        metrics.batches.load(Ordering::Relaxed) >= 3
    })
    .await;
    let killed = ractor::registry::where_is(name.clone()).unwrap();
    let killed_id = killed.get_id();
    killed.kill();
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
    // Right after the restart the new actor's run begins with RESET (unless
    // it already took more steps than its run keeps: a fast bus can).
    let early = status(&name).await;
    if early.run.transitions_total as usize == early.run.recent.len() {
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
    }

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
    s.bus.bus().publish(&s.topic, &phase2).await.unwrap();
    garbage.extend(publish_garbage(&s.bus, &s.topic, "two").await);
    published += garbage.len();

    let want = expected(&all, &bars);
    let mut everyone = instruments.clone();
    everyone.push(history_instrument.clone());
    let finished = Instant::now() + Duration::from_secs(120);
    loop {
        let got = as_ref_bars(&stored(&*s.store, &everyone).await);
        let received = metrics.messages.load(Ordering::Relaxed) as usize;
        // The bars can be complete while the last batch is still being
        // dead-lettered and counted: wait for it to finish too.
        let idle = metrics.in_flight.load(Ordering::Relaxed) == 0;
        let difference = series_difference(&got, &want);
        if received >= published && idle && difference.is_none() {
            break;
        }
        if Instant::now() > finished {
            panic!(
                "not done after 120 s: received {received} of {published}, metrics {:?}, \
                 supervisor {:?}, first difference: {}",
                metrics.snapshot(),
                ractor::call_t!(sup, SupervisorMsg::Status, 2_000),
                difference.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Exactly the bars of the distinct trades and the history minutes, every interval.
    let got = stored(&*s.store, &everyone).await;
    assert_series("every interval", &as_ref_bars(&got), &want);
    // The minutes' sources are the reference rule's, and 1-minute bars of
    // live trades also keep their first and last trade.
    let minutes = oracle::reconcile(&convert::trades(&all), &convert::histories(&bars));
    for i in &everyone {
        let mine: Vec<_> = minutes
            .iter()
            .filter(|m| m.bar.instrument == i.to_string())
            .cloned()
            .collect();
        oracle::assert_same_minutes(
            format!("{i} 1m"),
            &convert::stored_minutes(&got[&(i.clone(), Interval::M1)]),
            &mine,
        );
    }
    for i in &instruments {
        let mine: Vec<Tick> = all.iter().filter(|t| &t.instrument == i).cloned().collect();
        assert_marks(
            &i.to_string(),
            got[&(i.clone(), Interval::M1)].iter().map(|b| &b.bar),
            &convert::trades(&mine),
        );
    }
    let m = metrics.snapshot();
    // Every distinct trade is stored once. (The counter may miss one batch:
    // the kill can land after its database commit and before the count, and
    // the redelivery then counts those trades as duplicates.)
    assert_eq!(s.store.tick_rows().await as usize, all.len());
    let replays = published - all.len() - bar_records - garbage.len();
    let context = format!(
        "{m:?}, published {published} ({} trades, {replays} replays, {bar_records} bars, {} garbage)",
        all.len(),
        garbage.len()
    );
    assert!(
        m.new_ticks as usize <= all.len() && m.new_ticks as usize + BATCH_MAX >= all.len(),
        "{context}"
    );
    assert!(m.duplicate_ticks >= replays as u64, "{context}");
    // Resumed from the committed offsets: at most the batch in flight at the
    // kill came again.
    assert!(
        m.messages as usize <= published + BATCH_MAX,
        "{} messages for {published} published",
        m.messages
    );

    // The garbage is on the dead-letter topic (a redelivered batch may have
    // sent a letter twice).
    let letters = s.bus.dead_letters(&s.topic, garbage.len()).await;
    assert_eq!(
        letters.iter().map(|l| &l.payload).collect::<BTreeSet<_>>(),
        garbage.iter().collect::<BTreeSet<_>>()
    );
    assert!(m.dead_lettered >= garbage.len() as u64);

    // The cache holds what the store holds.
    assert_cache_matches_store(&*s.store, &*s.cache, &everyone).await;

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

/// A consumer that died between the database commit and the offset commit:
/// its batch comes again to the next member and changes no bar.
pub async fn a_batch_redelivered_after_the_database_commit_changes_no_bar<
    H: BusHarness,
    S: BarStore,
    C: BarCache,
>(
    s: &Stack<H, S, C>,
) {
    let mut instruments = crate::common::instruments(3);
    let history_instrument = instruments.pop().unwrap();
    let mut records: Vec<Record> = trades(&instruments, 400)
        .into_iter()
        .map(Record::Trade)
        .collect();
    let bars = history(&history_instrument);
    records.extend(bars.iter().cloned().map(Record::Bar));
    s.bus.bus().publish(&s.topic, &records).await.unwrap();
    let group = crate::common::unique("crash-group");
    let topics = vec![s.topic.clone()];

    // A consumer that dies between the database commit and the offset commit.
    let mut stream = s.bus.streams().open(&group, &topics).await.unwrap();
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
    let before = stored(&*s.store, &everyone).await;
    assert_series(
        "after the first write",
        &as_ref_bars(&before),
        &expected(&trades(&instruments, 400), &bars),
    );

    // It comes back (a fresh member of the same group, under the supervisor):
    // the batch is delivered again and changes nothing.
    let name = crate::common::unique("consumer-fixed");
    let metrics = Arc::new(ConsumerMetrics::default());
    let sup = supervise(s, &name, &group, &metrics).await;
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
    let after = stored(&*s.store, &everyone).await;
    assert_eq!(after, before, "a bar or a row version changed");
    // The redelivery healed the cache: it holds the stored rows.
    assert_cache_matches_store(&*s.store, &*s.cache, &everyone).await;

    // And now the offsets are committed: the next member gets nothing.
    sup.stop_and_wait(None, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut next = s.bus.streams().open(&group, &topics).await.unwrap();
    let rest = next.next_batch(100, s.bus.quiet() * 5).await.unwrap();
    assert!(rest.is_empty(), "{} messages after the commit", rest.len());
}

/// Makes the store refuse one trade for a reason the decoder cannot see (a
/// constraint or a trigger added by the test).
pub trait Refuse {
    fn refuse_trade_id(&self, id: &str) -> impl std::future::Future<Output = ()> + Send;
}

impl Refuse for PgStore {
    async fn refuse_trade_id(&self, id: &str) {
        sqlx::query(&format!(
            "ALTER TABLE ticks ADD CONSTRAINT test_refused_trade CHECK (trade_id <> '{id}')"
        ))
        .execute(self.pool())
        .await
        .unwrap();
    }
}

impl Refuse for SqliteStore {
    async fn refuse_trade_id(&self, id: &str) {
        sqlx::query(&format!(
            "CREATE TRIGGER test_refused_trade BEFORE INSERT ON ticks WHEN NEW.trade_id = '{id}' \
             BEGIN SELECT RAISE(ABORT, 'test_refused_trade'); END"
        ))
        .execute(self.pool())
        .await
        .unwrap();
    }
}

/// Waits until `group` has committed every message of `topic` (3 partitions).
async fn wait_caught_up(h: &impl BusHarness, topic: &str, group: &str) {
    wait_for(
        "every message committed",
        Duration::from_secs(120),
        async || {
            let ends = h.end_offsets(topic, 3).await;
            let committed = h.committed(group, topic, 3).await;
            ends.iter()
                .zip(&committed)
                .all(|(end, c)| *end == 0 || *c == Some(*end))
        },
    )
    .await;
}

async fn restarts_of(sup: &ActorRef<SupervisorMsg>) -> u32 {
    ractor::call_t!(sup, SupervisorMsg::Status, 5_000)
        .unwrap()
        .iter()
        .map(|c| c.restarts)
        .sum()
}

/// One of each poison record among good trades: every good trade's bar is
/// right, each poison record is in the dead-letter topic exactly once with
/// its reason, the offsets move past them, and nothing restarts. A second
/// consumer group reads the whole topic again (every batch redelivered):
/// no dead letter is written twice and no bar changes.
pub async fn poison_records_are_dead_lettered_once_and_every_good_trade_is_stored<
    H: BusHarness,
    S: BarStore + TickRows,
    C: BarCache,
>(
    s: &Stack<H, S, C>,
) {
    let instruments = crate::common::instruments(3);
    let good = trades(&instruments, 600);
    let t = |f: &dyn Fn(&mut Tick)| {
        let mut x = good[0].clone();
        x.trade_id = format!("poison-{}", x.trade_id);
        f(&mut x);
        Record::Trade(x)
    };
    let bar = |f: &dyn Fn(&mut HistoryBar)| {
        let mut b = history(&instruments[0])[0].clone();
        f(&mut b);
        Record::Bar(b)
    };
    let poison: Vec<(Record, &str)> = vec![
        (t(&|x| x.price = Decimal::ZERO), "price"),
        (t(&|x| x.price = Decimal::new(-1, 0)), "price"),
        (t(&|x| x.quantity = Decimal::new(-5, 0)), "qty"),
        (t(&|x| x.instrument.base = "BTC USD".into()), "base"),
        (t(&|x| x.trade_id = "7".repeat(10_000)), "id"),
        (
            t(&|x| {
                x.price = Decimal::new(1_000_000_000_000_000, 0);
                x.quantity = Decimal::new(1_000_000_000_000_000, 0);
            }),
            "qty",
        ),
        (bar(&|b| b.open_time = 9_300_000_000), "open_time"),
        (
            bar(&|b| {
                b.high = Decimal::new(50, 0);
                b.low = Decimal::new(60, 0);
            }),
            "low",
        ),
    ];
    let mut records: Vec<Record> = good[..300].iter().cloned().map(Record::Trade).collect();
    records.extend(poison.iter().map(|(r, _)| r.clone()));
    records.extend(good[300..].iter().cloned().map(Record::Trade));
    s.bus.bus().publish(&s.topic, &records).await.unwrap();

    let name = crate::common::unique("consumer-poison");
    let group = crate::common::unique("poison-group");
    let metrics = Arc::new(ConsumerMetrics::default());
    let sup = supervise(s, &name, &group, &metrics).await;
    wait_caught_up(&s.bus, &s.topic, &group).await;

    // Every good trade, and nothing else, is stored; its bars are right.
    assert_eq!(s.store.tick_rows().await, good.len() as i64);
    let want = expected(&good, &[]);
    let got = as_ref_bars(&stored(s.store.as_ref(), &instruments).await);
    assert_series("the good trades", &got, &want);
    // Each poison record once, with the field it broke.
    let letters = s.bus.dead_letters(&s.topic, poison.len()).await;
    assert_eq!(s.bus.dead_letter_count(&s.topic).await, poison.len());
    let mut kinds: Vec<&str> = letters
        .iter()
        .map(|l| l.headers[candela_actors::kafka::publisher::DLQ_KIND].as_str())
        .collect();
    kinds.sort_unstable();
    let mut want_kinds: Vec<&str> = poison.iter().map(|(_, k)| *k).collect();
    want_kinds.sort_unstable();
    assert_eq!(kinds, want_kinds);
    for l in &letters {
        let reason = &l.headers[candela_actors::kafka::publisher::DLQ_REASON];
        assert!(reason.starts_with("invalid field"), "{reason}");
        assert!(reason.len() < 400, "a bounded reason: {reason}");
    }
    assert_eq!(restarts_of(&sup).await, 0, "no restart");
    assert_eq!(metrics.failures.load(Ordering::Relaxed), 0);
    assert_eq!(
        metrics.dead_lettered.load(Ordering::Relaxed),
        poison.len() as u64
    );
    sup.stop(None);

    // Every batch again, through another group: the dead letters are there
    // already, the ticks too.
    let again = crate::common::unique("poison-again");
    let metrics2 = Arc::new(ConsumerMetrics::default());
    let sup2 = supervise(
        s,
        &crate::common::unique("consumer-again"),
        &again,
        &metrics2,
    )
    .await;
    wait_caught_up(&s.bus, &s.topic, &again).await;
    assert_eq!(s.bus.dead_letter_count(&s.topic).await, poison.len());
    assert_eq!(metrics2.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(s.store.tick_rows().await, good.len() as i64);
    let got = as_ref_bars(&stored(s.store.as_ref(), &instruments).await);
    assert_series("after every batch again", &got, &want);
    assert_eq!(restarts_of(&sup2).await, 0);
    sup2.stop(None);
}

/// The database refuses one trade for a reason the decoder cannot see: the
/// consumer splits its batch until the trade stands alone, dead-letters it
/// with the database's message, and stores the rest of the batch.
pub async fn a_record_the_database_refuses_is_quarantined_and_the_rest_of_its_batch_stored<
    H: BusHarness,
    S: BarStore + TickRows + Refuse,
    C: BarCache,
>(
    s: &Stack<H, S, C>,
) {
    let instruments = crate::common::instruments(3);
    let all = trades(&instruments, 450);
    let refused = all[123].clone();
    s.store.refuse_trade_id(&refused.trade_id).await;
    let records: Vec<Record> = all.iter().cloned().map(Record::Trade).collect();
    s.bus.bus().publish(&s.topic, &records).await.unwrap();

    let name = crate::common::unique("consumer-refused");
    let group = crate::common::unique("refused-group");
    let metrics = Arc::new(ConsumerMetrics::default());
    let sup = supervise(s, &name, &group, &metrics).await;
    wait_caught_up(&s.bus, &s.topic, &group).await;

    let kept: Vec<Tick> = all
        .iter()
        .filter(|t| t.trade_id != refused.trade_id)
        .cloned()
        .collect();
    assert_eq!(s.store.tick_rows().await, kept.len() as i64);
    let got = as_ref_bars(&stored(s.store.as_ref(), &instruments).await);
    assert_series("the kept trades", &got, &expected(&kept, &[]));
    let letters = s.bus.dead_letters(&s.topic, 1).await;
    assert_eq!(s.bus.dead_letter_count(&s.topic).await, 1);
    let h = &letters[0].headers;
    assert_eq!(h[candela_actors::kafka::publisher::DLQ_KIND], "database");
    assert!(
        h[candela_actors::kafka::publisher::DLQ_REASON].contains("test_refused_trade"),
        "the database's message: {h:?}"
    );
    let decoded = decode_record(&letters[0].payload).unwrap();
    assert_eq!(decoded, Record::Trade(refused));
    assert_eq!(metrics.quarantined.load(Ordering::Relaxed), 1);
    assert_eq!(restarts_of(&sup).await, 0, "no restart");
    sup.stop(None);
}
