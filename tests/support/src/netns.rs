//! Network namespaces for partition tests: each node process in a network
//! of its own, links between chosen pairs that a test cuts and heals.
//!
//! [`Net::create`] makes `n` namespaces (`ip netns`, so it needs root, as CI
//! runs) and a point-to-point `veth` link between every pair. Node `i` owns
//! the address `10.77.0.<i+1>` (on its loopback device) and reaches node
//! `j` only over the link `i`–`j` (a /32 route on it); there is no bridge
//! and no other path, so [`Net::cut`] (both ends of one link down) separates
//! exactly that pair and nothing else: cuts need not be transitive. The
//! addresses exist only inside the test's namespaces.
//!
//! The shared services (the broker, PostgreSQL, Redis, the imitation) stay
//! in the test's own namespace on loopback. [`Net::forward_into`] makes
//! them reachable from node `i` at the *same* address, `127.0.0.1:<port>`,
//! by a forwarder of this process listening inside the node's namespace,
//! so every URL (and the broker's advertised listener) works unchanged.
//! [`Net::expose`] goes the other way: a port of this process's loopback
//! (bound to port 0, then read back) that reaches a node's listener on its
//! own loopback (its API, ops, status endpoint). Each namespace has its own
//! ports, so nodes use fixed ones inside theirs (nothing is bound and
//! released to find a free port).
//!
//! Dropping the [`Net`] deletes the namespaces (and their links); stop the
//! node processes first.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Network namespaces of one test, a link between every pair.
pub struct Net {
    names: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
    /// Every forwarded connection's task (aborted with the net, so no
    /// socket keeps a deleted namespace alive).
    connections: Connections,
}

/// The forwarded connections' tasks.
type Connections = Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>;

/// Runs one forwarded connection, remembered in `connections`.
fn track(connections: &Connections, f: impl std::future::Future<Output = ()> + Send + 'static) {
    let task = tokio::spawn(f);
    let mut all = connections.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|t| !t.is_finished());
    all.push(task.abort_handle());
}

/// Runs `ip args…`; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this machine lets the test create a network namespace (root,
/// `ip` installed, namespaces allowed), or why not.
pub fn available() -> Result<(), String> {
    let probe = format!("candela-probe-{}", std::process::id());
    ip(&["netns", "add", &probe])?;
    let up = ip(&["-n", &probe, "link", "set", "lo", "up"]);
    let _ = ip(&["netns", "del", &probe]);
    up
}

/// In namespace `ns` (node `from`'s): node `to` is reached over their link.
fn route(ns: &str, from: usize, to: usize) -> Result<(), String> {
    ip(&[
        "-n",
        ns,
        "route",
        "replace",
        &format!("{}/32", Net::address(to)),
        "dev",
        &link(to),
        "src",
        &Net::address(from).to_string(),
    ])
}

/// The link from node `i` to node `j`, as named inside `i`'s namespace.
fn link(j: usize) -> String {
    format!("to{j}")
}

