//! Property tests of the laws the seed states for runs and the extensions δ̄
//! and λ̄, on random words, for the N-tuple actors (total δ) and the platform
//! machines (partial δ).

use candela_actors::fsm::examples::{NTuple, S};
use candela_actors::fsm::spec::MachineSpec;
use candela_actors::fsm::Mealy;
use candela_actors::machines::{ConsumerDynamic, ConsumerFixed, Coordinator, Datastore, Producer};
use proptest::prelude::*;

fn ntuple() -> impl Strategy<Value = NTuple> {
    prop::sample::select(NTuple::ALL.to_vec())
}

/// Checks every law on one machine, start state and pair of words.
fn check_laws<Q, A, O>(m: &Mealy<Q, A, O>, q: Q, w: &[A], v: &[A]) -> Result<(), TestCaseError>
where
    Q: candela_actors::fsm::Symbol,
    A: candela_actors::fsm::Symbol,
    O: Clone + PartialEq + std::fmt::Debug,
{
    // δ̄(q, ε) = q and λ̄(q, ε) = ε.
    prop_assert_eq!(m.delta_bar(q, &[]), Ok(q));
    prop_assert!(m.lambda_bar(q, &[]).unwrap().is_empty());

    match m.delta_bar(q, w) {
        Ok(end) => {
            // δ̄(q, wa) = δ(δ̄(q, w), a), for every a in Σ.
            for &a in m.inputs() {
                let wa: Vec<A> = w.iter().copied().chain([a]).collect();
                match m.delta(end, a) {
                    Ok(next) => {
                        prop_assert_eq!(m.delta_bar(q, &wa), Ok(next));
                        // λ̄(q, wa) = λ̄(q, w) · λ(δ̄(q, w), a)
                        let mut expected = m.lambda_bar(q, w).unwrap();
                        expected.push(m.lambda(end, a).unwrap().clone());
                        prop_assert_eq!(m.lambda_bar(q, &wa).unwrap(), expected);
                    }
                    Err(_) => {
                        let err = m.delta_bar(q, &wa).unwrap_err();
                        prop_assert_eq!(err.position, w.len());
                        prop_assert_eq!(err.rejected.state, end);
                    }
                }
            }
            // δ̄(q, wv) = δ̄(δ̄(q, w), v)
            let wv: Vec<A> = w.iter().chain(v).copied().collect();
            prop_assert_eq!(
                m.delta_bar(q, &wv).ok(),
                m.delta_bar(end, v).ok(),
                "composition"
            );
            // The run has n + 1 states, each step is δ and λ.
            let run = m.run(q, w).unwrap();
            let states = run.states();
            prop_assert_eq!(states.len(), w.len() + 1);
            prop_assert_eq!(states[0], q);
            prop_assert_eq!(*states.last().unwrap(), end);
            for (i, step) in run.steps.iter().enumerate() {
                prop_assert_eq!(m.delta(states[i], w[i]), Ok(states[i + 1]));
                prop_assert_eq!(m.lambda(states[i], w[i]).unwrap(), &step.output);
            }
        }
        Err(err) => {
            // The word is defined up to the rejected position, and not beyond.
            let prefix = &w[..err.position];
            prop_assert_eq!(m.delta_bar(q, prefix), Ok(err.rejected.state));
            prop_assert!(m.delta(err.rejected.state, w[err.position]).is_err());
            prop_assert!(m.run(q, w).is_err());
            prop_assert!(m.lambda_bar(q, w).is_err());
        }
    }
    Ok(())
}

fn check_spec<M: MachineSpec>(
    picks: &[usize],
    v: &[usize],
    start: usize,
) -> Result<(), TestCaseError> {
    let m = M::machine();
    let events = M::events();
    let w: Vec<_> = picks.iter().map(|&i| events[i % events.len()]).collect();
    let v: Vec<_> = v.iter().map(|&i| events[i % events.len()]).collect();
    let q = M::states()[start % M::states().len()];
    check_laws(&m, q, &w, &v)
}

