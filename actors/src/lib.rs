//! The platform's actors and the automaton core that drives them.
//!
//! Every actor of the platform is a finite automaton taken from the seed design
//! (`data-platform-actors.md`): a Mealy machine whose states, input events and
//! transitions are written down once, in [`machines`], and used for three
//! things at once:
//!
//! * validating each transition an actor makes (an event its current state has
//!   no transition for is a typed error, never a panic);
//! * recording the actor's run (bounded history and rejection counts) for the
//!   admin endpoint;
//! * drawing the actor's diagram (Graphviz DOT, Mermaid and TikZ).
//!
//! [`fsm`] holds the generic core (Mealy machines, runs, acceptors, machines
//! with extended state, diagrams) and the seed's formal examples.
//!
//! [`domain`] holds instruments and ticks; [`kafka`] moves ticks through
//! Kafka (configuration, the versioned wire format, topic administration and
//! the acknowledged publisher).
//!
//! [`call`] is how actors ask each other anything, on one node or across
//! nodes: typed errors, and a caller that never outwaits a stopped callee.

#[macro_use]
pub mod fsm;
pub mod call;
pub mod consumer;
pub mod coordinator;
pub mod cryptocompare;
pub mod datastore;
pub mod domain;
pub mod embedded;
pub mod feed;
pub mod imitation;
pub mod kafka;
pub mod machines;
pub mod ports;
pub mod producer;
pub mod store;
pub mod supervisor;
pub mod telemetry;
