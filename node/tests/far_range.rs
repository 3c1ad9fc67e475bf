//! A range that ends far in the future costs what the stored bars cost, on a
//! node with every role on the real broker, PostgreSQL and Redis (the
//! quick start's shape, with the production backends): one `GET
//! /api/v1/ohlcv?…&to=7258118400` (year 2200) answers (within a 10 s
//! deadline, far from a loaded machine's pace) and the node's resident memory
//! does not move. (Before the clamp, the cache built a list of ~92 M minutes
//! for it: no answer within 30 s, and the node grew from 28 MB to 723 MB.)
//!
//! Node logs: set `CANDELA_TEST_LOG_DIR` to keep them there.

mod common;

use std::time::Duration;

use candela_testkit::cluster::wait_for;
use common::{now_secs, DataPlane};
use serde_json::Value;

const INSTRUMENT: &str = "Coinbase:BTC-USD";
/// 2200-01-01T00:00:00Z, the latest `to` the API takes.
const YEAR_2200: i64 = 7_258_118_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_to_the_year_2200_answers_and_costs_no_memory() {
    let dp = DataPlane::start(3.0).await;
    let mut node = common::node("solo");
    dp.configure(
        &mut node,
        r#"["producer", "consumer", "datastore", "api"]"#,
        1,
        1,
        &[INSTRUMENT],
    );
    node.set("CANDELA__INGEST__BACKFILL_MINUTES", "60");
    node.start();
    let nodes = [node];
    let api = nodes[0].api();
    let from = now_secs() - 3_600;
    let http = reqwest::Client::new();
    let get = |to: i64| {
        let http = http.clone();
        let url = format!("{api}/api/v1/ohlcv?instrument={INSTRUMENT}&interval=1m&from={from}&to={to}&limit=10000");
        async move {
            let resp = http
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{url}: {status} {body}"));
            }
            Ok::<_, String>(body)
        }
    };
    // The backfilled hour is stored and cached (a normal range asked twice).
    wait_for("the backfill", 120, &nodes, async || {
        let body = get(now_secs()).await.ok()?;
        (body["bars"].as_array()?.len() >= 55).then_some(())
    })
    .await;
    get(now_secs()).await.unwrap();
    // The backfill's progress is in the metrics: all of its 60 minutes.
    let ops = nodes[0].ops();
    wait_for(
        "the backfill's progress, complete",
        60,
        &nodes,
        async || {
            let text = reqwest::get(format!("{ops}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let value = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("{name}{{instrument=\"{INSTRUMENT}\"}}")))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            };
            (value("candela_backfill_minutes")? == 60.0
                && value("candela_backfill_minutes_done")? == 60.0)
                .then_some(())
        },
    )
    .await;
    let before = nodes[0].rss_bytes().expect("the node runs");

    for _ in 0..5 {
        // The deadline is the request's own: 10 s, or it fails (before the
        // clamp: nothing in 30 s; the bound is not a timing check).
        let body = get(YEAR_2200).await.unwrap();
        let bars = body["bars"].as_array().unwrap();
        assert!(bars.len() >= 55, "{} bars", bars.len());
        let last = bars.last().unwrap()["time"].as_i64().unwrap();
        assert!(
            last <= now_secs() + 60,
            "a bar from the future: {last} (now {})",
            now_secs()
        );
    }
    let after = nodes[0].rss_bytes().expect("the node runs");
    eprintln!(
        "resident memory: {} MiB before, {} MiB after five ranges to 2200",
        before >> 20,
        after >> 20
    );
    assert!(
        after < before + (16 << 20),
        "the node grew from {} MiB to {} MiB",
        before >> 20,
        after >> 20
    );
}
