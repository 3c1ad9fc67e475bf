//! Machines with extended state: a Mealy machine whose outputs are *actions* on
//! a variable `x` carried along the run.
//!
//! The seed's run example keeps a counter `x` (initially 0) and outputs `x + 1`
//! on a self-transition; the finite machine decides *which* action happens, the
//! extended state decides *what value* it yields. Keeping the two apart keeps δ
//! and λ finite while `x` ranges over an unbounded set.

use super::mealy::{Mealy, Run, Symbol, WordRejected};

/// An action that updates the extended state and yields an output.
pub trait Update<X> {
    /// What applying the action yields (for the seed's counter: the new value
    /// of `x` on a self-transition, nothing otherwise).
    type Out: Clone;

    /// Applies the action to `x` and returns the output.
    fn apply(&self, x: &mut X) -> Self::Out;
}

/// A Mealy machine whose outputs are actions on an extended state `X`.
#[derive(Debug, Clone)]
pub struct Extended<Q: Symbol, S: Symbol, A, X> {
    machine: Mealy<Q, S, A>,
    x0: X,
}

/// The run of an extended machine: the finite run, the outputs the actions
/// yielded, and `x` after every step.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtendedRun<Q, S, A, Out, X> {
    /// The finite-state run (states, inputs and the actions taken).
    pub run: Run<Q, S, A>,
    /// What each action yielded, one per input.
    pub outputs: Vec<Out>,
    /// x0, x1, …, xn.
    pub xs: Vec<X>,
}

impl<Q, S, A, Out, X: Clone> ExtendedRun<Q, S, A, Out, X> {
    /// The value of `x` at the end of the run.
    pub fn x(&self) -> X {
        self.xs.last().cloned().expect("xs holds at least x0")
    }
}

impl<Q: Symbol, S: Symbol, A: Clone + Update<X>, X: Clone> Extended<Q, S, A, X> {
    /// A machine whose extended state starts at `x0`.
    pub fn new(machine: Mealy<Q, S, A>, x0: X) -> Self {
        Self { machine, x0 }
    }

    /// The finite-state part.
    pub fn machine(&self) -> &Mealy<Q, S, A> {
        &self.machine
    }

    /// The initial value of the extended state.
    pub fn x0(&self) -> &X {
        &self.x0
    }

    /// Runs `word` from `q0`, starting with `x = x0`.
    #[allow(clippy::type_complexity)]
    pub fn run(
        &self,
        q0: Q,
        word: &[S],
    ) -> Result<ExtendedRun<Q, S, A, A::Out, X>, WordRejected<Q, S>> {
        let run = self.machine.run(q0, word)?;
        let mut x = self.x0.clone();
        let mut xs = vec![x.clone()];
        let mut outputs = Vec::with_capacity(word.len());
        for step in &run.steps {
            outputs.push(step.output.apply(&mut x));
            xs.push(x.clone());
        }
        Ok(ExtendedRun { run, outputs, xs })
    }
}
