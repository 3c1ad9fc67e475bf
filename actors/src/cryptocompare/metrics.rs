//! The counters of the CryptoCompare clients, in one place: the live
//! counters the connection task bumps (relaxed atomics, cheap on the hot
//! path) and the plain snapshots callers read.
//!
//! These are one client's own counts (a test or a benchmark with several
//! clients in one process reads each apart). Operators read the same events
//! as Prometheus metrics (`candela_source_live_events_total`,
//! `candela_source_rest_events_total`), bumped at the same places
//! ([`bump_as`]); nothing here is the operational view.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;

/// Counters of a [`HistoryClient`](super::HistoryClient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryMetricsSnapshot {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests retried because of a rate limit.
    pub rate_limited_retries: u64,
    /// Calls that ended in an error.
    pub errors: u64,
    /// Bars refused by the platform's rules (`domain::validate`), not
    /// published.
    pub refused_bars: u64,
}

#[derive(Debug, Default)]
pub(crate) struct HistoryMetrics {
    pub requests: AtomicU64,
    pub rate_limited_retries: AtomicU64,
    pub errors: AtomicU64,
    pub refused_bars: AtomicU64,
}

impl HistoryMetrics {
    pub(crate) fn snapshot(&self) -> HistoryMetricsSnapshot {
        HistoryMetricsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limited_retries: self.rate_limited_retries.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            refused_bars: self.refused_bars.load(Ordering::Relaxed),
        }
    }
}

/// Counters of a [`LiveClient`](super::LiveClient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiveMetricsSnapshot {
    /// Text frames received.
    pub frames: u64,
    /// Trade frames received, duplicates included.
    pub trades: u64,
    /// Trades dropped because their id was seen before.
    pub duplicates_dropped: u64,
    /// Trades refused by the platform's rules (`domain::validate`), not
    /// forwarded.
    pub invalid: u64,
    /// Trades of instruments the client is not subscribed to, not
    /// forwarded.
    pub unsubscribed: u64,
    /// Frames that could not be parsed.
    pub malformed: u64,
    /// Frames of a `TYPE` this client does not handle.
    pub unknown: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Connections that reached the welcome frame.
    pub connects: u64,
    /// Connection attempts after the first.
    pub reconnects: u64,
    /// Connections given up because they went silent.
    pub stale_reconnects: u64,
    /// `401` frames and refused handshakes.
    pub unauthorized: u64,
    /// `429` frames.
    pub too_many: u64,
    /// `500` frames (`INVALID_SUB`, ...).
    pub server_errors: u64,
    /// Whether a connection is up now.
    pub connected: bool,
}

#[derive(Debug, Default)]
pub(crate) struct LiveMetrics {
    pub frames: AtomicU64,
    pub trades: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    pub invalid: AtomicU64,
    pub unsubscribed: AtomicU64,
    pub malformed: AtomicU64,
    pub unknown: AtomicU64,
    pub heartbeats: AtomicU64,
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub stale_reconnects: AtomicU64,
    pub unauthorized: AtomicU64,
    pub too_many: AtomicU64,
    pub server_errors: AtomicU64,
    pub connected: AtomicBool,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// [`bump`], and the metric [`crate::telemetry::SOURCE_LIVE_EVENTS`] with
/// `event` (a counter's name: a bounded set).
pub(crate) fn bump_as(counter: &AtomicU64, event: &'static str) {
    bump(counter);
    metrics::counter!(crate::telemetry::SOURCE_LIVE_EVENTS, "event" => event).increment(1);
}

impl LiveMetrics {
    pub(crate) fn snapshot(&self) -> LiveMetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LiveMetricsSnapshot {
            frames: get(&self.frames),
            trades: get(&self.trades),
            duplicates_dropped: get(&self.duplicates_dropped),
            invalid: get(&self.invalid),
            unsubscribed: get(&self.unsubscribed),
            malformed: get(&self.malformed),
            unknown: get(&self.unknown),
            heartbeats: get(&self.heartbeats),
            connects: get(&self.connects),
            reconnects: get(&self.reconnects),
            stale_reconnects: get(&self.stale_reconnects),
            unauthorized: get(&self.unauthorized),
            too_many: get(&self.too_many),
            server_errors: get(&self.server_errors),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}
