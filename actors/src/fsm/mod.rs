//! The automaton core, following the seed's "Formal Definition".
//!
//! * [`mealy`]: a Mealy machine ⟨Σ, Γ, Q, δ, λ⟩ with partial δ and λ, runs, and
//!   the extensions δ̄ and λ̄ over words;
//! * [`acceptor`]: the same machine seen as an acceptor (start state q0, accept
//!   states F), accepted words and the recognised language;
//! * [`extended`]: machines with extended state (the counter `x` of the seed's
//!   run example);
//! * [`examples`]: the seed's own machines (the run example and the quadruple to
//!   septuple actors);
//! * [`spec`] and [`runtime`]: how a platform actor declares its machine, and the
//!   running instance that validates and records every transition;
//! * [`diagram`]: DOT, Mermaid and TikZ drawings generated from the same tables;
//! * [`catalog`]: every machine the platform knows, by name.
//!
//! This module does no I/O; it is pure logic, unit- and property-tested.

#[macro_use]
pub(crate) mod symbols;

pub mod acceptor;
pub mod catalog;
pub mod diagram;
pub mod examples;
pub mod extended;
pub mod mealy;
pub mod registry;
pub mod runtime;
pub mod spec;

pub use acceptor::Acceptor;
pub use extended::{Extended, ExtendedRun, Update};
pub use mealy::{DefinitionError, Mealy, Rejected, Run, RunStep, Symbol, WordRejected};
pub use runtime::{Fsm, RejectedRecord, RunSnapshot, RunView, StepRecord};
pub use spec::MachineSpec;
