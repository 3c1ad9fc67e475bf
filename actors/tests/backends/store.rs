//! The [`BarStore`] contract: exactly-once bars from distinct ticks, the
//! history reconciliation rule, row versions, coarse intervals, the
//! instruments summary, exact decimals, and all-or-nothing writes.
//!
//! Each case takes a fresh, empty store.

use std::collections::BTreeMap;

use candela_actors::domain::{HistoryBar, Instrument, Interval, Tick};
use candela_actors::store::{BarStore, Source, StoredBar, WriteBatch};
use candela_testkit::convert;
use candela_testkit::oracle::{self, Mark};
use rust_decimal::Decimal;

use super::data::{assert_marks, btc, eth, history, history_as_bar, tick, ticks};

/// One `#[tokio::test]` per case of the contract, each on a fresh store made
/// by `$make().await`, which returns `(guard, store)` (the guard keeps the
/// store's database alive).
#[macro_export]
macro_rules! store_contract_tests {
    ($make:ident) => {
        $crate::store_contract_tests!(@cases $make;
            bars_are_a_function_of_the_distinct_ticks,
            history_reconciliation_rule,
            a_history_bar_repeated_within_one_batch_counts_once,
            versions_grow_with_every_change_and_only_then,
            coarse_intervals_are_merged_minutes_including_history,
            instruments_summary_and_holds,
            sums_are_exact_decimals,
            a_write_is_all_or_nothing,
            a_write_dropped_midway_leaves_the_store_writable,
        );
    };
    (@cases $make:ident; $($case:ident),* $(,)?) => {
        $(
            // Two workers: a write dropped midway must be able to land
            // anywhere in the write (one thread drops only at its awaits).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_guard, store) = $make().await;
                $crate::backends::store::$case(&store).await;
            }
        )*
    };
}

/// A far end of time that every backend accepts (2100-01-01).
const END: i64 = 4_102_444_800;

async fn write(store: &impl BarStore, ticks: &[Tick]) -> candela_actors::store::WriteOutcome {
    store
        .write(WriteBatch {
            ticks,
            history: &[],
        })
        .await
        .unwrap()
}

async fn all_m1(store: &impl BarStore, i: &Instrument, from: i64, to: i64) -> Vec<StoredBar> {
    store
        .bars(i, Interval::M1, from, to, 100_000)
        .await
        .unwrap()
}

