//! The Redis implementation of [`BarCache`].
//!
//! Per instrument, one hash `candela:1m:{instrument}` maps each minute
//! (`open_time`) to the JSON of its [`StoredBar`] (and `{minute}:v` to its
//! version), a sorted set `candela:1m:{instrument}:idx` indexes the minutes
//! held (for trimming), `candela:1m:{instrument}:hv` maps each hour to its
//! version, a value of the cache's change counter `candela:1m:changes` taken
//! whenever a write changes any of its minutes (a reader that keeps what it
//! built from an hour asks only whether the version moved; row versions
//! would not do: two writers' commits can reach the cache out of their
//! versions' order), and `candela:1m:{instrument}:from` is the "complete from" mark:
//! `{first minute}:{generation}`. A read ([`BarCache::hours`]) is one script,
//! one round trip: the mark, the hours' versions, and the bars of only the
//! hours the reader does not hold at their version. A write keeps, per minute, the
//! bar with the highest row version (a Lua script compares), so a slow writer
//! can never put an older bar back over a newer one.
//!
//! **The mark cannot lie.** `candela:1m:gen` is the cache's generation; every
//! invalidation increments it, which voids every mark at once (a mark counts
//! only when its generation is the current one). A fill reads the generation
//! *before* its database query and sets the mark only if the generation is
//! still that one (compare-and-set, in one script): a fill that read the
//! database before an invalidation can never mark the cache complete with
//! what it read. (The race it closes: a consumer commits a bar, its cache
//! write fails, it invalidates; a datastore's fill from an older snapshot
//! must not then mark the old bar as complete.)
//!
//! Only ranges from a valid mark on are served; anything else is a miss. A
//! range is clamped to the present (no minute after now + 1 minute is
//! looked up, whatever `to` says). Minutes older than the window are trimmed
//! on every write (put and fill), through the index, so Redis holds about the
//! window and no more; a trim moves a mark older than the horizon up to it
//! (the mark must never claim a minute the trim dropped).
//!
//! When Redis cannot be reached, calls fail fast with [`StoreError::CacheDown`]
//! for a second before it is tried again, so a dead cache costs readers
//! nothing; and the first successful call after an outage first invalidates
//! (increments the generation), because writes were missed meanwhile.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{
    hour_of, BarCache, CachedHour, HourRange, KnownHour, StoreError, StoredBar, HOUR_SECS,
};
use crate::domain::Instrument;

/// Keeps, for each minute, the bar with the highest version (an equal
/// version replaces: the same bar), indexes it, gives each hour it changed
/// a new version (from the cache's change counter: any accepted change of
/// any of its minutes moves it, whatever the row versions), trims the
/// minutes before the horizon (with the versions of the hours wholly before
/// it), moves a mark older than the horizon up to it (the cache no longer
/// holds what the mark claimed), and, for a fill, sets the mark in the same
/// step if the generation is still the one the filler read.
/// KEYS[1] = hash, KEYS[2] = index, KEYS[3] = hour versions, KEYS[4] = mark,
/// KEYS[5] = generation, KEYS[6] = change counter; ARGV[1] = horizon,
/// ARGV[2] = the generation a fill read ('' for a plain put), ARGV[3] = the
/// fill's first minute, ARGV[4] = the counter's first value should it not
/// exist (random: a cache emptied and refilled never gives an hour a version
/// it had before), ARGV[5] = the events channel, ARGV[6] = the instrument's
/// name, then minute, version, json, minute, version, json, ...
/// Publishes, in the same step, the hours' new versions
/// (`h <instrument> <hour>:<version>,…`), `m <instrument> <mark>` when a
/// trim moved the mark forward, and `r <instrument>` when a fill set it
/// (see [`super::watch`]).
/// Returns 1 when a fill set the mark.
const PUT_SCRIPT: &str = r"
local horizon = tonumber(ARGV[1])
local touched = {}
local moved = false
local reset = false
for i = 7, #ARGV, 3 do
  local t = tonumber(ARGV[i])
  if t >= horizon then
    local cur = redis.call('HGET', KEYS[1], ARGV[i] .. ':v')
    local accept = (not cur) or tonumber(cur) < tonumber(ARGV[i + 1])
    if (not accept) and tonumber(cur) == tonumber(ARGV[i + 1]) then
      accept = redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 2]
    end
    if accept then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2], ARGV[i] .. ':v', ARGV[i + 1])
      redis.call('ZADD', KEYS[2], t, ARGV[i])
      touched[string.format('%d', t - t % 3600)] = true
    end
  end
