//! The Consumer for dynamic topics, driven by the seed's machine
//! (`machines::consumer_dynamic`):
//!
//! ```text
//! Idle --SUBSCRIBE_TO_TOPIC--> Subscribing --SUBSCRIBE_SUCCESS--> Consuming
//!      Consuming --MESSAGE_RECEIVED--> … the shared cycle (pipeline.rs) … --> Consuming
//! ```
//!
//! It starts without a topic. The Coordinator, on any node, tells it one by its
//! cluster name ([`DynamicConsumerMsg::Subscribe`]); it joins the topic's own
//! consumer group (`{group_prefix}.{topic}`, reading from the earliest offset
//! when the group has none, so history published before the subscription is
//! consumed), then runs the same cycle as the fixed consumer — the same
//! exactly-once rules: offsets are committed only after the batch's
//! transaction and the cache update.
//!
//! **Re-telling the topic after a restart.** A failure (`SUBSCRIBE_FAILURE`,
//! or a failed cycle) leaves the machine in Error and fails the actor; its
//! supervisor restarts it, and the new instance's run starts with `RESET` →
//! Idle, without a topic, as the seed says. The topic it had is kept in its
//! [`Assignment`], a slot outside the actor owned by the child spec that the
//! node's agent handed to the supervisor ([`DynamicConsumer::child_spec`]). The
//! spec's start function, run by the supervisor on every restart, sends the new
//! instance `SUBSCRIBE_TO_TOPIC` with that topic at once. So the run reads
//! `Error → RESET → Idle → SUBSCRIBE_TO_TOPIC → Subscribing → Consuming`, the
//! group's committed offsets say where to resume, and the Coordinator is not
//! involved. A consumer reports its assigned topic in its status even while
//! it is restarting, so the Coordinator never mistakes it for an idle one.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use super::pipeline::{ConsumerMetrics, Decode, MetricsSnapshot, Pipeline};
use super::OpenStream;
use crate::fsm::runtime::DEFAULT_HISTORY;
use crate::fsm::{Fsm, RunSnapshot};
use crate::kafka::admin::is_valid_topic_name;
use crate::machines::consumer_dynamic::{Event, State};
use crate::machines::ConsumerDynamic as Machine;
use crate::ports::{BusError, DeadLetters};
use crate::store::{BarCache, BarStore};
use crate::supervisor::ChildSpec;

/// The topic a dynamic consumer was given, kept across its restarts.
pub type Assignment = Arc<Mutex<Option<String>>>;

/// How a dynamic consumer is configured and what it talks to.
pub struct DynamicConsumerArgs<O, D, T, C> {
    /// Instance (cluster) name, e.g. `consumer-dynamic/node-c/0`.
    pub instance: String,
    /// Opens subscriptions.
    pub streams: Arc<O>,
    /// The consumer group of topic `t` is `{group_prefix}.{t}`.
    pub group_prefix: String,
    /// Dead-letter publisher.
    pub dead_letters: Arc<D>,
    /// System of record.
    pub store: Arc<T>,
    /// Cache.
    pub cache: Arc<C>,
    /// Where committed rows go next (the live stream's feed).
    pub sink: Arc<dyn crate::feed::BarSink>,
    /// Payload decoder.
    pub decode: Decode,
    /// Most messages per batch.
    pub batch_max: usize,
    /// Longest wait for a batch's first message.
    pub batch_wait: Duration,
    /// Counters, kept across restarts.
    pub metrics: Arc<ConsumerMetrics>,
    /// The topic it was given, kept across restarts.
    pub assignment: Assignment,
    /// True when this instance replaces one that failed.
    pub restarted: bool,
}

impl<O, D, T, C> Clone for DynamicConsumerArgs<O, D, T, C> {
    fn clone(&self) -> Self {
        Self {
            instance: self.instance.clone(),
            streams: Arc::clone(&self.streams),
            group_prefix: self.group_prefix.clone(),
            dead_letters: Arc::clone(&self.dead_letters),
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            sink: Arc::clone(&self.sink),
            decode: self.decode,
            batch_max: self.batch_max,
            batch_wait: self.batch_wait,
            metrics: Arc::clone(&self.metrics),
            assignment: Arc::clone(&self.assignment),
            restarted: self.restarted,
        }
    }
}

/// What a dynamic consumer reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicConsumerStatus {
    /// Instance name.
    pub instance: String,
    /// The topic it was given (also while it is being restarted).
    pub topic: Option<String>,
    /// Whether its machine is in Idle.
    pub idle: bool,
    /// Its machine's state.
    pub state: String,
    /// Counters.
    pub metrics: MetricsSnapshot,
    /// The machine's run.
    pub run: RunSnapshot,
}

