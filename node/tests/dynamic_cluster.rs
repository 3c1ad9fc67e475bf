//! The Data Not Found path across three `candela node` processes on loopback,
//! each from the shipped `cluster.toml` with environment overrides:
//!
//! * `node-a`: datastore + API — receives the request;
//! * `node-b`: coordinator + producer (and the CryptoCompare imitation);
//! * `node-c`: consumer — its agent starts the Consumer for dynamic topics.
//!
//! The API on node-a is asked for an instrument no node holds; the datastore
//! asks the coordinator on node-b by name, which creates the topic, asks
//! node-c's agent for a dynamic consumer and subscribes it, and has node-b's
//! producer publish the history; node-c stores it; node-a answers. The bars
//! equal what the test kit's independent oracle computes from the
//! imitation's trade model (a pure function of seed, rate and start, so this
//! process can recompute it) and the live ticks stored, every field.
//!
//! Then the failure that crosses nodes: node-b is killed (`kill -9`) while
//! its coordinator waits on a history fetch that never ends, and node-a's
//! request must be answered within seconds, saying the coordinator stopped,
//! not after the fetch time-out. (Only a real second process shows this: the
//! coordinator node-a calls is ractor_cluster's local stand-in, stopped when
//! the session to node-b closes.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use candela_actors::domain::{Instrument, Interval};
use candela_actors::imitation::TradeModel;
use candela_testkit::handover::Handover;
use candela_testkit::{broker, convert, oracle, unique, TestDb};
use serde_json::Value;

const COOKIE: &str = "candela-dynamic-test-cookie-0123456789abcdef";
/// The status endpoint refuses every request without the admin token.
const TOKEN: &str = "candela-dynamic-test-admin-token";
const SEED: u64 = 7;
const TRADES_PER_SEC: f64 = 4.0;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct Node {
    name: &'static str,
    cluster_port: u16,
    status_port: u16,
    log: std::path::PathBuf,
    child: Child,
}

