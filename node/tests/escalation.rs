//! A fixed consumer that fails on every batch escalates, and its partitions
//! move: three `candela node` processes on one tansu broker, one PostgreSQL
//! database and Redis, fed by the CryptoCompare imitation (in this process,
//! so the test can recompute every trade).
//!
//! | node  | roles                    | database role |
//! |-------|--------------------------|---------------|
//! | alpha | producer, datastore, api | postgres      |
//! | beta  | consumer                 | its own role, which loses INSERT on `ticks` mid-flow |
//! | gamma | consumer                 | postgres      |
//!
//! Once beta and gamma share the partitions and both have stored ticks, the
//! test revokes beta's INSERT. Every write of beta's consumer now fails with
//! "permission denied" — not the batch's fault (nothing to quarantine) and
//! not an outage (nothing to wait out): a failure that counts. The data
//! plane's supervisor passes its restart-intensity limit (here 2 failures
//! within 60 s of running time), stops its children and gives up; beta logs
//! why and exits non-zero. Its consumer announced itself only while it ran,
//! so gamma takes every partition, and after the flow every bar the API
//! serves equals the bars the independent reference computes from the
//! imitation's trades.

mod common;

use candela_testkit::cluster::{self, caught_up, offsets, placements, wait_for};
use candela_testkit::unique;
use common::DataPlane;

const PARTITIONS: i32 = 4;
/// One per partition: CRC-32 of the key modulo 4 is 0, 1, 2 and 3.
const INSTRUMENTS: [&str; 4] = [
    "Coinbase:BTC-USD",
    "Kraken:BTC-EUR",
    "Kraken:ETH-EUR",
    "Coinbase:ETH-USD",
];
/// beta#000 is the first of two members: partitions 0 and 2.
const BETA_PARTITIONS: [usize; 2] = [0, 2];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_that_fails_on_every_batch_escalates_and_its_partitions_move() {
    let mut dp = DataPlane::start(15.0).await;
    let (pool, bootstrap, topic, group) = (
        dp.pool.clone(),
        dp.bootstrap.clone(),
        dp.topic.clone(),
        dp.group.clone(),
    );
    let (pool, bootstrap, topic, group) = (&pool, &bootstrap, &topic, &group);
    let role = unique("beta_role");
    let role_url = {
        let (scheme_user, rest) = dp.db.url.split_once('@').unwrap();
        let scheme = scheme_user.split("//").next().unwrap();
        format!("{scheme}//{role}:beta-secret@{rest}")
    };
    let mut nodes = vec![
        common::node("alpha"),
        common::node("beta"),
        common::node("gamma"),
    ];
    cluster::mesh(&mut nodes);
    for (node, roles) in nodes.iter_mut().zip([
        r#"["producer", "datastore", "api"]"#,
        r#"["consumer"]"#,
        r#"["consumer"]"#,
    ]) {
        dp.configure(node, roles, 1, PARTITIONS, &INSTRUMENTS);
        // A short fuse: the third counted failure within a minute of
        // running time gives up.
        node.set("CANDELA__RESTART__MAX_RESTARTS", "2")
            .set("CANDELA__RESTART__WINDOW_SECS", "60")
            .set("CANDELA__RESTART__BACKOFF_MIN_MS", "100")
            .set("CANDELA__RESTART__BACKOFF_MAX_MS", "400");
    }

    // alpha first: it migrates the database and creates the topic.
    nodes[0].start();
    cluster::wait_ready(&nodes, 0, 90).await;
    // beta writes as a role of its own.
    for statement in [
        format!("CREATE ROLE {role} LOGIN PASSWORD 'beta-secret'"),
        format!("GRANT ALL ON SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"),
        format!("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"),
    ] {
        sqlx::query(&statement).execute(pool).await.unwrap();
    }
    nodes[1].set("CANDELA__POSTGRES__URL", &role_url);
    nodes[1].start();
    nodes[2].start();

    // beta and gamma share the partitions, and both store ticks.
    wait_for(
        "beta and gamma to share the partitions",
        90,
        &nodes,
        async || {
            (placements(&nodes[1].log())
                .get("beta#000")
                .map(String::as_str)
                == Some("1 of 2")
                && placements(&nodes[2].log())
                    .get("gamma#000")
                    .map(String::as_str)
                    == Some("2 of 2"))
            .then_some(())
        },
    )
    .await;
    let before = offsets(bootstrap, topic, group, PARTITIONS).unwrap();
    wait_for("beta to store ticks", 90, &nodes, async || {
        let now = offsets(bootstrap, topic, group, PARTITIONS).ok()?;
        BETA_PARTITIONS
            .iter()
            .all(|p| now[*p].0.unwrap_or(0) > before[*p].0.unwrap_or(0))
            .then_some(())
    })
    .await;

    // beta's role loses INSERT: every write of its consumer fails.
    sqlx::query(&format!("REVOKE INSERT ON ticks FROM {role}"))
        .execute(pool)
        .await
        .unwrap();
    let status = wait_for("beta to give up and exit", 120, &nodes, async || {
        nodes[1].exited()
    })
    .await;
    assert!(!status.success(), "beta exited with {status}");
    let log = nodes[1].log();
    assert!(
        log.contains("permission denied"),
        "{}",
        nodes[1].log_tail(30)
    );
    assert!(
        log.contains("restart intensity exceeded; the supervisor gives up"),
        "{}",
        nodes[1].log_tail(30)
    );
    assert!(
        log.contains("the data plane stopped; exiting"),
        "{}",
        nodes[1].log_tail(30)
    );

    // gamma reads every partition now.
    wait_for("gamma to take every partition", 60, &nodes, async || {
        (placements(&nodes[2].log())
            .get("gamma#000")
            .map(String::as_str)
            == Some("1 of 1"))
        .then_some(())
    })
    .await;
    let at = dp.stored().await;
    wait_for("gamma to carry on", 120, &nodes, async || {
        (dp.stored().await > at + 200).then_some(())
    })
    .await;

    // The flow stops; every published tick is stored; every bar is right.
    let model = dp.stop_source().await;
    wait_for(
        "every published tick to be stored",
        120,
        &nodes,
        async || {
            caught_up(bootstrap, topic, group, PARTITIONS)
                .ok()?
                .then_some(())
        },
    )
    .await;
    dp.assert_served_bars_equal_reference(&nodes[0].api(), &model, &INSTRUMENTS)
        .await;
    drop(nodes);
    let _ = sqlx::query(&format!("DROP OWNED BY {role}"))
        .execute(pool)
        .await;
    drop(dp);
    // The role belongs to the server, not the database: drop it too.
    if let Ok(admin) = sqlx::PgPool::connect(&candela_testkit::database_url()).await {
        let _ = sqlx::query(&format!("DROP ROLE IF EXISTS {role}"))
            .execute(&admin)
            .await;
    }
}
