//! The bar feed across nodes, on Redis pub/sub: consumers publish the rows
//! every commit touched on the channel `{prefix}:bars`; every API node
//! subscribes to it once and hands what arrives to its hub (the live stream's
//! fan-out).
//!
//! Pub/sub delivers only to subscribers connected at the time, and a
//! publisher may fail: neither is an error here. The store is the truth, and
//! the follower asks it for every change after the last version it saw
//! whenever it (re)connects ([`FeedEvent::Connected`]) and at a slow, regular
//! pace. What must never happen: a consumer waiting for Redis (publishing is
//! a bounded queue and a task; a full queue drops the message and counts
//! it), or a follower trusting a message it cannot read (each bar is checked
//! with [`crate::feed::check_bar`]; a bad message is logged, counted and
//! dropped).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use super::watch::{CacheEvent, CacheListener};
use super::{StoreError, StoredBar};
use crate::feed::{check_bar, BarSink, MAX_BARS_PER_MESSAGE};

/// How many messages may wait for the publishing task.
const QUEUE: usize = 1_024;

/// The largest feed message a follower reads (bytes of JSON).
const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// The channel of the bar feed under `prefix`.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}:bars")
}

/// Counters of the feed, for metrics and tests.
#[derive(Debug, Default)]
pub struct FeedCounters {
    /// Messages published.
    pub published: AtomicU64,
    /// Messages dropped: the queue was full or Redis refused.
    pub dropped: AtomicU64,
    /// Messages received (follower).
    pub received: AtomicU64,
    /// Messages or bars refused (follower): unreadable or invalid.
    pub refused: AtomicU64,
    /// Connections made (follower).
    pub connections: AtomicU64,
}

/// Publishes committed bars on the feed channel (a [`BarSink`]).
#[derive(Debug, Clone)]
pub struct RedisPublisher {
    tx: mpsc::Sender<Vec<StoredBar>>,
    counters: Arc<FeedCounters>,
}

impl RedisPublisher {
    /// Connects to `url` and starts the publishing task.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(1);
        let conn = redis::aio::ConnectionManager::new_with_config(client, config).await?;
        let (tx, mut rx) = mpsc::channel::<Vec<StoredBar>>(QUEUE);
        let counters = Arc::new(FeedCounters::default());
        let c = Arc::clone(&counters);
        let channel = channel(prefix);
        tokio::spawn(async move {
            while let Some(bars) = rx.recv().await {
                let json = match serde_json::to_string(&bars) {
                    Ok(json) => json,
                    Err(err) => {
                        tracing::error!(error = %err, "feed message not encodable; dropped");
                        c.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let mut conn = conn.clone();
                match conn.publish::<_, _, i64>(&channel, json).await {
                    Ok(_) => {
                        c.published.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => {
                        c.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, bars = bars.len(), "feed publish failed; followers catch up from the store");
                    }
                }
            }
        });
        Ok(Self { tx, counters })
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<FeedCounters> {
        &self.counters
    }
}

impl BarSink for RedisPublisher {
    fn publish(&self, bars: &[StoredBar]) {
        for chunk in bars.chunks(MAX_BARS_PER_MESSAGE) {
            if self.tx.try_send(chunk.to_vec()).is_err() {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "feed queue full; message dropped (followers catch up from the store)"
                    );
                }
            }
        }
    }
}

/// What a follower of the feed receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// Subscribed (again): messages may have been missed before this one.
    Connected,
    /// Bars a consumer committed (each checked).
    Bars(Vec<StoredBar>),
}

