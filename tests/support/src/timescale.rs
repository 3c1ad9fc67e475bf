//! TimescaleDB for the tests: the servers' URLs, and a fresh database per
//! test on them (as [`crate::TestDb`] on plain PostgreSQL).
//!
//! A TimescaleDB test never passes silently without TimescaleDB: without its
//! URL it FAILS and says what to set, unless `CANDELA_SKIP_TIMESCALEDB=1`
//! asks to skip it (then it prints SKIPPED and passes). How to build and
//! start a TimescaleDB server for them: `docs/timescaledb.md`.

use sqlx::{Connection, Executor, PgConnection};

/// The admin URL of a server that preloads TimescaleDB.
pub const URL_VAR: &str = "CANDELA_TEST_TIMESCALEDB_URL";
/// The admin URL of a server that has the TimescaleDB files installed but
/// does not preload it.
pub const NOPRELOAD_URL_VAR: &str = "CANDELA_TEST_TIMESCALEDB_NOPRELOAD_URL";
/// `1`: skip the TimescaleDB tests whose URL is not set.
pub const SKIP_VAR: &str = "CANDELA_SKIP_TIMESCALEDB";

/// The URL in `var` for `test`. Without it: `None` after printing SKIPPED
/// when `CANDELA_SKIP_TIMESCALEDB=1`, a panic that says what to set otherwise.
pub fn server_url(var: &str, test: &str) -> Option<String> {
    if let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) {
        return Some(url);
    }
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        // Straight to stderr: the test harness captures `eprintln!` of
        // passing tests, and a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test} needs TimescaleDB: {var} is not set and {SKIP_VAR}=1 (docs/timescaledb.md)"
        );
        return None;
    }
    panic!(
        "{test} needs TimescaleDB and {var} is not set.\n\
         Set {URL_VAR} to a server that preloads timescaledb (shared_preload_libraries) and \
         {NOPRELOAD_URL_VAR} to one that has it installed but not preloaded, e.g.\n  \
         {URL_VAR}=postgres://postgres@127.0.0.1:5433/postgres \
         {NOPRELOAD_URL_VAR}=postgres://postgres@127.0.0.1:5434/postgres\n\
         (docs/timescaledb.md says how to build them), or set {SKIP_VAR}=1 to skip this test \
         knowingly."
    );
}

/// A fresh database on a TimescaleDB server, dropped when this guard is
/// dropped.
pub struct TimescaleDb {
    /// The URL of the fresh database.
    pub url: String,
    admin: String,
    name: String,
}

impl TimescaleDb {
    /// Creates a fresh database on the server at `admin` (nothing in it: the
    /// store creates the extension when the server preloads it).
    pub async fn new(admin: &str) -> Self {
        let name = crate::unique("candela_tsdb");
        let mut conn = PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("the TimescaleDB server at {admin} does not answer: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            admin: admin.to_owned(),
            name,
        }
    }

    /// Creates the extension in it (only on a server that preloads it: on
    /// one that does not, `CREATE EXTENSION` ends the session).
    pub async fn create_extension(&self) {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            .await
            .unwrap();
    }
}

impl Drop for TimescaleDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
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
