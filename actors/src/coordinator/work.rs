//! The Coordinator's work, done in tasks outside its mailbox: arranging a
//! dynamic instrument (reporting each step to the actor, which fires it on
//! the machine), reconciling the registry with the running actors, removing
//! an instrument.
//!
//! What must never happen: something created for a pair the source does not
//! list; a failed arrangement that leaves a consumer, a live stream or a
//! record behind; a stored instrument left without a producer or a consumer
//! once the active coordinator has reconciled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ractor::{ActorCell, ActorRef};

use super::directory::{
    agent_name, CONSUMER_AGENTS, COORDINATOR_NAME, DYNAMIC_CONSUMERS, PRODUCERS,
};
use super::messages::{AgentMsg, CoordinatorMsg, DynamicTopic, ReconcileReport, Step};
use super::plan::{choose_consumer, choose_producer, history_window, ConsumerChoice, ConsumerInfo};
use super::{CoordinatorArgs, CoordinatorError, CoordinatorSettings, Directory};
use crate::call::{call, call_result, Failed};
use crate::consumer::dynamic::{DynamicConsumerMsg, DynamicConsumerStatus};
use crate::domain::validate::now_secs;
use crate::domain::Instrument;
use crate::ports::RecordBus;
use crate::producer::{FetchReport, ProducerMsg, ProducerStatus};
use crate::store::dynamic::{DynamicRecord, DynamicRegistry, DynamicState};

/// What the work needs of the actor's arguments.
pub(super) struct Ctx<B> {
    bus: Arc<B>,
    dir: Arc<dyn Directory>,
    registry: Arc<dyn DynamicRegistry>,
    settings: CoordinatorSettings,
}

impl<B> Ctx<B> {
    pub(super) fn of(args: &CoordinatorArgs<B>) -> Self {
        Self {
            bus: Arc::clone(&args.bus),
            dir: Arc::clone(&args.directory),
            registry: Arc::clone(&args.registry),
            settings: args.settings.clone(),
        }
    }
}

/// The consumer group of a dynamic topic.
pub(super) fn group_of(settings: &CoordinatorSettings, topic: &str) -> String {
    format!("{}.{topic}", settings.group_prefix)
}

/// What an arrangement set up, to undo if a later step fails.
#[derive(Default)]
struct Undo {
    /// The dynamic consumer it subscribed (started or idle before).
    consumer: Option<String>,
    /// The producer it told to stream the instrument.
    producer: Option<String>,
    /// The record it added.
    record: bool,
}

/// Arranges `instrument` on `topic`, reporting each step to the actor.
pub(super) async fn arrange<B: RecordBus>(
    ctx: &Ctx<B>,
    me: &ActorRef<CoordinatorMsg>,
    instrument: Instrument,
    topic: String,
    known: bool,
) {
    let send = |step: Step| {
        if let Err(err) = me.cast(CoordinatorMsg::Step(step)) {
            tracing::warn!(error = %err, "the coordinator stopped during an arrangement");
        }
    };
    let i = instrument.clone();
    if !known {
        if let Err(err) = probe(ctx, &instrument).await {
            send(Step::Probed {
                instrument: i,
                result: Err(err),
            });
            return;
        }
    }
    send(Step::Probed {
        instrument: i.clone(),
        result: Ok(()),
    });

    // Processing Create Topic: the durable record, then the topic.
    let mut undo = Undo::default();
    if !known {
        let record = DynamicRecord {
            instrument: instrument.clone(),
            topic: topic.clone(),
            group: group_of(&ctx.settings, &topic),
            created_at: now_secs(),
            state: DynamicState::Active,
        };
        match ctx.registry.add(record).await {
            Ok(added) => undo.record = added,
            Err(err) => {
                send(Step::TopicCreated {
                    instrument: i,
                    result: Err(CoordinatorError::Registry(err.to_string())),
                });
                return;
            }
        }
    }
    if let Err(error) = ctx.bus.ensure_topic(&topic, ctx.settings.partitions).await {
        run_undo(ctx, &instrument, undo).await;
        send(Step::TopicCreated {
            instrument: i,
            result: Err(CoordinatorError::CreateTopic { topic, error }),
        });
        return;
    }
    send(Step::TopicCreated {
        instrument: i.clone(),
        result: Ok(()),
    });

    // Notifying Actors.
    let window = history_window(now_secs(), ctx.settings.history_minutes);
    let result = notify(ctx, &instrument, &topic, window, &mut undo).await;
    if result.is_err() {
        run_undo(ctx, &instrument, undo).await;
    }
    send(Step::Done {
        instrument: i,
        result,
    });
}

