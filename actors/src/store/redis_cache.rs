//! The Redis implementation of [`BarCache`].
//!
//! Per instrument, one hash `candela:1m:{instrument}` maps each minute
//! (`open_time`) to the JSON of its [`StoredBar`], and
//! `candela:1m:{instrument}:from` holds the first minute from which the hash is
//! complete (absent = nothing is trusted). A write keeps, per minute, the bar
//! with the highest row version (a Lua script compares), so a slow writer can
//! never put an older bar back over a newer one.
//!
//! Only ranges from the `:from` mark on are served; anything else is a miss.
//! Entries older than the window are trimmed on fill.
//!
//! When Redis cannot be reached, calls fail fast with [`StoreError::CacheDown`]
//! for a second before it is tried again, so a dead cache costs readers
//! nothing; and the first successful call after an outage first invalidates
//! every `:from` mark, because writes were missed meanwhile.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{BarCache, StoreError, StoredBar};
use crate::domain::Instrument;

/// Keeps, for each minute, the bar with the highest version.
/// KEYS[1] = hash; ARGV = minute, version, json, minute, version, json, ...
const PUT_SCRIPT: &str = r"
local n = 0
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i] .. ':v')
  if (not cur) or tonumber(cur) <= tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2], ARGV[i] .. ':v', ARGV[i + 1])
    n = n + 1
  end
end
return n
";

/// A [`BarCache`] on Redis.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    window_secs: i64,
    put: redis::Script,
    health: Arc<Health>,
}

/// Whether Redis is reachable, shared by the clones of one cache.
#[derive(Debug, Default)]
struct Health {
    /// Until when (ms since the epoch) calls fail fast.
    down_until_ms: AtomicI64,
    /// Set when a call failed for being unreachable: the next successful
    /// contact must invalidate first.
    missed_writes: AtomicBool,
}

/// How long calls fail fast after Redis was found unreachable.
const DOWN_BACKOFF: Duration = Duration::from_secs(1);

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("window_secs", &self.window_secs)
            .finish_non_exhaustive()
    }
}

impl RedisCache {
    /// Connects to `url`; keys start with `prefix` (e.g. `candela`), and bars
    /// older than `window_secs` are dropped on fill.
    pub async fn connect(url: &str, prefix: &str, window_secs: i64) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(2))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            window_secs,
            put: redis::Script::new(PUT_SCRIPT),
            health: Arc::default(),
        })
    }

    fn key(&self, instrument: &Instrument) -> String {
        format!("{}:1m:{instrument}", self.prefix)
    }

    fn cover_key(&self, instrument: &Instrument) -> String {
        format!("{}:1m:{instrument}:from", self.prefix)
    }

    async fn put_one(
        &self,
        instrument: &Instrument,
        bars: &[&StoredBar],
    ) -> Result<(), StoreError> {
        let mut inv = self.put.key(self.key(instrument));
        for b in bars {
            let json = serde_json::to_string(b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            inv.arg(b.bar.open_time).arg(b.version).arg(json);
        }
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await?;
        Ok(())
    }
}

impl RedisCache {
    /// Fails fast while Redis is known to be down; after an outage, invalidates
    /// before anything else.
    async fn guard(&self) -> Result<(), StoreError> {
        if now_ms() < self.health.down_until_ms.load(Ordering::Relaxed) {
            return Err(StoreError::CacheDown);
        }
        if self.health.missed_writes.load(Ordering::Relaxed) {
            self.invalidate_marks().await.map_err(|e| self.observe(e))?;
            self.health.missed_writes.store(false, Ordering::Relaxed);
            tracing::info!(prefix = %self.prefix, "cache reachable again; invalidated what it held");
        }
        Ok(())
    }

    /// Notes an unreachable Redis.
    fn observe(&self, err: StoreError) -> StoreError {
        if err.is_cache_unreachable() {
            self.health.missed_writes.store(true, Ordering::Relaxed);
            self.health.down_until_ms.store(
                now_ms() + DOWN_BACKOFF.as_millis() as i64,
                Ordering::Relaxed,
            );
            tracing::warn!(prefix = %self.prefix, error = %err, "cache unreachable");
        }
        err
    }

    async fn invalidate_marks(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:1m:*:from", self.prefix);
        let keys: Vec<String> = {
            let mut iter = conn.scan_match::<_, String>(&pattern).await?;
            let mut keys = Vec::new();
            while let Some(k) = iter.next_item().await {
                keys.push(k?);
            }
            keys
        };
        if !keys.is_empty() {
            let _: i64 = conn.del(keys).await?;
        }
        Ok(())
    }

    async fn put_all(&self, bars: &[StoredBar]) -> Result<(), StoreError> {
        let mut by_instrument: std::collections::BTreeMap<&Instrument, Vec<&StoredBar>> =
            Default::default();
        for b in bars {
            by_instrument.entry(&b.bar.instrument).or_default().push(b);
        }
        for (instrument, bars) in by_instrument {
            self.put_one(instrument, &bars).await?;
        }
        Ok(())
    }

    async fn get_range(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<StoredBar>>, StoreError> {
        let mut conn = self.conn.clone();
        let covered: Option<i64> = conn.get(self.cover_key(instrument)).await?;
        match covered {
            Some(start) if start <= from => {}
            _ => return Ok(None),
        }
        if to < from {
            return Ok(Some(Vec::new()));
        }
        let first = from + (60 - from.rem_euclid(60)) % 60;
        let minutes: Vec<i64> = (first..=to).step_by(60).collect();
        if minutes.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut out = Vec::new();
        for chunk in minutes.chunks(2_000) {
            let values: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(self.key(instrument))
                .arg(chunk)
                .query_async(&mut conn)
                .await?;
            for json in values.into_iter().flatten() {
                out.push(
                    serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
            }
        }
        Ok(Some(out))
    }

    async fn fill_from(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
    ) -> Result<(), StoreError> {
        let refs: Vec<&StoredBar> = bars.iter().filter(|b| b.bar.open_time >= from).collect();
        if !refs.is_empty() {
            self.put_one(instrument, &refs).await?;
        }
        let mut conn = self.conn.clone();
        let _: () = conn.set(self.cover_key(instrument), from).await?;
        // Trim minutes that left the window (and their versions).
        let horizon = from.min(now_secs() - self.window_secs);
        let fields: Vec<String> = conn.hkeys(self.key(instrument)).await?;
        let stale: Vec<&String> = fields
            .iter()
            .filter(|f| {
                f.trim_end_matches(":v")
                    .parse::<i64>()
                    .is_ok_and(|t| t < horizon)
            })
            .collect();
        if !stale.is_empty() {
            let _: i64 = conn.hdel(self.key(instrument), stale).await?;
        }
        Ok(())
    }
}

impl BarCache for RedisCache {
    async fn put(&self, bars: &[StoredBar]) -> Result<(), StoreError> {
        self.guard().await?;
        self.put_all(bars).await.map_err(|e| self.observe(e))
    }

    async fn get(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<StoredBar>>, StoreError> {
        self.guard().await?;
        self.get_range(instrument, from, to)
            .await
            .map_err(|e| self.observe(e))
    }

    async fn fill(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
    ) -> Result<(), StoreError> {
        self.guard().await?;
        self.fill_from(instrument, from, bars)
            .await
            .map_err(|e| self.observe(e))
    }

    async fn invalidate_all(&self) -> Result<(), StoreError> {
        self.guard().await?;
        self.invalidate_marks().await.map_err(|e| self.observe(e))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