impl Net {
    /// `n` namespaces with a link between every pair (see the module doc).
    pub fn create(n: usize) -> Result<Net, String> {
        static NETS: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "candela-{}-{}",
            std::process::id(),
            NETS.fetch_add(1, Ordering::Relaxed)
        );
        let mut net = Net {
            names: Vec::new(),
            tasks: Vec::new(),
            connections: Connections::default(),
        };
        for i in 0..n {
            let name = format!("{tag}-{i}");
            ip(&["netns", "add", &name])?;
            net.names.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
            let own = format!("{}/32", Net::address(i));
            ip(&["-n", &name, "addr", "add", &own, "dev", "lo"])?;
        }
        for i in 0..n {
            for j in i + 1..n {
                let (a, b) = (&net.names[i], &net.names[j]);
                ip(&[
                    "link",
                    "add",
                    &link(j),
                    "netns",
                    a,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &link(i),
                    "netns",
                    b,
                ])?;
                for (from, to, ns) in [(i, j, a), (j, i, b)] {
                    ip(&["-n", ns, "link", "set", &link(to), "up"])?;
                    route(ns, from, to)?;
                }
            }
        }
        Ok(net)
    }

    /// Node `i`'s address (inside the namespaces only).
    pub fn address(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, (i + 1) as u8)
    }

    /// Node `i`'s namespace.
    pub fn namespace(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Cuts the link between `a` and `b` (both directions).
    pub fn cut(&self, a: usize, b: usize) {
        self.set_link(a, b, "down");
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: usize, b: usize) {
        self.set_link(a, b, "up");
    }

    /// Cuts `a` from every other node.
    pub fn isolate(&self, a: usize) {
        for b in (0..self.names.len()).filter(|b| *b != a) {
            self.cut(a, b);
        }
    }

    /// Restores every link of `a`.
    pub fn rejoin(&self, a: usize) {
        for b in (0..self.names.len()).filter(|b| *b != a) {
            self.heal(a, b);
        }
    }

    fn set_link(&self, a: usize, b: usize, state: &str) {
        // Both ends: a veth whose one end is down carries nothing anyway,
        // but each side then also sees its own end down at once.
        for (from, to) in [(a, b), (b, a)] {
            ip(&["-n", &self.names[from], "link", "set", &link(to), state])
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // The kernel drops a device's routes when it goes down: put them
        // back when it comes up.
        if state == "up" {
            for (from, to) in [(a, b), (b, a)] {
                route(&self.names[from], from, to).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    /// Makes `127.0.0.1:<port>` of this process's namespace reachable from
    /// node `i` at `127.0.0.1:<port>` of its own, for each of `ports`.
    pub fn forward_into(&mut self, i: usize, ports: &[u16]) -> Result<(), String> {
        for &port in ports {
            let ns = self.names[i].clone();
            let inside = in_namespace(&ns, move || {
                let l = StdListener::bind((Ipv4Addr::LOCALHOST, port))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .map_err(|e| format!("listening on 127.0.0.1:{port} in {ns}: {e}"))?;
            let listener = TcpListener::from_std(inside).map_err(|e| e.to_string())?;
            let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let connections = Arc::clone(&self.connections);
            self.tasks.push(tokio::spawn(async move {
                while let Ok((mut from, _)) = listener.accept().await {
                    track(&connections, async move {
                        if let Ok(mut to) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
                        }
                    });
                }
            }));
        }
        Ok(())
    }

    /// A port of this process's loopback (bound to port 0) whose
    /// connections reach `127.0.0.1:<port>` inside node `i`'s namespace.
    pub async fn expose(&mut self, i: usize, port: u16) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port");
        let local = listener.local_addr().expect("its address").port();
        let ns: Arc<str> = self.names[i].as_str().into();
        let connections = Arc::clone(&self.connections);
        self.tasks.push(tokio::spawn(async move {
            while let Ok((mut from, _)) = listener.accept().await {
                let ns = Arc::clone(&ns);
                track(&connections, async move {
                    let connected = tokio::task::spawn_blocking(move || {
                        in_namespace(&ns, move || {
                            let s = StdStream::connect((Ipv4Addr::LOCALHOST, port))?;
                            s.set_nonblocking(true)?;
                            Ok(s)
                        })
                    })
                    .await;
                    if let Ok(Ok(to)) = connected {
                        if let Ok(mut to) = TcpStream::from_std(to) {
                            let _ = tokio::io::copy_bidirectional(&mut from, &mut to).await;
                        }
                    }
                });
            }
        }));
        local
    }

    /// `ip netns exec <namespace of i>`: the command line prefix that runs
    /// a program inside node `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.names[i].clone()]
    }
}

/// Runs `f` on a thread of its own that entered the network namespace
/// `ns` first: sockets `f` makes belong to that namespace (and stay there
/// when used from other threads). The thread ends with `f`.
fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)?;
        // This thread only (it is discarded when `f` returns).
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        f()
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

impl Drop for Net {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            t.abort();
        }
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
