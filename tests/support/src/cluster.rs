//! `candela node` processes for multi-node tests, and what such tests ask of
//! the services (committed offsets, high watermarks, the admin view).
//!
//! A [`NodeProcess`] is one node started from the shipped `cluster.toml`
//! with environment overrides (`CANDELA__SECTION__FIELD`); its log goes to a
//! file of its own (kept in `CANDELA_TEST_LOG_DIR` when set). Dropping it
//! kills the process. Nodes talk mutual TLS, as deployed: each gets a
//! certificate of one CA per test process (`candela certs`), unless a test
//! sets `CANDELA__CLUSTER__TRANSPORT` itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// `["a", "b"]`: a list as a configuration override.
pub fn toml_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One `candela node` process.
pub struct NodeProcess {
    /// Its node name.
    pub name: String,
    /// Its cluster listener's port.
    pub cluster_port: u16,
    /// Its status endpoint's port.
    pub status_port: u16,
    /// Its API's port (used when it has the `api` role).
    pub api_port: u16,
    /// Its ops listener's port (`/metrics`, `/health`, `/ready`).
    pub ops_port: u16,
    /// `name@127.0.0.1:port` of every other node.
    pub peers: Vec<String>,
    /// Overrides, applied after the common ones (`CANDELA__…` = value).
    pub env: BTreeMap<String, String>,
    /// Set when it runs in a network namespace ([`Self::in_namespace`]).
    namespace: Option<Namespaced>,
    /// Its ports, bound here and handed to the process at each start (none
    /// in a namespace: fixed ports there).
    handover: Option<crate::handover::Handover>,
    bin: PathBuf,
    config: PathBuf,
    dir: tempfile::TempDir,
    child: std::sync::Mutex<Option<Child>>,
    starts: u32,
}

/// A node in a network namespace: the command prefix that enters it, its
/// address there.
struct Namespaced {
    prefix: Vec<String>,
    host: std::net::Ipv4Addr,
}

/// The ports a node listens on inside a namespace of its own (each
/// namespace has its own ports, so fixed ones are free).
const NS_CLUSTER_PORT: u16 = 7000;
const NS_STATUS_PORT: u16 = 7001;
const NS_API_PORT: u16 = 8080;
const NS_OPS_PORT: u16 = 9090;

/// The test process's CA (made once, by `candela certs`).
fn shared_ca(bin: &Path) -> &'static Path {
    static CA: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        certs(bin, dir.path(), "ca-holder");
        dir
    })
    .path()
}

