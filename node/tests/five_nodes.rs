//! Five node processes, each in a network namespace of its own (the
//! harness of `partitions.rs`, `candela_testkit::netns`), with every role
//! spread as a team would run them:
//!
//! | node    | roles                                | |
//! |---------|--------------------------------------|---|
//! | alpha   | producer                             | active/standby (`ingest.active_standby`) |
//! | epsilon | producer                             | active/standby |
//! | beta    | consumer, coordinator, datastore, api | serves the API and the admin view |
//! | gamma   | consumer, coordinator                | the second coordinator |
//! | delta   | consumer                             | |
//!
//! It checks that the admin view shows all five reachable with their
//! actors; that exactly one producer streams (it holds the producer lease,
//! its actor runs, the other node has none); that the three consumers hold
//! their shares' partition leases and ticks are stored; then `kill -9` of
//! the active producer's node: the standby takes the lease, starts its
//! producer, and ticks are stored again. It prints the memory (RSS) and
//! CPU time each node used (docs/cluster.md reports them).
//!
//! Needs root (network namespaces); where they cannot be created, the test
//! says so loudly and passes without running.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use candela_actors::kafka::lease::leases;
use candela_actors::kafka::Share;
use candela_testkit::cluster::{self, wait_for, NodeProcess};
use candela_testkit::netns::{self, Net};
use common::DataPlane;
use serde_json::Value;

const PARTITIONS: i32 = 6;
const NAMES: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];
const ROLES: [&str; 5] = [
    r#"["producer"]"#,
    r#"["consumer", "coordinator", "datastore", "api"]"#,
    r#"["consumer", "coordinator"]"#,
    r#"["consumer"]"#,
    r#"["producer"]"#,
];
const INSTRUMENTS: [&str; 4] = [
    "Coinbase:BTC-USD",
    "Kraken:BTC-EUR",
    "Kraken:ETH-EUR",
    "Coinbase:ETH-USD",
];
const BETA: usize = 1;

/// The admin view on beta.
async fn view(nodes: &[NodeProcess]) -> Option<Value> {
    common::admin_view(&nodes[BETA]).await
}

fn node_in<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["nodes"].as_array()?.iter().find(|n| n["name"] == name)
}

/// Whether `node` runs an actor named `actor` in the view.
fn runs(v: &Value, node: &str, actor: &str) -> bool {
    node_in(v, node)
        .and_then(|n| n["actors"].as_array())
        .is_some_and(|a| {
            a.iter()
                .any(|a| a["name"] == actor && a["status"] == "running")
        })
}

