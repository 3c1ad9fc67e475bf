//! The live client: trades from the streamer, as distinct [`Tick`]s.
//!
//! One task owns the connection. It connects, waits for the welcome frame,
//! subscribes to every instrument's trade channel, and forwards each trade
//! not seen before into a bounded channel (back-pressure: when the consumer
//! lags, the task stops reading and TCP slows the server down).
//!
//! A connection is replaced when the server closes it, when it fails, or when
//! no frame at all came for `stale_after_secs`. Reconnects wait at least
//! `reconnect_min_ms` (growing, jittered, up to `reconnect_max_ms`) and then
//! resubscribe everything; the trades the server replays on subscribe are
//! dropped by [`Dedup`]. Malformed and unknown frames are logged and counted,
//! never fatal. The task ends on [`LiveHandle::shutdown`], when the handle is
//! dropped, or when the tick receiver is dropped (noticed at the next trade
//! or heartbeat).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::config::CryptoCompareConfig;
use super::dedup::Dedup;
use super::error::CryptoCompareError;
use super::handshake::{self, Socket};
use super::messages::{Frame, SubRequest};
use super::metrics::{bump_as, LiveMetrics, LiveMetricsSnapshot};
use super::parse::parse_frame;
use crate::domain::validate;
use crate::domain::{Instrument, Tick};

#[derive(Debug)]
enum Command {
    Subscribe(Instrument),
    Unsubscribe(Instrument),
    Shutdown,
}

/// Controls a running [`LiveClient`]. Dropping it stops the client.
#[derive(Debug)]
pub struct LiveHandle {
    commands: mpsc::UnboundedSender<Command>,
    metrics: Arc<LiveMetrics>,
    task: JoinHandle<()>,
}

impl LiveHandle {
    /// Adds an instrument's trade channel (now, and on every reconnect).
    pub fn subscribe(&self, instrument: Instrument) {
        let _ = self.commands.send(Command::Subscribe(instrument));
    }

    /// Removes an instrument's trade channel.
    pub fn unsubscribe(&self, instrument: Instrument) {
        let _ = self.commands.send(Command::Unsubscribe(instrument));
    }

    /// The counters so far.
    pub fn metrics(&self) -> LiveMetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Closes the connection and waits for the client's task to end.
    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown);
        let _ = self.task.await;
    }
}

/// Frames handled in a row before commands are looked at again.
const BATCH: usize = 256;

/// Starts live clients.
#[derive(Debug)]
pub struct LiveClient;

impl LiveClient {
    /// Starts a client subscribed to `instruments`, on the current tokio
    /// runtime. The receiver yields each distinct trade once, in arrival
    /// order.
    pub fn spawn(
        config: CryptoCompareConfig,
        instruments: impl IntoIterator<Item = Instrument>,
    ) -> Result<(LiveHandle, mpsc::Receiver<Tick>), CryptoCompareError> {
        config.validate()?;
        let http = handshake::upgrade_client(config.connect_timeout())?;
        let (tx, rx) = mpsc::channel(config.channel_capacity);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(LiveMetrics::default());
        let session = Session {
            dedup: Dedup::new(config.dedup_window),
            subs: instruments.into_iter().collect(),
            config,
            http,
            tx,
            commands: command_rx,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(session.run());
        Ok((
            LiveHandle {
                commands,
                metrics,
                task,
            },
            rx,
        ))
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// Stop the client.
    Shutdown,
    /// Closed or failed; `welcomed` if it had worked.
    Dropped { welcomed: bool },
    /// No frame for `stale_after_secs`.
    Stale,
    /// The server asked us to slow down (`429`).
    SlowDown,
}

struct Session {
    config: CryptoCompareConfig,
    http: reqwest::Client,
    subs: BTreeSet<Instrument>,
    dedup: Dedup,
    tx: mpsc::Sender<Tick>,
    commands: mpsc::UnboundedReceiver<Command>,
    metrics: Arc<LiveMetrics>,
}

impl Session {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.reconnect_min_ms, self.config.reconnect_max_ms);
        loop {
            let end = self.connection().await;
            self.metrics.connected.store(false, Ordering::Relaxed);
            let delay = match end {
                End::Shutdown => break,
                End::Stale => {
                    bump_as(&self.metrics.stale_reconnects, "stale_reconnects");
                    backoff.reset();
                    backoff.next_delay()
                }
                End::Dropped { welcomed } => {
                    if welcomed {
                        backoff.reset();
                    }
                    backoff.next_delay()
                }
                End::SlowDown => backoff.max_delay(),
            };
            info!(
                delay_ms = delay.as_millis() as u64,
                "live connection ended, reconnecting"
            );
            if !self.pause(delay).await {
                break;
            }
            bump_as(&self.metrics.reconnects, "reconnects");
        }
        info!("live client stopped");
    }