/// `candela certs --dir dir name`.
fn certs(bin: &Path, dir: &Path, name: &str) {
    let out = Command::new(bin)
        .args(["certs", "--dir"])
        .arg(dir)
        .arg(name)
        .output()
        .expect("candela certs");
    assert!(
        out.status.success(),
        "candela certs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NodeProcess {
    /// A node named `name` of the binary `bin`, configured by `config` (the
    /// shipped `cluster.toml`) and `env`; not started.
    pub fn new(bin: &Path, config: &Path, name: &str) -> Self {
        // Bound here (port 0) and handed over at each start: never free
        // for another process to take between choosing and listening.
        let handover = crate::handover::Handover::bind(&["cluster", "status", "api", "ops"]);
        let [cluster_port, status_port, api_port, ops_port] =
            ["cluster", "status", "api", "ops"].map(|n| handover.port(n));
        // Its certificate, of the process's CA (a file name of its own:
        // tests run in parallel, and names repeat between tests).
        let ca = shared_ca(bin);
        let file = crate::unique(&format!("{name}-cert")).replace('_', "-");
        certs(bin, ca, &file);
        let tls = [
            ("CANDELA__CLUSTER__TRANSPORT", "tls".to_owned()),
            (
                "CANDELA__CLUSTER__TLS__CA",
                ca.join("ca.pem").display().to_string(),
            ),
            (
                "CANDELA__CLUSTER__TLS__CERT",
                ca.join(format!("{file}.pem")).display().to_string(),
            ),
            (
                "CANDELA__CLUSTER__TLS__KEY",
                ca.join(format!("{file}.key")).display().to_string(),
            ),
        ];
        Self {
            name: name.into(),
            cluster_port,
            status_port,
            api_port,
            ops_port,
            peers: Vec::new(),
            namespace: None,
            handover: Some(handover),
            env: tls.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            bin: bin.to_owned(),
            config: config.to_owned(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: std::sync::Mutex::new(None),
            starts: 0,
        }
    }

    /// Runs it in node `i`'s namespace of `net` (from its next start): it
    /// listens for peers on its address there, its API, ops listener and
    /// status endpoint are reached through ports of this process's loopback
    /// ([`crate::netns::Net::expose`]), and `services` (ports of this
    /// process's loopback: broker, database, cache, source) are reachable
    /// from it at the same addresses. Call before [`mesh`].
    pub async fn in_namespace(
        &mut self,
        net: &mut crate::netns::Net,
        i: usize,
        services: &[u16],
    ) -> Result<(), String> {
        net.forward_into(i, services)?;
        self.cluster_port = NS_CLUSTER_PORT;
        self.status_port = net.expose(i, NS_STATUS_PORT).await;
        self.api_port = net.expose(i, NS_API_PORT).await;
        self.ops_port = net.expose(i, NS_OPS_PORT).await;
        self.handover = None;
        self.namespace = Some(Namespaced {
            prefix: net.exec_prefix(i),
            host: crate::netns::Net::address(i),
        });
        Ok(())
    }

    /// Sets one override.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.env.insert(key.to_owned(), value.into());
        self
    }

    /// `name@host:port`: where peers reach its cluster listener (host:
    /// 127.0.0.1, or its address in its namespace).
    pub fn address(&self) -> String {
        let host = self
            .namespace
            .as_ref()
            .map_or("127.0.0.1".to_owned(), |n| n.host.to_string());
        format!("{}@{host}:{}", self.name, self.cluster_port)
    }

    /// The base URL of its ops listener.
    pub fn ops(&self) -> String {
        format!("http://127.0.0.1:{}", self.ops_port)
    }

    /// The base URL of its API.
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The log of its `n`th start.
    pub fn log_path(&self, n: u32) -> PathBuf {
        let dir = std::env::var_os("CANDELA_TEST_LOG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.path().to_owned());
        dir.join(format!("{}.{n}.log", self.name))
    }

    /// The log of its current (last) start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default()
    }

    /// The last `lines` lines of all its logs (re-dials of lost peers left
    /// out: they would crowd out everything else).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let all: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("dial failed"))
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Starts it: the cluster listener, status endpoint, API and peers of
    /// this struct, then the overrides of [`Self::env`].
    pub fn start(&mut self) {
        assert!(self.child().is_none(), "{} already running", self.name);
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts)).expect("the node's log");
        let mut cmd = match &self.namespace {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(&ns.prefix).arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        // Inside a namespace: fixed ports, the cluster listener on the
        // node's address there; else the ports found free.
        let (cluster, status, api, ops) = match &self.namespace {
            Some(ns) => (
                format!("{}:{NS_CLUSTER_PORT}", ns.host),
                format!("127.0.0.1:{NS_STATUS_PORT}"),
                format!("127.0.0.1:{NS_API_PORT}"),
                format!("127.0.0.1:{NS_OPS_PORT}"),
            ),
            None => (
                format!("127.0.0.1:{}", self.cluster_port),
                format!("127.0.0.1:{}", self.status_port),
                format!("127.0.0.1:{}", self.api_port),
                format!("127.0.0.1:{}", self.ops_port),
            ),
        };
        cmd.args(["node", "--config"])
            .arg(&self.config)
            .env("CANDELA__NODE__NAME", &self.name)
            .env("CANDELA__API__LISTEN", api)
            .env("CANDELA__CLUSTER__LISTEN", cluster)
            .env("CANDELA__CLUSTER__STATUS_LISTEN", status)
            .env("CANDELA__OPS__LISTEN", ops)
            .env("CANDELA__CLUSTER__PEERS", toml_list(&self.peers))
            .env_remove("CRYPTOCOMPARE_API_KEY")
            .env("RUST_LOG", "info")
            // (`placements` reads the text format.)
            .env("CANDELA_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(handover) = &mut self.handover {
            // Every listener of the node takes its socket (the cluster
            // listener too, on plain TCP as on TLS); one it has no use for
            // (the API of a node without that role) it closes.
            handover.give(&mut cmd, &[]);
        }
        *self.child() = Some(cmd.spawn().expect("start candela node"));
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `kill -9`.
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// Its resident memory in bytes (`VmRSS`), while it runs.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// The CPU time it used so far (user + system), while it runs.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        // Fields after the command name (which may hold spaces), from 3.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        // Clock ticks: 100 per second on Linux (USER_HZ).
        Some((utime + stime) / 100.0)
    }

    /// Sends it SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }

    /// Its exit status, if it has exited (then it is no longer running).
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut child = self.child();
        let status = child.as_mut()?.try_wait().ok()??;
        *child = None;
        Some(status)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wires `nodes` as a full mesh (each one's peers are all the others).
pub fn mesh(nodes: &mut [NodeProcess]) {
    let addresses: Vec<String> = nodes.iter().map(NodeProcess::address).collect();
    for node in nodes.iter_mut() {
        let own = node.address();
        node.peers = addresses.iter().filter(|a| **a != own).cloned().collect();
    }
}

/// Polls `f` until it answers, or panics after `secs` with the nodes' logs.
pub async fn wait_for<T>(
    what: &str,
    secs: u64,
    nodes: &[NodeProcess],
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: String = nodes
                .iter()
                .map(|n| format!("\n--- {} log (tail):\n{}", n.name, n.log_tail(40)))
                .collect();
            panic!("timed out after {secs} s waiting for {what}{logs}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An HTTP client for the tests' calls to nodes: answers within `secs`.
pub fn http(secs: u64) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(secs))
        .build()
        .expect("an HTTP client")
}

/// Waits until `nodes[i]`'s API answers `/ready` with 200, at most `secs`
/// (the nodes' logs on failure).
pub async fn wait_ready(nodes: &[NodeProcess], i: usize, secs: u64) {
    let url = format!("{}/ready", nodes[i].api());
    let what = format!("{}'s API to be ready", nodes[i].name);
    wait_for(&what, secs, nodes, async || {
        let resp = http(20).get(&url).send().await.ok()?;
        resp.status().is_success().then_some(())
    })
    .await;
}

/// Polls `f` until it answers, or panics after `secs` (for checks in the
/// test's own process, where no node's log can help).
pub async fn eventually<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each placed consumer's latest partition placement in `log`: member
/// (`gamma#001`) → share (`2 of 3`).
pub fn placements(log: &str) -> BTreeMap<String, String> {
    let field = |line: &str, name: &str, next: &str| -> Option<String> {
        let rest = &line[line.find(name)? + name.len()..];
        Some(rest[..rest.find(next).unwrap_or(rest.len())].to_owned())
    };
    log.lines()
        .filter(|l| l.contains("kafka partitions placed"))
        .filter_map(|l| Some((field(l, "member=", " ")?, field(l, "share=", " released=")?)))
        .collect()
}

/// Committed offsets of `group` and high watermarks of partitions
/// `0..partitions` of `topic`.
pub fn offsets(
    bootstrap: &str,
    topic: &str,
    group: &str,
    partitions: i32,
) -> Result<Vec<(Option<i64>, i64)>, String> {
    OffsetWatcher::new(bootstrap, topic, group, partitions)?.offsets()
}

/// Reads a group's committed offsets and a topic's high watermarks again
/// and again through one client (cheaper than [`offsets`], which makes a
/// client per call).
pub struct OffsetWatcher {
    consumer: BaseConsumer,
    topic: String,
    partitions: i32,
}

impl OffsetWatcher {
    /// A watcher of `group` on `topic`'s `partitions` partitions.
    pub fn new(bootstrap: &str, topic: &str, group: &str, partitions: i32) -> Result<Self, String> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    /// (committed offset, high watermark) of every partition.
    pub fn offsets(&self) -> Result<Vec<(Option<i64>, i64)>, String> {
        let timeout = Duration::from_secs(5);
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&self.topic, p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, timeout)
            .map_err(|e| e.to_string())?;
        (0..self.partitions)
            .map(|p| {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&self.topic, p, timeout)
                    .map_err(|e| e.to_string())?;
                let c = match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                };
                Ok((c, high))
            })
            .collect()
    }
}

