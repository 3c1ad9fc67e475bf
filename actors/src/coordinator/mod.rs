//! The Coordinator: arranges a dynamic topic for an instrument the platform
//! does not hold, driven by the seed's machine (`machines::coordinator`):
//!
//! ```text
//! Active --REQUEST_CREATE_TOPIC--> Processing Create Topic   create the topic on Kafka
//!        --CREATE_TOPIC_SUCCESS--> Notifying Actors          by cluster name:
//!              1. a Consumer for dynamic topics: SUBSCRIBE_TO_TOPIC
//!                 (one already on the topic, else an idle one, else one that
//!                 an agent starts on a consumer node);
//!              2. a producer: stream the instrument live to the topic, and
//!                 publish its history there
//!        --NOTIFY_SUCCESS-->       Active                    answer the requester
//! ```
//!
//! `CREATE_TOPIC_FAILURE` or `NOTIFY_FAILURE` → Error: the requester gets the
//! failure, then the actor fails and its supervisor restarts it (`RESET` →
//! Active). The failure is a [`CoordinatorError`], a serde type that crosses
//! nodes and keeps what the called actor said: no answer (a
//! [`CallError`](crate::call::CallError): unreachable, time-out, stopped) or
//! its own typed refusal. Every call goes through [`crate::call`], so an
//! actor that stops, or whose node goes away, fails the call at once. The consumer is subscribed before the producer publishes, and its
//! group reads from the earliest offset, so nothing published is missed
//! whichever comes first.
//!
//! The Coordinator is a role (`coordinator`) run on one node and reached from
//! any node by the cluster name [`directory::COORDINATOR_NAME`]. It keeps the
//! topics it arranged in memory: a repeated request for an instrument whose
//! consumer still holds the topic is answered from there; after a restart the
//! book is empty and a new request runs the machine again, which is safe —
//! topic creation is idempotent, the consumer already on the topic is reused,
//! and history published twice changes no bar.

pub mod directory;
mod messages;
pub mod topic;

pub use directory::Directory;
pub use messages::{AgentError, AgentMsg, CoordinatorMsg, CoordinatorStatus, DynamicTopic};
pub use topic::{topic_for, TopicNameError};

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::call::{call, call_result, CallError, Failed};
use crate::consumer::dynamic::{DynamicConsumerMsg, DynamicConsumerStatus, SubscribeError};
use crate::domain::Instrument;
use crate::fsm::runtime::DEFAULT_HISTORY;
use crate::fsm::Fsm;
use crate::machines::coordinator::Event;
use crate::machines::Coordinator as Machine;
use crate::ports::{BusError, RecordBus};
use crate::producer::{FetchReport, ProducerError, ProducerMsg};
use directory::{CONSUMER_AGENTS, DYNAMIC_CONSUMERS, PRODUCERS};

/// How the Coordinator works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorSettings {
    /// Prefix of dynamic topics (see [`topic`]).
    pub topic_prefix: String,
    /// Partitions of each dynamic topic.
    pub partitions: i32,
    /// Closed minutes of history the producer publishes to a new topic.
    pub history_minutes: i64,
    /// Longest wait for a consumer's or an agent's answer.
    pub call_timeout: Duration,
    /// Longest wait for the producer's answer (it fetches and publishes the
    /// history first).
    pub producer_timeout: Duration,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        Self {
            topic_prefix: topic::DEFAULT_PREFIX.into(),
            partitions: 1,
            history_minutes: 120,
            call_timeout: Duration::from_secs(10),
            producer_timeout: Duration::from_secs(60),
        }
    }
}

/// How a Coordinator is configured and what it talks to.
pub struct CoordinatorArgs<B> {
    /// Instance name.
    pub instance: String,
    /// Creates topics.
    pub bus: Arc<B>,
    /// Finds producers, consumers and agents by name.
    pub directory: Arc<dyn Directory>,
    /// Settings.
    pub settings: CoordinatorSettings,
    /// True when this instance replaces one that failed.
    pub restarted: bool,
}

impl<B> Clone for CoordinatorArgs<B> {
    fn clone(&self) -> Self {
        Self {
            instance: self.instance.clone(),
            bus: Arc::clone(&self.bus),
            directory: Arc::clone(&self.directory),
            settings: self.settings.clone(),
            restarted: self.restarted,
        }
    }
}