/// Random walks that follow enabled transitions, so long runs are exercised
/// on the partial machines too (random words are mostly rejected early).
fn walk<M: MachineSpec>(choices: &[usize]) -> Vec<M::Event> {
    let m = M::machine();
    let mut q = M::initial();
    let mut word = Vec::new();
    for &c in choices {
        let enabled: Vec<_> = m.enabled(q).collect();
        if enabled.is_empty() {
            break;
        }
        let e = enabled[c % enabled.len()];
        q = m.delta(q, e).unwrap();
        word.push(e);
    }
    word
}

proptest! {
    #[test]
    fn ntuple_laws(actor in ntuple(), w in prop::collection::vec(0u8..7, 0..40),
                   v in prop::collection::vec(0u8..7, 0..10), start in 0u8..7) {
        let m = actor.machine();
        let n = actor.size();
        let w: Vec<u8> = w.into_iter().map(|a| a % n).collect();
        let v: Vec<u8> = v.into_iter().map(|a| a % n).collect();
        check_laws(&m, S(start % n), &w, &v)?;
        // δ(q, σ) = s_σ, so δ̄(q, w) is s of the last symbol (or q on ε).
        let end = m.delta_bar(S(start % n), &w).unwrap();
        prop_assert_eq!(end, w.last().map_or(S(start % n), |&a| S(a)));
        // x counts the self-transitions of the run.
        let run = actor.with_counter().run(S(start % n), &w).unwrap();
        let states = run.run.states();
        let loops = states.windows(2).filter(|p| p[0] == p[1]).count() as u64;
        prop_assert_eq!(run.x(), loops);
    }

    #[test]
    fn ntuple_symbols_outside_sigma_are_rejected(actor in ntuple(), q in 0u8..4, extra in 7u8..=255) {
        let m = actor.machine();
        prop_assert!(m.delta(S(q), extra).is_err());
    }

    #[test]
    fn acceptor_language_is_membership(actor in prop::sample::select(vec![NTuple::Quadruple, NTuple::Quintuple]),
                                       w in prop::collection::vec(0u8..5, 0..4)) {
        let acc = actor.acceptor().unwrap();
        let n = actor.size();
        let w: Vec<u8> = w.into_iter().map(|a| a % n).collect();
        let in_language = acc.language_up_to(w.len()).contains(&w);
        prop_assert_eq!(acc.accepts(&w), in_language);
        let end = acc.machine().delta_bar(acc.start(), &w).unwrap();
        prop_assert_eq!(acc.accepts(&w), acc.accept_states().contains(&end));
    }

    #[test]
    fn platform_laws_on_random_words(w in prop::collection::vec(0usize..64, 0..30),
                                     v in prop::collection::vec(0usize..64, 0..8),
                                     start in 0usize..16) {
        check_spec::<Producer>(&w, &v, start)?;
        check_spec::<Coordinator>(&w, &v, start)?;
        check_spec::<ConsumerFixed>(&w, &v, start)?;
        check_spec::<ConsumerDynamic>(&w, &v, start)?;
        check_spec::<Datastore>(&w, &v, start)?;
    }

    #[test]
    fn platform_laws_on_enabled_walks(choices in prop::collection::vec(0usize..8, 0..60),
                                      v in prop::collection::vec(0usize..64, 0..8)) {
        fn go<M: MachineSpec>(choices: &[usize], v: &[usize]) -> Result<(), TestCaseError> {
            let w = walk::<M>(choices);
            let m = M::machine();
            prop_assert!(m.delta_bar(M::initial(), &w).is_ok());
            let events = M::events();
            let v: Vec<_> = v.iter().map(|&i| events[i % events.len()]).collect();
            check_laws(&m, M::initial(), &w, &v)
        }
        go::<Producer>(&choices, &v)?;
        go::<Coordinator>(&choices, &v)?;
        go::<ConsumerFixed>(&choices, &v)?;
        go::<ConsumerDynamic>(&choices, &v)?;
        go::<Datastore>(&choices, &v)?;
    }
}