pub async fn bars_are_a_function_of_the_distinct_ticks(store: &impl BarStore) {
    let i = btc();
    let start = 1_700_000_040 - 1_700_000_040 % 86_400; // a day boundary
    let all = ticks(&i, start, 130, 9);

    // Deliver in three overlapping, reordered batches, with a replay inside a batch.
    let mut b1: Vec<Tick> = all[..500].to_vec();
    b1.reverse();
    let mut b2: Vec<Tick> = all[300..900].to_vec();
    b2.push(all[310].clone());
    let b3: Vec<Tick> = all[800..].iter().rev().cloned().collect();
    let mut new = 0;
    for batch in [&b1, &b2, &b3] {
        let out = write(store, batch).await;
        new += out.new_ticks;
        assert!(!out.touched.is_empty());
    }
    assert_eq!(new, all.len() as u64, "every distinct tick stored once");

    let reference = convert::trades(&all);
    for interval in Interval::ALL {
        let got = store
            .bars(&i, interval, start, start + 86_400, 10_000)
            .await
            .unwrap();
        assert!(got.iter().all(|b| b.bar.interval == interval));
        oracle::assert_same_bars(
            format!("{i} {interval:?}"),
            &convert::stored_bars(&got),
            &oracle::bars(&reference, interval.seconds()),
        );
    }
    // 1-minute bars also keep the first and last trade exactly.
    let m1 = all_m1(store, &i, start, start + 86_400).await;
    assert_marks("1m", m1.iter().map(|b| &b.bar), &reference);
    assert!(m1.iter().all(|b| b.source == Source::Live));

    // A redelivered batch changes nothing, and says so.
    let versions: Vec<i64> = m1.iter().map(|b| b.version).collect();
    let again = write(store, &b2).await;
    assert_eq!(again.new_ticks, 0);
    assert_eq!(again.duplicate_ticks, b2.len() as u64);
    let after = all_m1(store, &i, start, start + 86_400).await;
    assert_eq!(
        after.iter().map(|b| b.version).collect::<Vec<_>>(),
        versions
    );
    // ...but still reports the rows it touched (as stored), so a cache can be
    // healed.
    let touched_minutes: std::collections::BTreeSet<i64> = b2
        .iter()
        .map(|t| Interval::M1.floor(t.trade_time_ns / 1_000_000_000))
        .collect();
    assert_eq!(
        again
            .touched
            .iter()
            .map(|b| b.bar.open_time)
            .collect::<Vec<_>>(),
        touched_minutes.into_iter().collect::<Vec<_>>()
    );
    for b in &again.touched {
        assert!(after.contains(b), "touched row differs from the stored one");
    }

    // Limit and range.
    let few = store
        .bars(&i, Interval::M1, start + 60, start + 600, 3)
        .await
        .unwrap();
    assert_eq!(
        few.iter().map(|b| b.bar.open_time).collect::<Vec<_>>(),
        [start + 60, start + 120, start + 180]
    );
    assert!(store
        .bars(&i, Interval::M1, start + 600, start + 60, 10)
        .await
        .unwrap()
        .is_empty());

    let summary = store.instruments().await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].instrument, i);
    assert_eq!(summary[0].first_open, start);
    assert_eq!(summary[0].last_open, start + 129 * 60);
    assert_eq!(summary[0].bars, 130);
}

