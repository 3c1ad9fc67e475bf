//! The Coordinator: arranges, and keeps, the dynamic instruments — those the
//! platform was asked for on demand (the Data Not Found path) — driven by the
//! seed's machine (`machines::coordinator`):
//!
//! ```text
//!        (the source lists the pair? one history call, through a producer)
//! Active --REQUEST_CREATE_TOPIC--> Processing Create Topic   the durable record, then the topic
//!        --CREATE_TOPIC_SUCCESS--> Notifying Actors          by cluster name:
//!              1. a Consumer for dynamic topics: SUBSCRIBE_TO_TOPIC
//!                 (one already on the topic, else an idle one, else one that
//!                 an agent starts on a consumer node);
//!              2. a producer: stream the instrument live to the topic, and
//!                 publish its history there
//!        --NOTIFY_SUCCESS-->       Active                    answer the requesters
//! ```
//!
//! **Check before creating.** Nothing is created for a pair the source does
//! not list: a producer asks the source first
//! ([`ProducerMsg::Probe`](crate::producer::ProducerMsg::Probe)), and
//! an unknown pair is answered [`CoordinatorError::UnknownPair`] with the
//! source's message, with no machine step and no restart. A failure after
//! something was created undoes it (the consumer it started, the producer's
//! live stream, the durable record) before the machine goes to Error; the
//! actor then fails and its supervisor restarts it (`RESET` → Active).
//!
//! **Bounded and fair.** At most `max_instruments` dynamic instruments
//! ([`CoordinatorError::LimitReached`]), at most `creations_per_minute` new
//! ones (a token bucket, [`CoordinatorError::RateLimited`] with the wait).
//! Requests for an instrument already being arranged join it (one creation,
//! however many ask). The work is done in a task, outside the mailbox: the
//! mailbox answers status, joins and refusals at once while a slow source
//! holds one creation; creations run one at a time, in order of arrival,
//! each one run of the machine (the task reports each step, the actor fires
//! it).
//!
//! **Durable.** Every dynamic instrument is a row of the registry
//! ([`DynamicRegistry`], in the system of record). At start, on every change
//! of the cluster's membership (the process groups of producers, consumers
//! and agents), and every `reconcile_every`, the active coordinator
//! reconciles: every stored instrument has a producer streaming it (told
//! again, with the last `reconcile_history_minutes` of history, when its
//! producer restarted) and a Consumer for dynamic topics reading its topic
//! (started on a live consumer node when its node died; it resumes from the
//! topic group's committed offsets). Reconciling is upkeep, not a request:
//! it makes no machine step.
//!
//! **One active coordinator.** Several nodes may run one; only the holder of
//! the cluster name [`directory::COORDINATOR_NAME`] is asked and reconciles
//! (the node's election gives the name to one, `node::cluster::election`).
//! If two hold it for a moment (a partition), both may act: every step is
//! idempotent (the registry's key, topic creation, the consumer already on
//! a topic reused, history published twice changing no bar).

pub mod directory;
mod messages;
mod plan;
pub mod topic;
mod work;

pub use directory::Directory;
pub use messages::{
    AgentError, AgentMsg, CoordinatorMsg, CoordinatorStatus, DynamicTopic, ReconcileReport, Step,
};
pub use plan::{choose_consumer, choose_producer, history_window, ConsumerChoice, ConsumerInfo};
pub use topic::{topic_for, TopicNameError};

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde::{Deserialize, Serialize};

use crate::call::Failed;
use crate::consumer::dynamic::SubscribeError;
use crate::domain::Instrument;
use crate::fsm::runtime::DEFAULT_HISTORY;
use crate::fsm::Fsm;
use crate::machines::coordinator::Event;
use crate::machines::Coordinator as Machine;
use crate::ports::{BusError, RecordBus};
use crate::producer::ProducerError;
use crate::store::dynamic::{DynamicRecord, DynamicRegistry, DynamicState};
use crate::supervisor::Transient;

