//! [`ImitationHandle`]: the address of a running imitation, its fault
//! switches and counters, and its shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::control;
use super::faults::{ImitationCounters, RateLimitStyle};
use super::{unix_now_ns, State, TradeModel};
use crate::cryptocompare::{ApiKey, HistoBar, Interval};
use crate::domain::Instrument;

/// A running imitation: its address, fault switches and counters.
#[derive(Debug)]
pub struct ImitationHandle {
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<State>,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) task: JoinHandle<()>,
}

impl ImitationHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`: the client's `rest_url`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://{addr}/v2`: the client's `ws_url`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v2", self.addr)
    }

    /// The instruments it lists (history and live trades exist for these
    /// only), sorted, in their listed spelling.
    pub fn instruments(&self) -> Vec<Instrument> {
        self.state.listing.instruments()
    }

    /// Whether it lists `instrument` (without regard to case).
    pub fn lists(&self, instrument: &Instrument) -> bool {
        self.state
            .listed(&instrument.market, &instrument.base, &instrument.quote)
            .is_some()
    }

    /// The trade generator it streams and aggregates.
    pub fn model(&self) -> TradeModel {
        self.state.model
    }

    /// The bars its history endpoints would serve for `[from_ts, to_ts]`
    /// now, if it lists `instrument` (it computes them for any instrument;
    /// the endpoints refuse one it does not list).
    pub fn bars(
        &self,
        interval: Interval,
        instrument: &Instrument,
        from_ts: i64,
        to_ts: i64,
    ) -> Vec<HistoBar> {
        self.state.bars.bars(
            &self.state.model,
            instrument,
            interval.secs(),
            from_ts,
            to_ts,
            unix_now_ns(),
        )
    }

    /// Its counters now.
    pub fn counters(&self) -> ImitationCounters {
        self.state.counters.snapshot()
    }

    /// When each REST request arrived (the first 100,000), as time since the
    /// server started, in arrival order.
    pub fn rest_arrivals(&self) -> Vec<Duration> {
        self.state
            .counters
            .rest_arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes every open WebSocket connection (within one stream interval).
    pub fn drop_connections(&self) {
        control::drop_connections(&self.state);
    }

    /// Makes every open connection silent (no frames at all, connection
    /// kept open), as a stale connection; new connections are normal.
    pub fn silence_connections(&self) {
        control::silence_connections(&self.state);
    }

    /// Stops (false) or resumes (true) heartbeats on every connection.
    pub fn set_heartbeats(&self, on: bool) {
        self.state
            .faults
            .heartbeats_paused
            .store(!on, Ordering::Relaxed);
    }

    /// Answers the next `n` REST requests with a rate-limit error.
    pub fn rate_limit_next(&self, n: u64, style: RateLimitStyle) {
        control::rate_limit_next(&self.state, n, style);
    }

    /// Delays every REST answer by `delay` from now on (zero: none), to make
    /// the source slow; milliseconds count.
    pub fn set_rest_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        control::set_rest_delay(&self.state, ms);
    }

    /// The current REST delay.
    pub fn rest_delay(&self) -> Duration {
        Duration::from_millis(self.state.faults.rest_delay_ms.load(Ordering::Relaxed))
    }

    /// Makes every open connection send `n` bad frames, the kinds in turn:
    /// invalid JSON, an unknown `TYPE`, a trade without a price, a trade
    /// whose price is 0, a trade of an instrument nobody subscribed to.
    pub fn send_malformed(&self, n: u64) {
        self.state.faults.malformed.issue(n);
    }

    /// Makes every open connection hold back its next `n` new trades and
    /// send them late (`late_release_ms` after the last is held, newer trades
    /// flowing meanwhile), shuffled.
    pub fn send_late(&self, n: u64) {
        self.state.faults.late.issue(n);
    }

    /// Makes every open connection send again the last `n` trades of each
    /// of its channels.
    pub fn replay_recent(&self, n: u64) {
        self.state.faults.replay.issue(n);
    }

    /// Refuses the next `n` WebSocket connections with a `429`
    /// TOO_MANY_SOCKETS frame.
    pub fn refuse_next_sockets(&self, n: u64) {
        self.state.faults.refuse_sockets.store(n, Ordering::Relaxed);
    }

    /// Changes the key clients must present (None: anyone).
    pub fn set_api_key(&self, key: Option<ApiKey>) {
        *self
            .state
            .faults
            .api_key
            .write()
            .unwrap_or_else(|p| p.into_inner()) = key;
    }

    /// Stops serving and waits for the server to end.
    pub async fn shutdown(mut self) {
        self.state.shutting_down.store(true, Ordering::Relaxed);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for ImitationHandle {
    fn drop(&mut self) {
        self.state.shutting_down.store(true, Ordering::Relaxed);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