/// Why a dynamic consumer refused or failed a subscription. A serde type: the
/// Coordinator, on any node, gets it back from
/// [`DynamicConsumerMsg::Subscribe`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SubscribeError {
    /// It consumes another topic already.
    #[error("{consumer} already consumes `{topic}`")]
    AlreadyConsuming {
        /// The consumer.
        consumer: String,
        /// Its topic.
        topic: String,
    },
    /// It was given another topic before a restart, and is being re-told it.
    #[error("{consumer} is assigned `{topic}`")]
    Assigned {
        /// The consumer.
        consumer: String,
        /// Its topic.
        topic: String,
    },
    /// The name is not one Kafka accepts.
    #[error("`{topic}` is not a valid topic name")]
    InvalidTopic {
        /// The topic.
        topic: String,
    },
    /// The bus refused the subscription (`SUBSCRIBE_FAILURE`).
    #[error("subscribing to `{topic}` in group `{group}`: {error}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// The consumer group.
        group: String,
        /// The bus's error.
        error: BusError,
    },
    /// The consumer could not schedule its first cycle (it is stopping).
    #[error("{consumer} is stopping")]
    Stopping {
        /// The consumer.
        consumer: String,
    },
    /// The machine refused a step (a bug).
    #[error("machine: {0}")]
    Machine(String),
}

/// Messages to a dynamic consumer (they cross nodes).
#[derive(RactorClusterMessage)]
pub enum DynamicConsumerMsg {
    /// Run the next cycle (sent by the actor to itself).
    Poll,
    /// `SUBSCRIBE_TO_TOPIC`, without an answer (the re-tell after a restart).
    SubscribeToTopic(String),
    /// `SUBSCRIBE_TO_TOPIC`, answered once the subscription is in place
    /// (Consuming) or failed. Subscribing again to its own topic is a success
    /// that changes nothing; another topic is refused.
    #[rpc]
    Subscribe(String, RpcReplyPort<Result<(), SubscribeError>>),
    /// Topic, counters and run.
    #[rpc]
    Status(RpcReplyPort<DynamicConsumerStatus>),
}

type Ports<O, D, T, C> = fn() -> (O, D, T, C);

/// The Consumer for dynamic topics.
pub struct DynamicConsumer<O, D, T, C>(PhantomData<Ports<O, D, T, C>>);

impl<O, D, T, C> Default for DynamicConsumer<O, D, T, C> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// The actor's state.
pub struct DynamicConsumerState<O: OpenStream, D, T, C> {
    args: DynamicConsumerArgs<O, D, T, C>,
    fsm: Fsm<Machine>,
    topic: Option<String>,
    pipeline: Option<Pipeline<O::Stream, D, T, C>>,
    span: tracing::Span,
}