/// Whether `group` has committed every message of `topic` (offsets are
/// committed only after the database transaction: all is stored).
pub fn caught_up(
    bootstrap: &str,
    topic: &str,
    group: &str,
    partitions: i32,
) -> Result<bool, String> {
    Ok(offsets(bootstrap, topic, group, partitions)?
        .iter()
        .all(|(c, high)| c.map_or(*high == 0, |c| c >= *high)))
}

/// The intervals the API serves, with their lengths in seconds.
pub const INTERVALS: [(&str, i64); 5] = [
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3_600),
    ("1d", 86_400),
];

/// The comparable part of a bar: (open time, open, high, low, close, base
/// volume, quote volume, trades).
pub type Ohlcv = (
    i64,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    rust_decimal::Decimal,
    u64,
);

/// A reference bar's comparable part.
pub fn ohlcv(b: &crate::oracle::RefBar) -> Ohlcv {
    (
        b.open_time,
        b.open,
        b.high,
        b.low,
        b.close,
        b.volume_base,
        b.volume_quote,
        b.trades,
    )
}

/// The bars `GET {api}/api/v1/ohlcv` serves for `instrument` at `interval`
/// from `from` (Unix seconds) to a minute from now.
pub async fn served_bars(api: &str, instrument: &str, interval: &str, from: i64) -> Vec<Ohlcv> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let url = format!(
        "{api}/api/v1/ohlcv?instrument={instrument}&interval={interval}&from={from}&to={}&limit=10000",
        now + 60
    );
    let body: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let dec = |v: &serde_json::Value| -> rust_decimal::Decimal {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{url}: not a decimal string: {v}"))
    };
    body["bars"]
        .as_array()
        .unwrap_or_else(|| panic!("{url}: {body}"))
        .iter()
        .map(|b| {
            (
                b["time"].as_i64().unwrap_or_default(),
                dec(&b["open"]),
                dec(&b["high"]),
                dec(&b["low"]),
                dec(&b["close"]),
                dec(&b["volume_base"]),
                dec(&b["volume_quote"]),
                b["trades"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Checks that, for each instrument, the stored ticks are exactly the
/// source's distinct trades over the time they cover (`trades(instrument,
/// from_ns, to_ns)`), and that the API on `api` serves, at every interval,
/// the bars the independent reference computes from them.
pub async fn assert_served_bars_equal_reference(
    api: &str,
    pool: &sqlx::PgPool,
    instruments: &[&str],
    trades: impl Fn(&str, i64, i64) -> Vec<crate::oracle::Trade>,
) {
    use sqlx::Row;
    for i in instruments {
        let row = sqlx::query(
            "SELECT min(trade_time_ns), max(trade_time_ns), count(*) FROM ticks WHERE instrument = $1",
        )
        .bind(*i)
        .fetch_one(pool)
        .await
        .expect("the ticks of an instrument");
        let (from_ns, to_ns, count): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let trades = trades(i, from_ns, to_ns);
        assert_eq!(
            trades.len() as i64,
            count,
            "{i}: the stored ticks are exactly the distinct trades"
        );
        for (interval, secs) in INTERVALS {
            let want: Vec<Ohlcv> = crate::oracle::bars(&trades, secs)
                .iter()
                .map(ohlcv)
                .collect();
            let got = served_bars(api, i, interval, from_ns / 1_000_000_000).await;
            assert_eq!(got, want, "{i} {interval}");
        }
    }
}
