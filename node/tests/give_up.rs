//! A node whose data plane gives up exits instead of running on without it:
//! `Platform::stopped` reports a supervisor that stopped by itself (past its
//! restart-intensity limit), which `candela node` and `candela run` turn into
//! an exit with an error. Here on the embedded backends (nothing external).

use std::time::Duration;

use candela_node::config::Config;
use candela_node::platform;
use candela_testkit::unique;

fn config(data_dir: &std::path::Path) -> Config {
    let env = vec![
        ("CANDELA__NODE__NAME", unique("node").replace('_', "-")),
        (
            "CANDELA__BACKENDS__DATA_DIR",
            data_dir.display().to_string(),
        ),
        ("CANDELA__SOURCE__KIND", "imitation".into()),
        (
            "CANDELA__INGEST__INSTRUMENTS",
            "[\"Coinbase:BTC-USD\"]".into(),
        ),
        ("CANDELA__INGEST__BACKFILL_MINUTES", "0".into()),
        ("CANDELA__INGEST__REPAIR_MINUTES", "0".into()),
        ("CANDELA__API__LISTEN", "127.0.0.1:0".into()),
        ("CANDELA__CLUSTER__PEERS", "[]".into()),
    ];
    Config::parse("", env.into_iter().map(|(k, v)| (k.to_owned(), v))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_gives_up_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = platform::start(&config(dir.path())).await.unwrap();

    // Running: nothing to report.
    let early = tokio::time::timeout(Duration::from_secs(2), p.stopped()).await;
    assert!(
        early.is_err(),
        "reported a running platform as stopped: {early:?}"
    );

    // The platform supervisor stops (as it does when it escalates).
    p.supervisor.stop(Some("restart intensity exceeded".into()));
    let why = tokio::time::timeout(Duration::from_secs(10), p.stopped())
        .await
        .expect("the stop was not reported");
    assert!(why.contains("candela.platform gave up"), "{why}");
    p.shutdown().await;
}