/// Why a request could not be served. A serde type: it is the Coordinator's
/// answer to a requester on any node, and keeps the typed errors of the
/// actors it called (as [`Failed`]: no answer, or their own refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CoordinatorError {
    /// The instrument cannot name a topic (bad input; no machine step).
    #[error(transparent)]
    Topic(#[from] TopicNameError),
    /// The broker refused or did not create the topic.
    #[error("creating topic `{topic}`: {error}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The bus's error.
        error: BusError,
    },
    /// No dynamic consumer is idle and no consumer node's agent is connected.
    #[error("no Consumer for dynamic topics is idle and no consumer node's agent is reachable")]
    NoConsumer,
    /// No producer is connected.
    #[error("no producer is reachable")]
    NoProducer,
    /// The agent asked for a dynamic consumer did not start one.
    #[error("starting a dynamic consumer: {0}")]
    Agent(Box<Failed<AgentError>>),
    /// The dynamic consumer was not subscribed to the topic.
    #[error("subscribing the dynamic consumer: {0}")]
    Consumer(Box<Failed<SubscribeError>>),
    /// The producer did not serve the topic (live stream and history).
    #[error("serving the topic: {0}")]
    Producer(Box<Failed<ProducerError>>),
    /// The machine refused a step (a bug).
    #[error("machine: {0}")]
    Machine(String),
}

/// A dynamic consumer as the Coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Its cluster name.
    pub name: String,
    /// The topic it was given, if any.
    pub topic: Option<String>,
    /// Whether its machine is in Idle.
    pub idle: bool,
}

/// Which consumer gets a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerChoice {
    /// This one already has the topic.
    Reuse(String),
    /// This one is idle (no topic).
    Idle(String),
    /// Ask this agent to start one.
    StartOn(String),
    /// Nobody can take it.
    Nobody,
}

/// Chooses the consumer for `topic`: one already on it, else the first idle
/// one without a topic (by name), else an agent in turn (round robin over the
/// agents sorted by name, `turn` counting the requests).
pub fn choose_consumer(
    topic: &str,
    consumers: &[ConsumerInfo],
    agents: &[String],
    turn: usize,
) -> ConsumerChoice {
    let mut sorted: Vec<&ConsumerInfo> = consumers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(c) = sorted.iter().find(|c| c.topic.as_deref() == Some(topic)) {
        return ConsumerChoice::Reuse(c.name.clone());
    }
    if let Some(c) = sorted.iter().find(|c| c.topic.is_none() && c.idle) {
        return ConsumerChoice::Idle(c.name.clone());
    }
    let mut agents: Vec<&String> = agents.iter().collect();
    agents.sort();
    agents.dedup();
    match agents.len() {
        0 => ConsumerChoice::Nobody,
        n => ConsumerChoice::StartOn(agents[turn % n].clone()),
    }
}

/// Chooses the producer for `instrument`: a stable choice among the
/// producers (sorted by name), spreading instruments over them.
pub fn choose_producer(instrument: &Instrument, producers: &[String]) -> Option<String> {
    let mut sorted: Vec<&String> = producers.iter().collect();
    sorted.sort();
    sorted.dedup();
    if sorted.is_empty() {
        return None;
    }
    let h = topic::fnv1a(instrument.to_string().as_bytes()) as usize;
    Some(sorted[h % sorted.len()].clone())
}

/// The history window for a new topic: the last `minutes` closed minutes
/// before `now` (Unix seconds), as (first, last) minute starts.
pub fn history_window(now: i64, minutes: i64) -> (i64, i64) {
    let last = now - now.rem_euclid(60) - 60;
    (last - (minutes.max(1) - 1) * 60, last)
}

type Ports<B> = fn() -> B;

/// The Coordinator actor.
pub struct Coordinator<B>(PhantomData<Ports<B>>);

impl<B> Default for Coordinator<B> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// The actor's state.
pub struct CoordinatorState<B> {
    args: CoordinatorArgs<B>,
    fsm: Fsm<Machine>,
    book: BTreeMap<Instrument, DynamicTopic>,
    failures: u64,
    turn: usize,
}

impl<B: RecordBus> Actor for Coordinator<B> {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState<B>;
    type Arguments = CoordinatorArgs<B>;

