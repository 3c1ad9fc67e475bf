//! The platform's domain types, free of I/O: instruments, ticks (trades),
//! history bars and the records that carry them between actors.

pub mod bar;
pub mod reconcile;
pub mod record;
pub mod tick;
pub mod validate;

pub use bar::{aggregate, Bar, BarOverflow, Interval, TradeMark};
pub use record::{HistoryBar, Record};
pub use tick::{Instrument, Side, Tick, TickKey};
