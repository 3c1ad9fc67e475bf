//! The HTTP API of the platform.
//!
//! Applications read OHLCV series here; operators read the live cluster through
//! the admin endpoint. The endpoints themselves (poem + poem-openapi) arrive
//! with the storage and cluster work; this crate already holds the
//! representations they serve, so that what the API shows of a machine is the
//! same table the actors run on.

pub mod machines;
