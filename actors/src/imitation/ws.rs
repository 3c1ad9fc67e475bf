//! `GET /v2`: the streamer. One task per connection reads client frames and,
//! every `stream_interval_ms`, pushes the trades whose time has come on each
//! subscribed channel, heartbeats, and whatever the fault switches ask for.
//!
//! Per connection: a refused key gets a `401` frame and a close; otherwise a
//! welcome frame, then `SubAdd` answers `16` per channel (after which the
//! channel's latest `replay_count` trades are replayed) and `3` at the end,
//! `SubRemove` answers `17`, and anything invalid a `500` notice: a trade
//! channel of a pair the market does not list (see [`super::listing`])
//! gets `{"TYPE":"500","MESSAGE":"INVALID_SUB","PARAMETER":"<the sub>","INFO":"…"}`
//! and nothing is streamed for it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use poem::http::HeaderMap;
use poem::web::websocket::{Message, WebSocket, WebSocketStream};
use poem::web::{Data, Query};
use poem::{handler, IntoResponse};
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};

use super::faults::{add, Faults};
use super::model::{InstrumentKey, Trade};
use super::{frames, unix_now_ns, State};
use crate::domain::Instrument;

const NS: i64 = 1_000_000_000;
/// Seconds looked back at most for the replay on subscribe.
const REPLAY_LOOKBACK_SECS: i64 = 86_400;
/// A connection that fell further behind than this skips ahead.
const MAX_CATCH_UP_NS: i64 = 10 * NS;

#[handler]
pub(crate) fn streamer(
    ws: WebSocket,
    Query(q): Query<HashMap<String, String>>,
    headers: &HeaderMap,
    Data(state): Data<&Arc<State>>,
) -> impl IntoResponse {
    let authorized = state.authorized(headers, &q);
    let state = state.clone();
    ws.on_upgrade(move |socket| async move {
        let id = state.next_connection.fetch_add(1, Ordering::Relaxed);
        add(&state.counters.connections_opened, 1);
        add(&state.counters.connections_active, 1);
        let (sink, stream) = socket.split();
        let mut conn = Connection::new(state.clone(), id, sink);
        conn.run(stream, authorized).await;
        state
            .counters
            .connections_active
            .fetch_sub(1, Ordering::Relaxed);
    })
}

/// One subscribed trade channel.
struct Channel {
    sub: String,
    instrument: Instrument,
    key: InstrumentKey,
    /// Trades up to this time were sent (or skipped).
    cursor_ns: i64,
    /// The trades of `second_cached`, generated once per second.
    second_cached: i64,
    second_trades: Vec<Trade>,
    /// The latest trades sent, for the replay switch.
    recent: VecDeque<Trade>,
}

#[derive(Deserialize)]
struct ClientFrame {
    action: String,
    #[serde(default)]
    subs: Vec<String>,
}

struct Connection {
    state: Arc<State>,
    id: u64,
    sink: SplitSink<WebSocketStream, Message>,
    channels: Vec<Channel>,
    seen_malformed: u64,
    seen_replay: u64,
    seen_late: u64,
    hold_remaining: u64,
    /// Trades held back to be sent late: (channel, trade).
    held: Vec<(String, Trade)>,
    release_at: Option<Instant>,
    malformed_sent: u64,
    frames: u64,
    trades: u64,
}

impl Connection {
    fn new(state: Arc<State>, id: u64, sink: SplitSink<WebSocketStream, Message>) -> Self {
        let f = &state.faults;
        let (seen_malformed, seen_replay, seen_late) =
            (f.malformed.current(), f.replay.current(), f.late.current());
        Self {
            state,
            id,
            sink,
            channels: Vec::new(),
            seen_malformed,
            seen_replay,
            seen_late,
            hold_remaining: 0,
            held: Vec::new(),
            release_at: None,
            malformed_sent: 0,
            frames: 0,
            trades: 0,
        }
    }

