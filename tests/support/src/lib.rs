//! Test support: the real services the tests talk to, on loopback.
//!
//! No mock stands in for PostgreSQL, Redis or Kafka in this project's tests;
//! this crate finds (or starts) the real ones.
//!
//! `CANDELA_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names a server where each test creates, and afterwards drops, a database of
//! its own; `CANDELA_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) names a
//! Redis where each test uses a key prefix of its own. `.ci/run` installs and
//! starts both when they are missing.

pub mod broker;
pub mod cluster;
pub mod convert;
pub mod handover;
pub mod netns;
pub mod oracle;
pub mod proxy;
pub mod timescale;

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor, PgConnection};

/// The admin URL of the test PostgreSQL server.
pub fn database_url() -> String {
    std::env::var("CANDELA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The URL of the test Redis.
pub fn redis_url() -> String {
    std::env::var("CANDELA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh database, dropped when this guard is dropped.
pub struct TestDb {
    /// The URL of the fresh database.
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates a fresh database on the test server.
    pub async fn new() -> Self {
        let admin = database_url();
        let name = unique("candela_test");
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is required (bash .ci/run starts it): {e}")
        });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = database_url();
        let name = self.name.clone();
        // Drop from a fresh runtime on another thread: Drop may run inside one.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released), never one this
/// process handed out before ([`free_ports`]): only for servers that can
/// neither be handed a socket ([`crate::handover`], as `candela` nodes
/// are) nor bind port 0 and say which they got (redis-server and tansu:
/// their callers try again when the port was taken meanwhile).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free TCP ports on 127.0.0.1, none handed out before by this
/// process: the kernel readily gives a just-released port again, so two
/// nodes of one test, each given ports a moment apart, could otherwise be
/// given the same one (seen: one node's API port was another's).
pub fn free_ports<const N: usize>() -> [u16; N] {
    static HANDED: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed = HANDED.lock().unwrap_or_else(|e| e.into_inner());
    // Held until all N are chosen, so the kernel gives N different ones.
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(N);
    while ports.len() < N {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = l.local_addr().expect("a bound port").port();
        if handed.insert(port) {
            ports.push(port);
        }
        held.push(l);
    }
    std::array::from_fn(|i| ports[i])
}

/// A redis-server process of the test's own (for tests that stop and restart
/// Redis without disturbing others). Killed on drop.
pub struct OwnRedis {
    /// Its port.
    pub port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// Starts redis-server on a free port and waits until it answers (on
    /// another port when the one chosen was taken meanwhile: redis-server
    /// cannot be handed a socket, nor say which port 0 gave it).
    pub fn start() -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let mut r = Self {
                port: free_port(),
                child: None,
            };
            match r.launch() {
                Ok(()) => return r,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// The URL to reach it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGKILL) and waits until the port is closed.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        if let Err(e) = self.launch() {
            panic!(
                "redis-server did not start again on port {}: {e}",
                self.port
            );
        }
    }

    /// (Re)starts it, and waits until the server answering on its port is
    /// this one (its process id), not another that took the port.
    fn launch(&mut self) -> Result<(), String> {
        self.stop();
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is required (bash .ci/run installs it)");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited ({status}): port {} taken?", self.port));
            }
            if redis_pid(self.port) == Some(pid) {
                self.child = Some(child);
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer from it on port {} within 10 s",
                    self.port
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The process id of the Redis server answering on `port` (`INFO server`).
fn redis_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    s.write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n").ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).ok()?;
        if n == 0 {
            break;
        }
        got += n;
        let text = String::from_utf8_lossy(&buf[..got]);
        if let Some(pid) = text
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(pid);
        }
    }
    None
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