/// Whether the source lists `instrument`, asked through a producer.
async fn probe<B>(ctx: &Ctx<B>, instrument: &Instrument) -> Result<(), CoordinatorError> {
    let producer = choose_producer(instrument, &names(&ctx.dir.members(PRODUCERS)))
        .ok_or(CoordinatorError::NoProducer)?;
    let asked = async {
        let cell = ctx.dir.resolve(&producer)?;
        call_result(
            &cell,
            &producer,
            |reply| ProducerMsg::Probe {
                instrument: instrument.clone(),
                reply,
            },
            ctx.settings.producer_timeout,
        )
        .await
    }
    .await;
    match asked {
        Ok(()) => Ok(()),
        Err(Failed::Refused { error, .. }) if error.is_unknown_pair() => {
            let message = match &error {
                crate::producer::ProducerError::History {
                    error: crate::ports::SourceError::UnknownPair { message, .. },
                    ..
                } => message.clone(),
                other => other.to_string(),
            };
            Err(CoordinatorError::UnknownPair {
                instrument: instrument.clone(),
                message,
            })
        }
        Err(err) => Err(CoordinatorError::Producer(Box::new(err))),
    }
}

/// Subscribes a consumer to `topic`, then has a producer stream the
/// instrument there and publish its history `window`.
async fn notify<B>(
    ctx: &Ctx<B>,
    instrument: &Instrument,
    topic: &str,
    window: (i64, i64),
    undo: &mut Undo,
) -> Result<DynamicTopic, CoordinatorError> {
    let consumer = place_consumer(ctx, topic, undo).await?;
    let producer = choose_producer(instrument, &names(&ctx.dir.members(PRODUCERS)))
        .ok_or(CoordinatorError::NoProducer)?;
    // Live starts before the history is fetched: undo it if this fails.
    undo.producer = Some(producer.clone());
    let report = serve(ctx, &producer, instrument, topic, window).await?;
    Ok(DynamicTopic {
        instrument: instrument.clone(),
        topic: topic.to_owned(),
        consumer,
        producer,
        history_from: window.0,
        history_to: window.1,
        history_bars: report.traded_bars as u64,
    })
}

/// A dynamic consumer on `topic`: one already on it, else an idle one, else
/// one an agent starts; subscribed.
async fn place_consumer<B>(
    ctx: &Ctx<B>,
    topic: &str,
    undo: &mut Undo,
) -> Result<String, CoordinatorError> {
    let consumers = consumer_infos(ctx).await;
    let agents = names(&ctx.dir.members(CONSUMER_AGENTS));
    let turn = usize::try_from(now_secs()).unwrap_or(0);
    let consumer = match choose_consumer(topic, &consumers, &agents, turn) {
        ConsumerChoice::Reuse(name) => return Ok(name),
        ConsumerChoice::Idle(name) => name,
        ConsumerChoice::StartOn(agent) => {
            let name = async {
                let cell = ctx.dir.resolve(&agent)?;
                call_result(
                    &cell,
                    &agent,
                    AgentMsg::StartDynamicConsumer,
                    ctx.settings.call_timeout,
                )
                .await
            }
            .await
            .map_err(|e| CoordinatorError::Agent(Box::new(e)))?;
            tracing::info!(%agent, consumer = %name, "an agent started a dynamic consumer");
            name
        }
        ConsumerChoice::Nobody => return Err(CoordinatorError::NoConsumer),
    };
    undo.consumer = Some(consumer.clone());
    async {
        let cell = ctx.dir.resolve(&consumer)?;
        let subscribe = |reply| DynamicConsumerMsg::Subscribe(topic.to_owned(), reply);
        call_result(&cell, &consumer, subscribe, ctx.settings.call_timeout).await
    }
    .await
    .map_err(|e| CoordinatorError::Consumer(Box::new(e)))?;
    Ok(consumer)
}

