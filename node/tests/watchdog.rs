//! The consumer watchdog on a node process with every role (real broker,
//! PostgreSQL, Redis; the imitation feeding it): while the test holds a lock
//! that blocks the consumer's database writes past `consumer.stall_secs`,
//! the watchdog reports the stuck consumer (log, metric) and restarts it
//! through its supervisor, and `/ready` fails on the growing lag; once the lock is released the consumer catches
//! up, and every bar served equals the independent oracle's bars of the
//! source's trades. Then every metric the compose Grafana dashboard queries
//! is in the node's exposition.
//!
//! Node logs: set `CANDELA_TEST_LOG_DIR` to keep them there.

mod common;

use candela_testkit::cluster::{self, wait_for};
use common::DataPlane;

const INSTRUMENTS: [&str; 2] = ["Coinbase:BTC-USD", "Kraken:ETH-EUR"];
const PARTITIONS: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stuck_on_a_lock_is_restarted_and_the_bars_are_right_after() {
    let mut dp = DataPlane::start(20.0).await;
    let mut node = common::node("solo");
    dp.configure(
        &mut node,
        r#"["producer", "consumer", "datastore", "api"]"#,
        1,
        PARTITIONS,
        &INSTRUMENTS,
    );
    node.set("CANDELA__CONSUMER__STALL_SECS", "3")
        .set("CANDELA__CONSUMER__READY_MAX_LAG", "10");
    node.start();
    let nodes = [node];
    wait_for("ingestion under way", 60, &nodes, async || {
        (dp.stored().await > 100).then_some(())
    })
    .await;

    // The consumer's writes wait on the test's lock.
    let mut lock = dp.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE ticks IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let ops = nodes[0].ops();
    wait_for(
        "the watchdog's report and restart",
        60,
        &nodes,
        async || {
            let log = nodes[0].log();
            let text = reqwest::get(format!("{ops}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let scrape =
                prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()?;
            let stalls: f64 = scrape
                .samples
                .iter()
                .filter(|s| s.metric == "candela_consumer_stalls_total")
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum();
            (log.contains("consumer stuck") && log.contains("child restarted") && stalls >= 1.0)
                .then_some(())
        },
    )
    .await;
    assert!(nodes[0].exited().is_none(), "the node runs on");
    // The admin view says which consumer was found stuck.
    let api = nodes[0].api();
    let actors: serde_json::Value =
        wait_for("the admin view of the stall", 30, &nodes, async || {
            let r = reqwest::Client::new()
                .get(format!("{api}/admin/actors"))
                .bearer_auth(common::TOKEN)
                .send()
                .await
                .ok()?;
            let actors: serde_json::Value = r.json().await.ok()?;
            actors
                .as_array()?
                .iter()
                .any(|a| a["machine"] == "consumer-fixed" && a["stalls"].as_u64() >= Some(1))
                .then_some(actors)
        })
        .await;
    let stuck = actors
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["stalls"].as_u64() >= Some(1))
        .unwrap();
    assert!(stuck["last_stall_ms"].as_u64().is_some(), "{stuck}");
    // Meanwhile the lag grows past `consumer.ready_max_lag`: not ready.
    let body: serde_json::Value = wait_for("/ready to fail on lag", 60, &nodes, async || {
        let r = reqwest::get(format!("{ops}/ready")).await.ok()?;
        let body: serde_json::Value = r.json().await.ok()?;
        let lag = body["checks"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "lag")?
            .clone();
        (lag["ok"] == false).then_some(body)
    })
    .await;
    assert_eq!(body["ready"], false, "{body}");
    lock.rollback().await.unwrap();

    // It catches up; the bars are right.
    let model = dp.stop_source().await;
    wait_for("the consumer to catch up", 120, &nodes, async || {
        cluster::caught_up(&dp.bootstrap, &dp.topic, &dp.group, PARTITIONS)
            .ok()
            .filter(|c| *c)
    })
    .await;
    dp.assert_served_bars_equal_reference(&nodes[0].api(), &model, &INSTRUMENTS)
        .await;
    // Caught up: ready again.
    wait_for("/ready again", 60, &nodes, async || {
        let r = reqwest::get(format!("{ops}/ready")).await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // The compose dashboard queries only metrics this node exposes (after
    // ingest, API requests, a restart and a stall, every one has a sample).
    let text = reqwest::get(format!("{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let exposed: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for metric in dashboard_metrics() {
        assert!(
            exposed.contains(metric.as_str()),
            "the dashboard queries {metric}, which the node does not expose: {exposed:?}"
        );
    }
}

/// The metric names the provisioned Grafana dashboard queries, after
/// checking the dashboard has the shape Grafana's file provisioning loads:
/// a uid, a title, a schema version, panels each with a type, a title, a
/// grid position and Prometheus targets with an expression.
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let text = include_str!("../../compose/grafana/dashboards/candela.json");
    let d: serde_json::Value = serde_json::from_str(text).expect("the dashboard is JSON");
    assert!(
        d["uid"].is_string() && d["title"].is_string(),
        "uid and title"
    );
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    let mut names = std::collections::BTreeSet::new();
    for p in panels {
        assert!(p["type"].is_string() && p["title"].is_string(), "{p}");
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "{p}");
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{p}");
        for t in targets {
            let expr = t["expr"].as_str().expect("a PromQL expression");
            let mut rest = expr;
            while let Some(at) = rest.find("candela_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let name = &tail[..end];
                // A histogram's series are listed under its base name.
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                names.insert(base.to_owned());
                rest = &tail[end..];
            }
        }
    }
    for wanted in [
        "candela_ticks_stored_total",
        "candela_consumer_lag_messages",
        "candela_tick_visibility_seconds",
        "candela_actor_restarts_total",
        "candela_http_request_duration_seconds",
        "candela_cache_reads_total",
    ] {
        assert!(names.contains(wanted), "the dashboard shows {wanted}");
    }
    names
}