/// How the Coordinator works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorSettings {
    /// Prefix of dynamic topics (see [`topic`]).
    pub topic_prefix: String,
    /// The consumer group of topic `t` is `{group_prefix}.{t}`.
    pub group_prefix: String,
    /// Partitions of each dynamic topic.
    pub partitions: i32,
    /// Closed minutes of history the producer publishes to a new topic.
    pub history_minutes: i64,
    /// Closed minutes of history a producer told again (after a restart)
    /// publishes: the gap it left.
    pub reconcile_history_minutes: i64,
    /// Longest wait for a consumer's or an agent's answer.
    pub call_timeout: Duration,
    /// Longest wait for the producer's answer (it fetches and publishes the
    /// history first).
    pub producer_timeout: Duration,
    /// The most dynamic instruments.
    pub max_instruments: usize,
    /// The most new dynamic instruments a minute (a burst of as many).
    pub creations_per_minute: u32,
    /// How often the active coordinator reconciles, besides on membership
    /// changes.
    pub reconcile_every: Duration,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        Self {
            topic_prefix: topic::DEFAULT_PREFIX.into(),
            group_prefix: "candela-dynamic".into(),
            partitions: 1,
            history_minutes: 120,
            reconcile_history_minutes: 30,
            call_timeout: Duration::from_secs(10),
            producer_timeout: Duration::from_secs(60),
            max_instruments: 50,
            creations_per_minute: 10,
            reconcile_every: Duration::from_secs(30),
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
    /// The durable book of dynamic instruments.
    pub registry: Arc<dyn DynamicRegistry>,
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
            registry: Arc::clone(&self.registry),
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
    /// The source does not list the pair (no machine step; nothing created).
    #[error("the source does not list {instrument}: {message}")]
    UnknownPair {
        /// The instrument.
        instrument: Instrument,
        /// The source's message.
        message: String,
    },
    /// The platform holds the most dynamic instruments it may.
    #[error("the platform already serves {max} dynamic instruments, the most it may (dynamic.max_instruments)")]
    LimitReached {
        /// The limit.
        max: usize,
    },
    /// Too many new dynamic instruments were asked for lately.
    #[error("too many new instruments asked for; ask again in {retry_after_ms} ms")]
    RateLimited {
        /// When to ask again.
        retry_after_ms: u64,
    },
    /// The instrument is being removed.
    #[error("{instrument} is being removed")]
    Removing {
        /// The instrument.
        instrument: Instrument,
    },
    /// The registry (the system of record) failed.
    #[error("the dynamic instruments' registry: {0}")]
    Registry(String),
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
    /// The producer did not serve the topic (live stream and history), or
    /// could not say whether the source lists the pair.
    #[error("the producer: {0}")]
    Producer(Box<Failed<ProducerError>>),
    /// The coordinator stopped before the creation ended (it is restarted;
    /// ask again).
    #[error("the coordinator stopped during the creation; ask again")]
    Interrupted,
    /// The machine refused a step (a bug).
    #[error("machine: {0}")]
    Machine(String),
}

impl CoordinatorError {
    /// Whether this is an answer about the request itself (an unknown pair,
    /// a limit, an invalid name), as opposed to a failure of the platform.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            CoordinatorError::Topic(_)
                | CoordinatorError::UnknownPair { .. }
                | CoordinatorError::LimitReached { .. }
                | CoordinatorError::RateLimited { .. }
                | CoordinatorError::Removing { .. }
        )
    }
}

type Reply = RpcReplyPort<Result<DynamicTopic, CoordinatorError>>;

/// A creation (or a re-arrangement of a known instrument), with everyone
/// waiting for it.
struct Job {
    instrument: Instrument,
    topic: String,
    /// Already in the registry: no probe, no limit, no new record.
    known: bool,
    replies: Vec<Reply>,
}

type Ports<B> = fn() -> B;

/// The Coordinator actor.
pub struct Coordinator<B>(PhantomData<Ports<B>>);

