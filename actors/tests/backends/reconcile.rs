//! The reconciliation rule of live and history minutes, on every
//! [`BarStore`]: each hole the old rule had, and the property that the bars
//! depend on the set of ticks and history answers only (any split into
//! batches, any order, any redelivery: the same bars).
//!
//! The rule (`actors/src/domain/reconcile.rs`): a minute's bar is its best
//! history answer (the greatest by base volume, then quote volume, high, low,
//! open, close; zero volume ignored) when that answer's base volume exceeds
//! the live bar's by more than 10^-12 of the larger, else the live bar. The
//! property test also checks every scenario against the test kit's
//! independent reference (`candela_testkit::oracle::reconcile`).

use candela_actors::domain::{HistoryBar, Instrument, Interval, Record, Tick};
use candela_actors::store::{BarStore, Source, StoredBar, WriteBatch};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rust_decimal::Decimal;

use candela_testkit::{convert, oracle};

use super::data::{history, history_as_bar, tick};

/// One `#[tokio::test]` per case, each on a fresh store made by
/// `$make().await` (see `store_contract_tests!`).
#[macro_export]
macro_rules! reconcile_contract_tests {
    ($make:ident) => {
        $crate::reconcile_contract_tests!(@cases $make;
            an_early_incomplete_answer_gives_way_to_the_complete_one,
            float_noise_never_displaces_a_complete_live_bar,
            late_ticks_still_count_after_a_repair,
            the_best_answer_wins_wherever_it_lands,
            any_split_any_order_any_redelivery_same_bars,
        );
    };
    (@cases $make:ident; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_guard, store) = $make().await;
                $crate::backends::reconcile::$case(&store).await;
            }
        )*
    };
}

const T0: i64 = 1_700_000_040;

fn instrument(name: &str) -> Instrument {
    Instrument::new("Coinbase", name, "USD")
}

async fn write(store: &impl BarStore, ticks: &[Tick], history: &[HistoryBar]) {
    store
        .write(WriteBatch { ticks, history })
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
}

async fn minute(store: &impl BarStore, i: &Instrument, t: i64) -> StoredBar {
    let bars = store.bars(i, Interval::M1, t, t, 10).await.unwrap();
    assert_eq!(bars.len(), 1, "one bar at {t}: {bars:?}");
    bars.into_iter().next().unwrap()
}

/// Three ticks of quantity 1 at price 100.00 in minute `t`: a live base
/// volume of 0.000003 (quantities are in millionths).
fn three_ticks(i: &Instrument, t: i64, first_id: u64) -> Vec<Tick> {
    (0..3)
        .map(|k| tick(i, first_id + k, t + k as i64, 10_000, 1))
        .collect()
}

/// A history answer with an exact base volume `vb`.
fn answer(i: &Instrument, t: i64, close: i64, vb: &str) -> HistoryBar {
    let vb: Decimal = vb.parse().unwrap();
    HistoryBar {
        volume_base: vb,
        volume_quote: vb * Decimal::from(100),
        ..history(i, t, close, 1)
    }
}

pub async fn an_early_incomplete_answer_gives_way_to_the_complete_one(store: &impl BarStore) {
    // The live feed joined late: it saw one trade of the minute. A repair
    // fetched the minute 0.2 s after it closed, before the source had all of
    // it (two trades' worth), and later re-fetches bring the complete
    // minute (five). The old rule kept the first answer for ever.
    let i = instrument("EARLY");
    let t = T0 - T0 % 60;
    write(store, &[tick(&i, 1, t + 50, 10_000, 1)], &[]).await;
    let early = answer(&i, t, 101, "0.000002");
    write(store, &[], std::slice::from_ref(&early)).await;
    let got = minute(store, &i, t).await;
    assert_eq!(got.source, Source::History);
    assert_eq!(got.bar, history_as_bar(&early));
    let v_early = got.version;

    let complete = answer(&i, t, 105, "0.000005");
    write(store, &[], std::slice::from_ref(&complete)).await;
    let got = minute(store, &i, t).await;
    assert_eq!(
        got.bar,
        history_as_bar(&complete),
        "the complete answer wins"
    );
    assert!(got.version > v_early, "a change takes a new version");

    // The early answer arriving again (a redelivery) changes nothing.
    write(store, &[], std::slice::from_ref(&early)).await;
    let again = minute(store, &i, t).await;
    assert_eq!(again, got);
}

pub async fn float_noise_never_displaces_a_complete_live_bar(store: &impl BarStore) {
    // The live bar saw every trade: 0.3 exactly. The source's history sums
    // in floating point and answers 0.30000000000000004: the same volume.
    let i = instrument("NOISE");
    let t = T0 - T0 % 60;
    let live = [
        tick(&i, 1, t + 1, 10_000, 100_000),
        tick(&i, 2, t + 2, 10_100, 200_000),
    ];
    write(store, &live, &[]).await;
    let before = minute(store, &i, t).await;
    assert_eq!(before.bar.volume_base, "0.3".parse::<Decimal>().unwrap());
    write(store, &[], &[answer(&i, t, 101, "0.30000000000000004")]).await;
    let after = minute(store, &i, t).await;
    assert_eq!(after.source, Source::Live, "{after:?}");
    assert_eq!(after, before, "not even a new version");
    assert_eq!(after.bar.trades, 2);

    // A genuinely larger answer (a trade the live feed missed) repairs it.
    let more = answer(&i, t, 102, "0.300001");
    write(store, &[], std::slice::from_ref(&more)).await;
    assert_eq!(minute(store, &i, t).await.bar, history_as_bar(&more));
}