/// The live holder of the producer lease.
async fn producer_lease(dp: &DataPlane) -> Option<String> {
    leases(
        &dp.pool,
        candela_node::standby::PRODUCER_LEASE_GROUP,
        &dp.topic,
    )
    .await
    .ok()?
    .into_iter()
    .find(|l| l.live)
    .and_then(|l| l.owner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_one_active_producer_and_a_standby_that_takes_over() {
    if let Err(why) = netns::available() {
        eprintln!(
            "\n{bar}\nSKIPPED five_nodes_one_active_producer_and_a_standby_that_takes_over: \
             network namespaces cannot be created here ({why}); run as root \
             with iproute2 to run it\n{bar}\n",
            bar = "!".repeat(78)
        );
        return;
    }
    let dp = DataPlane::start(10.0).await;
    let mut net = Net::create(NAMES.len()).expect("the namespaces");
    let mut nodes = dp.nodes_in(&mut net, &NAMES).await;
    for (node, roles) in nodes.iter_mut().zip(ROLES) {
        dp.configure(node, roles, 1, PARTITIONS, &INSTRUMENTS);
        node.set("CANDELA__INGEST__ACTIVE_STANDBY", "true")
            .set("CANDELA__CONSUMER__LEASE_TTL_MS", "3000")
            .set("CANDELA__CONSUMER__LEASE_RENEW_MS", "500")
            .set("CANDELA__CONSUMER__LEASE_GRACE_MS", "1000");
    }

    // beta first: it migrates the database; then alpha (which creates the
    // topic when its producer starts), then the rest.
    nodes[BETA].start();
    cluster::wait_ready(&nodes, BETA, 120).await;
    nodes[0].start();
    wait_for(
        "alpha's producer to be the active one",
        120,
        &nodes,
        async || (producer_lease(&dp).await.as_deref() == Some("alpha")).then_some(()),
    )
    .await;
    for i in [2, 3, 4] {
        nodes[i].start();
    }

    // The admin view: five reachable nodes; one producer, two
    // coordinators, three consumers.
    wait_for("the five nodes and their actors", 180, &nodes, async || {
        let v = view(&nodes).await?;
        let all = NAMES
            .iter()
            .all(|n| node_in(&v, n).is_some_and(|n| n["reachable"] == true));
        (all && v["nodes"].as_array()?.len() == 5
            && runs(&v, "alpha", "producer/alpha")
            && !runs(&v, "epsilon", "producer/epsilon")
            && runs(&v, "beta", "coordinator/beta")
            && runs(&v, "gamma", "coordinator/gamma")
            && runs(&v, "beta", "consumer-fixed/beta")
            && runs(&v, "gamma", "consumer-fixed/gamma")
            && runs(&v, "delta", "consumer-fixed/delta"))
        .then_some(())
    })
    .await;
    let members = ["beta", "delta", "gamma"];
    let shares: BTreeMap<String, Vec<i32>> = members
        .iter()
        .map(|m| {
            let set: BTreeSet<String> = members.iter().map(|m| format!("{m}#000")).collect();
            (
                format!("{m}#000"),
                Share::of(&format!("{m}#000"), &set).partitions(PARTITIONS),
            )
        })
        .collect();
    wait_for(
        "each consumer to hold its share's leases",
        120,
        &nodes,
        async || {
            let mut held: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for l in leases(&dp.pool, &dp.group, &dp.topic).await.ok()? {
                if let (Some(o), true) = (l.owner, l.live) {
                    held.entry(o).or_default().push(l.partition);
                }
            }
            (held == shares).then_some(())
        },
    )
    .await;
    let before = dp.stored().await;
    wait_for("ticks stored", 120, &nodes, async || {
        (dp.stored().await > before + 200).then_some(())
    })
    .await;

    // What each node uses: resident memory, and CPU over 30 s of streaming
    // (4 instruments, 10 trades/s each).
    let cpu0: Vec<f64> = nodes
        .iter()
        .map(|n| n.cpu_seconds().unwrap_or(0.0))
        .collect();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    let secs = t0.elapsed().as_secs_f64();
    let mut report = format!(
        "{:<8} {:<48} {:>8} {:>10}\n",
        "node", "roles", "RSS MiB", "CPU %"
    );
    for ((n, roles), c0) in nodes.iter().zip(ROLES).zip(cpu0) {
        report.push_str(&format!(
            "{:<8} {:<48} {:>8.1} {:>10.1}\n",
            n.name,
            roles,
            n.rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
            100.0 * (n.cpu_seconds().unwrap_or(0.0) - c0) / secs
        ));
    }
    eprintln!("five nodes, streaming (CPU % of one core over {secs:.0} s):\n{report}");

    // kill -9 the active producer: the standby takes over.
    nodes[0].kill();
    let at_kill = dp.stored().await;
    wait_for("epsilon's producer to take over", 120, &nodes, async || {
        (producer_lease(&dp).await.as_deref() == Some("epsilon")).then_some(())
    })
    .await;
    wait_for(
        "epsilon's producer in the admin view",
        60,
        &nodes,
        async || {
            let v = view(&nodes).await?;
            runs(&v, "epsilon", "producer/epsilon").then_some(())
        },
    )
    .await;
    // epsilon publishes (its own counter), and ticks are stored again.
    let metrics = format!("{}/metrics", nodes[4].ops());
    wait_for("epsilon to publish ticks", 120, &nodes, async || {
        let text = cluster::http(10)
            .get(&metrics)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let published: f64 = text
            .lines()
            .filter(|l| l.starts_with("candela_ticks_published_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (published >= 100.0).then_some(())
    })
    .await;
    wait_for("ticks stored again", 120, &nodes, async || {
        (dp.stored().await > at_kill + 200).then_some(())
    })
    .await;
    for n in &nodes {
        n.kill();
    }
    drop(net);
}