impl<B> Default for Coordinator<B> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// A task that is aborted when the actor's state goes.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The actor's state.
pub struct CoordinatorState<B> {
    span: tracing::Span,
    args: CoordinatorArgs<B>,
    fsm: Fsm<Machine>,
    /// The registry as last read (kept in step with every change).
    known: BTreeMap<Instrument, DynamicRecord>,
    /// The last arrangement of each instrument.
    granted: BTreeMap<Instrument, DynamicTopic>,
    current: Option<(Job, Task)>,
    queue: VecDeque<Job>,
    limiter: DefaultDirectRateLimiter,
    failures: u64,
    /// A reconciliation is running (`Some`), and whether another is due
    /// after it.
    reconciling: Option<(Task, bool)>,
    /// A reconciliation is due once the current creation ends (they would
    /// race: the reconciliation could tell a producer a second time).
    reconcile_after_job: bool,
    last_reconcile: Option<ReconcileReport>,
}

impl<B: RecordBus> Actor for Coordinator<B> {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState<B>;
    type Arguments = CoordinatorArgs<B>;

    async fn pre_start(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        topic::check_prefix(&args.settings.topic_prefix)?;
        let fsm = if args.restarted {
            Fsm::after_reset(args.instance.clone(), DEFAULT_HISTORY, Event::Reset)
        } else {
            Fsm::new(args.instance.clone())
        };
        // The database being away is an outage, not a crash loop.
        let known = args
            .registry
            .list()
            .await
            .map_err(|e| Transient(format!("reading the dynamic instruments: {e}")))?
            .into_iter()
            .map(|r| (r.instrument.clone(), r))
            .collect();
        let per_minute =
            NonZeroU32::new(args.settings.creations_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let limiter = DefaultDirectRateLimiter::direct(Quota::per_minute(per_minute));
        // Reconcile on every membership change, now, and every so often.
        args.directory.watch(&myself.get_cell());
        myself.send_interval(args.settings.reconcile_every, || CoordinatorMsg::Reconcile);
        myself.cast(CoordinatorMsg::Reconcile)?;
        tracing::info!(
            instance = %args.instance,
            prefix = %args.settings.topic_prefix,
            dynamic = ?known_names(&known),
            "coordinator started"
        );
        Ok(CoordinatorState {
            span: crate::telemetry::actor_span("coordinator", &args.instance),
            args,
            fsm,
            known,
            granted: BTreeMap::new(),
            current: None,
            queue: VecDeque::new(),
            limiter,
            failures: 0,
            reconciling: None,
            reconcile_after_job: false,
            last_reconcile: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        message: CoordinatorMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        crate::telemetry::in_span(&span, async {
            match message {
                CoordinatorMsg::RequestCreateTopic(instrument, reply) => {
                    request(&myself, state, instrument, reply);
                }
                CoordinatorMsg::Step(step) => on_step(&myself, state, step)?,
                CoordinatorMsg::Reconcile => reconcile(&myself, state),
                CoordinatorMsg::Reconciled(report) => {
                    if !report.skipped {
                        state.known = report
                            .instruments
                            .iter()
                            .map(|r| (r.instrument.clone(), r.clone()))
                            .collect();
                    }
                    let again = state.reconciling.take().is_some_and(|(_, again)| again);
                    state.last_reconcile = Some(report);
                    if again {
                        reconcile(&myself, state);
                    }
                }
                CoordinatorMsg::Remove(instrument, reply) => {
                    let ctx = work::Ctx::of(&state.args);
                    let me = myself.clone();
                    crate::telemetry::spawn_in_span(async move {
                        let result = work::remove(&ctx, &instrument).await;
                        let _ = reply.send(result);
                        let _ = me.cast(CoordinatorMsg::Reconcile);
                    });
                }
                CoordinatorMsg::List(reply) => {
                    let _ = reply.send(Ok(state.known.values().cloned().collect()));
                }
                CoordinatorMsg::Status(reply) => {
                    let _ = reply.send(CoordinatorStatus {
                        instance: state.args.instance.clone(),
                        topics: state.granted.values().cloned().collect(),
                        instruments: state.known.values().cloned().collect(),
                        creating: state.current.as_ref().map(|(j, _)| j.instrument.clone()),
                        queued: state.queue.len(),
                        failures: state.failures,
                        last_reconcile: state.last_reconcile.clone(),
                        run: state.fsm.snapshot(),
                    });
                }
            }
            Ok(())
        })
        .await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(_) = event {
            reconcile(&myself, state);
        }
        Ok(())
    }
}

fn known_names(known: &BTreeMap<Instrument, DynamicRecord>) -> Vec<String> {
    known.keys().map(ToString::to_string).collect()
}

/// A `REQUEST_CREATE_TOPIC`: refused, joined to the job for its instrument,
/// or queued as a new job.
fn request<B: RecordBus>(
    myself: &ActorRef<CoordinatorMsg>,
    state: &mut CoordinatorState<B>,
    instrument: Instrument,
    reply: Reply,
) {
    let refuse = |reply: Reply, err: CoordinatorError| {
        tracing::info!(error = %err, "dynamic instrument request refused");
        let _ = reply.send(Err(err));
    };
    let topic = match topic_for(&state.args.settings.topic_prefix, &instrument) {
        Ok(t) => t,
        // Bad input, not a failure of the platform: no machine step.
        Err(err) => return refuse(reply, err.into()),
    };
    // One creation per instrument, however many ask.
    if let Some((job, _)) = state
        .current
        .as_mut()
        .filter(|(j, _)| j.instrument == instrument)
    {
        job.replies.push(reply);
        return;
    }
    if let Some(job) = state.queue.iter_mut().find(|j| j.instrument == instrument) {
        job.replies.push(reply);
        return;
    }
    let known = match state.known.get(&instrument) {
        Some(r) if r.state == DynamicState::Removing => {
            return refuse(reply, CoordinatorError::Removing { instrument });
        }
        Some(_) => true,
        None => false,
    };
    if !known {
        let pending_new = state
            .queue
            .iter()
            .chain(state.current.as_ref().map(|(j, _)| j))
            .filter(|j| !j.known)
            .count();
        let max = state.args.settings.max_instruments;
        if state.known.len() + pending_new >= max {
            return refuse(reply, CoordinatorError::LimitReached { max });
        }
        if let Err(not_until) = state.limiter.check() {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            return refuse(reply, CoordinatorError::RateLimited { retry_after_ms });
        }
    }
    state.queue.push_back(Job {
        instrument,
        topic,
        known,
        replies: vec![reply],
    });
    start_next(myself, state);
}

/// Starts the next queued job unless one runs (or a reconciliation due
/// after the last one, first).
fn start_next<B: RecordBus>(myself: &ActorRef<CoordinatorMsg>, state: &mut CoordinatorState<B>) {
    if state.current.is_some() {
        return;
    }
    if std::mem::take(&mut state.reconcile_after_job) {
        reconcile(myself, state);
    }
    let Some(job) = state.queue.pop_front() else {
        return;
    };
    let ctx = work::Ctx::of(&state.args);
    let (instrument, topic, known) = (job.instrument.clone(), job.topic.clone(), job.known);
    let me = myself.clone();
    tracing::info!(%instrument, %topic, known, "arranging a dynamic instrument");
    let task = crate::telemetry::spawn_in_span(async move {
        work::arrange(&ctx, &me, instrument, topic, known).await;
    });
    state.current = Some((job, Task(task)));
}

/// A step of the current job: fires it, and answers the requesters at the
/// end.
fn on_step<B: RecordBus>(
    myself: &ActorRef<CoordinatorMsg>,
    state: &mut CoordinatorState<B>,
    step: Step,
) -> Result<(), ActorProcessingErr> {
    let fire = |fsm: &mut Fsm<Machine>, e: Event| {
        fsm.fire(e)
            .map(|_| ())
            .map_err(|r| CoordinatorError::Machine(r.to_string()))
    };
    let current = state.current.as_ref().map(|(j, _)| j.instrument.clone());
    if current.as_ref() != Some(step.instrument()) {
        tracing::warn!(instrument = %step.instrument(), "a step of a job that is not running: ignored");
        return Ok(());
    }
    let outcome: Option<Result<DynamicTopic, CoordinatorError>> = match step {
        Step::Probed { result: Ok(()), .. } => {
            fire(&mut state.fsm, Event::RequestCreateTopic).map_err(fail)?;
            None
        }
        // Nothing was created: no machine step.
        Step::Probed {
            result: Err(err), ..
        } => Some(Err(err)),
        Step::TopicCreated { result: Ok(()), .. } => {
            fire(&mut state.fsm, Event::CreateTopicSuccess).map_err(fail)?;
            None
        }
        Step::TopicCreated {
            result: Err(err), ..
        } => {
            fire(&mut state.fsm, Event::CreateTopicFailure).map_err(fail)?;
            Some(Err(err))
        }
        Step::Done {
            result: Ok(grant), ..
        } => {
            fire(&mut state.fsm, Event::NotifySuccess).map_err(fail)?;
            Some(Ok(grant))
        }
        Step::Done {
            result: Err(err), ..
        } => {
            fire(&mut state.fsm, Event::NotifyFailure).map_err(fail)?;
            Some(Err(err))
        }
    };
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let Some((job, _task)) = state.current.take() else {
        return Ok(());
    };
    match &outcome {
        Ok(grant) => {
            tracing::info!(
                instrument = %grant.instrument,
                topic = %grant.topic,
                consumer = %grant.consumer,
                producer = %grant.producer,
                traded_minutes = grant.history_bars,
                waiting = job.replies.len(),
                "dynamic instrument arranged"
            );
            state.known.insert(
                job.instrument.clone(),
                DynamicRecord {
                    instrument: job.instrument.clone(),
                    topic: job.topic.clone(),
                    group: work::group_of(&state.args.settings, &job.topic),
                    created_at: crate::domain::validate::now_secs(),
                    state: DynamicState::Active,
                },
            );
            state.granted.insert(job.instrument.clone(), grant.clone());
        }
        Err(err) if err.is_refusal() => {
            tracing::info!(instrument = %job.instrument, error = %err, "dynamic instrument refused")
        }
        Err(err) => {
            state.failures += 1;
            tracing::error!(instrument = %job.instrument, state = %state.fsm.state(), error = %err, "dynamic instrument not arranged");
        }
    }
    for reply in job.replies {
        let _ = reply.send(outcome.clone());
    }
    if state.fsm.in_error() {
        // RESET through the supervisor. The failure is the environment's (a
        // broker, a node, a producer), not a crash loop.
        let reason = outcome.err().map_or_else(String::new, |e| e.to_string());
        return Err(Box::new(Transient(reason)));
    }
    start_next(myself, state);
    Ok(())
}

fn fail(err: CoordinatorError) -> ActorProcessingErr {
    Box::new(err)
}

/// Starts a reconciliation, or asks for one more after the running one (or
/// after the creation in progress).
fn reconcile<B: RecordBus>(myself: &ActorRef<CoordinatorMsg>, state: &mut CoordinatorState<B>) {
    if state.current.is_some() {
        state.reconcile_after_job = true;
        return;
    }
    if let Some((_, again)) = state.reconciling.as_mut() {
        *again = true;
        return;
    }
    let ctx = work::Ctx::of(&state.args);
    let me = myself.clone();
    let task = crate::telemetry::spawn_in_span(async move {
        let report = work::reconcile(&ctx, &me.get_cell()).await;
        let _ = me.cast(CoordinatorMsg::Reconciled(report));
    });
    state.reconciling = Some((Task(task), false));
}

/// Asks the coordinator holding [`directory::COORDINATOR_NAME`] to serve
/// `instrument`, and waits at most `timeout`.
pub async fn request_instrument(
    directory: &dyn Directory,
    instrument: Instrument,
    timeout: Duration,
) -> Result<DynamicTopic, Failed<CoordinatorError>> {
    let name = directory::COORDINATOR_NAME;
    let cell = directory.resolve(name)?;
    crate::call::call_result(
        &cell,
        name,
        |reply| CoordinatorMsg::RequestCreateTopic(instrument, reply),
        timeout,
    )
    .await
}
