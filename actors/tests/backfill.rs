//! The history backfill (`producer::backfill`) through a real Producer
//! actor, the CryptoCompare imitation (slowed, so requests overlap when they
//! are made together) and the embedded bus: the instruments are fetched
//! concurrently, every request stays within the history client's rate
//! limit, and every minute of the plan is published once, equal to the
//! imitation's own bars.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use candela_actors::cryptocompare::{
    CryptoCompareConfig, HistoryClient, Interval as CcInterval, LiveFeed,
};
use candela_actors::domain::{Instrument, Record};
use candela_actors::embedded::MemoryBus;
use candela_actors::imitation::ImitationConfig;
use candela_actors::kafka::schema::decode_record;
use candela_actors::producer::backfill::{self, Plan, Settings};
use candela_actors::producer::{Producer, ProducerArgs, ProducerMsg};
use common::{client_config, imitation};
use ractor::{Actor, ActorRef};

/// Requests per second the test allows the history client.
const RATE: u32 = 4;

/// A Producer (no live instruments) fetching with `cc`, publishing to a
/// topic of its own on an embedded bus: the producer, the bus, the topic.
async fn producer_on_memory_bus(
    cc: CryptoCompareConfig,
) -> (ActorRef<ProducerMsg>, MemoryBus, String) {
    let bus = MemoryBus::new();
    let topic = common::unique("tick-data");
    let name = common::unique("producer");
    let make_bus = {
        let bus = bus.clone();
        Arc::new(move || Ok(bus.clone()))
    };
    let (producer, _) = Actor::spawn(
        Some(name.clone()),
        Producer::<HistoryClient, LiveFeed, MemoryBus>::default(),
        ProducerArgs {
            instance: name,
            history: Arc::new(HistoryClient::new(cc.clone()).unwrap()),
            live: Arc::new(LiveFeed { config: cc }),
            make_bus,
            fixed_topic: topic.clone(),
            fixed_partitions: 3,
            live_instruments: vec![],
            batch_max: 5_000,
            dynamic: Default::default(),
            restarted: false,
        },
    )
    .await
    .unwrap();
    (producer, bus, topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instruments_are_backfilled_concurrently_within_the_rate_limit() {
    let im = imitation(ImitationConfig {
        rest_delay_ms: 300,
        ..ImitationConfig::default()
    })
    .await;
    let cc = CryptoCompareConfig {
        rest_per_second: RATE,
        rest_per_minute: 10_000,
        ..client_config(&im, None)
    };
    let (producer, bus, topic) = producer_on_memory_bus(cc).await;

    let instruments = vec![
        Instrument::new("Coinbase", "BTC", "USD"),
        Instrument::new("Coinbase", "ETH", "USD"),
        Instrument::new("Kraken", "BTC", "EUR"),
    ];
    let now = candela_actors::domain::validate::now_secs();
    let last = now - now.rem_euclid(60) - 120;
    // Three chunks per instrument, each one request to the source.
    let plan = Plan::last_minutes(last, 3 * 1_000, 1_000);
    let report = {
        let producer = producer.clone();
        backfill::run(
            move || Some(producer.clone()),
            instruments.clone(),
            plan,
            Settings {
                concurrency: 3,
                call_timeout: Duration::from_secs(60),
                ..Settings::default()
            },
        )
        .await
    };

    // Every instrument done, nothing given up.
    assert_eq!(report.len(), 3, "{report:?}");
    for r in &report {
        assert!(r.finished, "{r:?}");
        assert_eq!(r.done_minutes, 3_000, "{r:?}");
        assert_eq!(r.failed_chunks, 0, "{r:?}");
    }

    // Concurrent: requests of several instruments were answered at once.
    let counters = im.counters();
    assert_eq!(counters.rest_requests, 9, "{counters:?}");
    assert!(
        counters.rest_max_in_flight >= 2,
        "the instruments were fetched one after another: {counters:?}"
    );

    // Within the rate: n requests in any span t took at least what the
    // limiter allows (a burst of RATE, then RATE per second).
    let arrivals = im.rest_arrivals();
    assert_eq!(arrivals.len(), 9);
    for i in 0..arrivals.len() {
        for j in i + 1..arrivals.len() {
            let n = (j - i + 1) as f64;
            let span = arrivals[j].saturating_sub(arrivals[i]).as_secs_f64();
            // 50 ms of slack for the arrival clock against the limiter's.
            let allowed = f64::from(RATE) + f64::from(RATE) * (span + 0.05);
            assert!(
                n <= allowed,
                "{n} requests within {span:.3} s: over {RATE}/s (arrivals {arrivals:?})"
            );
        }
    }

    // Every minute published once, equal to the imitation's own bars.
    let mut got: BTreeMap<(String, i64), _> = BTreeMap::new();
    for m in bus.messages(&topic) {
        match decode_record(&m.payload).unwrap() {
            Record::Bar(b) => {
                let key = (b.instrument.to_string(), b.open_time);
                let value = (
                    b.open,
                    b.high,
                    b.low,
                    b.close,
                    b.volume_base,
                    b.volume_quote,
                );
                assert!(
                    got.insert(key.clone(), value).is_none(),
                    "{key:?} published twice"
                );
            }
            Record::Trade(t) => panic!("a trade in a backfill: {t:?}"),
        }
    }
    let mut want = BTreeMap::new();
    for i in &instruments {
        for b in im.bars(CcInterval::Minute, i, plan.first, plan.last) {
            want.insert(
                (i.to_string(), b.time),
                (b.open, b.high, b.low, b.close, b.volume_from, b.volume_to),
            );
        }
    }
    assert_eq!(got.len(), want.len());
    assert!(
        got == want,
        "the published bars differ from the imitation's"
    );
    let published: u64 = report.iter().map(|r| r.bars).sum();
    assert_eq!(published as usize, got.len());
    producer.stop(None);
}

/// A fetch the source refuses (a pair it does not list) is answered to its
/// caller, and the producer goes on: the other instruments' fetches in
/// flight are published, nothing restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fetch_fails_alone_and_the_producer_goes_on() {
    let im = imitation(ImitationConfig {
        rest_delay_ms: 300,
        ..ImitationConfig::default()
    })
    .await;
    let cc = client_config(&im, None);
    let (producer, bus, topic) = producer_on_memory_bus(cc).await;
    // (Not the other test's instruments: the progress table is the
    // process's, by instrument, and the tests run at once.)
    let listed = [
        Instrument::new("Coinbase", "SOL", "USD"),
        Instrument::new("Kraken", "XRP", "EUR"),
    ];
    let unlisted = Instrument::new("Coinbase", "NOPE", "USD");
    let now = candela_actors::domain::validate::now_secs();
    let plan = Plan::last_minutes(now - now.rem_euclid(60) - 120, 2 * 500, 500);
    let report = {
        let producer = producer.clone();
        backfill::run(
            move || Some(producer.clone()),
            vec![unlisted.clone(), listed[0].clone(), listed[1].clone()],
            plan,
            Settings {
                concurrency: 3,
                attempts: 1,
                call_timeout: Duration::from_secs(60),
                producer_wait: Duration::from_secs(5),
                ..Settings::default()
            },
        )
        .await
    };
    assert_eq!(
        producer.get_status(),
        ractor::ActorStatus::Running,
        "the producer stopped on a refused fetch"
    );
    for r in &report {
        if r.instrument == unlisted.to_string() {
            assert!(r.failed_chunks >= 1, "{r:?}");
        } else {
            assert_eq!((r.done_minutes, r.failed_chunks), (1_000, 0), "{r:?}");
        }
    }
    let published = bus.messages(&topic).len();
    assert_eq!(published, 2 * 1_000, "both listed instruments, whole");
    producer.stop(None);
}
