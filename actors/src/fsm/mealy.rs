//! Mealy machines ⟨Σ, Γ, Q, δ, λ⟩ with partial transition and output functions.
//!
//! The seed defines δ: Q × Σ → Q and λ: Q × Σ → Γ. Real actors do not accept
//! every event in every state, so here both functions are *partial*: a pair
//! (q, a) without a transition yields [`Rejected`], never a panic. δ and λ are
//! stored together, one table entry `(q, a) ↦ (δ(q, a), λ(q, a))`, so they are
//! defined on exactly the same pairs.
//!
//! Runs and the extensions over words follow the seed:
//! δ̄(q, ε) = q and δ̄(q, wa) = δ(δ̄(q, w), a); λ̄(q, w) is the sequence of
//! outputs emitted while reading w from q.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Display};
use std::hash::Hash;

/// What a state, input or output symbol must be: small, copyable, ordered (so
/// tables and diagrams come out in a stable order) and printable.
pub trait Symbol: Copy + Eq + Ord + Hash + Debug + Display + Send + Sync + 'static {}

impl<T> Symbol for T where T: Copy + Eq + Ord + Hash + Debug + Display + Send + Sync + 'static {}

/// The current state has no transition for the input: δ(q, a) is undefined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no transition from state `{state}` on input `{input}`")]
pub struct Rejected<Q: Symbol, S: Symbol> {
    /// The state the machine was in.
    pub state: Q,
    /// The input it could not take.
    pub input: S,
}

/// A word could not be read to its end: δ is undefined at `position`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("word rejected at position {position}: {rejected}")]
pub struct WordRejected<Q: Symbol, S: Symbol> {
    /// Zero-based index of the input symbol that was rejected.
    pub position: usize,
    /// The state and input at that position.
    pub rejected: Rejected<Q, S>,
}

/// A machine definition that cannot be a Mealy machine over its alphabets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// A transition names a state that is not in Q.
    #[error("transition uses state `{0}` which is not in Q")]
    UnknownState(String),
    /// A transition names an input that is not in Σ.
    #[error("transition uses input `{0}` which is not in Σ")]
    UnknownInput(String),
    /// Two transitions leave the same state on the same input.
    #[error("two transitions leave state `{state}` on input `{input}`: δ must be a function")]
    Nondeterministic {
        /// The state.
        state: String,
        /// The input.
        input: String,
    },
    /// A state or input is listed twice.
    #[error("symbol `{0}` is listed twice")]
    Duplicate(String),
}

/// One step of a run: from `from`, reading `input`, the machine went to `to`
/// and emitted `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep<Q, S, O> {
    /// q_{i-1}
    pub from: Q,
    /// a_i
    pub input: S,
    /// q_i = δ(q_{i-1}, a_i)
    pub to: Q,
    /// λ(q_{i-1}, a_i)
    pub output: O,
}

/// The run q0, q1, …, qn of a machine on a word a1 … an, with its outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<Q, S, O> {
    /// q0, the state the run started from.
    pub start: Q,
    /// One step per input symbol, in order.
    pub steps: Vec<RunStep<Q, S, O>>,
}

impl<Q: Copy, S, O: Clone> Run<Q, S, O> {
    /// The run's states q0 … qn (one more than the number of inputs).
    pub fn states(&self) -> Vec<Q> {
        std::iter::once(self.start)
            .chain(self.steps.iter().map(|s| s.to))
            .collect()
    }

    /// The outputs λ(q_{i-1}, a_i), in order.
    pub fn outputs(&self) -> Vec<O> {
        self.steps.iter().map(|s| s.output.clone()).collect()
    }

    /// qn, the state the run ended in.
    pub fn last(&self) -> Q {
        self.steps.last().map_or(self.start, |s| s.to)
    }
}

/// A finite Mealy machine with partial δ and λ.
#[derive(Debug, Clone)]
pub struct Mealy<Q: Symbol, S: Symbol, O> {
    states: Vec<Q>,
    inputs: Vec<S>,
    table: BTreeMap<(Q, S), (Q, O)>,
}

impl<Q: Symbol, S: Symbol, O: Clone> Mealy<Q, S, O> {
    /// Builds a machine from its states Q, its input alphabet Σ and its
    /// transitions `(q, a, δ(q, a), λ(q, a))`.
    ///
    /// Refuses transitions over unknown symbols and two transitions for the same
    /// `(q, a)`: the result is a deterministic machine.
    pub fn new(
        states: impl IntoIterator<Item = Q>,
        inputs: impl IntoIterator<Item = S>,
        transitions: impl IntoIterator<Item = (Q, S, Q, O)>,
    ) -> Result<Self, DefinitionError> {
        let states = unique(states)?;
        let inputs = unique(inputs)?;
        let mut table = BTreeMap::new();
        for (q, a, next, out) in transitions {
            for s in [q, next] {
                if !states.contains(&s) {
                    return Err(DefinitionError::UnknownState(s.to_string()));
                }
            }
            if !inputs.contains(&a) {
                return Err(DefinitionError::UnknownInput(a.to_string()));
            }
            if table.insert((q, a), (next, out)).is_some() {
                return Err(DefinitionError::Nondeterministic {
                    state: q.to_string(),
                    input: a.to_string(),
                });
            }
        }
        Ok(Self {
            states,
            inputs,
            table,
        })
    }

    /// Q, in declaration order.
    pub fn states(&self) -> &[Q] {
        &self.states
    }

