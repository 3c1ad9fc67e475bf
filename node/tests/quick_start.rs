//! The quick start: `candela` with no arguments and no configuration file
//! runs one node on the embedded backends (in-process bus, SQLite in
//! `./data`, in-memory cache) with no external service, serves bars from the
//! imitation's history and live trades, and keeps them across a restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const INSTRUMENT: &str = "Coinbase:BTC-USD";

struct Node {
    child: Child,
    port: u16,
}

impl Node {
    /// Starts `candela` (no arguments) in `dir`, with only the API port and
    /// the pace of the imitation overridden. Every variable of the test
    /// environment that could point it at a real backend is removed.
    /// The node binds its API port itself (port 0); the test reads the
    /// address from the banner it prints.
    fn start(dir: &Path, run: u32, backfill_minutes: u32) -> Self {
        let log_path = dir.join(format!("node.{run}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_candela"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CANDELA__") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .current_dir(dir)
            .env("CANDELA__API__LISTEN", "127.0.0.1:0")
            .env("CANDELA__OPS__LISTEN", "127.0.0.1:0")
            .env(
                "CANDELA__INGEST__BACKFILL_MINUTES",
                backfill_minutes.to_string(),
            )
            .env(
                "CANDELA__INGEST__REPAIR_MINUTES",
                if backfill_minutes > 0 { "5" } else { "0" },
            )
            .env("CANDELA__SOURCE__IMITATION__TRADES_PER_SEC", "20.0")
            .env("CANDELA_ADMIN_TOKEN", "quick-start-test")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start candela");
        let mut node = Self { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(120);
        node.port = loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(port) = text
                .split("candela is serving on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse::<u16>().ok())
            {
                break port;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("candela exited ({status}) before serving:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "candela did not say where it serves within 120 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        node
    }

    async fn get(&self, path: &str) -> Option<(u16, Value)> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let response = client
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth("quick-start-test")
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The stored 1-minute bars of the instrument, once there are at least
    /// `at_least`.
    async fn wait_for_bars(&self, at_least: usize, dir: &Path, run: u32) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some((200, body)) = self
                .get(&format!(
                    "/api/v1/ohlcv?instrument={INSTRUMENT}&interval=1m&from=0&limit=10000"
                ))
                .await
            {
                let bars = body["bars"].as_array().cloned().unwrap_or_default();
                if bars.len() >= at_least {
                    return bars;
                }
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {at_least} bars after 120 s; log:\n{}",
                std::fs::read_to_string(dir.join(format!("node.{run}.log"))).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn stop(mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("candela did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_default_run_serves_bars_with_no_external_service_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();

    let node = Node::start(dir.path(), 1, 30);
    // The backfill (30 closed minutes) and the live minute.
    node.wait_for_bars(30, dir.path(), 1).await;
    // Live trades flow through the in-process bus into SQLite: a live bar.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let bars = node.wait_for_bars(30, dir.path(), 1).await;
        if bars
            .iter()
            .any(|b| b["source"] == "live" && b["trades"].as_u64() > Some(0))
        {
            break bars;
        }
        assert!(Instant::now() < deadline, "no live bar within 60 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // A pair the node was not configured for, but the source lists: served
    // on demand (the Data Not Found path: the coordinator runs here too).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let answer = node
            .get("/api/v1/ohlcv?instrument=Binance:SOL-USDT&interval=1m&from=0&limit=5")
            .await;
        match answer {
            Some((200, body)) => break (200, body),
            // Still fetching (504) or the client's time-out: ask again.
            Some((504, _)) | None if Instant::now() < deadline => {}
            Some((status, body)) => break (status, body),
            None => panic!("no answer for an on-demand instrument within 60 s"),
        }
    };
    assert_eq!(status, 200, "an on-demand instrument: {body}");
    assert!(
        !body["bars"].as_array().unwrap().is_empty(),
        "no bars for an on-demand instrument: {body}"
    );
    // The admin endpoints answer without the cluster layer: the cluster
    // view is this node alone, and the dynamic instruments are listed.
    let (status, cluster) = node.get("/admin/cluster").await.expect("cluster view");
    assert_eq!(status, 200, "{cluster}");
    let nodes = cluster["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{cluster}");
    assert_eq!(nodes[0]["membership"], "self");
    assert!(
        nodes[0]["actors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["machine"] == "producer"),
        "{cluster}"
    );
    let (status, dynamic) = node.get("/admin/dynamic").await.expect("dynamic list");
    assert_eq!(status, 200, "{dynamic}");
    assert!(
        dynamic.to_string().contains("Binance:SOL-USDT"),
        "{dynamic}"
    );
    let (status, ready) = node.get("/ready").await.expect("ready answers");
    assert_eq!(status, 200, "{ready}");
    let (status, instruments) = node.get("/api/v1/instruments").await.expect("instruments");
    assert_eq!(status, 200);
    assert!(
        instruments.to_string().contains(INSTRUMENT),
        "{instruments}"
    );
    node.stop();

    let log = std::fs::read_to_string(dir.path().join("node.1.log")).unwrap();
    assert!(
        log.contains("Memory"),
        "backends not logged as embedded:\n{log}"
    );
    // Not a terminal: the log is JSON lines (`--log-format auto`), each with
    // its time, level, target and fields; only the banner is plain text.
    let records: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(records.len() >= 5, "{log}");
    assert!(
        records.iter().all(|r| r["timestamp"].is_string()
            && r["level"].is_string()
            && r["target"].is_string()
            && r["fields"].is_object()),
        "{log}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "backends connected"
                && r["fields"]["bus"] == "Memory"),
        "{log}"
    );
    // An actor's lines carry its span (machine and name), not fields
    // repeated by hand.
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "producer started"
                && r["span"]["name"] == "actor"
                && r["span"]["machine"] == "producer"
                && r["span"]["actor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("producer/"))),
        "{log}"
    );
    assert!(
        dir.path().join("data/candela.sqlite3").exists(),
        "no SQLite file in ./data"
    );

    // Started again with no backfill and no repair (nothing fetches the past
    // again): every minute stored before is served from the SQLite file, and
    // the minutes taken from history (closed, final) are unchanged.
    let node = Node::start(dir.path(), 2, 0);
    let second = node.wait_for_bars(first.len(), dir.path(), 2).await;
    let history: Vec<&Value> = first.iter().filter(|b| b["source"] == "history").collect();
    assert!(history.len() >= 25, "{} history bars", history.len());
    for bar in &first {
        let again = second
            .iter()
            .find(|b| b["time"] == bar["time"])
            .unwrap_or_else(|| panic!("bar {} lost across the restart", bar["time"]));
        if bar["source"] == "history" {
            assert_eq!(again, bar, "a history bar changed across the restart");
        }
    }
    node.stop();
}
