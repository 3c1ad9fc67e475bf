//! The contract of each backend trait, written once and run against every
//! implementation (`mod backends;` in a test crate, beside `mod common;`):
//!
//! * [`store`]: [`BarStore`] on PostgreSQL (`store.rs`) and SQLite
//!   (`embedded.rs`), and [`reconcile`], its reconciliation rule of live and
//!   history minutes;
//! * [`cache`]: [`BarCache`] on Redis (`store.rs`) and in memory
//!   (`embedded.rs`);
//! * [`bus`]: the record bus (publish, consumer groups, commits, dead
//!   letters) on Kafka (`kafka_consumer.rs`) and in process (`embedded.rs`);
//! * [`e2e`]: the fixed consumer actor end to end on a whole stack (Kafka,
//!   PostgreSQL and Redis in `consumer_e2e.rs`; the embedded stack in
//!   `embedded.rs`).
//!
//! [`kafka`] is the Kafka harness of the bus contract.
//!
//! Every case is a generic async function that panics on a broken rule; the
//! `*_contract_tests!` macros turn them into one `#[tokio::test]` each for a
//! given implementation.
//!
//! [`BarStore`]: candela_actors::store::BarStore
//! [`BarCache`]: candela_actors::store::BarCache

#![allow(dead_code, missing_docs)]

pub mod bus;
pub mod cache;
pub mod data;
pub mod e2e;
pub mod kafka;
pub mod reconcile;
pub mod store;