pub async fn history_reconciliation_rule(store: &impl BarStore) {
    let i = btc();
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;

    // Minute t0 has a live bar of volume 3 (three ticks of quantity 1).
    let live: Vec<Tick> = (0..3)
        .map(|k| Tick {
            quantity: Decimal::ONE,
            ..tick(&i, 10 + k, t0 + k as i64, 10_000, 1)
        })
        .collect();
    write(store, &live).await;
    // Everything written, for the reference at the end.
    let mut all_ticks: Vec<Tick> = live.clone();
    let mut all_history: Vec<HistoryBar> = Vec::new();

    let first_history = [
        history(&i, t0, 101, 2),       // smaller than live: live stays
        history(&i, t0 + 60, 102, 5),  // no row: created
        history(&i, t0 + 120, 103, 0), // zero volume: ignored
    ];
    all_history.extend(first_history.iter().cloned());
    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &first_history,
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, 1);
    // Touched: the rows of the minutes it names that exist.
    assert_eq!(
        out.touched
            .iter()
            .map(|b| (b.bar.open_time, b.source))
            .collect::<Vec<_>>(),
        [(t0, Source::Live), (t0 + 60, Source::History)]
    );
    let bars = all_m1(store, &i, t0, t0 + 300).await;
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0].source, Source::Live);
    assert_eq!(bars[0].bar.volume_base, Decimal::from(3));
    assert_eq!(bars[1].source, Source::History);
    assert_eq!(bars[1].bar, history_as_bar(&history(&i, t0 + 60, 102, 5)));

    // A history bar with more volume repairs the live minute...
    all_history.push(history(&i, t0, 104, 7));
    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &[history(&i, t0, 104, 7)],
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, 1);
    assert_eq!(out.touched.len(), 1);
    assert_eq!(out.touched[0].source, Source::History);
    assert_eq!(out.touched[0].bar, history_as_bar(&history(&i, t0, 104, 7)));
    // ...and a later live tick of that minute, which leaves the live bar
    // (4) below the answer (7), does not change it.
    let late = [Tick {
        quantity: Decimal::ONE,
        ..tick(&i, 99, t0 + 30, 20_000, 1)
    }];
    all_ticks.extend(late.iter().cloned());
    let out = write(store, &late).await;
    assert_eq!(out.new_ticks, 1, "the tick itself is stored");
    assert_eq!(out.touched.len(), 1);
    assert_eq!(out.touched[0].source, Source::History);
    let bars = store.bars(&i, Interval::M1, t0, t0, 10).await.unwrap();
    assert_eq!(bars[0].bar.volume_base, Decimal::from(7));
    assert_eq!(bars[0].bar.close, Decimal::from(104));

    // A history bar equal in volume to a live minute leaves it live.
    let t2 = t0 + 600;
    let live2: Vec<Tick> = (0..2)
        .map(|k| Tick {
            quantity: Decimal::ONE,
            ..tick(&i, 200 + k, t2 + k as i64, 10_000, 1)
        })
        .collect();
    write(store, &live2).await;
    all_ticks.extend(live2.iter().cloned());
    all_history.push(history(&i, t2, 150, 2));
    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &[history(&i, t2, 150, 2)],
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, 0);
    assert_eq!(out.touched[0].source, Source::Live);

    // Ticks and history of one minute in one batch: the history bar is
    // compared with the live bar of all the minute's ticks.
    let t3 = t0 + 1_200;
    let mixed: Vec<Tick> = (0..2)
        .map(|k| Tick {
            quantity: Decimal::ONE,
            ..tick(&i, 300 + k, t3 + k as i64, 10_000, 1)
        })
        .collect();
    let mixed_history = [history(&i, t3, 160, 3), history(&i, t3 + 60, 161, 0)];
    all_ticks.extend(mixed.iter().cloned());
    all_history.extend(mixed_history.iter().cloned());
    let out = store
        .write(WriteBatch {
            ticks: &mixed,
            history: &mixed_history,
        })
        .await
        .unwrap();
    assert_eq!((out.new_ticks, out.history_applied), (2, 1));
    assert_eq!(out.touched.len(), 1);
    assert_eq!(out.touched[0].source, Source::History);
    assert!(out.touched[0].version > 0);

    // Every minute, every field, as the reference rule has it.
    oracle::assert_same_minutes(
        "the reconciled minutes",
        &convert::stored_minutes(&all_m1(store, &i, t0, t0 + 3_600).await),
        &oracle::reconcile(
            &convert::trades(&all_ticks),
            &convert::histories(&all_history),
        ),
    );
}

pub async fn a_history_bar_repeated_within_one_batch_counts_once(store: &impl BarStore) {
    // Replays of history can land in one consumer batch: a minute's answers
    // count once, the best of them (the most complete), as if the batch were
    // applied message by message in any order.
    let i = btc();
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &[
                history(&i, t0, 101, 5),
                history(&i, t0 + 60, 102, 5),
                history(&i, t0, 101, 5),
                history(&i, t0, 109, 9),
            ],
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, 2);
    let bars = store.bars(&i, Interval::M1, t0, t0 + 60, 10).await.unwrap();
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0].bar, history_as_bar(&history(&i, t0, 109, 9)));
    // The same replayed in a later batch changes nothing, not even a version.
    let again = store
        .write(WriteBatch {
            ticks: &[],
            history: &[history(&i, t0, 101, 5), history(&i, t0, 109, 9)],
        })
        .await
        .unwrap();
    assert_eq!(again.history_applied, 0);
    assert_eq!(
        store.bars(&i, Interval::M1, t0, t0 + 60, 10).await.unwrap(),
        bars
    );
}

async fn version_at(store: &impl BarStore, i: &Instrument, minute: i64) -> i64 {
    let bars = all_m1(store, i, minute, minute).await;
    assert_eq!(bars.len(), 1);
    bars[0].version
}