    async fn pre_start(
        &self,
        _myself: ActorRef<CoordinatorMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        topic::check_prefix(&args.settings.topic_prefix)?;
        let fsm = if args.restarted {
            Fsm::after_reset(args.instance.clone(), DEFAULT_HISTORY, Event::Reset)
        } else {
            Fsm::new(args.instance.clone())
        };
        tracing::info!(instance = %args.instance, prefix = %args.settings.topic_prefix, "coordinator started");
        Ok(CoordinatorState {
            args,
            fsm,
            book: BTreeMap::new(),
            failures: 0,
            turn: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<CoordinatorMsg>,
        message: CoordinatorMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoordinatorMsg::RequestCreateTopic(instrument, reply) => {
                request(state, instrument, reply).await?;
            }
            CoordinatorMsg::Status(reply) => {
                let _ = reply.send(CoordinatorStatus {
                    instance: state.args.instance.clone(),
                    topics: state.book.values().cloned().collect(),
                    failures: state.failures,
                    run: state.fsm.snapshot(),
                });
            }
        }
        Ok(())
    }
}

/// One `REQUEST_CREATE_TOPIC`; an error return fails the actor (it is in
/// Error by then, and the requester has its answer).
async fn request<B: RecordBus>(
    state: &mut CoordinatorState<B>,
    instrument: Instrument,
    reply: RpcReplyPort<Result<DynamicTopic, CoordinatorError>>,
) -> Result<(), ActorProcessingErr> {
    let topic = match topic_for(&state.args.settings.topic_prefix, &instrument) {
        Ok(t) => t,
        Err(err) => {
            // Bad input, not a failure of the platform: no machine step.
            tracing::warn!(%instrument, error = %err, "refused a dynamic topic request");
            let _ = reply.send(Err(err.into()));
            return Ok(());
        }
    };
    if let Some(grant) = state.book.get(&instrument).cloned() {
        if still_served(state, &grant).await {
            tracing::debug!(%instrument, topic = %grant.topic, "dynamic topic already served");
            let _ = reply.send(Ok(grant));
            return Ok(());
        }
        state.book.remove(&instrument);
    }
    let started = std::time::Instant::now();
    match arrange(state, &instrument, &topic).await {
        Ok(grant) => {
            tracing::info!(
                %instrument,
                topic = %grant.topic,
                consumer = %grant.consumer,
                producer = %grant.producer,
                history_bars = grant.history_bars,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "dynamic topic arranged"
            );
            state.book.insert(instrument, grant.clone());
            let _ = reply.send(Ok(grant));
            Ok(())
        }
        Err(err) => {
            state.failures += 1;
            tracing::error!(%instrument, %topic, state = %state.fsm.state(), error = %err, "dynamic topic request failed");
            let _ = reply.send(Err(err.clone()));
            if state.fsm.in_error() {
                Err(err.into())
            } else {
                Ok(())
            }
        }
    }
}

/// Whether the consumer of `grant` is still there and still on its topic.
async fn still_served<B>(state: &CoordinatorState<B>, grant: &DynamicTopic) -> bool {
    let s = &state.args;
    match consumer_status(
        s.directory.as_ref(),
        &grant.consumer,
        s.settings.call_timeout,
    )
    .await
    {
        Ok(status) => status.topic.as_deref() == Some(grant.topic.as_str()),
        Err(_) => false,
    }
}

/// The machine's cycle: create the topic, then notify.
async fn arrange<B: RecordBus>(
    state: &mut CoordinatorState<B>,
    instrument: &Instrument,
    topic: &str,
) -> Result<DynamicTopic, CoordinatorError> {
    let step = |fsm: &mut Fsm<Machine>, e: Event| {
        fsm.fire(e)
            .map(|_| ())
            .map_err(|r| CoordinatorError::Machine(r.to_string()))
    };
    step(&mut state.fsm, Event::RequestCreateTopic)?;
    // Processing Create Topic.
    if let Err(err) = state
        .args
        .bus
        .ensure_topic(topic, state.args.settings.partitions)
        .await
    {
        step(&mut state.fsm, Event::CreateTopicFailure)?;
        return Err(CoordinatorError::CreateTopic {
            topic: topic.to_owned(),
            error: err,
        });
    }
    step(&mut state.fsm, Event::CreateTopicSuccess)?;
    // Notifying Actors.
    match notify(state, instrument, topic).await {
        Ok(grant) => {
            step(&mut state.fsm, Event::NotifySuccess)?;
            Ok(grant)
        }
        Err(err) => {
            step(&mut state.fsm, Event::NotifyFailure)?;
            Err(err)
        }
    }
}

/// Subscribes a consumer, then has a producer serve the topic.
async fn notify<B>(
    state: &mut CoordinatorState<B>,
    instrument: &Instrument,
    topic: &str,
) -> Result<DynamicTopic, CoordinatorError> {
    let dir = Arc::clone(&state.args.directory);
    let settings = state.args.settings.clone();

    // 1. The consumer.
    let mut consumers = Vec::new();
    for name in names(&dir.members(DYNAMIC_CONSUMERS)) {
        match consumer_status(dir.as_ref(), &name, settings.call_timeout).await {
            Ok(s) => consumers.push(ConsumerInfo {
                idle: s.idle,
                topic: s.topic,
                name,
            }),
            Err(err) => {
                tracing::warn!(consumer = %name, error = %err, "dynamic consumer did not answer; skipped")
            }
        }
    }
    let agents = names(&dir.members(CONSUMER_AGENTS));
    state.turn = state.turn.wrapping_add(1);
    let consumer = match choose_consumer(topic, &consumers, &agents, state.turn) {
        ConsumerChoice::Reuse(name) | ConsumerChoice::Idle(name) => name,
        ConsumerChoice::StartOn(agent) => {
            let name = async {
                let cell = dir.resolve(&agent)?;
                let start = AgentMsg::StartDynamicConsumer;
                call_result(&cell, &agent, start, settings.call_timeout).await
            }
            .await
            .map_err(|e| CoordinatorError::Agent(Box::new(e)))?;
            tracing::info!(%agent, consumer = %name, "an agent started a dynamic consumer");
            name
        }
        ConsumerChoice::Nobody => return Err(CoordinatorError::NoConsumer),
    };
    async {
        let cell = dir.resolve(&consumer)?;
        let subscribe = |reply| DynamicConsumerMsg::Subscribe(topic.to_owned(), reply);
        call_result(&cell, &consumer, subscribe, settings.call_timeout).await
    }
    .await
    .map_err(|e| CoordinatorError::Consumer(Box::new(e)))?;

    // 2. The producer.
    let producer = choose_producer(instrument, &names(&dir.members(PRODUCERS)))
        .ok_or(CoordinatorError::NoProducer)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (from_ts, to_ts) = history_window(now, settings.history_minutes);
    let report: FetchReport = async {
        let cell = dir.resolve(&producer)?;
        let serve = |reply| ProducerMsg::ServeDynamic {
            instrument: instrument.clone(),
            topic: topic.to_owned(),
            from_ts,
            to_ts,
            reply,
        };
        call_result(&cell, &producer, serve, settings.producer_timeout).await
    }
    .await
    .map_err(|e| CoordinatorError::Producer(Box::new(e)))?;
    Ok(DynamicTopic {
        instrument: instrument.clone(),
        topic: topic.to_owned(),
        consumer,
        producer,
        history_from: from_ts,
        history_to: to_ts,
        history_bars: report.bars as u64,
    })
}

/// The status of the dynamic consumer holding `name`.
async fn consumer_status(
    dir: &dyn Directory,
    name: &str,
    timeout: Duration,
) -> Result<DynamicConsumerStatus, CallError> {
    call(
        &dir.resolve(name)?,
        name,
        DynamicConsumerMsg::Status,
        timeout,
    )
    .await
}

/// The names of `cells` (stand-ins of remote actors carry them too).
fn names(cells: &[ActorCell]) -> Vec<String> {
    let mut out: Vec<String> = cells.iter().filter_map(ActorCell::get_name).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, topic: Option<&str>, idle: bool) -> ConsumerInfo {
        ConsumerInfo {
            name: name.into(),
            topic: topic.map(Into::into),
            idle,
        }
    }

