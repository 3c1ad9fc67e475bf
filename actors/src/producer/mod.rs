//! The Producer actor: acquires trades from CryptoCompare (history over REST,
//! live over a WebSocket) and publishes them to the record bus (Kafka).
//!
//! ```text
//!  supervisor
//!     └── producer  (this actor; its machine: machines::producer)
//!           ├── live feed task   (LiveSource: connects, dedups, reconnects)
//!           └── forwarder task   (drains the feed in batches, calls LiveBatch)
//! ```
//!
//! Every unit of work is one cycle of the seed's machine:
//! `FETCH_DATA` → Fetching Data → `DATA_READY(fixed|dynamic)` → Publishing →
//! `PUBLISH_SUCCESS` → Idle. A history request is one cycle (all its bars); a
//! batch of live ticks drained from the feed is one cycle. Creating a dynamic
//! topic is `CREATE_DYNAMIC_TOPIC` → Creating Dynamic Topic → Idle.
//!
//! A failure (`FETCH_FAILURE`, `PUBLISH_FAILURE`, `CREATE_TOPIC_FAILURE`) puts
//! the machine in Error and answers the caller with the error (a typed
//! [`ProducerError`], which crosses nodes). A publish or topic failure then
//! fails the actor: its supervisor restarts it under the same name with
//! fresh state and a fresh bus client, which is the seed's `RESET` (the bus
//! being away is a transient failure, not counted towards the
//! restart-intensity limit). A history fetch failure is the source's: the
//! machine takes `RESET` in place, nothing here is replaced.
//! Nothing is dropped silently: a live batch that was not acknowledged is
//! reported, and the missed minutes are repaired from history.
//!
//! **History is fetched outside the mailbox**, in a task: the machine's
//! cycle (`FETCH_DATA` → `DATA_READY` → publish) starts once the bars are in
//! hand ([`ProducerMsg::PublishFetched`]). So the fetches of several
//! instruments overlap (the backfill, [`backfill`], asks for them
//! concurrently; the history client's rate limit paces them), and live
//! batches never wait behind a slow source. A failed fetch for the fixed
//! topic comes back as [`ProducerMsg::FetchFailed`]: `FETCH_FAILURE`, Error,
//! then `RESET` in place (the source failed, not this actor: a restart would
//! drop the other fetches in flight and every live feed). The fetch tasks
//! are the actor's: aborted when it stops. **Dynamic instruments cannot hurt the others.** They are asked for
//! by users (the Data Not Found path): a source that refuses or fails such a
//! fetch is answered to the caller and changes nothing here: no Error, no
//! restart, so the live feeds of every other instrument carry on.
//! [`ProducerMsg::Probe`] asks the source whether it lists a pair at all,
//! the same way, before the Coordinator creates anything.
//!
//! Dynamic topics: the Coordinator (on any node, by this producer's cluster
//! name) sends [`ProducerMsg::ServeDynamic`]: the instrument is streamed live
//! to its dynamic topic from then on, and its history is published there.
//! Those live targets are kept in a [`DynamicBook`] shared across restarts, so
//! a producer replaced by its supervisor (`RESET`) resumes them, as it resumes
//! the fixed instruments of its arguments.
//!
//! The forwarder waits for each batch to be acknowledged before it drains the
//! next, so a slow broker slows the feed (bounded channel, then TCP) instead of
//! growing a mailbox.

pub mod backfill;
mod messages;

pub use messages::{FetchReport, ProducerError, ProducerMsg, ProducerStatus, Target};

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::call::{call_result, Failed};
use crate::domain::{HistoryBar, Instrument, Record, Tick};
use crate::fsm::runtime::DEFAULT_HISTORY;
use crate::fsm::Fsm;
use crate::machines::producer::{Event, Producer as Machine};
use crate::ports::{HistorySource, LiveControl, LiveSource, RecordBus};
use crate::supervisor::Transient;

/// How a producer is configured and what it talks to.
pub struct ProducerArgs<H, L, B> {
    /// The instance name (its registry name), e.g. `producer/node-a`.
    pub instance: String,
    /// REST history.
    pub history: Arc<H>,
    /// Live trades.
    pub live: Arc<L>,
    /// Makes the bus client. Each start (and restart) makes a fresh one, so a
    /// RESET also replaces a client left unusable by a broker outage.
    pub make_bus: BusFactory<B>,
    /// The fixed topic (`tick-data`).
    pub fixed_topic: String,
    /// Partitions of the fixed topic when it has to be created.
    pub fixed_partitions: i32,
    /// Instruments streamed live to the fixed topic from the start.
    pub live_instruments: Vec<Instrument>,
    /// Most records per publish call.
    pub batch_max: usize,
    /// Instruments streamed live to dynamic topics; shared by every instance,
    /// so a restarted producer resumes them.
    pub dynamic: DynamicBook,
    /// True when this instance replaces one that failed (its run starts with
    /// `RESET`).
    pub restarted: bool,
}

