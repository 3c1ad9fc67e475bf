//! The metrics of a node under load, scraped as Prometheus would (the
//! exposition parsed by a real parser, `prometheus-parse`), on a node
//! process with every role on the real broker, PostgreSQL and Redis, fed
//! by the CryptoCompare imitation: the counters move with the trades
//! (stored ticks = the database's rows; received and published ≥ stored),
//! the batch write and visibility histograms fill, the machines' transitions
//! and the HTTP requests are counted by bounded labels, the cache reads and
//! the source's events are counted, and the consumer lag per partition
//! returns to 0 once the flow stops; `/health` and
//! `/ready` answer on the ops listener without a token, and the API serves
//! the same `/metrics`.
//!
//! Node logs: set `CANDELA_TEST_LOG_DIR` to keep them there.

mod common;

use std::collections::BTreeMap;

use candela_testkit::cluster::wait_for;
use common::DataPlane;
use prometheus_parse::{Sample, Scrape, Value};

const INSTRUMENTS: [&str; 2] = ["Coinbase:BTC-USD", "Kraken:ETH-EUR"];

async fn scrape(base: &str) -> Option<Scrape> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .text()
        .await
        .ok()?;
    Some(Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the exposition parses"))
}

/// The sum of `metric`'s samples whose labels include `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, metric, labels)
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

