//! The live stream at its edges, end to end across two `candela node`
//! processes on the real broker, PostgreSQL and Redis, fed by the
//! CryptoCompare imitation (in this test process):
//!
//! | node  | roles                    |
//! |-------|--------------------------|
//! | alpha | producer, datastore, api |
//! | beta  | consumer                 |
//!
//! beta's commits reach alpha's streams through Redis (the cross-node feed).
//! A client follows `GET /api/v1/stream` from twenty backfilled minutes ago
//! while
//!
//! * the live feed joins midway through a minute (the node starts inside
//!   one) and the repair (every 10 s, the last 3 minutes) fixes that minute
//!   from history;
//! * a few trades come late (the imitation holds them ~8 s), changing a
//!   minute the stream may already have closed;
//! * the consumer node is `kill -9`ed a few seconds before a minute ends and
//!   comes back 5 s later: the stream closes that minute with what was
//!   stored, then corrects it when the consumer catches up.
//!
//! The client disconnects before the kill and reconnects after with
//! `Last-Event-ID`: the resumed stream does not send the history again,
//! only what changed and what is new. At the end (the source stopped, the
//! stream quiet) the last event the client holds for every minute equals the
//! bar `/api/v1/ohlcv` serves for it, every field, with no minute missing,
//! and at least one closed minute was corrected.
//!
//! Node logs: set `CANDELA_TEST_LOG_DIR` to keep each node's log there.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candela_actors::cryptocompare::Interval as SourceInterval;
use candela_actors::domain::Instrument;
use candela_actors::imitation::ImitationConfig;
use candela_testkit::cluster::{self, wait_for, NodeProcess};
use common::{now_secs, DataPlane};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde_json::Value;

const INSTRUMENT: &str = "Coinbase:BTC-USD";

/// One server-sent event.
#[derive(Debug, Clone)]
struct Event {
    kind: String,
    id: String,
    bar: Value,
}

type Events = Arc<Mutex<Vec<Event>>>;

/// Follows the stream at `url` (resuming from `last_event_id`) in a task
/// that appends every event to the answer; aborting the task closes the
/// connection.
async fn follow(
    url: String,
    last_event_id: Option<String>,
) -> (tokio::task::JoinHandle<()>, Events) {
    let events: Events = Arc::default();
    let mut request = reqwest::Client::new().get(&url);
    if let Some(id) = &last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let resp = request.send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let sink = Arc::clone(&events);
    let task = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut kind, mut id, mut data) =
                    (String::from("message"), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let bar: Value = serde_json::from_str(&data).unwrap();
                sink.lock().unwrap().push(Event { kind, id, bar });
            }
        }
    });
    (task, events)
}

fn snapshot(events: &Events) -> Vec<Event> {
    events.lock().unwrap().clone()
}

/// The fields a client shows, comparable.
type Shown = (
    i64,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    Decimal,
    u64,
    String,
);

fn shown(bar: &Value) -> Shown {
    let dec = |v: &Value| -> Decimal {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a decimal string: {v} in {bar}"))
    };
    (
        bar["time"].as_i64().unwrap(),
        dec(&bar["open"]),
        dec(&bar["high"]),
        dec(&bar["low"]),
        dec(&bar["close"]),
        dec(&bar["volume_base"]),
        dec(&bar["volume_quote"]),
        bar["trades"].as_u64().unwrap(),
        bar["source"].as_str().unwrap().to_owned(),
    )
}

