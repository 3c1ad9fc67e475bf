//! The node: reads `cluster.toml`, starts the actors its roles call for under
//! supervisors, and serves the HTTP API.
//!
//! * [`config`]: the configuration file, with environment overrides and
//!   validation that names the offending field;
//! * [`platform`]: the data plane by role: source, producer, consumer,
//!   datastore pool, HTTP API;
//! * [`cluster`]: the cluster layer: node server, membership (dial, heartbeat,
//!   reconnect), cluster-wide names;

pub mod backends;
pub mod cluster;
pub mod config;
pub mod ops;
pub mod platform;
pub mod progress;
pub mod sockets;
pub mod standby;
