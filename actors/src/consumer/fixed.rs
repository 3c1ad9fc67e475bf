//! The Consumer for fixed topics: a member of a Kafka consumer group on
//! `tick-data`, running [`Pipeline`] cycles back to back.
//!
//! ```text
//!  supervisor
//!     └── consumer-fixed  (this actor; machine: machines::consumer_fixed)
//! ```
//!
//! The actor sends itself `Poll` after every cycle, so status requests are
//! answered between cycles. A failed cycle leaves the machine in Error and
//! fails the actor; its supervisor restarts it (`RESET`) with a new group
//! member, and the uncommitted batch is delivered again.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;

use super::pipeline::{ConsumerMetrics, Decode, MetricsSnapshot, Pipeline};
use super::OpenStream;
use crate::fsm::runtime::DEFAULT_HISTORY;
use crate::fsm::{Fsm, RunSnapshot, RunView};
use crate::machines::consumer_fixed::Event;
use crate::machines::ConsumerFixed as Machine;
use crate::ports::DeadLetters;
use crate::store::{BarCache, BarStore};
use crate::supervisor::Transient;

/// How a fixed consumer is configured and what it talks to.
pub struct FixedConsumerArgs<O, D, T, C> {
    /// Instance (registry) name.
    pub instance: String,
    /// Opens the subscription.
    pub streams: Arc<O>,
    /// Consumer group.
    pub group: String,
    /// Topics (normally just `tick-data`).
    pub topics: Vec<String>,
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
    /// True when this instance replaces one that failed.
    pub restarted: bool,
}

impl<O, D, T, C> Clone for FixedConsumerArgs<O, D, T, C> {
    fn clone(&self) -> Self {
        Self {
            instance: self.instance.clone(),
            streams: Arc::clone(&self.streams),
            group: self.group.clone(),
            topics: self.topics.clone(),
            dead_letters: Arc::clone(&self.dead_letters),
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            sink: Arc::clone(&self.sink),
            decode: self.decode,
            batch_max: self.batch_max,
            batch_wait: self.batch_wait,
            metrics: Arc::clone(&self.metrics),
            restarted: self.restarted,
        }
    }
}

/// What a fixed consumer reports.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    /// Instance name.
    pub instance: String,
    /// Counters.
    pub metrics: MetricsSnapshot,
    /// The machine's run.
    pub run: RunSnapshot,
}

/// Messages to a fixed consumer.
pub enum FixedConsumerMsg {
    /// Run the next cycle (sent by the actor to itself).
    Poll,
    /// Counters and run.
    Status(RpcReplyPort<ConsumerStatus>),
    /// A shared handle on the run.
    View(RpcReplyPort<RunView>),
}

impl ractor::Message for FixedConsumerMsg {}

type Ports<O, D, T, C> = fn() -> (O, D, T, C);

/// The Consumer for fixed topics.
pub struct FixedConsumer<O, D, T, C>(PhantomData<Ports<O, D, T, C>>);

impl<O, D, T, C> Default for FixedConsumer<O, D, T, C> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// The actor's state.
pub struct FixedConsumerState<O: OpenStream, D, T, C> {
    instance: String,
    fsm: Fsm<Machine>,
    pipeline: Pipeline<O::Stream, D, T, C>,
    batch_max: usize,
    batch_wait: Duration,
    span: tracing::Span,
}

impl<O, D, T, C> Actor for FixedConsumer<O, D, T, C>
where
    O: OpenStream,
    D: DeadLetters,
    T: BarStore,
    C: BarCache,
{
    type Msg = FixedConsumerMsg;
    type State = FixedConsumerState<O, D, T, C>;
    type Arguments = FixedConsumerArgs<O, D, T, C>;

    async fn pre_start(
        &self,
        myself: ActorRef<FixedConsumerMsg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let fsm = if args.restarted {
            Fsm::after_reset(args.instance.clone(), DEFAULT_HISTORY, Event::Reset)
        } else {
            Fsm::new(args.instance.clone())
        };
        // A predecessor may have died between its commit and its cache write:
        // stop trusting cached ranges until they are filled again.
        if let Err(err) = args.cache.invalidate_all().await {
            tracing::warn!(instance = %args.instance, error = %err, "could not invalidate the cache at start");
        }
        // The bus being away is an outage to wait out, not a crash loop.
        let stream = args
            .streams
            .open(&args.group, &args.topics)
            .await
            .map_err(|e| Transient(format!("opening the subscription: {e}")))?;
        tracing::info!(instance = %args.instance, group = %args.group, topics = ?args.topics, "consumer started");
        myself.cast(FixedConsumerMsg::Poll)?;
        Ok(FixedConsumerState {
            span: crate::telemetry::actor_span("consumer-fixed", &args.instance),
            instance: args.instance,
            fsm,
            pipeline: Pipeline {
                stream,
                dead_letters: args.dead_letters,
                store: args.store,
                cache: args.cache,
                sink: args.sink,
                decode: args.decode,
                metrics: args.metrics,
            },
            batch_max: args.batch_max.max(1),
            batch_wait: args.batch_wait,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<FixedConsumerMsg>,
        message: FixedConsumerMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let span = state.span.clone();
        crate::telemetry::in_span(&span, async {
            match message {
                FixedConsumerMsg::Poll => {
                    match state
                        .pipeline
                        .cycle(&mut state.fsm, state.batch_max, state.batch_wait)
                        .await
                    {
                        Ok(_) => myself.cast(FixedConsumerMsg::Poll)?,
                        Err(err) => {
                            state
                                .pipeline
                                .metrics
                                .failures
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            metrics::counter!(crate::telemetry::CONSUMER_FAILURES).increment(1);
                            tracing::error!(
                                state = %state.fsm.state(),
                                transient = err.is_transient(),
                                error = %err,
                                "consumer cycle failed"
                            );
                            return Err(err.into_failure());
                        }
                    }
                }
                FixedConsumerMsg::Status(reply) => {
                    let _ = reply.send(ConsumerStatus {
                        instance: state.instance.clone(),
                        metrics: state.pipeline.metrics.snapshot(),
                        run: state.fsm.snapshot(),
                    });
                }
                FixedConsumerMsg::View(reply) => {
                    let _ = reply.send(state.fsm.view());
                }
            }
            Ok(())
        })
        .await
    }
}