/// Has `producer` stream `instrument` to `topic` and publish `window`.
async fn serve<B>(
    ctx: &Ctx<B>,
    producer: &str,
    instrument: &Instrument,
    topic: &str,
    (from_ts, to_ts): (i64, i64),
) -> Result<FetchReport, CoordinatorError> {
    async {
        let cell = ctx.dir.resolve(producer)?;
        let serve = |reply| ProducerMsg::ServeDynamic {
            instrument: instrument.clone(),
            topic: topic.to_owned(),
            from_ts,
            to_ts,
            reply,
        };
        call_result(&cell, producer, serve, ctx.settings.producer_timeout).await
    }
    .await
    .map_err(|e| CoordinatorError::Producer(Box::new(e)))
}

/// Undoes what a failed arrangement set up (best effort, logged).
async fn run_undo<B>(ctx: &Ctx<B>, instrument: &Instrument, undo: Undo) {
    if let Some(producer) = undo.producer {
        stop_live(ctx, &producer, instrument);
    }
    if let Some(consumer) = undo.consumer {
        stop_consumer(ctx, &consumer).await;
    }
    if undo.record {
        if let Err(err) = ctx.registry.remove(instrument).await {
            tracing::warn!(%instrument, error = %err, "undo: the dynamic record stays (the next reconciliation serves it)");
        }
    }
    tracing::info!(%instrument, "undid a failed arrangement");
}

fn stop_live<B>(ctx: &Ctx<B>, producer: &str, instrument: &Instrument) {
    let sent = ctx.dir.resolve(producer).and_then(|cell| {
        ractor::ActorRef::<ProducerMsg>::from(cell)
            .cast(ProducerMsg::StopLive {
                instrument: instrument.clone(),
            })
            .map_err(|e| {
                crate::call::CallError::unreachable(producer, crate::call::undelivered(&e))
            })
    });
    if let Err(err) = sent {
        tracing::warn!(%producer, %instrument, error = %err, "could not stop a live stream");
    }
}

/// Stops the dynamic consumer `consumer` through its node's agent.
async fn stop_consumer<B>(ctx: &Ctx<B>, consumer: &str) {
    // `consumer-dynamic/<node>/<n>`: its node's agent stops it.
    let Some(node) = consumer
        .strip_prefix("consumer-dynamic/")
        .and_then(|rest| rest.rsplit_once('/'))
        .map(|(node, _)| node)
    else {
        tracing::warn!(%consumer, "not a dynamic consumer's name: not stopped");
        return;
    };
    let agent = agent_name(node);
    let stopped = async {
        let cell = ctx.dir.resolve(&agent)?;
        call_result(
            &cell,
            &agent,
            |reply| AgentMsg::StopDynamicConsumer(consumer.to_owned(), reply),
            ctx.settings.call_timeout,
        )
        .await
    }
    .await;
    if let Err(err) = stopped {
        tracing::warn!(%consumer, error = %err, "could not stop a dynamic consumer");
    }
}

/// Every dynamic consumer that answers, with its topic.
async fn consumer_infos<B>(ctx: &Ctx<B>) -> Vec<ConsumerInfo> {
    let mut out = Vec::new();
    for name in names(&ctx.dir.members(DYNAMIC_CONSUMERS)) {
        match consumer_status(ctx, &name).await {
            Ok(s) => out.push(ConsumerInfo {
                idle: s.idle,
                topic: s.topic,
                name,
            }),
            Err(err) => {
                tracing::warn!(consumer = %name, error = %err, "dynamic consumer did not answer; skipped")
            }
        }
    }
    out
}

async fn consumer_status<B>(
    ctx: &Ctx<B>,
    name: &str,
) -> Result<DynamicConsumerStatus, crate::call::CallError> {
    call(
        &ctx.dir.resolve(name)?,
        name,
        DynamicConsumerMsg::Status,
        ctx.settings.call_timeout,
    )
    .await
}