    fn silent(&self) -> bool {
        self.id < self.state.faults.silent_below.load(Ordering::Relaxed)
    }

    /// Queues a frame (sent at the next flush); nothing when silent.
    async fn feed(&mut self, text: String) -> Result<(), std::io::Error> {
        if self.silent() {
            return Ok(());
        }
        self.frames += 1;
        self.sink.feed(Message::Text(text)).await
    }

    async fn run(&mut self, mut stream: SplitStream<WebSocketStream>, authorized: bool) {
        let state = self.state.clone();
        if !authorized {
            add(&state.counters.connections_refused, 1);
            tracing::info!(
                connection = self.id,
                "streamer connection without a valid api key"
            );
            let text = frames::notice(
                401,
                "UNAUTHORIZED",
                Some("api_key"),
                "We only support JSON format with a valid api_key.",
            );
            let _ = self.sink.send(Message::Text(text)).await;
            let _ = self.sink.close().await;
            return;
        }
        if Faults::take_one(&state.faults.refuse_sockets) {
            add(&state.counters.connections_refused, 1);
            let text = frames::notice(
                429,
                "TOO_MANY_SOCKETS_MAX_1_PER_CLIENT",
                None,
                "You have reached the maximum number of open sockets for your account.",
            );
            let _ = self.sink.send(Message::Text(text)).await;
            let _ = self.sink.close().await;
            return;
        }
        let uptime = state.started.elapsed().as_secs();
        let active = state.counters.connections_active.load(Ordering::Relaxed);
        let welcome = frames::welcome(uptime, unix_now_ns() / 1_000_000, self.id, active);
        if self.feed(welcome).await.is_err() || self.flush().await.is_err() {
            return;
        }
        let mut ticker =
            tokio::time::interval(Duration::from_millis(state.config.stream_interval_ms));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let heartbeat_every = Duration::from_millis(state.config.heartbeat_interval_ms);
        let mut next_heartbeat = Instant::now() + heartbeat_every;
        loop {
            let result = tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => self.on_client_frame(&text).await,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => Ok(()),
                },
                _ = ticker.tick() => {
                    if state.shutting_down.load(Ordering::Relaxed) {
                        break;
                    }
                    if self.id < state.faults.drop_below.load(Ordering::Relaxed) {
                        add(&state.counters.connections_dropped, 1);
                        tracing::info!(connection = self.id, "dropping connection (fault switch)");
                        return; // abrupt: no close frame
                    }
                    if Instant::now() >= next_heartbeat {
                        next_heartbeat += heartbeat_every;
                        if !state.faults.heartbeats_paused.load(Ordering::Relaxed) && !self.silent() {
                            add(&state.counters.heartbeats_sent, 1);
                            let hb = frames::heartbeat(unix_now_ns() / 1_000_000);
                            if self.feed(hb).await.is_err() {
                                break;
                            }
                        }
                    }
                    self.on_tick().await
                }
            };
            if result.is_err() || self.flush().await.is_err() {
                break;
            }
        }
        let _ = self.sink.close().await;
    }

    async fn flush(&mut self) -> Result<(), std::io::Error> {
        let counters = &self.state.counters;
        add(&counters.frames_sent, std::mem::take(&mut self.frames));
        add(&counters.trades_sent, std::mem::take(&mut self.trades));
        self.sink.flush().await
    }

    async fn on_client_frame(&mut self, text: &str) -> Result<(), std::io::Error> {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(_) => {
                let n = frames::notice(
                    500,
                    "INVALID_JSON",
                    None,
                    "Invalid JSON, please check your message.",
                );
                return self.feed(n).await;
            }
        };
        match frame.action.as_str() {
            "SubAdd" => {
                for sub in frame.subs {
                    self.sub_add(sub).await?;
                }
                self.feed(frames::load_complete()).await
            }
            "SubRemove" => {
                for sub in frame.subs {
                    match self.channels.iter().position(|c| c.sub == sub) {
                        Some(i) => {
                            self.channels.remove(i);
                            self.feed(frames::sub_complete(false, &sub)).await?;
                        }
                        None => {
                            let n = frames::notice(
                                500,
                                "SUBSCRIPTION_UNRECOGNIZED",
                                Some(&sub),
                                "You are not subscribed to this channel.",
                            );
                            self.feed(n).await?;
                        }
                    }
                }
                Ok(())
            }
            _ => {
                let n = frames::notice(
                    500,
                    "INVALID_PARAMETER",
                    Some("action"),
                    "The action must be SubAdd or SubRemove.",
                );
                self.feed(n).await
            }
        }
    }

    /// The listed instrument of a trade channel `0~{market}~{base}~{quote}`,
    /// or the `INFO` of the `INVALID_SUB` notice that refuses it.
    fn trade_channel(&self, sub: &str) -> Result<Instrument, String> {
        let mut parts = sub.split('~');
        let (Some("0"), Some(m), Some(b), Some(q), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(
                "The imitation streams trade channels 0~{market}~{base}~{quote} only.".into(),
            );
        };
        self.state
            .listed(m, b, q)
            .cloned()
            .ok_or_else(|| frames::unlisted_sub_info(m, b, q))
    }

    async fn sub_add(&mut self, sub: String) -> Result<(), std::io::Error> {
        let instrument = match self.trade_channel(&sub) {
            Ok(instrument) => instrument,
            Err(info) => {
                add(&self.state.counters.subscriptions_refused, 1);
                tracing::info!(connection = self.id, sub = %sub, "refusing a subscription: INVALID_SUB");
                let n = frames::notice(500, "INVALID_SUB", Some(&sub), &info);
                return self.feed(n).await;
            }
        };
        if self.channels.iter().any(|c| c.sub == sub) {
            let n = frames::notice(
                500,
                "SUBSCRIPTION_ALREADY_ACTIVE",
                Some(&sub),
                "You are already subscribed to this channel.",
            );
            return self.feed(n).await;
        }
        add(&self.state.counters.subscriptions, 1);
        self.feed(frames::sub_complete(true, &sub)).await?;
        let now_ns = unix_now_ns();
        let model = self.state.model;
        let key = model.key(&instrument);
        let replay = latest_trades(&self.state, &key, now_ns, self.state.config.replay_count);
        let mut channel = Channel {
            sub,
            instrument,
            key,
            cursor_ns: now_ns,
            second_cached: i64::MIN,
            second_trades: Vec::new(),
            recent: VecDeque::new(),
        };
        for t in &replay {
            remember(
                &mut channel.recent,
                *t,
                self.state.config.replay_count.max(64),
            );
        }
        add(&self.state.counters.trades_replayed, replay.len() as u64);
        for t in &replay {
            self.trades += 1;
            let text = frames::trade(&channel.instrument, t, now_ns);
            self.feed(text).await?;
        }
        self.channels.push(channel);
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<(), std::io::Error> {
        let faults = &self.state.faults;
        let malformed = faults.malformed.take(&mut self.seen_malformed);
        let replay = faults.replay.take(&mut self.seen_replay);
        if let Some(n) = faults.late.take(&mut self.seen_late) {
            self.hold_remaining += n;
        }
        let now_ns = unix_now_ns();
        if let Some(n) = malformed {
            for _ in 0..n {
                let text = frames::malformed(
                    self.malformed_sent,
                    self.channels.first().map(|c| &c.instrument),
                );
                self.malformed_sent += 1;
                add(&self.state.counters.malformed_sent, 1);
                self.feed(text).await?;
            }
        }
        if let Some(n) = replay {
            for i in 0..self.channels.len() {
                let recent: Vec<Trade> = {
                    let r = &self.channels[i].recent;
                    r.iter()
                        .skip(r.len().saturating_sub(n as usize))
                        .copied()
                        .collect()
                };
                add(&self.state.counters.trades_replayed, recent.len() as u64);
                for t in recent {
                    self.trades += 1;
                    let text = frames::trade(&self.channels[i].instrument, &t, now_ns);
                    self.feed(text).await?;
                }
            }
        }
        for i in 0..self.channels.len() {
            let new = self.new_trades(i, now_ns);
            for t in new {
                if self.hold_remaining > 0 {
                    self.hold_remaining -= 1;
                    self.held.push((self.channels[i].sub.clone(), t));
                    let wait = Duration::from_millis(self.state.config.late_release_ms);
                    self.release_at = Some(Instant::now() + wait);
                    continue;
                }
                self.send_trade(i, t, now_ns).await?;
            }
        }
        // Held trades go out once all are held and newer ones flowed for a
        // while: they arrive late and out of order.
        if self.hold_remaining == 0 && self.release_at.is_some_and(|at| Instant::now() >= at) {
            self.release_at = None;
            let mut held = std::mem::take(&mut self.held);
            shuffle(&mut held, self.id ^ now_ns as u64);
            add(&self.state.counters.trades_late, held.len() as u64);
            for (sub, t) in held {
                if let Some(i) = self.channels.iter().position(|c| c.sub == sub) {
                    self.send_trade(i, t, now_ns).await?;
                }
            }
        }
        Ok(())
    }

    async fn send_trade(&mut self, i: usize, t: Trade, now_ns: i64) -> Result<(), std::io::Error> {
        let replay_keep = self.state.config.replay_count.max(64);
        remember(&mut self.channels[i].recent, t, replay_keep);
        self.trades += usize::from(!self.silent()) as u64;
        let text = frames::trade(&self.channels[i].instrument, &t, now_ns);
        self.feed(text).await
    }

    /// The trades of channel `i` in `(cursor, now]`, advancing the cursor.
    fn new_trades(&mut self, i: usize, now_ns: i64) -> Vec<Trade> {
        let model = self.state.model;
        let c = &mut self.channels[i];
        if now_ns - c.cursor_ns > MAX_CATCH_UP_NS {
            c.cursor_ns = now_ns - MAX_CATCH_UP_NS;
        }
        let mut out = Vec::new();
        for second in c.cursor_ns.div_euclid(NS)..=now_ns.div_euclid(NS) {
            if second != c.second_cached {
                model.fill_second(&c.key, second, &mut c.second_trades);
                c.second_cached = second;
            }
            out.extend(
                c.second_trades
                    .iter()
                    .filter(|t| t.time_ns > c.cursor_ns && t.time_ns <= now_ns),
            );
        }
        c.cursor_ns = c.cursor_ns.max(now_ns);
        out
    }
}