end
if next(touched) then
  if redis.call('EXISTS', KEYS[6]) == 0 then
    redis.call('SET', KEYS[6], ARGV[4])
  end
  local changed = {}
  for h, _ in pairs(touched) do
    local v = string.format('%d', redis.call('INCR', KEYS[6]))
    redis.call('HSET', KEYS[3], h, v)
    changed[#changed + 1] = h .. ':' .. v
  end
  redis.call('PUBLISH', ARGV[5], 'h ' .. ARGV[6] .. ' ' .. table.concat(changed, ','))
end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, t in ipairs(old) do
  redis.call('HDEL', KEYS[1], t, t .. ':v')
end
if #old > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
  for _, h in ipairs(redis.call('HKEYS', KEYS[3])) do
    if tonumber(h) + 3600 <= horizon then
      redis.call('HDEL', KEYS[3], h)
    end
  end
end
local mark = redis.call('GET', KEYS[4])
if mark then
  local from, gen = string.match(mark, '^(-?%d+):(%d+)$')
  if from and tonumber(from) < horizon then
    redis.call('SET', KEYS[4], ARGV[1] .. ':' .. gen)
    moved = true
  end
end
local marked = 0
if ARGV[2] ~= '' then
  local gen = redis.call('GET', KEYS[5]) or '0'
  if gen == ARGV[2] then
    redis.call('SET', KEYS[4], ARGV[3] .. ':' .. gen)
    reset = true
    marked = 1
  end
end
if reset then
  redis.call('PUBLISH', ARGV[5], 'r ' .. ARGV[6])
elseif moved then
  redis.call('PUBLISH', ARGV[5], 'm ' .. ARGV[6] .. ' ' .. ARGV[1])
end
return marked
";

/// The minutes of an hour if its version is no longer the one the reader
/// holds, else 0. KEYS[1] = hour versions, KEYS[2] = hash; ARGV[1] = the
/// hour, ARGV[2] = the version held, then its minutes.
const CHANGED_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return 0
end
return redis.call('HMGET', KEYS[2], unpack(ARGV, 3))
";

/// A [`BarCache`] on Redis.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
    window_secs: i64,
    put: redis::Script,
    changed: redis::Script,
    /// The change counter's first value, should Redis not hold it.
    seed: u64,
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
    /// older than `window_secs` are dropped on every write.
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
            changed: redis::Script::new(CHANGED_SCRIPT),
            seed: random_seed(),
            health: Arc::default(),
        })
    }

    /// The prefix of its keys (and of its channels).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, instrument: &Instrument) -> String {
        format!("{}:1m:{instrument}", self.prefix)
    }

    fn cover_key(&self, instrument: &Instrument) -> String {
        format!("{}:1m:{instrument}:from", self.prefix)
    }

    fn index_key(&self, instrument: &Instrument) -> String {
        format!("{}:1m:{instrument}:idx", self.prefix)
    }

    fn hours_key(&self, instrument: &Instrument) -> String {
        format!("{}:1m:{instrument}:hv", self.prefix)
    }

    fn counter_key(&self) -> String {
        format!("{}:1m:changes", self.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}:1m:gen", self.prefix)
    }

    fn events_channel(&self) -> String {
        super::watch::channel(&self.prefix)
    }

    /// The first minute kept: the window's start, or `from` when earlier
    /// (a fill keeps what it covers).
    fn horizon(&self, from: Option<i64>) -> i64 {
        let start = now_secs().saturating_sub(self.window_secs);
        from.map_or(start, |f| f.min(start))
    }

    /// Writes `bars` of one instrument, trims before `horizon`, and for a
    /// fill (`mark` = the generation it read and its first minute) sets the
    /// mark in the same step. Returns whether the mark was set.
    async fn put_one(
        &self,
        instrument: &Instrument,
        bars: &[&StoredBar],
        horizon: i64,
        mark: Option<(u64, i64)>,
    ) -> Result<bool, StoreError> {
        let mut inv = self.put.key(self.key(instrument));
        inv.key(self.index_key(instrument))
            .key(self.hours_key(instrument))
            .key(self.cover_key(instrument))
            .key(self.generation_key())
            .key(self.counter_key())
            .arg(horizon);
        match mark {
            Some((generation, from)) => inv.arg(generation).arg(from),
            None => inv.arg("").arg(""),
        };
        inv.arg(self.seed)
            .arg(self.events_channel())
            .arg(instrument.to_string());
        for b in bars {
            let json = serde_json::to_string(b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            inv.arg(b.bar.open_time).arg(b.version).arg(json);
        }
        let mut conn = self.conn.clone();
        let marked: i64 = inv.invoke_async(&mut conn).await?;
        Ok(marked == 1)
    }
}