impl<O, D, T, C> DynamicConsumer<O, D, T, C>
where
    O: OpenStream,
    D: DeadLetters,
    T: BarStore,
    C: BarCache,
{
    /// The child spec for a supervisor: starts the consumer named
    /// `template.instance`, and on every restart re-sends it the topic of its
    /// [`Assignment`] (see the module docs).
    pub fn child_spec(template: DynamicConsumerArgs<O, D, T, C>) -> ChildSpec {
        let name = template.instance.clone();
        ChildSpec {
            name: name.clone(),
            start: Arc::new(move |sup, restarts| {
                let mut args = template.clone();
                args.restarted = restarts > 0;
                let name = name.clone();
                Box::pin(async move {
                    let assigned = lock(&args.assignment).clone();
                    let (actor, _) =
                        Actor::spawn_linked(Some(name.clone()), Self::default(), args, sup).await?;
                    if let (true, Some(topic)) = (restarts > 0, assigned) {
                        tracing::info!(consumer = %name, %topic, "re-telling a restarted consumer its topic");
                        let _ = actor.cast(DynamicConsumerMsg::SubscribeToTopic(topic));
                    }
                    Ok(actor.get_cell())
                })
            }),
        }
    }
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<O, D, T, C> Actor for DynamicConsumer<O, D, T, C>
where
    O: OpenStream,
    D: DeadLetters,
    T: BarStore,
    C: BarCache,
{
    type Msg = DynamicConsumerMsg;
    type State = DynamicConsumerState<O, D, T, C>;
    type Arguments = DynamicConsumerArgs<O, D, T, C>;

    async fn pre_start(
        &self,
        _myself: ActorRef<DynamicConsumerMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let fsm = if args.restarted {
            Fsm::after_reset(args.instance.clone(), DEFAULT_HISTORY, Event::Reset)
        } else {
            Fsm::new(args.instance.clone())
        };
        tracing::info!(instance = %args.instance, restarted = args.restarted, "dynamic consumer started (idle)");
        Ok(DynamicConsumerState {
            span: crate::telemetry::actor_span("consumer-dynamic", &args.instance),
            args,
            fsm,
            topic: None,
            pipeline: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DynamicConsumerMsg>,
        message: DynamicConsumerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        crate::telemetry::in_span(&span, async {
            match message {
                DynamicConsumerMsg::Poll => {
                    let Some(pipeline) = state.pipeline.as_mut() else {
                        return Ok(());
                    };
                    match pipeline
                        .cycle(
                            &mut state.fsm,
                            state.args.batch_max.max(1),
                            state.args.batch_wait,
                        )
                        .await
                    {
                        Ok(_) => myself.cast(DynamicConsumerMsg::Poll)?,
                        Err(err) => {
                            state
                                .args
                                .metrics
                                .failures
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            metrics::counter!(crate::telemetry::CONSUMER_FAILURES).increment(1);
                            tracing::error!(
                                topic = ?state.topic,
                                state = %state.fsm.state(),
                                transient = err.is_transient(),
                                error = %err,
                                "dynamic consumer cycle failed"
                            );
                            return Err(err.into_failure());
                        }
                    }
                }
                DynamicConsumerMsg::SubscribeToTopic(topic) => {
                    if let Err(err) = subscribe(&myself, state, topic).await {
                        tracing::warn!(error = %err, "subscription refused or failed");
                    }
                    if state.fsm.in_error() {
                        return Err("subscription failed".into());
                    }
                }
                DynamicConsumerMsg::Subscribe(topic, reply) => {
                    let result = subscribe(&myself, state, topic).await;
                    let _ = reply.send(result);
                    if state.fsm.in_error() {
                        return Err("subscription failed".into());
                    }
                }
                DynamicConsumerMsg::Status(reply) => {
                    let _ = reply.send(DynamicConsumerStatus {
                        instance: state.args.instance.clone(),
                        topic: state
                            .topic
                            .clone()
                            .or_else(|| lock(&state.args.assignment).clone()),
                        idle: state.fsm.state() == State::Idle,
                        state: state.fsm.state().to_string(),
                        metrics: state.args.metrics.snapshot(),
                        run: state.fsm.snapshot(),
                    });
                }
            }
            Ok(())
        })
        .await
    }
}

/// Idle → Subscribing → Consuming (or Error).
async fn subscribe<O, D, T, C>(
    myself: &ActorRef<DynamicConsumerMsg>,
    state: &mut DynamicConsumerState<O, D, T, C>,
    topic: String,
) -> Result<(), SubscribeError>
where
    O: OpenStream,
    D: DeadLetters,
    T: BarStore,
    C: BarCache,
{
    fn machine(rejection: impl std::fmt::Display) -> SubscribeError {
        SubscribeError::Machine(rejection.to_string())
    }
    if let Some(current) = &state.topic {
        return if *current == topic {
            Ok(())
        } else {
            Err(SubscribeError::AlreadyConsuming {
                consumer: state.args.instance.clone(),
                topic: current.clone(),
            })
        };
    }
    if let Some(assigned) = lock(&state.args.assignment).clone() {
        if assigned != topic {
            return Err(SubscribeError::Assigned {
                consumer: state.args.instance.clone(),
                topic: assigned,
            });
        }
    }
    if !is_valid_topic_name(&topic) {
        return Err(SubscribeError::InvalidTopic { topic });
    }
    state.fsm.fire(Event::SubscribeToTopic).map_err(machine)?;
    // A predecessor may have died between its commit and its cache write.
    if let Err(err) = state.args.cache.invalidate_all().await {
        tracing::warn!(error = %err, "could not invalidate the cache before subscribing");
    }
    let group = format!("{}.{topic}", state.args.group_prefix);
    match state
        .args
        .streams
        .open(&group, std::slice::from_ref(&topic))
        .await
    {
        Ok(stream) => {
            state.fsm.fire(Event::SubscribeSuccess).map_err(machine)?;
            state.pipeline = Some(Pipeline {
                stream,
                dead_letters: Arc::clone(&state.args.dead_letters),
                store: Arc::clone(&state.args.store),
                cache: Arc::clone(&state.args.cache),
                sink: Arc::clone(&state.args.sink),
                decode: state.args.decode,
                metrics: Arc::clone(&state.args.metrics),
            });
            *lock(&state.args.assignment) = Some(topic.clone());
            tracing::info!(%topic, %group, "subscribed to a dynamic topic");
            state.topic = Some(topic);
            myself
                .cast(DynamicConsumerMsg::Poll)
                .map_err(|_| SubscribeError::Stopping {
                    consumer: state.args.instance.clone(),
                })?;
            Ok(())
        }
        Err(error) => {
            let _ = state.fsm.fire(Event::SubscribeFailure);
            Err(SubscribeError::Subscribe {
                topic,
                group,
                error,
            })
        }
    }
}