/// The latest `count` trades at or before `now_ns`, in time order.
fn latest_trades(state: &State, key: &InstrumentKey, now_ns: i64, count: usize) -> Vec<Trade> {
    let model = state.model;
    let mut found: Vec<Trade> = Vec::new();
    let mut buf = Vec::new();
    let now_s = now_ns.div_euclid(NS);
    let oldest = (now_s - REPLAY_LOOKBACK_SECS).max(model.start_ts());
    let mut second = now_s;
    while found.len() < count && second >= oldest {
        model.fill_second(key, second, &mut buf);
        found.extend(
            buf.iter()
                .rev()
                .filter(|t| t.time_ns <= now_ns)
                .take(count - found.len()),
        );
        second -= 1;
    }
    found.reverse();
    found
}

fn remember(recent: &mut VecDeque<Trade>, t: Trade, keep: usize) {
    if recent.len() >= keep {
        recent.pop_front();
    }
    recent.push_back(t);
}

/// A Fisher-Yates shuffle that never leaves two or more trades in time
/// order.
fn shuffle(items: &mut [(String, Trade)], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = (seed >> 33) as usize % (i + 1);
        items.swap(i, j);
    }
    if items.windows(2).all(|w| w[0].1.time_ns <= w[1].1.time_ns) {
        items.reverse();
    }
}
