//! The cluster layer with real processes: several `candela node` processes on
//! loopback, each from the shipped `cluster.toml` with environment overrides
//! (name, ports, peers, fast heartbeats) and the cookie from the environment.
//! Membership is read from each node's status endpoint (which takes the admin
//! token); waits poll with a deadline; every child is killed when its test
//! ends, pass or fail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const COOKIE: &str = "candela-test-cookie-0123456789abcdef0123";
const TOKEN: &str = "candela-test-admin-token";
const HEARTBEAT_MS: u64 = 250;
const MISSES: u64 = 3;
/// Long enough for a loaded two-core machine, short enough to fail fast.
const DEADLINE: Duration = Duration::from_secs(20);

/// One `candela node` process.
struct Node {
    name: String,
    cluster_port: u16,
    status_port: u16,
    peers: Vec<String>,
    cookie: String,
    ops_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    /// TLS: the folder of `candela certs` holding the CA and this node's
    /// certificate and key; plain TCP when `None`.
    tls: Option<PathBuf>,
    /// Its ports, bound here and handed to the process at each start.
    handover: candela_testkit::handover::Handover,
}

impl Node {
    fn new(name: &str) -> Self {
        // Bound here on port 0 and handed to the process: never free for
        // another to take.
        let handover = candela_testkit::handover::Handover::bind(&["cluster", "status", "ops"]);
        let [cluster_port, status_port, ops_port] =
            ["cluster", "status", "ops"].map(|n| handover.port(n));
        Self {
            handover,
            name: name.into(),
            cluster_port,
            status_port,
            ops_port,
            peers: vec![],
            cookie: COOKIE.into(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            starts: 0,
            tls: None,
        }
    }

    fn address(&self) -> String {
        format!("{}@127.0.0.1:{}", self.name, self.cluster_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.{}.log", self.name, self.starts))
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let peers = format!(
            "[{}]",
            self.peers
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_candela"));
        self.handover.give(&mut cmd, &[]);
        let child = cmd
            .args(["node", "--config", config])
            .env("CANDELA_CLUSTER_COOKIE", &self.cookie)
            .env("CANDELA_ADMIN_TOKEN", TOKEN)
            .env("CANDELA__NODE__NAME", &self.name)
            // Cluster layer only: no data plane (no broker or database here).
            .env("CANDELA__NODE__ROLES", "[]")
            .env(
                "CANDELA__CLUSTER__LISTEN",
                format!("127.0.0.1:{}", self.cluster_port),
            )
            .env(
                "CANDELA__CLUSTER__STATUS_LISTEN",
                format!("127.0.0.1:{}", self.status_port),
            )
            .env("CANDELA__CLUSTER__PEERS", peers)
            .env(
                "CANDELA__OPS__LISTEN",
                format!("127.0.0.1:{}", self.ops_port),
            )
            .env("CANDELA__CLUSTER__HEARTBEAT_MS", HEARTBEAT_MS.to_string())
            .env("CANDELA__CLUSTER__HEARTBEAT_MISSES", MISSES.to_string())
            .env("CANDELA__CLUSTER__RECONNECT_MIN_MS", "100")
            .env("CANDELA__CLUSTER__RECONNECT_MAX_MS", "1000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .envs(self.tls.iter().flat_map(|dir| {
                [
                    ("CANDELA__CLUSTER__TRANSPORT", "tls".to_owned()),
                    (
                        "CANDELA__CLUSTER__TLS__CA",
                        dir.join("ca.pem").display().to_string(),
                    ),
                    (
                        "CANDELA__CLUSTER__TLS__CERT",
                        dir.join(format!("{}.pem", self.name)).display().to_string(),
                    ),
                    (
                        "CANDELA__CLUSTER__TLS__KEY",
                        dir.join(format!("{}.key", self.name)).display().to_string(),
                    ),
                ]
            }))
            .spawn()
            .expect("start candela node");
        self.child = Some(child);
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.as_ref().expect("running").id();
        kill(Pid::from_raw(pid as i32), signal)
            .unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.name));
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("{}.{n}.log", self.name)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (HTTP status, JSON body) of a request to the status endpoint, with
    /// the admin token.
    fn http(&self, method: &str, path: &str) -> Option<(u16, Value)> {
        self.http_with(method, path, Some(TOKEN))
    }

