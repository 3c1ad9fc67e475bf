//! Health and readiness on a consumer-only node process (real broker,
//! PostgreSQL, Redis): `/health` answers on its ops listener throughout;
//! `/ready` is 200 while PostgreSQL answers, 503 naming the store check when
//! PostgreSQL is stopped for the node (a proxy the test cuts: the shared
//! server keeps serving the other tests), and 200 again when it returns.
//! Its partition lease follows the database too: while the node cannot
//! reach it, its lease lapses (it stops reading: no other node has to wait
//! for it longer than the lease time), and when the database returns it
//! takes the lease again.
//!
//! Node logs: set `CANDELA_TEST_LOG_DIR` to keep them there.

mod common;

use candela_actors::kafka::lease::leases;
use candela_testkit::cluster::wait_for;
use candela_testkit::proxy::Proxy;
use common::DataPlane;
use serde_json::Value;

async fn get(url: &str) -> Option<(u16, Value)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.ok()?))
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_database_of_a_consumer_only_node_and_health_stays_up() {
    let dp = DataPlane::start(5.0).await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut node = common::node("consumer-only");
    dp.configure(&mut node, r#"["consumer"]"#, 1, 1, &["Coinbase:BTC-USD"]);
    assert!(dp.db.url.contains("@127.0.0.1:5432/"), "{}", dp.db.url);
    node.set(
        "CANDELA__POSTGRES__URL",
        dp.db
            .url
            .replace("@127.0.0.1:5432/", &format!("@127.0.0.1:{}/", proxy.port())),
    );
    // The tick topic, so the consumer has a partition to lease (no producer
    // runs in this test).
    let kafka = candela_actors::kafka::KafkaConfig {
        brokers: vec![dp.bootstrap.clone()],
        ..Default::default()
    };
    candela_actors::kafka::ensure_topic(&kafka, &dp.topic, 1, 1)
        .await
        .unwrap();
    node.start();
    let nodes = [node];
    wait_for("the node's lease", 60, &nodes, async || {
        let table = leases(&dp.pool, &dp.group, &dp.topic).await.ok()?;
        (table.len() == 1 && table[0].live).then_some(())
    })
    .await;
    let ops = nodes[0].ops();

    let (_, body) = wait_for("/ready 200", 60, &nodes, async || {
        get(&format!("{ops}/ready"))
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(check(&body, "store")["ok"], true, "{body}");
    assert_eq!(check(&body, "broker")["ok"], true, "{body}");
    let (status, health) = get(&format!("{ops}/health")).await.unwrap();
    assert_eq!((status, health["status"].as_str()), (200, Some("up")));

    // PostgreSQL stops, for this node.
    proxy.cut();
    let (_, body) = wait_for("/ready 503", 30, &nodes, async || {
        get(&format!("{ops}/ready"))
            .await
            .filter(|(s, _)| *s == 503)
    })
    .await;
    eprintln!("while the database is away: {body}");
    // Its lease lapses (the test reaches the database directly).
    wait_for("the node's lease to lapse", 60, &nodes, async || {
        let table = leases(&dp.pool, &dp.group, &dp.topic).await.ok()?;
        (!table.is_empty() && table.iter().all(|l| !l.live)).then_some(())
    })
    .await;
    assert_eq!(body["ready"], false, "{body}");
    let store = check(&body, "store");
    assert_eq!(store["ok"], false, "{body}");
    assert!(
        !store["detail"].as_str().unwrap_or_default().is_empty(),
        "{body}"
    );
    let (status, _) = get(&format!("{ops}/health")).await.unwrap();
    assert_eq!(status, 200, "the process is up");

    // It returns.
    proxy.restore().await;
    let (_, body) = wait_for("/ready 200 again", 60, &nodes, async || {
        get(&format!("{ops}/ready"))
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(check(&body, "store")["ok"], true, "{body}");
    // It holds its lease again.
    wait_for("the node's lease again", 60, &nodes, async || {
        let table = leases(&dp.pool, &dp.group, &dp.topic).await.ok()?;
        table
            .iter()
            .all(|l| l.live && l.owner.as_deref() == Some("consumer-only#000"))
            .then_some(())
    })
    .await;
    assert!(nodes[0].exited().is_none(), "the node kept running");
}