/// Instrument → dynamic topic, for the live targets a producer was given by
/// the Coordinator. Kept outside the actor so it survives restarts.
pub type DynamicBook = Arc<Mutex<BTreeMap<Instrument, String>>>;

impl<H, L, B> Clone for ProducerArgs<H, L, B> {
    fn clone(&self) -> Self {
        Self {
            instance: self.instance.clone(),
            history: Arc::clone(&self.history),
            live: Arc::clone(&self.live),
            make_bus: Arc::clone(&self.make_bus),
            fixed_topic: self.fixed_topic.clone(),
            fixed_partitions: self.fixed_partitions,
            live_instruments: self.live_instruments.clone(),
            batch_max: self.batch_max,
            dynamic: Arc::clone(&self.dynamic),
            restarted: self.restarted,
        }
    }
}

/// Makes a bus client.
pub type BusFactory<B> = Arc<dyn Fn() -> Result<B, crate::ports::BusError> + Send + Sync>;

/// The ports a producer is generic over, as one type (keeps `Producer: Send`
/// whatever the ports are).
type Ports<H, L, B> = fn() -> (H, L, B);

/// The Producer actor (generic over its I/O ports).
pub struct Producer<H, L, B>(PhantomData<Ports<H, L, B>>);

impl<H, L, B> Default for Producer<H, L, B> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// The actor's state.
pub struct ProducerState<H, L: LiveSource, B> {
    args: ProducerArgs<H, L, B>,
    bus: B,
    fsm: Fsm<Machine>,
    live: Option<L::Control>,
    forwarder: Option<JoinHandle<()>>,
    /// The history fetches in flight (aborted when the actor stops).
    fetches: tokio::task::JoinSet<()>,
    targets: BTreeMap<Instrument, Target>,
    status: ProducerStatus,
    span: tracing::Span,
}

