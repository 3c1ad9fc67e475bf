//! The consumers: Kafka → database → cache, exactly once per distinct tick.
//!
//! [`pipeline`] is the cycle both consumers share; [`fixed`] is the Consumer
//! for fixed topics (`tick-data`); [`dynamic`] is the Consumer for dynamic
//! topics (one topic per instrument, given by the Coordinator).

pub mod dynamic;
pub mod fixed;
pub mod pipeline;
pub mod watchdog;

pub use pipeline::{ConsumerMetrics, Decode, MetricsSnapshot, Pipeline, PipelineMachine};

use std::future::Future;

use crate::ports::{BusError, MessageStream};

/// Opens a fresh subscription (a new group member) each time a consumer starts
/// or is restarted.
pub trait OpenStream: Send + Sync + 'static {
    /// The subscription.
    type Stream: MessageStream;

    /// Subscribes to `topics` in consumer group `group`.
    fn open(
        &self,
        group: &str,
        topics: &[String],
    ) -> impl Future<Output = Result<Self::Stream, BusError>> + Send;
}