    #[test]
    fn a_consumer_already_on_the_topic_is_reused() {
        let consumers = [c("b", None, true), c("a", Some("t"), false)];
        assert_eq!(
            choose_consumer("t", &consumers, &["agent/x".into()], 0),
            ConsumerChoice::Reuse("a".into())
        );
    }

    #[test]
    fn else_the_first_idle_one_without_a_topic() {
        let consumers = [
            c("c", None, true),
            c("a", Some("other"), false),
            // Restarting: in Idle but still assigned (it will be re-told).
            c("b", Some("x"), true),
            c("d", None, false),
        ];
        assert_eq!(
            choose_consumer("t", &consumers, &[], 0),
            ConsumerChoice::Idle("c".into())
        );
    }

    #[test]
    fn else_an_agent_in_turn_else_nobody() {
        let busy = [c("a", Some("other"), false)];
        let agents: Vec<String> = vec!["agent/n2".into(), "agent/n1".into()];
        assert_eq!(
            choose_consumer("t", &busy, &agents, 0),
            ConsumerChoice::StartOn("agent/n1".into())
        );
        assert_eq!(
            choose_consumer("t", &busy, &agents, 1),
            ConsumerChoice::StartOn("agent/n2".into())
        );
        assert_eq!(choose_consumer("t", &busy, &[], 3), ConsumerChoice::Nobody);
    }

    #[test]
    fn producer_choice_is_stable_and_total() {
        let i: Instrument = "Binance:SOL-USDT".parse().unwrap();
        assert_eq!(choose_producer(&i, &[]), None);
        let ps: Vec<String> = vec!["producer/b".into(), "producer/a".into()];
        let first = choose_producer(&i, &ps).unwrap();
        assert!(ps.contains(&first));
        let reversed: Vec<String> = ps.iter().rev().cloned().collect();
        assert_eq!(choose_producer(&i, &reversed).unwrap(), first);
    }

    #[test]
    fn history_window_ends_at_the_last_closed_minute() {
        assert_eq!(history_window(1_000_030, 3), (999_840, 999_960));
        assert_eq!(history_window(1_000_020, 0), (999_960, 999_960));
    }
}
