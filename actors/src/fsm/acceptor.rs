//! A machine seen as an acceptor: the seed replaces Γ and λ with a start state
//! q0 and a set F ⊆ Q of accept states.
//!
//! A word w is accepted when δ̄(q0, w) ∈ F. Because δ is partial here, a word on
//! which δ̄ is undefined is simply not accepted (it is not in the language).

use std::collections::BTreeSet;

use super::mealy::{DefinitionError, Mealy, Symbol};

/// An acceptor ⟨Σ, Q, δ, q0, F⟩.
#[derive(Debug, Clone)]
pub struct Acceptor<Q: Symbol, S: Symbol> {
    machine: Mealy<Q, S, ()>,
    start: Q,
    accept: BTreeSet<Q>,
}

impl<Q: Symbol, S: Symbol> Acceptor<Q, S> {
    /// Forgets the outputs of `machine` and designates `start` and `accept`.
    pub fn new<O: Clone>(
        machine: &Mealy<Q, S, O>,
        start: Q,
        accept: impl IntoIterator<Item = Q>,
    ) -> Result<Self, DefinitionError> {
        let accept: BTreeSet<Q> = accept.into_iter().collect();
        for q in std::iter::once(&start).chain(&accept) {
            if !machine.states().contains(q) {
                return Err(DefinitionError::UnknownState(q.to_string()));
            }
        }
        Ok(Self {
            machine: machine.map_output(|_| ()),
            start,
            accept,
        })
    }

    /// q0.
    pub fn start(&self) -> Q {
        self.start
    }

    /// F.
    pub fn accept_states(&self) -> &BTreeSet<Q> {
        &self.accept
    }

    /// The underlying transition structure.
    pub fn machine(&self) -> &Mealy<Q, S, ()> {
        &self.machine
    }

    /// Whether `word` is an accepting word: δ̄(q0, w) ∈ F.
    pub fn accepts(&self, word: &[S]) -> bool {
        self.machine
            .delta_bar(self.start, word)
            .is_ok_and(|q| self.accept.contains(&q))
    }

    /// The words of the recognised language L of length at most `max_len`,
    /// shortest first, then in the order of Σ.
    ///
    /// L itself is usually infinite; this enumerates L ∩ Σ^≤n by walking the
    /// transition structure, so words on which δ̄ is undefined are never built.
    pub fn language_up_to(&self, max_len: usize) -> Vec<Vec<S>> {
        let mut found = Vec::new();
        let mut frontier: Vec<(Vec<S>, Q)> = vec![(Vec::new(), self.start)];
        for len in 0..=max_len {
            found.extend(
                frontier
                    .iter()
                    .filter(|(_, q)| self.accept.contains(q))
                    .map(|(w, _)| w.clone()),
            );
            if len == max_len {
                break;
            }
            frontier = frontier
                .into_iter()
                .flat_map(|(w, q)| {
                    let machine = &self.machine;
                    machine.enabled(q).map(move |a| {
                        let mut next = w.clone();
                        next.push(a);
                        (next, machine.delta(q, a).expect("enabled input"))
                    })
                })
                .collect();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words over {a, b} with an odd number of `a`.
    fn odd_a() -> Acceptor<u8, char> {
        let m = Mealy::new(
            [0, 1],
            ['a', 'b'],
            [
                (0, 'a', 1, ()),
                (1, 'a', 0, ()),
                (0, 'b', 0, ()),
                (1, 'b', 1, ()),
            ],
        )
        .unwrap();
        Acceptor::new(&m, 0, [1]).unwrap()
    }

    #[test]
    fn accepts_by_final_state() {
        let acc = odd_a();
        assert!(acc.accepts(&['a']));
        assert!(acc.accepts(&['b', 'a', 'b']));
        assert!(!acc.accepts(&[]));
        assert!(!acc.accepts(&['a', 'a']));
    }

    #[test]
    fn language_enumeration_matches_membership() {
        let acc = odd_a();
        let words = acc.language_up_to(3);
        assert_eq!(words.len(), 1 + 2 + 4); // lengths 1, 2, 3 with an odd count of a
        assert!(words.iter().all(|w| acc.accepts(w)));
        assert_eq!(words[0], vec!['a']);
    }

    #[test]
    fn undefined_runs_are_not_accepted() {
        let m = Mealy::new([0u8, 1], ['a', 'b'], [(0, 'a', 1, ())]).unwrap();
        let acc = Acceptor::new(&m, 0, [1]).unwrap();
        assert!(acc.accepts(&['a']));
        assert!(!acc.accepts(&['a', 'a']));
        assert_eq!(acc.language_up_to(5), vec![vec!['a']]);
    }

    #[test]
    fn start_and_accept_states_must_exist() {
        let m = Mealy::<u8, char, ()>::new([0u8], ['a'], []).unwrap();
        assert!(Acceptor::new(&m, 1, []).is_err());
        assert!(Acceptor::new(&m, 0, [7]).is_err());
    }
}