/// A random first value for the change counter, below 2^40 (the counter
/// then has 2^53 − 2^40 steps before Lua's numbers lose precision).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms() as u64);
    h.finish() % (1 << 40)
}

/// A mark's value: `{first minute}:{generation}`.
fn parse_mark(text: &str) -> Option<(i64, u64)> {
    let (from, generation) = text.split_once(':')?;
    Some((from.parse().ok()?, generation.parse().ok()?))
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
        // The new generation and its event in one step (MULTI/EXEC).
        let (generation,): (u64,) = redis::pipe()
            .atomic()
            .incr(self.generation_key(), 1)
            .publish(self.events_channel(), "R")
            .ignore()
            .query_async(&mut conn)
            .await?;
        tracing::debug!(prefix = %self.prefix, generation, "cache invalidated");
        Ok(())
    }

    async fn put_all(&self, bars: &[StoredBar]) -> Result<(), StoreError> {
        let mut by_instrument: std::collections::BTreeMap<&Instrument, Vec<&StoredBar>> =
            Default::default();
        for b in bars {
            by_instrument.entry(&b.bar.instrument).or_default().push(b);
        }
        let horizon = self.horizon(None);
        for (instrument, bars) in by_instrument {
            self.put_one(instrument, &bars, horizon, None).await?;
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
        let (generation, mark): (Option<u64>, Option<String>) = redis::cmd("MGET")
            .arg(self.generation_key())
            .arg(self.cover_key(instrument))
            .query_async(&mut conn)
            .await?;
        match mark.as_deref().and_then(parse_mark) {
            Some((start, marked)) if start <= from && marked == generation.unwrap_or(0) => {}
            _ => return Ok(None),
        }
        // Nothing after the present is looked up, whatever `to` says.
        let to = to.min(now_secs().saturating_add(60));
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

    async fn read_generation(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let generation: Option<u64> = conn.get(self.generation_key()).await?;
        Ok(generation.unwrap_or(0))
    }

    async fn fill_from(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
        generation: u64,
    ) -> Result<bool, StoreError> {
        let refs: Vec<&StoredBar> = bars.iter().filter(|b| b.bar.open_time >= from).collect();
        // The bars, the trim and the mark in one step: a write between them
        // could trim a minute the mark then claims.
        let marked = self
            .put_one(
                instrument,
                &refs,
                self.horizon(Some(from)),
                Some((generation, from)),
            )
            .await?;
        if !marked {
            tracing::debug!(%instrument, generation, "cache invalidated since the query: not marked complete");
        }
        Ok(marked)
    }
}

impl RedisCache {
    /// One pipelined round trip: the generation and the mark, the versions
    /// of the range's hours, the minutes of the hours the reader does not
    /// hold, and those of the hour in progress if its version moved (a small
    /// script: that hour changes with every commit); a second round trip
    /// only for an older hour the reader holds at a version that moved (a
    /// correction). Plain commands otherwise: a Lua read of the whole range
    /// cost Redis ~40 µs a call, ten times the commands, and sending the
    /// hour in progress every time cost a third of the throughput (its
    /// parsing).
    async fn read_hours(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        limit: usize,
        known: &[KnownHour],
    ) -> Result<Option<HourRange>, StoreError> {
        let now = now_secs();
        // Nothing after the present is looked up, whatever `to` says; a
        // range starting more than an hour before the window is the
        // store's (this bounds the hours walked).
        let to = to.min(now.saturating_add(60));
        if from < now.saturating_sub(self.window_secs.saturating_add(HOUR_SECS)) {
            return Ok(None);
        }
        let current = hour_of(now);
        struct Hour<'a> {
            hour: i64,
            known: Option<&'a KnownHour>,
            fetch: bool,
        }
        let mut hours = Vec::new();
        let mut next_known = known.iter().peekable();
        let mut h = hour_of(from);
        while h <= to {
            while next_known.peek().is_some_and(|k| k.hour < h) {
                next_known.next();
            }
            let known = next_known.peek().copied().filter(|k| k.hour == h);
            hours.push(Hour {
                hour: h,
                known,
                fetch: known.is_none(),
            });
            h += HOUR_SECS;
        }
        let minutes = |hours: &mut dyn Iterator<Item = i64>| -> Vec<i64> {
            hours
                .flat_map(|h| (0..60).map(move |m| h + m * 60))
                .collect()
        };
        let fetched: Vec<i64> = minutes(&mut hours.iter().filter(|h| h.fetch).map(|h| h.hour));
        // The hour in progress, when the reader holds it: its minutes come
        // back only if its version moved (it changes with every commit).
        let in_progress = hours
            .iter()
            .find(|h| h.hour >= current)
            .and_then(|h| Some((h.hour, h.known?)));
        let in_progress_minutes = in_progress.map(|(h, _)| minutes(&mut std::iter::once(h)));
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("MGET")
            .arg(self.generation_key())
            .arg(self.cover_key(instrument));
        if !hours.is_empty() {
            pipe.cmd("HMGET")
                .arg(self.hours_key(instrument))
                .arg(hours.iter().map(|h| h.hour).collect::<Vec<_>>());
        }
        if !fetched.is_empty() {
            pipe.cmd("HMGET").arg(self.key(instrument)).arg(&fetched);
        }
        let mut changed = self.changed.prepare_invoke();
        if let (Some((hour, k)), Some(m)) = (in_progress, &in_progress_minutes) {
            changed
                .key(self.hours_key(instrument))
                .key(self.key(instrument))
                .arg(hour)
                .arg(k.version)
                .arg(m);
            pipe.invoke_script(&changed);
        }
        let mut replies: Vec<redis::Value> = match pipe.query_async(&mut conn).await {
            // A Redis that does not know the script yet (restarted, or
            // flushed): loaded, then the pipeline again.
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                changed.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            other => other?,
        };
        let mut replies = replies.drain(..);
        let (generation, mark): (Option<u64>, Option<String>) =
            redis::from_redis_value(&replies.next().unwrap_or(redis::Value::Nil))?;
        let complete_from = match mark.as_deref().and_then(parse_mark) {
            Some((start, marked)) if start <= from && marked == generation.unwrap_or(0) => start,
            _ => return Ok(None),
        };
        let versions: Vec<Option<i64>> = match hours.is_empty() {
            true => Vec::new(),
            false => redis::from_redis_value(&replies.next().unwrap_or(redis::Value::Nil))?,
        };
        let mut values: Vec<Option<Vec<u8>>> = match fetched.is_empty() {
            true => Vec::new(),
            false => redis::from_redis_value(&replies.next().unwrap_or(redis::Value::Nil))?,
        };
        let mut fetched = fetched;
        let mut in_progress_moved = None;
        if let (Some((hour, _)), Some(m)) = (in_progress, in_progress_minutes) {
            match replies.next() {
                Some(redis::Value::Array(moved)) => {
                    fetched.extend(m);
                    values.extend(
                        moved
                            .iter()
                            .map(redis::from_redis_value::<Option<Vec<u8>>>)
                            .collect::<Result<Vec<_>, _>>()?,
                    );
                    in_progress_moved = Some(hour);
                }
                Some(redis::Value::Int(0)) => {}
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "cache: an unexpected answer about the hour in progress: {other:?}"
                    )))
                }
            }
        }
        // An older hour held at a version that moved: its minutes, now.
        let moved: Vec<i64> = hours
            .iter()
            .zip(&versions)
            .filter(|(h, v)| {
                !h.fetch
                    && in_progress_moved != Some(h.hour)
                    && h.known.is_some_and(|k| Some(k.version) != **v)
            })
            .map(|(h, _)| h.hour)
            .collect();
        let mut by_minute: std::collections::HashMap<i64, Vec<u8>> = fetched
            .into_iter()
            .zip(values.drain(..))
            .filter_map(|(t, v)| Some((t, v?)))
            .collect();
        if !moved.is_empty() {
            let again = minutes(&mut moved.iter().copied());
            let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(self.key(instrument))
                .arg(&again)
                .query_async(&mut conn)
                .await?;
            by_minute.extend(
                again
                    .into_iter()
                    .zip(values)
                    .filter_map(|(t, v)| Some((t, v?))),
            );
        }
        let mut range = HourRange {
            complete_from,
            hours: Vec::new(),
        };
        let mut total = 0usize;
        for (h, version) in hours.iter().zip(versions) {
            if total >= limit {
                break;
            }
            match (h.known, version) {
                (Some(k), Some(v)) if k.version == v => {
                    total += k.bars;
                    range.hours.push(CachedHour {
                        hour: h.hour,
                        version: v,
                        bars: None,
                    });
                }
                _ => {
                    let mut bars = Vec::new();
                    for t in (h.hour..h.hour + HOUR_SECS).step_by(60) {
                        if t < complete_from {
                            continue;
                        }
                        if let Some(json) = by_minute.get(&t) {
                            let bar: StoredBar = serde_json::from_slice(json)
                                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                            if (from..=to).contains(&t) {
                                total += 1;
                            }
                            bars.push(bar);
                        }
                    }
                    // No version: bars written before hour versions existed
                    // (sent with version 0, which no reader keeps); none
                    // either: an hour without bars.
                    if version.is_some() || !bars.is_empty() {
                        range.hours.push(CachedHour {
                            hour: h.hour,
                            version: version.unwrap_or(0),
                            bars: Some(bars),
                        });
                    }
                }
            }
        }
        Ok(Some(range))
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

    async fn generation(&self, _instrument: &Instrument) -> Result<u64, StoreError> {
        self.guard().await?;
        self.read_generation().await.map_err(|e| self.observe(e))
    }

    async fn fill(
        &self,
        instrument: &Instrument,
        from: i64,
        bars: &[StoredBar],
        generation: u64,
    ) -> Result<bool, StoreError> {
        self.guard().await?;
        self.fill_from(instrument, from, bars, generation)
            .await
            .map_err(|e| self.observe(e))
    }

    async fn invalidate_all(&self) -> Result<(), StoreError> {
        self.guard().await?;
        self.invalidate_marks().await.map_err(|e| self.observe(e))
    }

    async fn hours(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        limit: usize,
        known: &[KnownHour],
    ) -> Result<Option<HourRange>, StoreError> {
        self.guard().await?;
        self.read_hours(instrument, from, to, limit, known)
            .await
            .map_err(|e| self.observe(e))
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