    /// (HTTP status, JSON body) of a request presenting `token`, if any.
    fn http_with(&self, method: &str, path: &str, token: Option<&str>) -> Option<(u16, Value)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.status_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, serde_json::from_str(body).ok()?))
    }

    fn status(&self) -> Option<Value> {
        match self.http("GET", "/cluster/status")? {
            (200, body) => Some(body),
            _ => None,
        }
    }

    /// `peer`'s entry in this node's membership.
    fn peer(&self, peer: &str) -> Option<Value> {
        self.status()?["peers"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == peer)
            .cloned()
    }

    fn peer_state(&self, peer: &str) -> Option<String> {
        Some(self.peer(peer)?["state"].as_str()?.to_owned())
    }

    fn connected_peers(&self) -> Vec<String> {
        self.status()
            .and_then(|s| {
                s["peers"].as_array().map(|ps| {
                    ps.iter()
                        .filter(|p| p["state"] == "connected" || p["state"] == "suspect")
                        .filter_map(|p| p["name"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Nodes that all list each other, started.
fn mesh(names: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = names.iter().map(|n| Node::new(n)).collect();
    let addresses: Vec<String> = nodes.iter().map(Node::address).collect();
    for node in &mut nodes {
        let own = node.address();
        node.peers = addresses.iter().filter(|a| **a != own).cloned().collect();
    }
    for node in &mut nodes {
        node.start();
    }
    nodes
}

fn wait_for(what: &str, nodes: &[Node], mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut report = String::new();
    for node in nodes {
        report += &format!(
            "\n--- {} status: {}\n--- {} log (tail):\n{}",
            node.name,
            node.status().map(|s| s.to_string()).unwrap_or_default(),
            node.name,
            tail(&node.log(), 30)
        );
    }
    panic!("timed out after {DEADLINE:?} waiting for {what}{report}");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn fully_connected(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .filter(|n| n.child.is_some())
        .all(|n| n.connected_peers().len() == nodes.len() - 1)
}

#[test]
fn three_nodes_connect_to_each_other() {
    let nodes = mesh(&["alpha", "beta", "gamma"]);
    wait_for("a full mesh", &nodes, || fully_connected(&nodes));
    // The status endpoint takes the admin token.
    for token in [None, Some("wrong")] {
        let (code, body) = nodes[0].http_with("GET", "/cluster/status", token).unwrap();
        assert_eq!(code, 401, "{token:?}: {body}");
        let (code, _) = nodes[0]
            .http_with("POST", "/cluster/probes/probe/x", token)
            .unwrap();
        assert_eq!(code, 401);
    }
    for node in &nodes {
        let status = node.status().unwrap();
        assert_eq!(status["node"], node.name.as_str());
        assert_eq!(status["sessions"].as_array().unwrap().len(), 2, "{status}");
        // Each node sees every node's heartbeat responder by its cluster name.
        for other in &nodes {
            let name = format!("membership/{}", other.name);
            let holders = node.http("GET", &format!("/cluster/names/{name}")).unwrap();
            assert_eq!(holders.0, 200, "{name} from {}: {}", node.name, holders.1);
        }
    }
    // Heartbeats flow: every peer gets a round-trip time.
    wait_for("heartbeat round trips", &nodes, || {
        nodes.iter().all(|n| {
            n.status().is_some_and(|s| {
                s["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|p| p["last_rtt_ms"].is_number())
            })
        })
    });
}

/// A CA and certificates for `nodes` in `dir`, made by `candela certs`.
fn certs(dir: &std::path::Path, nodes: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_candela"))
        .args(["certs", "--dir"])
        .arg(dir)
        .args(nodes)
        .output()
        .expect("candela certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nodes_talk_over_tls_and_refuse_another_ca_and_a_wrong_cookie() {
    let ours = tempfile::tempdir().unwrap();
    certs(ours.path(), &["alpha", "beta", "mole"]);
    let theirs = tempfile::tempdir().unwrap();
    certs(theirs.path(), &["stranger"]);
    let mut nodes = vec![Node::new("alpha"), Node::new("beta")];
    nodes[0].peers = vec![nodes[1].address()];
    nodes[1].peers = vec![nodes[0].address()];
    for node in &mut nodes {
        node.tls = Some(ours.path().to_owned());
        node.start();
    }
    wait_for("two nodes connected over TLS", &nodes, || {
        fully_connected(&nodes)
    });
    assert!(
        nodes[0].log().contains(r#""transport":"tls""#),
        "{}",
        tail(&nodes[0].log(), 20)
    );
    // A node whose certificate another CA signed: refused by TLS itself.
    let mut stranger = Node::new("stranger");
    stranger.tls = Some(theirs.path().to_owned());
    stranger.peers = vec![nodes[0].address()];
    stranger.start();
    // A node with a certificate of the cluster's CA and a wrong cookie:
    // refused by the handshake on top.
    let mut mole = Node::new("mole");
    mole.tls = Some(ours.path().to_owned());
    mole.cookie = "not-the-cookie-but-long-enough-0123456789".into();
    mole.peers = vec![nodes[0].address()];
    mole.start();
    wait_for("refused attempts", &nodes, || {
        [&stranger, &mole].iter().all(|n| {
            n.peer("alpha")
                .is_some_and(|p| p["failed_dials"].as_u64().unwrap_or(0) >= 2)
        })
    });
    wait_for("alpha to log the refusal of the mole", &nodes, || {
        nodes[0].log().contains("refused during authentication")
    });
    assert!(stranger.connected_peers().is_empty());
    assert!(mole.connected_peers().is_empty());
    assert!(
        stranger.log().contains("TLS"),
        "the stranger's log says why: {}",
        tail(&stranger.log(), 20)
    );
    let alpha = nodes[0].status().unwrap();
    assert!(
        alpha["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["peer"] == "beta"),
        "{alpha}"
    );
    assert_eq!(nodes[0].connected_peers(), ["beta"]);
    // A plain node cannot talk to TLS nodes either.
    let mut plain = Node::new("plain");
    plain.peers = vec![nodes[0].address()];
    plain.start();
    wait_for("the plain node refused", &nodes, || {
        plain
            .peer("alpha")
            .is_some_and(|p| p["failed_dials"].as_u64().unwrap_or(0) >= 2)
    });
    assert!(plain.connected_peers().is_empty());
    assert_eq!(nodes[0].connected_peers(), ["beta"]);
}

/// A connection that never starts its TLS handshake (a port scanner, a
/// peer frozen mid-handshake) must not stop other peers from connecting.
#[test]
fn a_silent_connection_does_not_block_tls_peers() {
    let ours = tempfile::tempdir().unwrap();
    certs(ours.path(), &["alpha", "beta", "impostor"]);
    let theirs = tempfile::tempdir().unwrap();
    certs(theirs.path(), &["impostor"]);
    let mut alpha = Node::new("alpha");
    alpha.tls = Some(ours.path().to_owned());
    alpha.start();
    let nodes = std::slice::from_ref(&alpha);
    wait_for("alpha's cluster listener", nodes, || {
        TcpStream::connect(("127.0.0.1", alpha.cluster_port)).is_ok()
    });
    // Connections that say nothing, held open for the whole test.
    let silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", alpha.cluster_port)).unwrap())
        .collect();
    let mut beta = Node::new("beta");
    beta.tls = Some(ours.path().to_owned());
    beta.peers = vec![alpha.address()];
    beta.start();
    let both = [alpha, beta];
    wait_for(
        "beta connected despite the silent connections",
        &both,
        || both[0].connected_peers() == ["beta"],
    );
    // A node that trusts the cluster's CA but presents another CA's
    // certificate: alpha's check of client certificates refuses it.
    let mixed = tempfile::tempdir().unwrap();
    std::fs::copy(ours.path().join("ca.pem"), mixed.path().join("ca.pem")).unwrap();
    for ext in ["pem", "key"] {
        std::fs::copy(
            theirs.path().join(format!("impostor.{ext}")),
            mixed.path().join(format!("impostor.{ext}")),
        )
        .unwrap();
    }
    let mut impostor = Node::new("impostor");
    impostor.tls = Some(mixed.path().to_owned());
    impostor.peers = vec![both[0].address()];
    impostor.start();
    wait_for("alpha to refuse the impostor's certificate", &both, || {
        both[0].log().contains("TLS handshake refused")
    });
    assert!(impostor.connected_peers().is_empty());
    assert_eq!(both[0].connected_peers(), ["beta"]);
    drop(silent);
}

#[test]
fn a_node_with_a_wrong_cookie_is_refused() {
    let nodes = mesh(&["alpha", "beta"]);
    wait_for("a full mesh", &nodes, || fully_connected(&nodes));
    let mut intruder = Node::new("intruder");
    intruder.cookie = "not-the-cookie-but-long-enough-0123456789".into();
    intruder.peers = vec![nodes[0].address()];
    intruder.start();
    // The intruder keeps trying and keeps being refused.
    wait_for("refused attempts", &nodes, || {
        intruder
            .peer("alpha")
            .is_some_and(|p| p["failed_dials"].as_u64().unwrap_or(0) >= 2)
    });
    wait_for("alpha to log the refusal", &nodes, || {
        let log = nodes[0].log();
        log.contains("auth_fail") && log.contains("refused during authentication")
    });
    assert!(intruder.connected_peers().is_empty());
    let alpha = nodes[0].status().unwrap();
    assert_eq!(alpha["peers"].as_array().unwrap().len(), 1, "{alpha}");
    assert!(
        alpha["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["peer"] != "intruder"),
        "{alpha}"
    );
    assert_eq!(nodes[0].connected_peers(), ["beta"]);
    assert!(
        intruder.log().contains("refused during authentication"),
        "{}",
        tail(&intruder.log(), 20)
    );
}

#[test]
fn a_killed_node_is_noticed_and_rejoins_unaided() {
    let mut nodes = mesh(&["alpha", "beta", "gamma"]);
    wait_for("a full mesh", &nodes, || fully_connected(&nodes));
    nodes[2].kill();
    wait_for("alpha and beta to notice gamma's death", &nodes, || {
        nodes[..2].iter().all(|n| {
            n.peer_state("gamma")
                .is_some_and(|s| s == "down" || s == "connecting")
        })
    });
    // Noticed at once, by the session closing ("peer lost"), not by missed
    // heartbeats: which event, not how long it took.
    for node in &nodes[..2] {
        let log = node.log();
        assert!(log.contains("peer lost"), "{}", tail(&log, 20));
        assert!(
            !log.contains("dropping unresponsive peer"),
            "a killed node was taken for a hung one: {}",
            tail(&log, 20)
        );
    }
    for node in &nodes[..2] {
        assert_eq!(node.connected_peers().len(), 1);
    }
    nodes[2].start();
    wait_for("gamma to rejoin", &nodes, || fully_connected(&nodes));
    for node in &nodes[..2] {
        let gamma = node.peer("gamma").unwrap();
        assert!(gamma["reconnects"].as_u64().unwrap() >= 1, "{gamma}");
    }
}

#[test]
fn a_stopped_node_is_dropped_and_returns_after_sigcont() {
    let nodes = mesh(&["alpha", "beta", "gamma"]);
    wait_for("a full mesh", &nodes, || fully_connected(&nodes));
    wait_for("steady heartbeats", &nodes, || {
        nodes[..2].iter().all(|n| {
            n.peer("gamma")
                .is_some_and(|p| p["state"] == "connected" && p["last_rtt_ms"].is_number())
        })
    });
    nodes[2].signal(Signal::SIGSTOP);
    let mut suspect_seen = false;
    wait_for("alpha and beta to drop the stopped gamma", &nodes, || {
        let states: Vec<_> = nodes[..2]
            .iter()
            .map(|n| n.peer_state("gamma").unwrap_or_default())
            .collect();
        suspect_seen |= states.iter().any(|s| s == "suspect");
        states.iter().all(|s| s == "down" || s == "connecting")
    });
    // Dropped by the heartbeats (suspect first, then the misses), the path
    // whose timing the membership machine's unit tests pin down.
    assert!(suspect_seen, "gamma should have been suspect first");
    assert!(nodes[0].log().contains("dropping unresponsive peer"));
    // alpha and beta still see each other.
    assert_eq!(nodes[0].connected_peers(), ["beta"]);

    nodes[2].signal(Signal::SIGCONT);
    wait_for("gamma to come back", &nodes, || fully_connected(&nodes));
    for node in &nodes[..2] {
        let gamma = node.peer("gamma").unwrap();
        assert!(gamma["reconnects"].as_u64().unwrap() >= 1, "{gamma}");
    }
}

#[test]
fn names_resolve_across_nodes_follow_a_move_and_report_duplicates() {
    let nodes = mesh(&["alpha", "beta", "gamma"]);
    wait_for("a full mesh", &nodes, || fully_connected(&nodes));

    // Names the cluster layer and the platform own are refused: a probe
    // holding `membership/beta` would take beta's heartbeats.
    for owned in [
        "membership/beta",
        "coordinator",
        "producer/alpha",
        "probe/",
        "probes/x",
    ] {
        let (code, body) = nodes[0]
            .http("POST", &format!("/cluster/probes/{owned}"))
            .unwrap();
        assert_eq!(code, 400, "{owned}: {body}");
        assert!(body.to_string().contains("probe/"), "{owned}: {body}");
    }
    assert!(fully_connected(&nodes), "a refused probe changed nothing");

    let (code, body) = nodes[0].http("POST", "/cluster/probes/probe/one").unwrap();
    assert_eq!(code, 201, "{body}");
    for node in &nodes {
        wait_for("probe/one to resolve to alpha", &nodes, || {
            node.http("GET", "/cluster/probes/probe/one")
                .is_some_and(|(code, body)| code == 200 && body["node"] == "alpha")
        });
    }

    // The holder moves: alpha's probe stops, gamma starts one; lookups follow.
    let (code, body) = nodes[0]
        .http("DELETE", "/cluster/probes/probe/one")
        .unwrap();
    assert_eq!((code, body["stopped"].as_u64()), (200, Some(1)));
    wait_for("probe/one to be gone", &nodes, || {
        nodes.iter().all(|n| {
            n.http("GET", "/cluster/probes/probe/one")
                .is_some_and(|(c, _)| c == 404)
        })
    });
    assert_eq!(
        nodes[2]
            .http("POST", "/cluster/probes/probe/one")
            .unwrap()
            .0,
        201
    );
    for node in &nodes {
        wait_for("probe/one to resolve to gamma", &nodes, || {
            node.http("GET", "/cluster/probes/probe/one")
                .is_some_and(|(code, body)| code == 200 && body["node"] == "gamma")
        });
    }

    // Two nodes claim the same name: every lookup reports the collision.
    assert_eq!(
        nodes[0]
            .http("POST", "/cluster/probes/probe/dup")
            .unwrap()
            .0,
        201
    );
    assert_eq!(
        nodes[1]
            .http("POST", "/cluster/probes/probe/dup")
            .unwrap()
            .0,
        201
    );
    for node in &nodes {
        wait_for("probe/dup to be reported as a duplicate", &nodes, || {
            node.http("GET", "/cluster/probes/probe/dup")
                .is_some_and(|(code, body)| {
                    code == 409 && body["holders"].as_array().is_some_and(|h| h.len() == 2)
                })
        });
    }
    let (code, _) = nodes[2].http("GET", "/cluster/names/probe/dup").unwrap();
    assert_eq!(code, 409);
    assert!(nodes[2].log().contains("duplicate cluster name"));
    // The status shows both holders with their nodes.
    let status = nodes[2].status().unwrap();
    let dup = status["names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "probe/dup")
        .unwrap()
        .clone();
    let mut holders: Vec<_> = dup["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["node"].as_str().unwrap().to_owned())
        .collect();
    holders.sort();
    assert_eq!(holders, ["alpha", "beta"]);
}

#[test]
fn a_node_with_a_short_cookie_refuses_to_start() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_candela"))
        .args(["node", "--config", config])
        .env("CANDELA_CLUSTER_COOKIE", "0123456789abcdef")
        .env("CANDELA__CLUSTER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CANDELA_CLUSTER_COOKIE") && err.contains("32 bytes"),
        "{err}"
    );
}

#[test]
fn a_node_without_a_cookie_refuses_to_start() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_candela"))
        .args(["node", "--config", config])
        .env_remove("CANDELA_CLUSTER_COOKIE")
        // (It refuses before listening.)
        .env("CANDELA__CLUSTER__LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.cookie_env") && err.contains("CANDELA_CLUSTER_COOKIE"),
        "{err}"
    );
}

#[test]
fn a_node_refuses_handed_sockets_it_cannot_name() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml");
    let mut handover = candela_testkit::handover::Handover::bind(&["api"]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candela"));
    handover.give(&mut cmd, &[]);
    let out = cmd
        .args(["node", "--config", config])
        .env("LISTEN_FDNAMES", "nonsense")
        .env("CANDELA_CLUSTER_COOKIE", COOKIE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LISTEN_FDNAMES") && err.contains("nonsense"),
        "{err}"
    );
}

#[test]
fn a_handed_socket_no_listener_uses_is_closed_not_left_hanging() {
    // A cluster-layer-only node (no API role) handed an `api` socket too.
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster.toml");
    let mut handover =
        candela_testkit::handover::Handover::bind(&["cluster", "status", "ops", "api"]);
    let port = |n| handover.port(n);
    let (cluster, status, ops, api) = (port("cluster"), port("status"), port("ops"), port("api"));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_candela"));
    handover.give(&mut cmd, &[]);
    let mut child = cmd
        .args(["node", "--config", config])
        .env("CANDELA_CLUSTER_COOKIE", COOKIE)
        .env("CANDELA__NODE__NAME", "lonely")
        .env("CANDELA__NODE__ROLES", "[]")
        .env("CANDELA__CLUSTER__LISTEN", format!("127.0.0.1:{cluster}"))
        .env(
            "CANDELA__CLUSTER__STATUS_LISTEN",
            format!("127.0.0.1:{status}"),
        )
        .env("CANDELA__OPS__LISTEN", format!("127.0.0.1:{ops}"))
        .env("CANDELA__CLUSTER__PEERS", "[]")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("lonely.log")).unwrap())
        .spawn()
        .unwrap();
    drop(cmd);
    let start = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.path().join("lonely.log")).unwrap_or_default();
        if TcpStream::connect(("127.0.0.1", api)).is_err()
            && log.contains("no listener of this node uses")
        {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the unused api socket was not closed (and said so) within {DEADLINE:?}: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The node runs on, its own listeners up.
    assert!(TcpStream::connect(("127.0.0.1", ops)).is_ok());
    let _ = child.kill();
    let _ = child.wait();
}
