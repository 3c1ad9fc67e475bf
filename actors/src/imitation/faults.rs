//! Fault switches and counters of the imitation, shared by its endpoints.
//!
//! Switches are flipped in-process through
//! [`ImitationHandle`](super::ImitationHandle) or over HTTP under
//! `/_imitation/...` (see [`control`](super::control)); connections read them
//! at every stream tick. "One-shot" orders (send N malformed frames, resend
//! recent trades, hold back trades) carry a sequence number, so each open
//! connection carries out each order once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::cryptocompare::ApiKey;

/// How a rate-limited REST request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitStyle {
    /// HTTP 200 with a `Type` 99 error body (CryptoCompare's classic answer).
    #[default]
    Body,
    /// HTTP 429 with the same body.
    Http,
}

/// An order every open connection carries out once: `(sequence, n)`.
#[derive(Debug, Default)]
pub(crate) struct Order(Mutex<(u64, u64)>);

impl Order {
    pub(crate) fn issue(&self, n: u64) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g = (g.0 + 1, n);
    }

    /// `Some(n)` if an order newer than `*seen` exists (and marks it seen).
    pub(crate) fn take(&self, seen: &mut u64) -> Option<u64> {
        let (seq, n) = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        (seq != *seen).then(|| {
            *seen = seq;
            n
        })
    }

    pub(crate) fn current(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

/// The switches.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Connections with an id below this are closed.
    pub drop_below: AtomicU64,
    /// Connections with an id below this send nothing at all.
    pub silent_below: AtomicU64,
    pub heartbeats_paused: AtomicBool,
    /// REST requests still to answer with a rate-limit error.
    pub rate_limited: AtomicU64,
    pub rate_limit_style: Mutex<RateLimitStyle>,
    /// Every REST answer waits this many milliseconds first (0: none).
    pub rest_delay_ms: AtomicU64,
    /// WebSocket connections still to refuse with `429`.
    pub refuse_sockets: AtomicU64,
    pub malformed: Order,
    pub replay: Order,
    pub late: Order,
    /// The key clients must present; None accepts everyone.
    pub api_key: RwLock<Option<ApiKey>>,
}

impl Faults {
    /// Takes one unit of a countdown; true if there was one.
    pub(crate) fn take_one(counter: &AtomicU64) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether `presented` (from a header or `api_key`) is acceptable.
    pub(crate) fn key_accepted(&self, presented: Option<&str>) -> bool {
        match &*self.api_key.read().unwrap_or_else(|p| p.into_inner()) {
            None => true,
            Some(key) => presented == Some(key.expose()),
        }
    }
}

/// What the imitation did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImitationCounters {
    /// WebSocket connections accepted (refused ones included).
    pub connections_opened: u64,
    /// WebSocket connections open now.
    pub connections_active: u64,
    /// Connections refused with `401` or `429`.
    pub connections_refused: u64,
    /// Connections closed by the drop switch.
    pub connections_dropped: u64,
    /// Trade subscriptions accepted.
    pub subscriptions: u64,
    /// `SubAdd` channels refused with `500` `INVALID_SUB` (a pair the
    /// market does not list, or not a trade channel).
    pub subscriptions_refused: u64,
    /// WebSocket frames sent.
    pub frames_sent: u64,
    /// Trade frames sent (replays included).
    pub trades_sent: u64,
    /// Trades sent as replays (on subscribe or by the replay switch).
    pub trades_replayed: u64,
    /// Trades held back and sent late, out of order.
    pub trades_late: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Malformed frames sent.
    pub malformed_sent: u64,
    /// REST requests received.
    pub rest_requests: u64,
    /// REST requests answered with a rate-limit error.
    pub rest_rate_limited: u64,
    /// REST requests answered with another error body (unknown pairs
    /// included).
    pub rest_errors: u64,
    /// REST requests for a pair the market does not list.
    pub rest_unknown_pairs: u64,
    /// REST answers delayed by the delay switch.
    pub rest_delayed: u64,
    /// REST requests being answered now.
    #[serde(default)]
    pub rest_in_flight: u64,
    /// The most REST requests that were being answered at once.
    #[serde(default)]
    pub rest_max_in_flight: u64,
}

/// The live counters behind [`ImitationCounters`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections_opened: AtomicU64,
    pub connections_active: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_dropped: AtomicU64,
    pub subscriptions: AtomicU64,
    pub subscriptions_refused: AtomicU64,
    pub frames_sent: AtomicU64,
    pub trades_sent: AtomicU64,
    pub trades_replayed: AtomicU64,
    pub trades_late: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub malformed_sent: AtomicU64,
    pub rest_requests: AtomicU64,
    pub rest_rate_limited: AtomicU64,
    pub rest_errors: AtomicU64,
    pub rest_unknown_pairs: AtomicU64,
    pub rest_delayed: AtomicU64,
    pub rest_in_flight: AtomicU64,
    pub rest_max_in_flight: AtomicU64,
    /// When each REST request arrived, from the server's start (the first
    /// [`MAX_ARRIVALS`]).
    pub rest_arrivals: std::sync::Mutex<Vec<std::time::Duration>>,
}

/// How many REST arrival times the imitation keeps.
pub const MAX_ARRIVALS: usize = 100_000;

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counters {
    /// A REST request arrived `since_start` after the server started: one
    /// more in flight (until [`Counters::rest_done`]).
    pub(crate) fn rest_arrived(&self, since_start: std::time::Duration) {
        let now = self.rest_in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.rest_max_in_flight.fetch_max(now, Ordering::AcqRel);
        let mut arrivals = self.rest_arrivals.lock().unwrap_or_else(|e| e.into_inner());
        if arrivals.len() < MAX_ARRIVALS {
            arrivals.push(since_start);
        }
    }

    /// A REST request was answered.
    pub(crate) fn rest_done(&self) {
        self.rest_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Counters {
    pub(crate) fn snapshot(&self) -> ImitationCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ImitationCounters {
            connections_opened: g(&self.connections_opened),
            connections_active: g(&self.connections_active),
            connections_refused: g(&self.connections_refused),
            connections_dropped: g(&self.connections_dropped),
            subscriptions: g(&self.subscriptions),
            subscriptions_refused: g(&self.subscriptions_refused),
            frames_sent: g(&self.frames_sent),
            trades_sent: g(&self.trades_sent),
            trades_replayed: g(&self.trades_replayed),
            trades_late: g(&self.trades_late),
            heartbeats_sent: g(&self.heartbeats_sent),
            malformed_sent: g(&self.malformed_sent),
            rest_requests: g(&self.rest_requests),
            rest_rate_limited: g(&self.rest_rate_limited),
            rest_errors: g(&self.rest_errors),
            rest_unknown_pairs: g(&self.rest_unknown_pairs),
            rest_delayed: g(&self.rest_delayed),
            rest_in_flight: g(&self.rest_in_flight),
            rest_max_in_flight: g(&self.rest_max_in_flight),
        }
    }
}