/// A node's ports, bound here on port 0 and handed to its process.
fn ports() -> Handover {
    Handover::bind(&["cluster", "status", "ops"])
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// HTTP status of `GET /cluster/names/{name}` on the status endpoint,
    /// presenting the admin token.
    fn names(&self, name: &str) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.status_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            stream,
            "GET /cluster/names/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::too_many_arguments)]
fn start(
    dir: &std::path::Path,
    name: &'static str,
    roles: &str,
    ports: &[(&'static str, u16)],
    mut own: Handover,
    common: &[(String, String)],
    extra: &[(&str, String)],
) -> Node {
    let cluster_port = ports.iter().find(|(n, _)| *n == name).unwrap().1;
    assert_eq!(cluster_port, own.port("cluster"));
    let (status_port, ops_port) = (own.port("status"), own.port("ops"));
    let peers = ports
        .iter()
        .filter(|(n, _)| *n != name)
        .map(|(n, p)| format!("\"{n}@127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candela"));
    own.give(&mut cmd, &[]);
    cmd.args([
        "node",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml"),
    ])
    .env("CANDELA_CLUSTER_COOKIE", COOKIE)
    .env("CANDELA_ADMIN_TOKEN", TOKEN)
    .env("CANDELA__NODE__NAME", name)
    .env("CANDELA__NODE__ROLES", roles)
    .env(
        "CANDELA__CLUSTER__LISTEN",
        format!("127.0.0.1:{cluster_port}"),
    )
    .env(
        "CANDELA__CLUSTER__STATUS_LISTEN",
        format!("127.0.0.1:{status_port}"),
    )
    .env("CANDELA__CLUSTER__PEERS", format!("[{peers}]"))
    .env("CANDELA__OPS__LISTEN", format!("127.0.0.1:{ops_port}"))
    .env("CANDELA__CLUSTER__HEARTBEAT_MS", "250")
    .env("CANDELA__CLUSTER__RECONNECT_MIN_MS", "100")
    .env("CANDELA__CLUSTER__RECONNECT_MAX_MS", "1000")
    .env("RUST_LOG", "info")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in common {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Node {
        name,
        cluster_port,
        status_port,
        log,
        child: cmd.spawn().expect("start candela node"),
    }
}

fn report(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            format!(
                "\n--- {} (cluster port {}) log tail:\n{}",
                n.name,
                n.cluster_port,
                lines[lines.len().saturating_sub(40)..].join("\n")
            )
        })
        .collect()
}

/// The tests start three node processes each; on a small machine two such
/// clusters at once would starve each other.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The three nodes of these tests, each seeing the others.
struct Three {
    a: Node,
    b: Node,
    c: Node,
    api_port: u16,
    history_start: i64,
    db: TestDb,
    _dir: tempfile::TempDir,
}

impl Three {
    fn report(&self) -> String {
        report(&[&self.a, &self.b, &self.c])
    }
}

/// Starts node-c (consumer), node-b (coordinator and producer, with
/// `b_extra` in its environment) and node-a (datastore and API), and waits
/// until node-a sees the coordinator, node-b's producer and node-c's agent.
async fn three_nodes(b_extra: &[(&str, String)]) -> Three {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let history_start = (now() - 86_400).div_euclid(86_400) * 86_400;
    let common: Vec<(String, String)> = [
        (
            "CANDELA__KAFKA__BROKERS",
            format!("[\"{}\"]", broker::shared_bootstrap()),
        ),
        ("CANDELA__KAFKA__TICK_TOPIC", unique("tick-data")),
        ("CANDELA__KAFKA__TICK_TOPIC_PARTITIONS", "1".into()),
        ("CANDELA__POSTGRES__URL", db.url.clone()),
        ("CANDELA__REDIS__URL", candela_testkit::redis_url()),
        ("CANDELA__REDIS__KEY_PREFIX", unique("candela")),
        ("CANDELA__CONSUMER__GROUP", unique("group")),
        ("CANDELA__INGEST__INSTRUMENTS", "[]".into()),
        ("CANDELA__INGEST__BACKFILL_MINUTES", "0".into()),
        ("CANDELA__INGEST__REPAIR_MINUTES", "0".into()),
        ("CANDELA__DYNAMIC__TOPIC_PREFIX", unique("dyn")),
        ("CANDELA__DYNAMIC__GROUP_PREFIX", unique("dyngroup")),
        ("CANDELA__DYNAMIC__HISTORY_MINUTES", "15".into()),
        ("CANDELA__DATASTORE__FETCH_TIMEOUT_SECS", "90".into()),
        ("CANDELA__SOURCE__KIND", "imitation".into()),
        ("CANDELA__SOURCE__IMITATION__SEED", SEED.to_string()),
        (
            "CANDELA__SOURCE__IMITATION__TRADES_PER_SEC",
            TRADES_PER_SEC.to_string(),
        ),
        (
            "CANDELA__SOURCE__IMITATION__HISTORY_START_TS",
            history_start.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // Every port of the three nodes, bound here and handed to each node.
    let (na, nb, nc) = (
        Handover::bind(&["cluster", "status", "ops", "api"]),
        ports(),
        ports(),
    );
    let api_port = na.port("api");
    let ports = [
        ("node-a", na.port("cluster")),
        ("node-b", nb.port("cluster")),
        ("node-c", nc.port("cluster")),
    ];
    let c = start(
        dir.path(),
        "node-c",
        "[\"consumer\"]",
        &ports,
        nc,
        &common,
        &[],
    );
    let b = start(
        dir.path(),
        "node-b",
        "[\"coordinator\", \"producer\"]",
        &ports,
        nb,
        &common,
        b_extra,
    );
    let a = start(
        dir.path(),
        "node-a",
        "[\"datastore\", \"api\"]",
        &ports,
        na,
        &common,
        &[("CANDELA__API__LISTEN", format!("127.0.0.1:{api_port}"))],
    );
    let three = Three {
        a,
        b,
        c,
        api_port,
        history_start,
        db,
        _dir: dir,
    };

    // node-a sees the coordinator, node-b's producer and node-c's agent.
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in ["coordinator", "producer/node-b", "agent/node-c"] {
        loop {
            let code = three.a.names(name);
            if code == Some(200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node-a never saw `{name}` (last status {code:?}){}",
                three.report()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    three
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_instrument_asked_on_one_node_is_served_by_two_others() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let three = three_nodes(&[]).await;
    let (a, b, c) = (&three.a, &three.b, &three.c);
    let (api_port, history_start) = (three.api_port, three.history_start);
    let nodes = [a, b, c];
    assert_eq!(
        a.names("agent/node-a"),
        Some(200),
        "every node has an agent"
    );

    let sol: Instrument = "Binance:SOL-USDT".parse().unwrap();
    let asked_at = now();
    let last_closed = asked_at - asked_at.rem_euclid(60) - 60;
    let from = Interval::M1.floor(asked_at - 10 * 60);
    let url = format!(
        "http://127.0.0.1:{api_port}/api/v1/ohlcv?instrument={sol}&interval=1m&from={from}&limit=10000"
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let resp = http
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}{}", report(&nodes)));
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}{}", report(&nodes));
    assert_eq!(body["served"], "fetched", "{body}");

    // The dynamic consumer runs on node-c, seen by name from node-a.
    assert_eq!(
        a.names("consumer-dynamic/node-c/0"),
        Some(200),
        "{}",
        report(&nodes)
    );

    // Bars of the closed minutes equal the independent computation: the
    // reference rule on the history an exact source answers (the imitation's
    // trades of each minute) and the live ticks stored (the stream joined
    // after the last closed minute: they cannot complete a history minute).
    let model = TradeModel::new(SEED, TRADES_PER_SEC, history_start);
    let history = convert::exact_history(&convert::imitation_trades(
        &model,
        &sol,
        Interval::M1.floor(from) * 1_000_000_000,
        (last_closed + 60) * 1_000_000_000 - 1,
    ));
    let pool = sqlx::PgPool::connect(&three.db.url).await.unwrap();
    let live = convert::stored_ticks(&pool, &sol.to_string()).await;
    let want: Vec<_> = oracle::reconcile(&live, &history)
        .into_iter()
        .filter(|m| (from..=last_closed).contains(&m.bar.open_time))
        .collect();
    assert!(want.len() >= 9, "{} minutes expected", want.len());
    let got: Vec<_> = convert::served_minutes(&body, &sol.to_string())
        .into_iter()
        .filter(|m| m.bar.open_time <= last_closed)
        .collect();
    oracle::assert_same_minutes("fetched", &got, &want);

    // The log lines say who did what, where.
    assert!(
        b.log().contains("dynamic instrument arranged"),
        "{}",
        report(&nodes)
    );
    assert!(
        c.log().contains("subscribed to a dynamic topic"),
        "{}",
        report(&nodes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_on_a_coordinator_whose_node_is_killed_fails_at_once() {
    // node-b's producer asks a history server that accepts the request and
    // never answers; its live feed dials one that never speaks.
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let history = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (asked_tx, asked) = tokio::sync::oneshot::channel();
    let history_addr = history.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut asked_tx = Some(asked_tx);
        while let Ok((stream, _)) = history.accept() {
            held.push(stream);
            if let Some(tx) = asked_tx.take() {
                let _ = tx.send(());
            }
        }
    });
    let mut three = three_nodes(&[
        ("CANDELA__SOURCE__KIND", "cryptocompare".into()),
        (
            "CANDELA__SOURCE__CRYPTOCOMPARE__REST_URL",
            format!("http://{history_addr}"),
        ),
        (
            "CANDELA__SOURCE__CRYPTOCOMPARE__WS_URL",
            format!("ws://{}/v2", live.local_addr().unwrap()),
        ),
        (
            "CANDELA__SOURCE__CRYPTOCOMPARE__REQUEST_TIMEOUT_MS",
            "120000".into(),
        ),
    ])
    .await;

    let url = format!(
        "http://127.0.0.1:{}/api/v1/ohlcv?instrument=Binance:SOL-USDT&interval=1m&from={}",
        three.api_port,
        now() - 600
    );
    let request = tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let resp = http.get(&url).send().await?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await?;
        Ok::<_, reqwest::Error>((status, body))
    });

    // The coordinator on node-b waits for its producer's history: kill -9
    // node-b; node-a's request must end at once, saying what happened.
    tokio::time::timeout(Duration::from_secs(60), asked)
        .await
        .unwrap_or_else(|_| panic!("the producer never asked for history{}", three.report()))
        .unwrap();
    three.b.child.kill().unwrap();
    let _ = three.b.child.wait();
    let killed = Instant::now();
    // Not a timing check: a request that did not hear of the kill would wait
    // out the producer's 50 s time-out and answer 504; 30 s leaves a loaded
    // machine room, and the status below says which way it ended.
    let answer = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "node-a's request still waits 30 s after node-b was killed{}",
                three.report()
            )
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}{}", three.report()));
    // Not 504 "it may still arrive", not 404 "not available": 503, the
    // fetch broke off, and the message says why.
    eprintln!(
        "node-a answered {:?} after node-b was killed",
        killed.elapsed()
    );
    let (status, body) = answer;
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        status == 503 && message.contains("`coordinator` stopped before answering"),
        "{status} {body}{}",
        three.report()
    );
}
