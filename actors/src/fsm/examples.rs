//! The seed's own machines: the quadruple, quintuple, sextuple and septuple
//! actors, and the run example on the word `0123`.
//!
//! All four share one rule, drawn in full for the quadruple: with
//! Q = {s0, …, s(n-1)} and Σ = {0, …, n-1},
//!
//! * δ(q, σ) = s_σ for every q and σ (the machine is total), and
//! * λ(q, σ) = "x := x + 1" when δ(q, σ) = q (a self-transition), nothing
//!   otherwise.
//!
//! Decisions where the seed is silent (recorded here, tested in
//! `tests/seed_examples.rs`):
//!
//! * The seed draws the quintuple, sextuple and septuple actors as states only,
//!   calling them templates. We give them the quadruple's rule, so each is a
//!   complete machine of its size; their drawings then show every edge.
//! * The quadruple starts at s0 and accepts at s2; the quintuple starts at s0 and
//!   accepts at s1, as drawn.
//! * The sextuple and septuple designate no start or accept state, so they are
//!   used as *transducers* only: every run names its start state explicitly, and
//!   [`NTuple::acceptor`] returns `None` for them. They are also the shapes of
//!   two platform actors: the Producer has six states and the Consumer for
//!   dynamic topics seven (the Coordinator four, the fixed Consumer five), which
//!   is why the TikZ renderer places every machine on a regular polygon.
//! * The state labels 10, 20 and 5 drawn on the quadruple's s0, s2 and s3 are
//!   kept as annotations (the seed gives them no further meaning).

use std::fmt;

use super::acceptor::Acceptor;
use super::extended::{Extended, Update};
use super::mealy::Mealy;

/// A state s_i of an N-tuple actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct S(pub u8);

impl fmt::Display for S {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// The output of an N-tuple actor's transition: an action on the counter `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// A self-transition: `x := x + 1`, emitting the new `x`.
    Increment,
    /// Any other transition: no output.
    Keep,
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Counter::Increment => f.write_str("x:=x+1"),
            Counter::Keep => f.write_str(""),
        }
    }
}

impl Update<u64> for Counter {
    type Out = Option<u64>;

    fn apply(&self, x: &mut u64) -> Option<u64> {
        match self {
            Counter::Increment => {
                *x += 1;
                Some(*x)
            }
            Counter::Keep => None,
        }
    }
}

/// The four N-tuple actors of the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NTuple {
    /// Four states, start s0, accept s2.
    Quadruple,
    /// Five states, start s0, accept s1.
    Quintuple,
    /// Six states, no designated start or accept state.
    Sextuple,
    /// Seven states, no designated start or accept state.
    Septuple,
}

impl NTuple {
    /// All four, smallest first.
    pub const ALL: [NTuple; 4] = [
        NTuple::Quadruple,
        NTuple::Quintuple,
        NTuple::Sextuple,
        NTuple::Septuple,
    ];

    /// The number of states (and of input symbols).
    pub fn size(self) -> u8 {
        match self {
            NTuple::Quadruple => 4,
            NTuple::Quintuple => 5,
            NTuple::Sextuple => 6,
            NTuple::Septuple => 7,
        }
    }

    /// The name used by the catalog and the command line.
    pub fn name(self) -> &'static str {
        match self {
            NTuple::Quadruple => "quadruple",
            NTuple::Quintuple => "quintuple",
            NTuple::Sextuple => "sextuple",
            NTuple::Septuple => "septuple",
        }
    }

    /// The designated start state, if the seed draws one.
    pub fn start(self) -> Option<S> {
        match self {
            NTuple::Quadruple | NTuple::Quintuple => Some(S(0)),
            NTuple::Sextuple | NTuple::Septuple => None,
        }
    }

    /// The accept states F as drawn (empty where the seed designates none).
    pub fn accept(self) -> Vec<S> {
        match self {
            NTuple::Quadruple => vec![S(2)],
            NTuple::Quintuple => vec![S(1)],
            NTuple::Sextuple | NTuple::Septuple => vec![],
        }
    }

    /// The state labels drawn next to the states (only the quadruple has them).
    pub fn labels(self) -> Vec<(S, &'static str)> {
        match self {
            NTuple::Quadruple => vec![(S(0), "label:10"), (S(2), "label:20"), (S(3), "label:5")],
            _ => vec![],
        }
    }

    /// The machine: δ(q, σ) = s_σ, λ = increment on self-transitions.
    pub fn machine(self) -> Mealy<S, u8, Counter> {
        let n = self.size();
        let transitions = (0..n).flat_map(|q| {
            (0..n).map(move |sigma| {
                let out = if sigma == q {
                    Counter::Increment
                } else {
                    Counter::Keep
                };
                (S(q), sigma, S(sigma), out)
            })
        });
        Mealy::new((0..n).map(S), 0..n, transitions).expect("the N-tuple rule is deterministic")
    }

    /// The machine with its counter `x`, starting at `x = 0`.
    pub fn with_counter(self) -> Extended<S, u8, Counter, u64> {
        Extended::new(self.machine(), 0)
    }

    /// The acceptor ⟨Σ, Q, δ, q0, F⟩, for the actors that designate a start state.
    pub fn acceptor(self) -> Option<Acceptor<S, u8>> {
        let start = self.start()?;
        Some(Acceptor::new(&self.machine(), start, self.accept()).expect("states exist"))
    }
}

/// The seed's "Run example": the quadruple with `x = 0`, ready to read `0123`.
pub fn run_example() -> Extended<S, u8, Counter, u64> {
    NTuple::Quadruple.with_counter()
}