pub async fn versions_grow_with_every_change_and_only_then(store: &impl BarStore) {
    let i = btc();
    let e = eth();
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let a = tick(&i, 1, t0 + 1, 10_000, 1);
    let b = tick(&i, 2, t0 + 2, 10_100, 1);
    let c = tick(&i, 3, t0 + 3, 10_200, 1);
    write(store, std::slice::from_ref(&a)).await;
    let v1 = version_at(store, &i, t0).await;
    assert!(v1 > 0, "a new row");
    write(store, &[b.clone(), a.clone()]).await;
    let v2 = version_at(store, &i, t0).await;
    assert!(v2 > v1, "a change");
    write(store, &[a.clone(), b.clone()]).await;
    assert_eq!(
        version_at(store, &i, t0).await,
        v2,
        "duplicates change nothing"
    );
    // One counter for every row: a change of another instrument's row takes
    // a version above every earlier one.
    write(store, &[tick(&e, 1, t0 + 1, 10_000, 1)]).await;
    let v_other = version_at(store, &e, t0).await;
    assert!(v_other > v2);
    assert_eq!(store.latest_version(&e).await.unwrap(), v_other);
    let out = store
        .write(WriteBatch {
            ticks: &[],
            history: &[history(&i, t0, 101, 5)],
        })
        .await
        .unwrap();
    let v3 = out.touched[0].version;
    assert!(v3 > v_other, "the repair is a change");
    write(store, &[c]).await;
    assert_eq!(
        version_at(store, &i, t0).await,
        v3,
        "a live bar still below the answer changes nothing"
    );
    // Touched rows carry the version they have after the commit.
    let out = write(store, &[a]).await;
    assert_eq!(out.touched[0].version, v3);

    // Every change after a version, in version order, from a minute on.
    let t1 = t0 + 60;
    write(store, &[tick(&i, 4, t1 + 1, 10_000, 1)]).await;
    let changed = store.changed_since(&i, 0, v2, 100).await.unwrap();
    assert_eq!(
        changed.iter().map(|b| b.bar.open_time).collect::<Vec<_>>(),
        [t0, t1]
    );
    assert!(changed.windows(2).all(|w| w[0].version < w[1].version));
    let later = store.changed_since(&i, t1, 0, 100).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(store.latest_version(&i).await.unwrap(), later[0].version);
    assert!(store
        .changed_since(&i, 0, later[0].version, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .latest_version(&Instrument::new("X", "Y", "Z"))
            .await
            .unwrap(),
        0
    );
}

pub async fn coarse_intervals_are_merged_minutes_including_history(store: &impl BarStore) {
    let i = btc();
    // Two hours ending 30 minutes into a day, with history minutes among
    // live ones (a day, an hour, 15- and 5-minute buckets all cross).
    let day = 1_700_006_400; // 2023-11-15T00:00:00Z
    let start = day - 90 * 60;
    let live = ticks(&i, start, 120, 3);
    // History for minutes without live ticks: the same minutes shifted by
    // two hours, and a repair of one live minute (more volume than 3 ticks).
    let hist: Vec<_> = [0i64, 7, 29, 88, 95, 119]
        .iter()
        .map(|m| history(&i, start + 7_200 + m * 60, 100 + m, 1 + m))
        .chain([history(&i, start + 600, 99, 1_000)])
        .collect();
    let out = store
        .write(WriteBatch {
            ticks: &live,
            history: &hist,
        })
        .await
        .unwrap();
    assert_eq!(out.history_applied, hist.len() as u64);
    let reference = convert::trades(&live);
    let minutes = oracle::reconcile(&reference, &convert::histories(&hist));
    let stored = all_m1(store, &i, 0, END).await;
    assert_eq!(stored.len(), 126);
    oracle::assert_same_minutes("1m", &convert::stored_minutes(&stored), &minutes);
    let minute_bars: Vec<oracle::RefBar> = minutes.iter().map(|m| m.bar.clone()).collect();
    let spans = minute_spans(&minutes, &reference);
    for interval in [Interval::M5, Interval::M15, Interval::H1, Interval::D1] {
        let expected = oracle::merge_minutes(&minute_bars, interval.seconds());
        let got = store.bars(&i, interval, 0, END, 100_000).await.unwrap();
        oracle::assert_same_bars(
            format!("{interval:?}"),
            &convert::stored_bars(&got),
            &expected,
        );
        for g in &got {
            assert_eq!(g.bar.interval, interval);
            assert_eq!((g.source, g.version), (Source::Live, 0));
            // The first and last trade times of a bucket: those of its
            // earliest and latest minutes.
            let step = interval.seconds();
            let inside: Vec<(i64, i64)> = spans
                .range(g.bar.open_time..g.bar.open_time + step)
                .map(|(_, span)| *span)
                .collect();
            let (first, last) = (inside[0].0, inside[inside.len() - 1].1);
            assert_eq!(
                (g.bar.first.time_ns, g.bar.last.time_ns),
                (first, last),
                "{interval:?} at {}",
                g.bar.open_time
            );
            assert!(g.bar.first.id.is_empty() && g.bar.last.id.is_empty());
        }
        // A bucket is in range when it starts in it; a limit counts buckets.
        let step = interval.seconds();
        let second = expected[1].open_time;
        let got = store
            .bars(&i, interval, second - step + 1, second + step, 1)
            .await
            .unwrap();
        oracle::assert_same_bars(
            format!("{interval:?} from {}", second - step + 1),
            &convert::stored_bars(&got),
            &expected[1..2],
        );
        let got = store
            .bars(&i, interval, expected[0].open_time, second, 10)
            .await
            .unwrap();
        assert_eq!(got.len(), 2, "{interval:?}");
        assert!(store
            .bars(&i, interval, second + 1, second + 2, 10)
            .await
            .unwrap()
            .is_empty());
    }
    assert!(store
        .bars(&eth(), Interval::H1, 0, END, 10)
        .await
        .unwrap()
        .is_empty());
}

/// The first and last trade times (ns) a store keeps for each stored minute:
/// a live minute's first and last trade, as the reference finds them; a
/// history minute, whose trades are not known, spans the whole minute (see
/// `history_as_bar`).
fn minute_spans(minutes: &[oracle::Minute], trades: &[oracle::Trade]) -> BTreeMap<i64, (i64, i64)> {
    let marks: BTreeMap<(String, i64), (Mark, Mark)> = oracle::first_last(trades, 60);
    minutes
        .iter()
        .map(|m| {
            let t = m.bar.open_time;
            let span = match m.source {
                oracle::Source::Live => {
                    let (first, last) = &marks[&(m.bar.instrument.clone(), t)];
                    (first.0, last.0)
                }
                oracle::Source::History => (t * 1_000_000_000, t * 1_000_000_000 + 59_999_999_999),
            };
            (t, span)
        })
        .collect()
}

pub async fn instruments_summary_and_holds(store: &impl BarStore) {
    let (a, b) = (btc(), eth());
    assert!(!store.holds(&a).await.unwrap());
    assert!(store.instruments().await.unwrap().is_empty());
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    write(store, &ticks(&b, t0 + 600, 3, 2)).await;
    write(store, &ticks(&a, t0, 5, 2)).await;
    store
        .write(WriteBatch {
            ticks: &[],
            history: &[history(&a, t0 - 3_600, 100, 1)],
        })
        .await
        .unwrap();
    assert!(store.holds(&a).await.unwrap());
    assert!(store.holds(&b).await.unwrap());
    assert!(!store
        .holds(&Instrument::new("Coinbase", "BTC", "EUR"))
        .await
        .unwrap());
    let summary: Vec<_> = store
        .instruments()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.instrument, s.first_open, s.last_open, s.bars))
        .collect();
    assert_eq!(
        summary,
        [(a, t0 - 3_600, t0 + 240, 6), (b, t0 + 600, t0 + 720, 3)]
    );
}