impl<H, L, B> Actor for Producer<H, L, B>
where
    H: HistorySource,
    L: LiveSource,
    B: RecordBus,
{
    type Msg = ProducerMsg;
    type State = ProducerState<H, L, B>;
    type Arguments = ProducerArgs<H, L, B>;

    async fn pre_start(
        &self,
        myself: ActorRef<ProducerMsg>,
        args: ProducerArgs<H, L, B>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let fsm = if args.restarted {
            Fsm::after_reset(args.instance.clone(), DEFAULT_HISTORY, Event::Reset)
        } else {
            Fsm::new(args.instance.clone())
        };
        // The bus being away is an outage to wait out, not a crash loop.
        let bus = (args.make_bus)().map_err(|e| Transient(e.to_string()))?;
        bus.ensure_topic(&args.fixed_topic, args.fixed_partitions)
            .await
            .map_err(|e| Transient(e.to_string()))?;
        let mut targets: BTreeMap<Instrument, Target> = args
            .live_instruments
            .iter()
            .map(|i| (i.clone(), Target::Fixed))
            .collect();
        for (instrument, topic) in lock(&args.dynamic).iter() {
            targets.insert(instrument.clone(), Target::Dynamic(topic.clone()));
        }
        let mut state = ProducerState {
            span: crate::telemetry::actor_span("producer", &args.instance),
            status: ProducerStatus {
                instance: args.instance.clone(),
                ..ProducerStatus::default()
            },
            args,
            bus,
            fsm,
            live: None,
            forwarder: None,
            fetches: tokio::task::JoinSet::new(),
            targets,
        };
        if !state.targets.is_empty() {
            start_live(&myself, &mut state).map_err(|e| Transient(e.to_string()))?;
        }
        state.span.in_scope(|| {
            tracing::info!(
                live = state.targets.len(),
                topic = %state.args.fixed_topic,
                "producer started"
            )
        });
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ProducerMsg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(live) = state.live.take() {
            live.shutdown();
        }
        // The fetches in flight end with the actor (their callers are
        // answered by the closed reply ports).
        state.fetches.abort_all();
        if let Some(task) = state.forwarder.take() {
            task.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ProducerMsg>,
        message: ProducerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        crate::telemetry::in_span(&span, async {
            match message {
                ProducerMsg::FetchHistory {
                    instrument,
                    from_ts,
                    to_ts,
                    target,
                    reply,
                } => {
                    // The source is asked outside the mailbox, so fetches for
                    // several instruments overlap (under the client's rate
                    // limit) and live batches never wait behind a slow source.
                    fetch_outside(&myself, state, instrument, target, from_ts, to_ts, reply);
                }
                ProducerMsg::FetchFailed {
                    instrument,
                    error,
                    reply,
                } => {
                    // `FETCH_DATA` → `FETCH_FAILURE` → Error → `RESET` →
                    // Idle, in place: the source failed, not this actor, so
                    // nothing here needs replacing, and a restart would drop
                    // every other fetch in flight and every live feed.
                    state.fsm.fire(Event::FetchData).map_err(machine)?;
                    state.fsm.fire(Event::FetchFailure).map_err(machine)?;
                    state.status.failed_fetches += 1;
                    tracing::warn!(%instrument, %error, "history fetch failed");
                    state.fsm.fire(Event::Reset).map_err(machine)?;
                    let _ = reply.send(Err(ProducerError::History { instrument, error }));
                }
                ProducerMsg::Probe { instrument, reply } => {
                    let history = Arc::clone(&state.args.history);
                    crate::telemetry::spawn_in_span(async move {
                        let last = last_closed_minute();
                        let answer = history
                            .minute_bars(&instrument, last, last)
                            .await
                            .map(|_| ())
                            .map_err(|error| ProducerError::History { instrument, error });
                        let _ = reply.send(answer);
                    });
                }
                ProducerMsg::PublishFetched {
                    instrument,
                    target,
                    bars,
                    started_ms,
                    reply,
                } => {
                    let result =
                        publish_history(state, &instrument, bars, &target, started_ms).await;
                    let failed = result.as_ref().err().cloned();
                    let _ = reply.send(result);
                    if let Some(err) = failed {
                        return Err(failure(err));
                    }
                }
                ProducerMsg::LiveBatch { ticks, reply } => {
                    let result = publish_live(state, ticks).await;
                    let _ = reply.send(());
                    result.map_err(failure)?;
                }
                ProducerMsg::StartLive { instrument, target } => {
                    live_to(&myself, state, instrument, target)
                        .map_err(|e| failure(ProducerError::Live(e)))?;
                }
                ProducerMsg::ServeDynamic {
                    instrument,
                    topic,
                    from_ts,
                    to_ts,
                    reply,
                } => {
                    if !crate::kafka::admin::is_valid_topic_name(&topic) {
                        let _ = reply.send(Err(ProducerError::InvalidTopic { topic }));
                        return Ok(());
                    }
                    tracing::info!(%instrument, %topic, from_ts, to_ts, "serving a dynamic topic");
                    // Live first, so the stream starts no later than the history ends.
                    if let Err(err) = live_to(
                        &myself,
                        state,
                        instrument.clone(),
                        Target::Dynamic(topic.clone()),
                    ) {
                        let err = ProducerError::Live(err);
                        let _ = reply.send(Err(err.clone()));
                        return Err(failure(err));
                    }
                    fetch_outside(
                        &myself,
                        state,
                        instrument,
                        Target::Dynamic(topic),
                        from_ts,
                        to_ts,
                        reply,
                    );
                }
                ProducerMsg::StopLive { instrument } => {
                    lock(&state.args.dynamic).remove(&instrument);
                    if state.targets.remove(&instrument).is_some() {
                        if let Some(live) = &state.live {
                            live.unsubscribe(instrument);
                        }
                    }
                }
                ProducerMsg::CreateTopic {
                    topic,
                    partitions,
                    reply,
                } => {
                    state.fsm.fire(Event::CreateDynamicTopic)?;
                    match state.bus.ensure_topic(&topic, partitions).await {
                        Ok(()) => {
                            state.fsm.fire(Event::CreateTopicSuccess)?;
                            let _ = reply.send(Ok(()));
                        }
                        Err(err) => {
                            state.fsm.fire(Event::CreateTopicFailure)?;
                            let err = ProducerError::CreateTopic(err);
                            let _ = reply.send(Err(err.clone()));
                            return Err(failure(err));
                        }
                    }
                }
                ProducerMsg::Status(reply) => {
                    let mut status = state.status.clone();
                    status.run = Some(state.fsm.snapshot());
                    status.live = state.targets.keys().map(ToString::to_string).collect();
                    let _ = reply.send(status);
                }
            }
            Ok(())
        })
        .await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Streams `instrument` live to `target` (a dynamic target is also written to
/// the book). Subscribing an instrument already streamed to the same target
/// changes nothing.
fn live_to<H, L: LiveSource, B>(
    myself: &ActorRef<ProducerMsg>,
    state: &mut ProducerState<H, L, B>,
    instrument: Instrument,
    target: Target,
) -> Result<(), crate::ports::SourceError> {
    match &target {
        Target::Dynamic(topic) => {
            lock(&state.args.dynamic).insert(instrument.clone(), topic.clone());
        }
        Target::Fixed => {
            lock(&state.args.dynamic).remove(&instrument);
        }
    }
    let previous = state.targets.insert(instrument.clone(), target.clone());
    match &state.live {
        // Already subscribed: at most the target changed.
        Some(_) if previous.is_some() => Ok(()),
        Some(live) => {
            live.subscribe(instrument);
            Ok(())
        }
        None => start_live(myself, state),
    }
}

/// Starts the live feed for every instrument in `state.targets` and the
/// forwarder that hands its ticks to the actor in batches.
fn start_live<H, L: LiveSource, B>(
    myself: &ActorRef<ProducerMsg>,
    state: &mut ProducerState<H, L, B>,
) -> Result<(), crate::ports::SourceError> {
    let (control, ticks) = state
        .args
        .live
        .start(state.targets.keys().cloned().collect())?;
    state.live = Some(control);
    state.forwarder = Some(crate::telemetry::spawn_in_span(forward(
        myself.clone(),
        ticks,
        state.args.batch_max.max(1),
    )));
    Ok(())
}

/// Drains the feed into batches of at most `batch_max` ticks and hands each to
/// the actor, waiting until it is published before draining the next.
async fn forward(
    producer: ActorRef<ProducerMsg>,
    mut ticks: mpsc::Receiver<Tick>,
    batch_max: usize,
) {
    let mut batch = Vec::with_capacity(batch_max);
    while ticks.recv_many(&mut batch, batch_max).await > 0 {
        let ticks = std::mem::replace(&mut batch, Vec::with_capacity(batch_max));
        // No timeout: the actor either answers once the batch is acknowledged
        // or stops, which closes the reply port and ends this task.
        match producer
            .call(|reply| ProducerMsg::LiveBatch { ticks, reply }, None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(())) => {}
            _ => break,
        }
    }
}

/// Publishes history bars already in hand: `FETCH_DATA` → `DATA_READY` →
/// publish (the cycle of a dynamic fetch made outside the mailbox).
async fn publish_history<H: HistorySource, L: LiveSource, B: RecordBus>(
    state: &mut ProducerState<H, L, B>,
    instrument: &Instrument,
    bars: Vec<HistoryBar>,
    target: &Target,
    started_ms: u64,
) -> Result<FetchReport, ProducerError> {
    tracing::debug!(%instrument, bars = bars.len(), "publishing fetched history");
    state.fsm.fire(Event::FetchData).map_err(machine)?;
    publish_records(state, bars, target, started_ms).await
}

/// `DATA_READY` → publish → the report.
async fn publish_records<H: HistorySource, L: LiveSource, B: RecordBus>(
    state: &mut ProducerState<H, L, B>,
    bars: Vec<HistoryBar>,
    target: &Target,
    started_ms: u64,
) -> Result<FetchReport, ProducerError> {
    let traded_bars = bars.iter().filter(|b| !b.volume_base.is_zero()).count();
    let records: Vec<Record> = bars.into_iter().map(Record::Bar).collect();
    let bars = records.len();
    publish_cycle(state, records, target).await?;
    state.status.published_bars += bars as u64;
    metrics::counter!(crate::telemetry::HISTORY_BARS_PUBLISHED).increment(bars as u64);
    Ok(FetchReport {
        bars,
        traded_bars,
        elapsed_ms: now_ms().saturating_sub(started_ms),
    })
}

/// Fetches history in a task, outside the mailbox and the machine; the bars
/// come back as [`ProducerMsg::PublishFetched`]. A failed fetch for the
/// fixed topic comes back as [`ProducerMsg::FetchFailed`] (the machine's
/// `FETCH_FAILURE`, then RESET); one for a dynamic topic is answered to the
/// caller (the Coordinator) from the task and changes nothing here.
fn fetch_outside<H: HistorySource, L: LiveSource, B>(
    myself: &ActorRef<ProducerMsg>,
    state: &mut ProducerState<H, L, B>,
    instrument: Instrument,
    target: Target,
    from_ts: i64,
    to_ts: i64,
    reply: ractor::RpcReplyPort<Result<FetchReport, ProducerError>>,
) {
    let history = Arc::clone(&state.args.history);
    let myself = myself.clone();
    let started_ms = now_ms();
    // Reap the finished ones, so the set holds only what is in flight.
    while state.fetches.try_join_next().is_some() {}
    use tracing::Instrument as _;
    state.fetches.spawn(async move {
        match history.minute_bars(&instrument, from_ts, to_ts).await {
            Ok(bars) => {
                if let Err(err) = myself.cast(ProducerMsg::PublishFetched {
                    instrument,
                    target,
                    bars,
                    started_ms,
                    reply,
                }) {
                    tracing::warn!(error = %err, "fetched history, but the producer stopped");
                }
            }
            Err(error) if target == Target::Fixed => {
                if let Err(err) = myself.cast(ProducerMsg::FetchFailed {
                    instrument,
                    error,
                    reply,
                }) {
                    tracing::warn!(error = %err, "history fetch failed, and the producer stopped");
                }
            }
            Err(error) => {
                tracing::warn!(%instrument, %error, "history of a dynamic instrument not fetched");
                let _ = reply.send(Err(ProducerError::History { instrument, error }));
            }
        }
    }
    .in_current_span());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn last_closed_minute() -> i64 {
    let now = crate::domain::validate::now_secs();
    now - now.rem_euclid(60) - 60
}

/// The actor's failure for `err`: [`Transient`] unless it is a bug.
fn failure(err: ProducerError) -> ActorProcessingErr {
    if err.is_transient() {
        Box::new(Transient(err.to_string()))
    } else {
        Box::new(err)
    }
}

async fn publish_live<H: HistorySource, L: LiveSource, B: RecordBus>(
    state: &mut ProducerState<H, L, B>,
    ticks: Vec<Tick>,
) -> Result<(), ProducerError> {
    let mut received: std::collections::BTreeMap<&Instrument, u64> = Default::default();
    for t in &ticks {
        *received.entry(&t.instrument).or_default() += 1;
    }
    for (instrument, n) in received {
        metrics::counter!(crate::telemetry::TICKS_RECEIVED, "instrument" => instrument.to_string())
            .increment(n);
    }
    // One cycle per target, in the order the first tick of each target arrived.
    let mut groups: Vec<(Target, Vec<Record>)> = Vec::new();
    for tick in ticks {
        let target = state
            .targets
            .get(&tick.instrument)
            .cloned()
            .unwrap_or(Target::Fixed);
        match groups.iter_mut().find(|(t, _)| *t == target) {
            Some((_, records)) => records.push(Record::Trade(tick)),
            None => groups.push((target, vec![Record::Trade(tick)])),
        }
    }
    for (target, records) in groups {
        let n = records.len() as u64;
        state.fsm.fire(Event::FetchData).map_err(machine)?;
        publish_cycle(state, records, &target).await?;
        state.status.published_trades += n;
        metrics::counter!(crate::telemetry::TICKS_PUBLISHED).increment(n);
    }
    Ok(())
}

/// `DATA_READY` → publish in chunks → `PUBLISH_SUCCESS` or `PUBLISH_FAILURE`.
async fn publish_cycle<H: HistorySource, L: LiveSource, B: RecordBus>(
    state: &mut ProducerState<H, L, B>,
    records: Vec<Record>,
    target: &Target,
) -> Result<(), ProducerError> {
    let (ready, topic) = match target {
        Target::Fixed => (Event::DataReadyFixed, state.args.fixed_topic.clone()),
        Target::Dynamic(topic) => (Event::DataReadyDynamic, topic.clone()),
    };
    state.fsm.fire(ready).map_err(machine)?;
    for chunk in records.chunks(state.args.batch_max.max(1)) {
        if let Err(err) = state.bus.publish(&topic, chunk).await {
            state.fsm.fire(Event::PublishFailure).map_err(machine)?;
            state.status.failed_batches += 1;
            tracing::error!(%topic, error = %err, "publish failed");
            return Err(ProducerError::Publish(err));
        }
    }
    state.fsm.fire(Event::PublishSuccess).map_err(machine)?;
    Ok(())
}

/// A step the machine refused, as the producer's error.
fn machine(rejection: impl std::fmt::Display) -> ProducerError {
    ProducerError::Machine(rejection.to_string())
}

/// Asks `producer` for history (`FETCH_DATA`) and waits at most `timeout`
/// (less if the producer stops first).
pub async fn fetch_history(
    producer: &ActorRef<ProducerMsg>,
    instrument: Instrument,
    from_ts: i64,
    to_ts: i64,
    target: Target,
    timeout: std::time::Duration,
) -> Result<FetchReport, Failed<ProducerError>> {
    call_result(
        &producer.get_cell(),
        &crate::call::name_of(producer),
        |reply| ProducerMsg::FetchHistory {
            instrument,
            from_ts,
            to_ts,
            target,
            reply,
        },
        timeout,
    )
    .await
}