/// Follows the feed channel under `prefix` on `url`: a task subscribes,
/// re-subscribes with back-off after any failure, and sends what arrives.
/// Ends when the receiver is dropped.
///
/// With a `listener`, the same subscription (one connection) follows the
/// cache's events too ([`super::watch`]) and hands them to it as they
/// arrive: the listener hears [`CacheEvent::Live`] once both channels are
/// subscribed and [`CacheEvent::Lost`] when the subscription ends. One
/// connection keeps Redis' order: a consumer writes the cache (its event is
/// published in that step) before it publishes to the feed, so the
/// listener has heard of a change before the feed brings it (a client that
/// sees a bar on the live stream and then asks for the series gets it).
pub fn follow(
    url: &str,
    prefix: &str,
    counters: Arc<FeedCounters>,
    listener: Option<Arc<dyn CacheListener>>,
) -> Result<mpsc::Receiver<FeedEvent>, StoreError> {
    let client = redis::Client::open(url)?;
    let channels = Channels {
        feed: channel(prefix),
        cache: super::watch::channel(prefix),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        // However the task ends (aborted, a panic), the listener hears it.
        let _lost = listener.clone().map(LostOnDrop);
        let mut backoff = Duration::from_millis(100);
        loop {
            if tx.is_closed() {
                return;
            }
            let outcome =
                subscribe_once(&client, &channels, &tx, &counters, listener.as_deref()).await;
            if let Some(l) = &listener {
                l.event(CacheEvent::Lost);
            }
            match outcome {
                Ok(()) => return, // the receiver is gone
                Err(err) => {
                    tracing::warn!(error = %err, channel = %channels.feed, retry_ms = backoff.as_millis() as u64, "feed subscription lost");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    Ok(rx)
}

/// Tells its listener [`CacheEvent::Lost`] when dropped.
struct LostOnDrop(Arc<dyn CacheListener>);

impl Drop for LostOnDrop {
    fn drop(&mut self) {
        self.0.event(CacheEvent::Lost);
    }
}

/// The channels followed.
struct Channels {
    feed: String,
    cache: String,
}

/// One subscription, until it fails (`Err`) or the receiver is gone (`Ok`).
async fn subscribe_once(
    client: &redis::Client,
    channels: &Channels,
    tx: &mpsc::Sender<FeedEvent>,
    counters: &FeedCounters,
    listener: Option<&dyn CacheListener>,
) -> Result<(), redis::RedisError> {
    let channel = &channels.feed;
    let mut pubsub = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "connect timed out")))??;
    pubsub.subscribe(channel).await?;
    if listener.is_some() {
        // Answered once Redis has the subscription: every change of the
        // cache after this reaches this connection.
        pubsub.subscribe(&channels.cache).await?;
    }
    counters.connections.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%channel, cache_events = listener.is_some(), "following the bar feed");
    if tx.send(FeedEvent::Connected).await.is_err() {
        return Ok(());
    }
    // Live only now: while the send above waited, no event was heard.
    if let Some(l) = listener {
        l.event(CacheEvent::Live);
    }
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        if let Some(l) = listener.filter(|_| msg.get_channel_name() == channels.cache) {
            match super::watch::read_message(msg.get_payload_bytes()) {
                Ok(event) => l.event(event),
                Err(reason) => {
                    // Whatever it said is unknown: forget everything.
                    metrics::counter!(crate::telemetry::CACHE_EVENTS_REFUSED).increment(1);
                    tracing::warn!(channel = %channels.cache, %reason, "cache event refused; the node forgets what it knew of the cache");
                    l.event(CacheEvent::Reset(None));
                }
            }
            continue;
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        let payload: &[u8] = msg.get_payload_bytes();
        let bars = match read_message(payload) {
            Ok(bars) => bars,
            Err(reason) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%channel, %reason, "feed message refused");
                continue;
            }
        };
        if bars.is_empty() {
            continue;
        }
        match tx.try_send(FeedEvent::Bars(bars)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(event)) => {
                // The hub is behind: waiting for it, this task hears no
                // cache event meanwhile, so the listener must not trust
                // what it knows until then.
                if let Some(l) = listener {
                    l.event(CacheEvent::Lost);
                }
                if tx.send(event).await.is_err() {
                    return Ok(());
                }
                if let Some(l) = listener {
                    // Nothing was lost (Redis kept the messages, in order):
                    // from here on it hears every change again.
                    l.event(CacheEvent::Live);
                }
            }
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::IoError,
        "subscription closed",
    )))
}

/// A feed message's bars, every one checked; an unreadable or too large
/// message, or one with a bad bar, is refused whole.
pub fn read_message(payload: &[u8]) -> Result<Vec<StoredBar>, String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{} bytes, more than {MAX_MESSAGE_BYTES}",
            payload.len()
        ));
    }
    let bars: Vec<StoredBar> = serde_json::from_slice(payload)
        .map_err(|e| crate::domain::validate::shorten_to(&e.to_string(), 200))?;
    if bars.len() > MAX_BARS_PER_MESSAGE {
        return Err(format!(
            "{} bars, more than {MAX_BARS_PER_MESSAGE}",
            bars.len()
        ));
    }
    let now = crate::domain::validate::now_secs();
    for b in &bars {
        check_bar(b, now).map_err(|e| e.to_string())?;
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_bad_messages_are_refused() {
        assert!(read_message(b"not json").is_err());
        assert!(read_message(b"{}").is_err());
        assert_eq!(read_message(b"[]"), Ok(Vec::new()));
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(read_message(&huge).unwrap_err().contains("bytes"));
    }
}