pub async fn sums_are_exact_decimals(store: &impl BarStore) {
    // Sums that binary floating point gets wrong, and scales that must
    // survive (0.10 + 0.20 is 0.30, written with its scale).
    let i = btc();
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let mut all = Vec::new();
    for k in 0..30u64 {
        let mut t = tick(&i, 500 + k, t0 + k as i64, 1, 1);
        t.price = Decimal::new(1 + k as i64, 1); // 0.1, 0.2, ...
        t.quantity = Decimal::new(10 + (k as i64 % 3) * 10, 2); // 0.10, 0.20, 0.30
        all.push(t);
    }
    // One at a time: the stored sum is built up by 30 merges.
    for t in &all {
        write(store, std::slice::from_ref(t)).await;
    }
    let got = all_m1(store, &i, t0, t0).await;
    let reference = convert::trades(&all);
    oracle::assert_same_bars(
        "1m",
        &convert::stored_bars(&got),
        &oracle::bars(&reference, 60),
    );
    assert_marks("1m", got.iter().map(|b| &b.bar), &reference);
    // By hand: Σ quantity = 10 × (0.10 + 0.20 + 0.30); Σ price × quantity =
    // Σ over j < 10 of (3j+1)/10 × 0.10 + (3j+2)/10 × 0.20 + (3j+3)/10 × 0.30
    // = Σ (180j + 140) / 1000 = 9.500, with the scale of 0.1 × 0.10.
    assert_eq!(got[0].bar.volume_base.to_string(), "6.00");
    assert_eq!(got[0].bar.volume_quote.to_string(), "9.500");
    let day = store.bars(&i, Interval::D1, 0, t0, 10).await.unwrap();
    assert_eq!(day[0].bar.volume_base.to_string(), "6.00");
}

