//! The HTTP API of the platform (poem + poem-openapi).
//!
//! * `/api/v1/ohlcv`, `/api/v1/instruments`, `/api/v1/stream`: OHLCV data for
//!   applications ([`data`]);
//! * `/admin/...`: the cluster admin endpoint (bearer token) ([`admin`]);
//! * `/openapi.json` and `/docs` (interactive): the API's own description;
//! * `/health` (the process is up) and `/ready` (its storage answers; 200
//!   with `warning:` lines for what works degraded, e.g. TimescaleDB refresh
//!   policies that fail);
//! * `/metrics`: the node's metrics in Prometheus' text format (also on the
//!   node's ops listener, `node/src/ops.rs`);
//! * `/` and `/ui/...`: a live candlestick chart and a cluster view, embedded
//!   in the binary ([`web`]).
//!
//! Every bad parameter is answered 400 or 404 with a JSON body that says what
//! is wrong; a storage outage is a 503; nothing a client sends produces a 500.
//! What the API serves of a state machine is the same table the actors run on
//! ([`machines`]).

pub mod admin;
pub mod data;
pub mod errors;
pub mod feed;
pub mod machines;
pub mod mirror;
pub mod model;
pub mod negotiate;
pub mod params;
pub mod series;
pub mod server;
pub mod sse;
pub mod stream;
pub mod telemetry;
pub mod time;
pub mod web;

pub use server::{routes, serve, ApiConfig, ApiState};
