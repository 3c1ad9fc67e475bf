//! The platform's domain types, free of I/O: instruments and ticks (trades).

pub mod tick;

pub use tick::{Instrument, Side, Tick, TickKey};