pub async fn a_write_is_all_or_nothing(store: &impl BarStore) {
    // A tick the store refuses (price must be positive) fails the whole
    // batch: nothing of it is stored, and a corrected batch then goes in.
    let i = btc();
    let t0 = 1_700_000_000 - 1_700_000_000 % 60;
    let mut batch = ticks(&i, t0, 3, 4);
    batch[7].price = Decimal::ZERO;
    let err = store
        .write(WriteBatch {
            ticks: &batch,
            history: &[history(&i, t0 + 600, 100, 1)],
        })
        .await;
    assert!(err.is_err(), "a zero price was accepted");
    assert!(!store.holds(&i).await.unwrap());
    assert!(store.instruments().await.unwrap().is_empty());
    batch[7].price = Decimal::ONE;
    let out = write(store, &batch).await;
    assert_eq!(out.new_ticks, batch.len() as u64);
}

/// A caller dropped while its write waits (an actor killed mid-batch, a
/// time-out) never leaves the store unable to write: the next write
/// succeeds. (Seen on the SQLite store under load: a consumer killed
/// mid-batch left its one writer connection inside a transaction, and every
/// later write failed "begin at non-zero transaction depth", as Fatal.)
pub async fn a_write_dropped_midway_leaves_the_store_writable(store: &impl BarStore) {
    let i = btc();
    let big = ticks(&i, 1_700_000_000, 120, 20);
    // (Where the drop lands depends on timing: on the SQLite store before
    // its fix this failed in 1 run of 3 to at once, not every time.)
    for k in 0..60u64 {
        // Dropped at a different point each time.
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(20 * k),
            store.write(WriteBatch {
                ticks: &big,
                history: &[],
            }),
        )
        .await;
        let small = ticks(&i, 1_800_000_000 + k as i64 * 60, 1, 1);
        store
            .write(WriteBatch {
                ticks: &small,
                history: &[],
            })
            .await
            .unwrap_or_else(|e| panic!("a write after a dropped one (round {k}): {e}"));
    }
}