fn samples<'a>(
    scrape: &'a Scrape,
    metric: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape.samples.iter().filter(move |s| {
        s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_under_load_exposes_metrics_that_move_with_the_trades() {
    let mut dp = DataPlane::start(20.0).await;
    let mut node = common::node("solo");
    dp.configure(
        &mut node,
        r#"["producer", "consumer", "datastore", "api"]"#,
        1,
        2,
        &INSTRUMENTS,
    );
    // Half an hour of history for each instrument.
    node.set("CANDELA__INGEST__BACKFILL_MINUTES", "30");
    node.start();
    let nodes = [node];
    let (ops, api) = (nodes[0].ops(), nodes[0].api());

    // Health and readiness, no token.
    wait_for("/health on the ops listener", 60, &nodes, async || {
        let r = reqwest::get(format!("{ops}/health")).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let ready: serde_json::Value = wait_for("/ready", 60, &nodes, async || {
        let r = reqwest::get(format!("{ops}/ready")).await.ok()?;
        r.status().is_success().then_some(r.json().await.ok()?)
    })
    .await;
    assert_eq!(ready["ready"], true, "{ready}");
    let checks: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(checks.contains(&"store"), "{ready}");
    // Nothing else is served there.
    let r = reqwest::get(format!("{ops}/admin/cluster")).await.unwrap();
    assert_eq!(r.status(), 404);

    // Under load: ticks flow, and one API request of each kind.
    wait_for("ticks stored", 60, &nodes, async || {
        (dp.stored().await > 200).then_some(())
    })
    .await;
    let r = reqwest::get(format!(
        "{api}/api/v1/ohlcv?instrument={}&interval=1m&from=0",
        INSTRUMENTS[0]
    ))
    .await
    .unwrap();
    assert!(r.status().is_success());
    let r = reqwest::get(format!("{api}/api/v1/ohlcv?instrument=nonsense&from=0"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let during = scrape(&ops).await.expect("/metrics on the ops listener");

    // The source stops; once the consumer has everything, the stored-ticks
    // counter equals the database's rows.
    dp.stop_source().await;
    let (after, rows) = wait_for("the counters to settle", 60, &nodes, async || {
        let s = scrape(&ops).await?;
        let rows = dp.stored().await;
        let lag_known = samples(&s, "candela_consumer_lag_messages", &[]).count() > 0;
        (sum(&s, "candela_ticks_stored_total", &[]) as i64 == rows
            && lag_known
            && sum(&s, "candela_consumer_lag_messages", &[]) == 0.0)
            .then_some((s, rows))
    })
    .await;
    // The backfill: every instrument done, in the metrics and on the admin
    // endpoint.
    let backfill: serde_json::Value = wait_for("the backfill to finish", 60, &nodes, async || {
        let r = reqwest::Client::new()
            .get(format!("{api}/admin/backfill"))
            .bearer_auth(common::TOKEN)
            .send()
            .await
            .ok()?;
        let b: serde_json::Value = r.json().await.ok()?;
        (b.as_array()?.len() == INSTRUMENTS.len()
            && b.as_array()?.iter().all(|i| i["finished"] == true))
        .then_some(b)
    })
    .await;
    let s = scrape(&ops).await.unwrap();
    for i in INSTRUMENTS {
        let b = backfill
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["instrument"] == i)
            .unwrap_or_else(|| panic!("{i} not in {backfill}"));
        assert_eq!(b["total_minutes"], 30, "{b}");
        assert_eq!(b["done_minutes"], 30, "{b}");
        assert_eq!(b["failed_chunks"], 0, "{b}");
        assert_eq!(b["eta_secs"], 0, "{b}");
        assert!(b["bars"].as_u64() >= Some(30), "{b}");
        assert_eq!(
            sum(&s, "candela_backfill_minutes", &[("instrument", i)]),
            30.0
        );
        assert_eq!(
            sum(&s, "candela_backfill_minutes_done", &[("instrument", i)]),
            30.0
        );
    }
    assert!(
        sum(&s, "candela_history_bars_published_total", &[]) >= 30.0 * INSTRUMENTS.len() as f64
    );

    let mut report = BTreeMap::new();
    for m in [
        "candela_ticks_received_total",
        "candela_ticks_published_total",
        "candela_consumer_messages_total",
        "candela_ticks_stored_total",
        "candela_ticks_duplicate_total",
        "candela_consumer_batch_write_seconds",
        "candela_tick_visibility_seconds",
        "candela_fsm_transitions_total",
    ] {
        report.insert(m, (sum(&during, m, &[]), sum(&after, m, &[])));
    }
    eprintln!("metrics (during, after): {report:#?}; rows {rows}");
    let stored = sum(&after, "candela_ticks_stored_total", &[]);
    assert!(stored > sum(&during, "candela_ticks_stored_total", &[]) || stored > 200.0);
    for i in INSTRUMENTS {
        let received = sum(&after, "candela_ticks_received_total", &[("instrument", i)]);
        let consumed = sum(&after, "candela_consumer_ticks_total", &[("instrument", i)]);
        assert!(received > 0.0 && consumed > 0.0, "{i}: {report:?}");
    }
    assert!(sum(&after, "candela_ticks_received_total", &[]) >= stored);
    assert!(sum(&after, "candela_ticks_published_total", &[]) >= stored);
    assert!(sum(&after, "candela_consumer_messages_total", &[]) >= stored);
    assert!(sum(&after, "candela_consumer_batch_write_seconds", &[]) > 0.0);
    // (Recorded at the end of the cycle, after the stored counter.)
    assert!(sum(&after, "candela_tick_visibility_seconds", &[]) > 0.0);
    assert!(
        sum(
            &after,
            "candela_fsm_transitions_total",
            &[("machine", "consumer-fixed"), ("to", "Writing to DB")]
        ) > 0.0
    );
    assert!(
        sum(
            &after,
            "candela_http_requests_total",
            &[("route", "/api/v1/ohlcv"), ("status", "200")]
        ) >= 1.0
    );
    assert!(
        sum(
            &after,
            "candela_http_requests_total",
            &[("route", "/api/v1/ohlcv"), ("status", "400")]
        ) >= 1.0
    );
    // Lag was seen above 0 under load or at 0: it is there, per partition,
    // and back to 0 once everything is committed (the wait above).
    // (A partition without a committed offset has no lag yet.)
    assert!(samples(&after, "candela_consumer_lag_messages", &[]).count() >= 1);
    assert!(sum(&after, "candela_cache_reads_total", &[]) >= 1.0);
    // Every 1-minute answer is counted: from the memo alone or with the
    // datastore (both labels exist from the start).
    assert!(sum(&after, "candela_api_memo_answers_total", &[]) >= 1.0);
    assert_eq!(
        samples(&after, "candela_api_memo_answers_total", &[]).count(),
        2
    );
    assert!(sum(&after, "candela_datastore_requests_total", &[]) >= 1.0);
    assert!(
        sum(
            &after,
            "candela_source_live_events_total",
            &[("event", "trades")]
        ) >= stored
    );
    assert!(
        sum(
            &after,
            "candela_source_live_events_total",
            &[("event", "connects")]
        ) >= 1.0
    );
    // Each actor's current state: exactly one state at 1 per instance.
    let mut current: BTreeMap<String, f64> = BTreeMap::new();
    for s in samples(
        &after,
        "candela_actor_state",
        &[("machine", "consumer-fixed")],
    ) {
        if let Value::Gauge(v) = s.value {
            *current
                .entry(s.labels.get("instance").unwrap_or_default().to_owned())
                .or_default() += v;
        }
    }
    assert!(
        !current.is_empty() && current.values().all(|v| *v == 1.0),
        "{current:?}"
    );
    // No raw path, trade id or free text in a label.
    for s in &after.samples {
        for (k, v) in s.labels.iter() {
            assert!(v.len() <= 64, "{}: label {k}={v}", s.metric);
        }
    }
    // The API serves the same registry.
    let from_api = scrape(&api).await.expect("/metrics on the API");
    assert!(sum(&from_api, "candela_ticks_stored_total", &[]) >= stored);
}