    /// Waits `delay` while still taking commands; false on shutdown.
    async fn pause(&mut self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return true,
                _ = self.tx.closed() => return false,
                command = self.commands.recv() => match command {
                    None | Some(Command::Shutdown) => return false,
                    Some(Command::Subscribe(i)) => { self.subs.insert(i); }
                    Some(Command::Unsubscribe(i)) => { self.subs.remove(&i); }
                },
            }
        }
    }

    async fn connection(&mut self) -> End {
        let connect = handshake::connect(
            &self.http,
            &self.config.ws_url,
            self.config.api_key.as_ref(),
        );
        let mut socket = match tokio::time::timeout(self.config.connect_timeout(), connect).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(CryptoCompareError::Unauthorized(reason))) => {
                bump_as(&self.metrics.unauthorized, "unauthorized");
                error!(%reason, "streamer refused the api key");
                return End::Dropped { welcomed: false };
            }
            Ok(Err(e)) => {
                warn!(error = %e, "cannot connect to the streamer");
                return End::Dropped { welcomed: false };
            }
            Err(_) => {
                warn!("connecting to the streamer timed out");
                return End::Dropped { welcomed: false };
            }
        };
        if let Some(end) = self.await_welcome(&mut socket).await {
            return end;
        }
        bump_as(&self.metrics.connects, "connects");
        self.metrics.connected.store(true, Ordering::Relaxed);
        let subs: Vec<Instrument> = self.subs.iter().cloned().collect();
        if let Err(e) = send_subs(&mut socket, "SubAdd", &subs).await {
            warn!(error = %e, "cannot subscribe");
            return End::Dropped { welcomed: true };
        }
        info!(subscriptions = subs.len(), "live connection up");
        self.read_loop(&mut socket).await
    }

    /// None when the welcome frame came; otherwise how the attempt ended.
    async fn await_welcome(&mut self, socket: &mut Socket) -> Option<End> {
        let deadline = Instant::now() + self.config.connect_timeout();
        loop {
            let message = match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => {
                    warn!("no welcome frame in time");
                    return Some(End::Dropped { welcomed: false });
                }
                Ok(None) | Ok(Some(Err(_))) => return Some(End::Dropped { welcomed: false }),
                Ok(Some(Ok(message))) => message,
            };
            let Message::Text(text) = message else {
                continue;
            };
            bump_as(&self.metrics.frames, "frames");
            match parse_frame(&text) {
                Ok(Frame::Welcome(w)) => {
                    debug!(client_id = ?w.client_id, server = ?w.server_name, "welcome");
                    return None;
                }
                Ok(Frame::Notice(n)) => {
                    return Some(
                        self.notice(n.code, &n.message, n.parameter.as_deref())
                            .unwrap_or(End::Dropped { welcomed: false }),
                    );
                }
                Ok(_) | Err(_) => {
                    warn!(len = text.len(), "expected the welcome frame first");
                    return Some(End::Dropped { welcomed: false });
                }
            }
        }
    }

    async fn read_loop(&mut self, socket: &mut Socket) -> End {
        let stale_after = self.config.stale_after();
        let mut last_frame = Instant::now();
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => {
                    let (action, instrument) = match command {
                        None | Some(Command::Shutdown) => {
                            let _ = socket.close(None).await;
                            return End::Shutdown;
                        }
                        Some(Command::Subscribe(i)) => ("SubAdd", i),
                        Some(Command::Unsubscribe(i)) => ("SubRemove", i),
                    };
                    let changed = if action == "SubAdd" {
                        self.subs.insert(instrument.clone())
                    } else {
                        self.subs.remove(&instrument)
                    };
                    if changed {
                        if let Err(e) = send_subs(socket, action, std::slice::from_ref(&instrument)).await {
                            warn!(error = %e, action, "cannot change subscriptions");
                            return End::Dropped { welcomed: true };
                        }
                    }
                }
                message = tokio::time::timeout_at(last_frame + stale_after, socket.next()) => {
                    let Ok(mut message) = message else {
                        warn!(stale_after_secs = self.config.stale_after_secs, "no frame for too long, replacing the connection");
                        return End::Stale;
                    };
                    last_frame = Instant::now();
                    // Frames already buffered are handled without going
                    // back through `select!`: cheaper under a firehose.
                    for _ in 0..BATCH {
                        if let Some(end) = self.on_message(message).await {
                            let _ = socket.close(None).await;
                            return end;
                        }
                        match socket.next().now_or_never() {
                            Some(next) => message = next,
                            None => break,
                        }
                    }
                }
            }
        }
    }

    /// Handles one read from the socket; Some when the connection must end.
    async fn on_message(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Option<End> {
        match message {
            None => {
                info!("streamer closed the connection");
                Some(End::Dropped { welcomed: true })
            }
            Some(Err(e)) => {
                warn!(error = %e, "live connection failed");
                Some(End::Dropped { welcomed: true })
            }
            Some(Ok(Message::Text(text))) => self.on_text(&text).await,
            Some(Ok(Message::Close(_))) => Some(End::Dropped { welcomed: true }),
            Some(Ok(Message::Binary(_))) => {
                bump_as(&self.metrics.malformed, "malformed");
                warn!("binary frame, expected text");
                None
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                self.tx.is_closed().then_some(End::Shutdown)
            }
        }
    }

    /// Handles one text frame; Some when the connection must end.
    async fn on_text(&mut self, text: &str) -> Option<End> {
        bump_as(&self.metrics.frames, "frames");
        match parse_frame(text) {
            Ok(Frame::Trade(trade)) => {
                bump_as(&self.metrics.trades, "trades");
                let tick = trade.to_tick(now_ns());
                // Only what was asked for, and only what the platform can
                // store: anything else is counted and dropped here, where
                // it enters (it would grow the dedup window without bound,
                // or be dead-lettered by every consumer).
                if !self.subs.contains(&tick.instrument) {
                    bump_as(&self.metrics.unsubscribed, "unsubscribed");
                    debug!(instrument = %validate::shorten(&tick.instrument.to_string()), "a trade of an instrument not subscribed: dropped");
                    return None;
                }
                if let Err(e) = validate::tick(&tick, validate::now_secs()) {
                    bump_as(&self.metrics.invalid, "invalid");
                    warn!(instrument = %tick.instrument, error = %e, "a trade that breaks the platform's rules: dropped");
                    return None;
                }
                if !self.dedup.first_sighting(&tick.instrument, &tick.trade_id) {
                    bump_as(&self.metrics.duplicates_dropped, "duplicates_dropped");
                    return None;
                }
                if self.tx.send(tick).await.is_err() {
                    return Some(End::Shutdown);
                }
            }
            Ok(Frame::Heartbeat { .. }) => {
                bump_as(&self.metrics.heartbeats, "heartbeats");
                if self.tx.is_closed() {
                    return Some(End::Shutdown);
                }
            }
            Ok(Frame::SubscribeComplete { sub }) => debug!(%sub, "subscribed"),
            Ok(Frame::UnsubscribeComplete { sub }) => debug!(%sub, "unsubscribed"),
            Ok(Frame::LoadComplete) => debug!("subscriptions loaded"),
            Ok(Frame::Welcome(_)) => debug!("repeated welcome frame"),
            Ok(Frame::Notice(n)) => return self.notice(n.code, &n.message, n.parameter.as_deref()),
            Ok(Frame::Unknown { type_code }) => {
                bump_as(&self.metrics.unknown, "unknown");
                debug!(%type_code, "frame of an unhandled type");
            }
            Err(e) => {
                bump_as(&self.metrics.malformed, "malformed");
                let snippet = snippet(text);
                let snippet = match &self.config.api_key {
                    Some(key) => key.redact(snippet).into_owned(),
                    None => snippet.to_owned(),
                };
                warn!(error = %e, len = text.len(), frame = %snippet, "malformed frame");
            }
        }
        None
    }

    /// Logs and counts a `401`/`429`/`500` frame; Some when it ends the
    /// connection.
    fn notice(&self, code: u16, message: &str, parameter: Option<&str>) -> Option<End> {
        match code {
            401 => {
                bump_as(&self.metrics.unauthorized, "unauthorized");
                let message = snippet(message);
                error!(code, message, "streamer refused the api key");
                Some(End::Dropped { welcomed: false })
            }
            429 => {
                bump_as(&self.metrics.too_many, "too_many");
                warn!(
                    code,
                    message = snippet(message),
                    "streamer asks to slow down"
                );
                Some(End::SlowDown)
            }
            _ => {
                bump_as(&self.metrics.server_errors, "server_errors");
                warn!(
                    code,
                    message = snippet(message),
                    parameter = parameter.map(snippet),
                    "streamer error notice"
                );
                (message == "FORCE_DISCONNECT").then_some(End::Dropped { welcomed: true })
            }
        }
    }
}

async fn send_subs(
    socket: &mut Socket,
    action: &'static str,
    instruments: &[Instrument],
) -> Result<(), CryptoCompareError> {
    if instruments.is_empty() {
        return Ok(());
    }
    let subs: Vec<String> = instruments.iter().map(Instrument::trade_channel).collect();
    let text = serde_json::to_string(&SubRequest {
        action,
        subs: &subs,
    })
    .map_err(|e| CryptoCompareError::Parse(e.into()))?;
    debug!(action, subs = ?subs, "sending subscriptions");
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| CryptoCompareError::WebSocket(Box::new(e)))
}

/// At most the first 160 characters of a frame, for a log line.
fn snippet(text: &str) -> &str {
    match text.char_indices().nth(160) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