pub async fn late_ticks_still_count_after_a_repair(store: &impl BarStore) {
    // A repaired minute (history: 0.000005) whose late live ticks then add
    // up to more than the answer: the live bar is the more complete one.
    let i = instrument("LATE");
    let t = T0 - T0 % 60;
    write(store, &three_ticks(&i, t, 10), &[]).await;
    let h = answer(&i, t, 104, "0.000005");
    write(store, &[], std::slice::from_ref(&h)).await;
    assert_eq!(minute(store, &i, t).await.source, Source::History);
    // A late tick: 4 in all, less than the answer: still history.
    write(store, &[tick(&i, 20, t + 30, 9_000, 1)], &[]).await;
    assert_eq!(minute(store, &i, t).await.bar, history_as_bar(&h));
    // Two more: 6 > 5, the live bar (every tick, in trade order) takes over
    // (at 5, equal, it would too: the answer is not *more* complete).
    write(
        store,
        &[
            tick(&i, 21, t + 31, 9_000, 1),
            tick(&i, 22, t + 59, 11_000, 1),
        ],
        &[],
    )
    .await;
    let got = minute(store, &i, t).await;
    assert_eq!(got.source, Source::Live);
    assert_eq!(got.bar.trades, 6);
    assert_eq!(got.bar.volume_base, "0.000006".parse::<Decimal>().unwrap());
    assert_eq!(got.bar.close, Decimal::new(11_000, 2));
    assert_eq!(got.bar.low, Decimal::new(9_000, 2));
}