    /// Σ, in declaration order.
    pub fn inputs(&self) -> &[S] {
        &self.inputs
    }

    /// Every transition `(q, a, δ(q, a), λ(q, a))`, ordered by `(q, a)`.
    pub fn transitions(&self) -> impl Iterator<Item = (Q, S, Q, &O)> + '_ {
        self.table
            .iter()
            .map(|(&(q, a), (next, out))| (q, a, *next, out))
    }

    /// The number of defined `(q, a)` pairs.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no transition is defined at all.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// True when δ is defined on every pair of Q × Σ.
    pub fn is_total(&self) -> bool {
        self.table.len() == self.states.len() * self.inputs.len()
    }

    /// One step: `(δ(q, a), λ(q, a))`.
    pub fn step(&self, q: Q, a: S) -> Result<(Q, &O), Rejected<Q, S>> {
        self.table
            .get(&(q, a))
            .map(|(next, out)| (*next, out))
            .ok_or(Rejected { state: q, input: a })
    }

    /// δ(q, a), the next state.
    pub fn delta(&self, q: Q, a: S) -> Result<Q, Rejected<Q, S>> {
        self.step(q, a).map(|(next, _)| next)
    }

    /// λ(q, a), the output.
    pub fn lambda(&self, q: Q, a: S) -> Result<&O, Rejected<Q, S>> {
        self.step(q, a).map(|(_, out)| out)
    }

    /// The inputs that state `q` has a transition for.
    pub fn enabled(&self, q: Q) -> impl Iterator<Item = S> + '_ {
        self.inputs
            .iter()
            .copied()
            .filter(move |&a| self.table.contains_key(&(q, a)))
    }

    /// The run of the machine on `word` starting from `q0`.
    pub fn run(&self, q0: Q, word: &[S]) -> Result<Run<Q, S, O>, WordRejected<Q, S>> {
        let mut steps = Vec::with_capacity(word.len());
        let mut q = q0;
        for (position, &a) in word.iter().enumerate() {
            let (next, out) = self
                .step(q, a)
                .map_err(|rejected| WordRejected { position, rejected })?;
            steps.push(RunStep {
                from: q,
                input: a,
                to: next,
                output: out.clone(),
            });
            q = next;
        }
        Ok(Run { start: q0, steps })
    }

    /// δ̄(q, w): the state reached from `q` after reading all of `word`.
    pub fn delta_bar(&self, q: Q, word: &[S]) -> Result<Q, WordRejected<Q, S>> {
        word.iter().enumerate().try_fold(q, |q, (position, &a)| {
            self.delta(q, a)
                .map_err(|rejected| WordRejected { position, rejected })
        })
    }

    /// λ̄(q, w): every output emitted while reading `word` from `q`.
    pub fn lambda_bar(&self, q: Q, word: &[S]) -> Result<Vec<O>, WordRejected<Q, S>> {
        self.run(q, word).map(|run| run.outputs())
    }

    /// The same machine with every output replaced by `f(output)`.
    pub fn map_output<P>(&self, mut f: impl FnMut(&O) -> P) -> Mealy<Q, S, P> {
        Mealy {
            states: self.states.clone(),
            inputs: self.inputs.clone(),
            table: self
                .table
                .iter()
                .map(|(&k, (next, out))| (k, (*next, f(out))))
                .collect(),
        }
    }
}

fn unique<T: Symbol>(items: impl IntoIterator<Item = T>) -> Result<Vec<T>, DefinitionError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for item in items {
        if !seen.insert(item) {
            return Err(DefinitionError::Duplicate(item.to_string()));
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toggle() -> Mealy<u8, char, &'static str> {
        Mealy::new([0, 1], ['t', 'x'], [(0, 't', 1, "on"), (1, 't', 0, "off")]).unwrap()
    }

    #[test]
    fn undefined_pairs_are_rejected_not_panics() {
        let m = toggle();
        assert_eq!(
            m.delta(0, 'x'),
            Err(Rejected {
                state: 0,
                input: 'x'
            })
        );
        assert_eq!(
            m.delta_bar(0, &['t', 't', 'x']),
            Err(WordRejected {
                position: 2,
                rejected: Rejected {
                    state: 0,
                    input: 'x'
                }
            })
        );
        assert!(!m.is_total());
    }

    #[test]
    fn run_lists_states_and_outputs() {
        let run = toggle().run(0, &['t', 't', 't']).unwrap();
        assert_eq!(run.states(), vec![0, 1, 0, 1]);
        assert_eq!(run.outputs(), vec!["on", "off", "on"]);
        assert_eq!(run.last(), 1);
    }

    #[test]
    fn definitions_are_checked() {
        assert_eq!(
            Mealy::new([0u8], ['a'], [(0, 'a', 1, ())]).unwrap_err(),
            DefinitionError::UnknownState("1".into())
        );
        assert_eq!(
            Mealy::new([0u8], ['a'], [(0, 'b', 0, ())]).unwrap_err(),
            DefinitionError::UnknownInput("b".into())
        );
        assert!(matches!(
            Mealy::new([0u8], ['a'], [(0, 'a', 0, ()), (0, 'a', 0, ())]),
            Err(DefinitionError::Nondeterministic { .. })
        ));
        assert_eq!(
            Mealy::<u8, char, ()>::new([0u8, 0], ['a'], []).unwrap_err(),
            DefinitionError::Duplicate("0".into())
        );
    }
}
