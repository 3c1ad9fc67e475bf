//! A real Kafka-compatible broker for tests and benchmarks: tansu, started on
//! a free loopback port with its own storage, and never outliving the process
//! that started it.
//!
//! * [`shared_bootstrap`]: one broker per test binary run, started on first
//!   use, or the broker named by `CANDELA_KAFKA_BROKERS` if that is set.
//! * [`Tansu`]: a broker owned by one test (e.g. to restart it), stopped when
//!   dropped.
//!
//! Statics are never dropped in Rust, so the shared broker cannot be stopped
//! by a destructor. Instead every broker runs under
//! `setpriv --pdeathsig KILL`: the kernel kills it when the thread that
//! spawned it dies. All brokers are spawned by one keeper thread that lives
//! until the process exits (a test's own thread would die after its test and
//! take the broker with it), so the broker dies with the test binary, even
//! when that is killed with SIGKILL.
//!
//! A missing `tansu` binary is a test failure with install instructions, never
//! a silent skip.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

/// Use this broker instead of starting tansu (bootstrap list, `host:port,...`).
pub const BROKERS_ENV: &str = "CANDELA_KAFKA_BROKERS";
/// Use this tansu binary instead of searching `PATH` and `~/.cargo/bin`.
pub const TANSU_ENV: &str = "CANDELA_TANSU";
/// How to install the broker the tests use.
pub const INSTALL_HINT: &str = "cargo install tansu --version 0.6.0 --features dynostore,libsql";
/// How long a broker may take to answer its first metadata request.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a tansu broker keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// In memory: gone when the broker stops.
    Memory,
    /// A SQLite file in the broker's directory: survives a restart.
    Sqlite,
}

/// The bootstrap address of the broker shared by this test binary: the one
/// in `CANDELA_KAFKA_BROKERS`, or a tansu started on first use (SQLite
/// storage in a temporary directory) and killed when the process exits.
pub fn shared_bootstrap() -> &'static str {
    static SHARED: OnceLock<String> = OnceLock::new();
    static KEEP: Mutex<Option<Tansu>> = Mutex::new(None);
    SHARED.get_or_init(|| {
        if let Ok(brokers) = std::env::var(BROKERS_ENV) {
            if !brokers.trim().is_empty() {
                wait_ready(&brokers, READY_TIMEOUT, || Ok(()))
                    .unwrap_or_else(|e| panic!("{BROKERS_ENV}={brokers}: {e}"));
                return brokers;
            }
        }
        let tansu = Tansu::start(Storage::Sqlite);
        let bootstrap = tansu.bootstrap();
        *KEEP.lock().unwrap_or_else(|p| p.into_inner()) = Some(tansu);
        bootstrap
    })
}

/// A tansu broker owned by its creator, killed on drop.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    storage: Storage,
    dir: PathBuf,
    log: PathBuf,
}

impl Tansu {
    /// Starts a broker on a free loopback port, in a fresh directory under
    /// the target directory, and waits until it answers a metadata request.
    /// Panics with a clear message if tansu is missing or does not come up.
    pub fn start(storage: Storage) -> Tansu {
        let dir = fresh_dir();
        let mut last_error = String::new();
        // A port found free may be taken before tansu binds it: try again.
        for _ in 0..3 {
            let mut t = Tansu {
                child: None,
                port: free_port(),
                storage,
                log: dir.join("tansu.log"),
                dir: dir.clone(),
            };
            match t.launch() {
                Ok(()) => return t,
                Err(e) => last_error = e,
            }
        }
        panic!("tansu did not start: {last_error}");
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's directory (SQLite file, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the broker and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("tansu did not restart: {e}");
        }
    }

    /// The command line, for reports.
    pub fn command_line(&self) -> String {
        let addr = format!("tcp://{}", self.bootstrap());
        format!(
            "tansu broker --listener-url {addr} --advertised-listener-url {addr} --storage-engine {}",
            self.storage_url()
        )
    }

    fn storage_url(&self) -> &'static str {
        match self.storage {
            Storage::Memory => "memory://tansu/",
            // tansu resolves the path against its working directory (an
            // absolute path is not supported), which is `self.dir`.
            Storage::Sqlite => "sqlite://tansu.db",
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let tansu = tansu_binary();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let addr = format!("tcp://{}", self.bootstrap());
        let mut cmd = Command::new("setpriv");
        cmd.arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(&tansu)
            .arg("broker")
            .arg("--listener-url")
            .arg(&addr)
            .arg("--advertised-listener-url")
            .arg(&addr)
            .arg("--storage-engine")
            .arg(self.storage_url())
            // Unique per broker, so no two brokers of a run ever think they
            // are one cluster.
            .arg("--cluster-id")
            .arg(format!("candela-test-{}", self.port))
            .current_dir(&self.dir)
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or("warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let mut child = spawn_on_keeper(cmd)
            .map_err(|e| format!("cannot run setpriv + {}: {e}", tansu.display()))?;
        let bootstrap = self.bootstrap();
        let ready = wait_ready(&bootstrap, READY_TIMEOUT, || match child.try_wait() {
            Ok(Some(status)) => Err(format!("tansu exited with {status}")),
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
        match ready {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "{e}\n  command: {}\n  log {}:\n{}",
                    self.command_line(),
                    self.log.display(),
                    tail(&self.log)
                ))
            }
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The tansu binary, or a panic saying how to install it.
fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var(TANSU_ENV) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{TANSU_ENV}={} is not a file; install tansu with:\n    {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = std::env::split_paths(&path)
        .map(|d| d.join("tansu"))
        .collect();
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into_os_string()))
    {
        candidates.push(Path::new(&home).join("bin").join("tansu"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Kafka integration tests need the tansu broker, which is not installed.\n\
             Install it with:\n    {INSTALL_HINT}\n\
             or point {BROKERS_ENV} at a running Kafka-compatible broker (host:port), \
             or {TANSU_ENV} at a tansu binary."
            )
        })
}

/// Spawns `cmd` from a thread that lives as long as the process, so that the
/// child's parent-death signal fires only when the process exits.
fn spawn_on_keeper(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("tansu-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static: this loop only ends with the process.
            })
            .expect("cannot start the tansu keeper thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("tansu keeper thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("tansu keeper thread is gone"))?
}

/// Polls `bootstrap` with metadata requests until a broker answers, `alive`
/// fails, or `timeout` passes.
pub fn wait_ready(
    bootstrap: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .map_err(|e| format!("cannot create a kafka client: {e}"))?;
    let started = Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < timeout {
        alive()?;
        match client.fetch_metadata(None, Duration::from_millis(500)) {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            Ok(_) => last = "metadata without brokers".into(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "no broker answered a metadata request at {bootstrap} within {timeout:?} (last: {last})"
    ))
}

/// A free loopback port (free now; the caller retries if it is taken later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// A new directory under the system's temporary directory, named after this
/// process; directories of processes that no longer run are removed first.
fn fresh_dir() -> PathBuf {
    let root = std::env::temp_dir().join("candela-tansu");
    let _ = fs::create_dir_all(&root);
    if let Ok(entries) = fs::read_dir(&root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or_default();
            if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let mut s = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The partition librdkafka's default partitioner (`consistent_random`)
/// gives a record keyed `key` on a topic of `partitions` partitions:
/// CRC-32 of the key, modulo the count.
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    (crc32fast::hash(key.as_bytes()) % partitions.max(1) as u32) as i32
}
