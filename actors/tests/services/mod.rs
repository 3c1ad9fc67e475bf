//! The real services tests talk to: PostgreSQL and Redis on loopback.
//!
//! `CANDELA_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names a server where each test creates, and afterwards drops, a database of
//! its own; `CANDELA_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) names a
//! Redis where each test uses a key prefix of its own. `.ci/run` installs and
//! starts both when they are missing.

#![allow(dead_code)]

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
    pub url: String,
    name: String,
}

impl TestDb {
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