pub async fn the_best_answer_wins_wherever_it_lands(store: &impl BarStore) {
    // Answers of one minute in one batch, repeated, and in a later batch:
    // the greatest (base volume, quote volume, ...) is the minute's.
    let i = instrument("BEST");
    let t = T0 - T0 % 60;
    let small = history(&i, t, 101, 5);
    let big = history(&i, t, 109, 9);
    let same_volume_higher_close = history(&i, t, 111, 9);
    write(
        store,
        &[],
        &[
            small.clone(),
            big.clone(),
            small.clone(),
            history(&i, t + 60, 102, 5),
        ],
    )
    .await;
    assert_eq!(minute(store, &i, t).await.bar, history_as_bar(&big));
    let settled = minute(store, &i, t).await;
    write(store, &[], &[small.clone(), big.clone()]).await;
    assert_eq!(
        minute(store, &i, t).await,
        settled,
        "replays change nothing"
    );
    // Equal volumes: the order of the other fields decides (quote volume
    // first: 9 × 100 both; then high, 116 > 114).
    write(store, &[], std::slice::from_ref(&same_volume_higher_close)).await;
    assert_eq!(
        minute(store, &i, t).await.bar,
        history_as_bar(&same_volume_higher_close)
    );
    // Zero-volume answers never make or change a minute.
    write(store, &[], &[history(&i, t + 120, 103, 0)]).await;
    assert!(store
        .bars(&i, Interval::M1, t + 120, t + 120, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A scenario: the records of a few minutes of one instrument (ticks, some
/// repeated; history answers smaller, equal, noisy or larger than the live
/// volume, some zero), and a way to deliver them.
#[derive(Debug, Clone)]
struct Scenario {
    records: Vec<Record>,
    /// A permutation of `records` (as sort keys).
    order: Vec<u32>,
    /// Where the permuted sequence is cut into batches.
    cuts: Vec<usize>,
    /// Batches delivered a second time (by index, after the batch itself).
    redeliver: Vec<usize>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    // Per minute: (ticks: (price, qty) list, answers: (kind, close) list).
    let minute = (
        prop::collection::vec((9_000i64..11_000, 1i64..50), 0..8),
        prop::collection::vec((0u8..5, 95i64..110), 0..3),
    );
    prop::collection::vec(minute, 1..5).prop_flat_map(|minutes| {
        let i = instrument("PROP");
        let t0 = T0 - T0 % 60;
        let mut records = Vec::new();
        let mut id = 0u64;
        for (m, (ticks, answers)) in minutes.iter().enumerate() {
            let t = t0 + 60 * m as i64;
            let mut live = Decimal::ZERO;
            for (k, (price, qty)) in ticks.iter().enumerate() {
                id += 1;
                let tick = tick(&i, id, t + (k as i64 * 7) % 60, *price, *qty);
                live += tick.quantity;
                records.push(Record::Trade(tick.clone()));
                if id % 3 == 0 {
                    records.push(Record::Trade(tick)); // a replay
                }
            }
            for (kind, close) in answers {
                let millionths = Decimal::new(1, 6);
                let vb = match kind {
                    0 => Decimal::ZERO,
                    1 => (live - millionths).max(millionths),
                    2 => live,
                    3 => live + Decimal::new(4, 17), // float noise
                    _ => live + millionths * Decimal::from(*close - 94),
                };
                records.push(Record::Bar(HistoryBar {
                    volume_base: vb,
                    volume_quote: vb * Decimal::from(*close),
                    ..history(&i, t, *close, 1)
                }));
            }
        }
        let n = records.len();
        (
            Just(records),
            prop::collection::vec(any::<u32>(), n),
            prop::collection::vec(0..=n, 0..4),
            prop::collection::vec(0usize..5, 0..3),
        )
            .prop_map(|(records, order, cuts, redeliver)| Scenario {
                records,
                order,
                cuts,
                redeliver,
            })
    })
}

/// The records of `s` renamed to `instrument`.
fn renamed(records: &[Record], instrument: &Instrument) -> Vec<Record> {
    records
        .iter()
        .map(|r| match r {
            Record::Trade(t) => Record::Trade(Tick {
                instrument: instrument.clone(),
                ..t.clone()
            }),
            Record::Bar(h) => Record::Bar(HistoryBar {
                instrument: instrument.clone(),
                ..h.clone()
            }),
        })
        .collect()
}

async fn deliver(store: &impl BarStore, batch: &[Record]) {
    let mut ticks = Vec::new();
    let mut answers = Vec::new();
    for r in batch {
        match r {
            Record::Trade(t) => ticks.push(t.clone()),
            Record::Bar(h) => answers.push(h.clone()),
        }
    }
    write(store, &ticks, &answers).await;
}

/// The comparable part of a stored bar (not the instrument, not the version).
type Shape = (i64, Source, Vec<String>, u64, i64, String, i64, String);

fn shape(b: &StoredBar) -> Shape {
    let x = &b.bar;
    (
        x.open_time,
        b.source,
        [
            x.open,
            x.high,
            x.low,
            x.close,
            x.volume_base,
            x.volume_quote,
        ]
        .iter()
        .map(|d| d.normalize().to_string())
        .collect(),
        x.trades,
        x.first.time_ns,
        x.first.id.clone(),
        x.last.time_ns,
        x.last.id.clone(),
    )
}

async fn shapes(store: &impl BarStore, i: &Instrument, interval: Interval) -> Vec<Shape> {
    store
        .bars(i, interval, 0, 4_102_444_800, 100_000)
        .await
        .unwrap()
        .iter()
        .map(shape)
        .collect()
}

pub async fn any_split_any_order_any_redelivery_same_bars(store: &impl BarStore) {
    // Each scenario is written twice: once as one batch in generation order
    // (instrument CANON-k), once shuffled, cut into batches, with some
    // batches redelivered (SPLIT-k). The bars must be the same.
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = scenario();
    for k in 0..40 {
        let s = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        let canon = instrument(&format!("CANON{k}"));
        let split = instrument(&format!("SPLIT{k}"));
        deliver(store, &renamed(&s.records, &canon)).await;

        let mut shuffled: Vec<(u32, Record)> = s
            .order
            .iter()
            .copied()
            .zip(renamed(&s.records, &split))
            .collect();
        shuffled.sort_by_key(|(key, _)| *key);
        let shuffled: Vec<Record> = shuffled.into_iter().map(|(_, r)| r).collect();
        let mut cuts = s.cuts.clone();
        cuts.extend([0, shuffled.len()]);
        cuts.sort_unstable();
        cuts.dedup();
        let batches: Vec<&[Record]> = cuts.windows(2).map(|w| &shuffled[w[0]..w[1]]).collect();
        for (b, batch) in batches.iter().enumerate() {
            deliver(store, batch).await;
            if s.redeliver.contains(&b) {
                deliver(store, batch).await;
            }
        }
        for interval in [Interval::M1, Interval::M5] {
            let want = shapes(store, &canon, interval).await;
            let got = shapes(store, &split, interval).await;
            assert_eq!(got, want, "scenario {k} at {interval:?}: {s:#?}");
        }
        // And both are what the independent reference computes.
        let (ticks, answers): (Vec<Tick>, Vec<HistoryBar>) = {
            let mut t = Vec::new();
            let mut h = Vec::new();
            for r in renamed(&s.records, &split) {
                match r {
                    Record::Trade(x) => t.push(x),
                    Record::Bar(x) => h.push(x),
                }
            }
            (t, h)
        };
        let stored = store
            .bars(&split, Interval::M1, 0, 4_102_444_800, 100_000)
            .await
            .unwrap();
        oracle::assert_same_minutes(
            format!("scenario {k}"),
            &convert::stored_minutes(&stored),
            &oracle::reconcile(&convert::trades(&ticks), &convert::histories(&answers)),
        );
    }
}