/// What `/ohlcv` serves for `[from, to]`.
async fn served(api: &str, from: i64, to: i64) -> Option<BTreeMap<i64, Shown>> {
    let body: Value = reqwest::Client::new()
        .get(format!(
            "{api}/api/v1/ohlcv?instrument={INSTRUMENT}&interval=1m&from={from}&to={to}&limit=10000"
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        body["bars"]
            .as_array()?
            .iter()
            .map(|b| (b["time"].as_i64().unwrap(), shown(b)))
            .collect(),
    )
}

/// Sleeps until the second `second` of a minute at or after `after`.
async fn until_second_of_minute(after: i64, second: i64) {
    let mut t = after - after.rem_euclid(60) + second;
    if t < after {
        t += 60;
    }
    let wait = t - now_secs();
    if wait > 0 {
        tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_follows_joins_repairs_late_trades_and_a_consumer_restart_and_resumes() {
    // Start well inside a minute, so the live feed joins it midway (on
    // subscribe the imitation replays its latest 20 trades, ~7 s here).
    let into = now_secs().rem_euclid(60);
    if !(10..=40).contains(&into) {
        tokio::time::sleep(Duration::from_secs((70 - into).rem_euclid(60) as u64)).await;
    }
    let mut dp = DataPlane::start_with(ImitationConfig {
        trades_per_sec: 3.0,
        heartbeat_interval_ms: 1_000,
        late_release_ms: 8_000,
        ..ImitationConfig::default()
    })
    .await;
    let mut nodes = vec![common::node("alpha"), common::node("beta")];
    cluster::mesh(&mut nodes);
    for (node, roles) in nodes
        .iter_mut()
        .zip([r#"["producer", "datastore", "api"]"#, r#"["consumer"]"#])
    {
        dp.configure(node, roles, 1, 1, &[INSTRUMENT]);
        node.set("CANDELA__INGEST__BACKFILL_MINUTES", "30")
            .set("CANDELA__INGEST__REPAIR_MINUTES", "3")
            .set("CANDELA__INGEST__REPAIR_INTERVAL_SECS", "10")
            .set("CANDELA__API__STREAM_GRACE_SECS", "2");
    }
    let joined = now_secs() - now_secs().rem_euclid(60);
    for n in nodes.iter_mut() {
        n.start();
    }
    let api = nodes[0].api();
    let from = joined - 20 * 60;
    let url = format!("{api}/api/v1/stream?instrument={INSTRUMENT}&interval=1m&from={from}");

    // The client connects as soon as the API answers; the backfill arrives
    // through the stream like any other change.
    wait_for("the API", 60, &nodes, async || {
        reqwest::get(format!("{api}/api/v1/instruments"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    let (first_task, first) = follow(url.clone(), None).await;
    wait_for("the backfill on the stream", 90, &nodes, async || {
        snapshot(&first)
            .iter()
            .any(|e| e.bar["time"].as_i64() == Some(from) && e.bar["source"] == "history")
            .then_some(())
    })
    .await;

    // Late trades near the end of the next minute: they come ~8 s later,
    // after it closed.
    until_second_of_minute(joined + 60, 53).await;
    dp.im().send_late(3);

    // The consumer node dies 4 s before a minute ends and is down for 5 s;
    // the client goes away first, holding the last id it got.
    let killed_minute = joined + 120;
    until_second_of_minute(killed_minute, 56).await;
    first_task.abort();
    let _ = first_task.await;
    let before = snapshot(&first);
    let last_id = before.last().expect("events before the kill").id.clone();
    let (_, closed_before) = last_id.split_once('-').expect("an id `V-C`");
    let closed_before: i64 = closed_before.parse().unwrap();
    nodes[1].kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    nodes[1].start();
    let stored = dp.stored().await;
    wait_for("the consumer back", 60, &nodes, async || {
        (dp.stored().await > stored).then_some(())
    })
    .await;

    // The client comes back where it stopped.
    let (second_task, second) = follow(url.clone(), Some(last_id.clone())).await;
    let last_minute = killed_minute + 60;
    wait_for(
        "the minute after the restart, closed",
        150,
        &nodes,
        async || {
            snapshot(&second)
                .iter()
                .any(|e| e.kind == "bar" && e.bar["time"].as_i64() == Some(last_minute))
                .then_some(())
        },
    )
    .await;

    // The joined minute, as the source has it whole (before it stops).
    let i: Instrument = INSTRUMENT.parse().unwrap();
    let whole = dp.im().bars(SourceInterval::Minute, &i, joined, joined);
    let whole = &whole[0];
    // The source stops: from now on nothing changes the minutes compared.
    dp.stop_source().await;

    // The resumed stream did not send the history again: before `C` only
    // minutes changed since (the repair horizon, late trades, the catch-up).
    let resumed = snapshot(&second);
    let resent: Vec<i64> = resumed
        .iter()
        .filter_map(|e| e.bar["time"].as_i64().filter(|t| *t < closed_before))
        .collect();
    assert!(
        resent.iter().all(|t| *t >= closed_before - 5 * 60),
        "the resumed stream (from {last_id}) sent old minutes again: {resent:?}"
    );
    assert!(
        resumed
            .iter()
            .any(|e| e.bar["time"].as_i64() >= Some(closed_before)),
        "the resumed stream went on from {last_id}"
    );

    // Every minute's last event equals /ohlcv's bar, with no gap (the stream
    // read until it is quiet: the last corrections may still be coming).
    let settled = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut held: BTreeMap<i64, (String, Shown)> = BTreeMap::new();
        for e in before.iter().chain(snapshot(&second).iter()) {
            let s = shown(&e.bar);
            held.insert(s.0, (e.kind.clone(), s));
        }
        let held: BTreeMap<i64, Shown> = held
            .into_iter()
            .filter(|(t, _)| (from..=last_minute).contains(t))
            .map(|(t, (_, s))| (t, s))
            .collect();
        let gaps: Vec<i64> = (0..=(last_minute - from) / 60)
            .map(|k| from + 60 * k)
            .filter(|t| !held.contains_key(t))
            .collect();
        let server = served(&api, from, last_minute).await.unwrap_or_default();
        let differ: Vec<(i64, Option<&Shown>, Option<&Shown>)> = (0..=(last_minute - from) / 60)
            .map(|k| from + 60 * k)
            .filter(|t| held.get(t) != server.get(t))
            .map(|t| (t, held.get(&t), server.get(&t)))
            .collect();
        if gaps.is_empty() && differ.is_empty() {
            break;
        }
        let outcome = format!("gaps {gaps:?}; differences (minute, stream, /ohlcv): {differ:#?}");
        assert!(
            tokio::time::Instant::now() < settled,
            "the stream never matched /ohlcv: {outcome}\n{}",
            nodes
                .iter()
                .map(|n: &NodeProcess| format!("\n--- {}:\n{}", n.name, n.log_tail(30)))
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    second_task.abort();

    let all: Vec<Event> = before.iter().cloned().chain(snapshot(&second)).collect();
    assert!(
        all.iter().any(|e| e.kind == "correction"),
        "no closed minute was corrected: {:?}",
        all.iter()
            .map(|e| (&e.kind, &e.bar["time"]))
            .collect::<Vec<_>>()
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &all {
        *kinds.entry(e.kind.as_str()).or_default() += 1;
    }
    eprintln!(
        "events {kinds:?}; resumed from {last_id}: {} events, {} of them before C ({resent:?})",
        resumed.len(),
        resent.len()
    );
    // The minute the feed joined midway ends whole, as the source has it.
    let last_joined = all
        .iter()
        .rev()
        .find(|e| e.bar["time"].as_i64() == Some(joined))
        .expect("the joined minute was sent");
    let s = shown(&last_joined.bar);
    assert_eq!(
        (s.1, s.2, s.3, s.4, s.5),
        (
            whole.open,
            whole.high,
            whole.low,
            whole.close,
            whole.volume_from
        ),
        "the joined minute, repaired: {}",
        last_joined.bar
    );
}
