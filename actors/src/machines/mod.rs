//! The five platform machines, exactly as the seed gives them, with the seed's
//! gaps closed and each closure documented next to its table:
//!
//! | machine | seed section | states |
//! |---|---|---|
//! | [`producer::Producer`] | Producer Actor | 6 |
//! | [`coordinator::Coordinator`] | Coordinator Actor | 4 |
//! | [`consumer_fixed::ConsumerFixed`] | Consumer for Fixed Topics Actor | 5 |
//! | [`consumer_dynamic::ConsumerDynamic`] | Consumer for Dynamic Topics Actor | 7 |
//! | [`datastore::Datastore`] | Datastore (API Service) Actor | 9 |
//!
//! Outputs (λ) are the effects an actor performs on entering the next state;
//! the seed names none, so they are ours, chosen to describe the work.
//!
//! Two rules hold for every machine:
//!
//! * An event the current state has no transition for is rejected (a typed
//!   error from [`crate::fsm::Fsm::fire`]); the actor logs and counts it and stays
//!   where it is.
//! * `RESET` (Error → initial state) is taken by a supervisor restart: the failed
//!   actor is replaced by a fresh one under the same name, whose run begins with
//!   the `RESET` step.

pub mod consumer_dynamic;
pub mod consumer_fixed;
pub mod coordinator;
pub mod datastore;
pub mod producer;

pub use consumer_dynamic::ConsumerDynamic;
pub use consumer_fixed::ConsumerFixed;
pub use coordinator::Coordinator;
pub use datastore::Datastore;
pub use producer::Producer;