/// What every producer that answers streams live.
async fn producers_live<B>(ctx: &Ctx<B>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for name in names(&ctx.dir.members(PRODUCERS)) {
        let status: Result<ProducerStatus, _> = async {
            call(
                &ctx.dir.resolve(&name)?,
                &name,
                ProducerMsg::Status,
                ctx.settings.call_timeout,
            )
            .await
        }
        .await;
        match status {
            Ok(s) => {
                out.insert(name, s.live.into_iter().collect());
            }
            Err(err) => {
                tracing::warn!(producer = %name, error = %err, "producer did not answer; skipped")
            }
        }
    }
    out
}

/// Makes every stored instrument served: a consumer on its topic and a
/// producer streaming it. Only the active coordinator (the holder of the
/// cluster name) does anything.
pub(super) async fn reconcile<B>(ctx: &Ctx<B>, me: &ActorCell) -> ReconcileReport {
    let mut report = ReconcileReport {
        at: now_secs(),
        ..ReconcileReport::default()
    };
    let active = ctx
        .dir
        .resolve(COORDINATOR_NAME)
        .is_ok_and(|cell| cell.get_id() == me.get_id());
    if !active {
        report.skipped = true;
        return report;
    }
    let records = match ctx.registry.list().await {
        Ok(r) => r,
        Err(err) => {
            report.skipped = true;
            report.problems.push(format!("reading the registry: {err}"));
            return report;
        }
    };
    let consumers = consumer_infos(ctx).await;
    let live = producers_live(ctx).await;
    for record in &records {
        let i = &record.instrument;
        if record.state == DynamicState::Removing {
            if let Err(err) = remove(ctx, i).await {
                report.problems.push(format!("{i}: removing: {err}"));
            }
            continue;
        }
        if !consumers
            .iter()
            .any(|c| c.topic.as_deref() == Some(record.topic.as_str()))
        {
            let mut undo = Undo::default();
            match place_consumer(ctx, &record.topic, &mut undo).await {
                Ok(consumer) => {
                    tracing::info!(instrument = %i, topic = %record.topic, %consumer, "reconcile: a consumer reads the topic again");
                    report.consumers_placed.push((i.to_string(), consumer));
                }
                Err(err) => report.problems.push(format!("{i}: consumer: {err}")),
            }
        }
        let streamed = live.values().any(|set| set.contains(&i.to_string()));
        if !streamed {
            let Some(producer) = choose_producer(i, &live.keys().cloned().collect::<Vec<_>>())
            else {
                report.problems.push(format!("{i}: no producer"));
                continue;
            };
            let window = history_window(now_secs(), ctx.settings.reconcile_history_minutes);
            match serve(ctx, &producer, i, &record.topic, window).await {
                Ok(_) => {
                    tracing::info!(instrument = %i, %producer, "reconcile: a producer streams it again");
                    report.producers_told.push((i.to_string(), producer));
                }
                Err(err) => report.problems.push(format!("{i}: producer: {err}")),
            }
        }
    }
    report.instruments = records;
    if !report.problems.is_empty() {
        tracing::warn!(problems = ?report.problems, "reconcile: not everything is served yet");
    }
    report
}

/// Removes `instrument`: its live streams, its consumer, its record.
pub(super) async fn remove<B>(
    ctx: &Ctx<B>,
    instrument: &Instrument,
) -> Result<bool, CoordinatorError> {
    let registry = |e: crate::store::StoreError| CoordinatorError::Registry(e.to_string());
    let records = ctx.registry.list().await.map_err(registry)?;
    let Some(record) = records.into_iter().find(|r| &r.instrument == instrument) else {
        return Ok(false);
    };
    ctx.registry
        .set_state(instrument, DynamicState::Removing)
        .await
        .map_err(registry)?;
    for producer in names(&ctx.dir.members(PRODUCERS)) {
        stop_live(ctx, &producer, instrument);
    }
    for consumer in consumer_infos(ctx).await {
        if consumer.topic.as_deref() == Some(record.topic.as_str()) {
            stop_consumer(ctx, &consumer.name).await;
        }
    }
    ctx.registry.remove(instrument).await.map_err(registry)?;
    tracing::info!(%instrument, topic = %record.topic, "dynamic instrument removed");
    Ok(true)
}

/// The names of `cells` (stand-ins of remote actors carry them too).
fn names(cells: &[ActorCell]) -> Vec<String> {
    let mut out: Vec<String> = cells.iter().filter_map(ActorCell::get_name).collect();
    out.sort();
    out.dedup();
    out
}
