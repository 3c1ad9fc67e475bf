//! The seed's own examples ("Formal Definition" in data-platform-actors.md),
//! written to read like the seed.

use candela_actors::fsm::examples::{run_example, Counter, NTuple, S};

/// "Consider the input string `0123`" — initial state q0 (= s0), x = 0.
#[test]
fn run_example_on_0123() {
    let machine = run_example();
    assert_eq!(*machine.x0(), 0, "x = 0 before the automaton starts");

    let run = machine.run(S(0), &[0, 1, 2, 3]).unwrap();

    // 2. Input 0: δ(q0, 0) = s0, a self-transition; λ(q0, 0) = x + 1 = 1; x = 1.
    // 3. Input 1: δ(q0, 1) = s1; no self-transition, no output; x = 1.
    // 4. Input 2: δ(q1, 2) = s2; no output; x = 1.
    // 5. Input 3: δ(q2, 3) = s3; no output; x = 1.
    assert_eq!(run.run.states(), vec![S(0), S(0), S(1), S(2), S(3)]);
    assert_eq!(run.outputs, vec![Some(1), None, None, None]);
    assert_eq!(run.xs, vec![0, 1, 1, 1, 1]);
    assert_eq!(
        run.run.outputs(),
        vec![
            Counter::Increment,
            Counter::Keep,
            Counter::Keep,
            Counter::Keep
        ]
    );

    // "Final State: q3, with a cumulative output of 1 (represented by x = 1)."
    assert_eq!(run.run.last(), S(3));
    assert_eq!(run.x(), 1);
}

/// Quadruple actor: Q = {s0, s1, s2, s3}, Σ = {0, 1, 2, 3},
/// δ(q, σ) = s_σ for all q and σ, λ(q, σ) = x + 1 if δ(q, σ) = q.
#[test]
fn quadruple_actor() {
    let actor = NTuple::Quadruple;
    let m = actor.machine();
    assert_eq!(m.states(), &[S(0), S(1), S(2), S(3)]);
    assert_eq!(m.inputs(), &[0, 1, 2, 3]);
    assert!(m.is_total());
    for q in 0..4 {
        for sigma in 0..4 {
            assert_eq!(m.delta(S(q), sigma), Ok(S(sigma)));
            let expected = if q == sigma {
                Counter::Increment
            } else {
                Counter::Keep
            };
            assert_eq!(m.lambda(S(q), sigma), Ok(&expected));
        }
    }
    // As drawn: start s0, accepting s2, labels 10, 20 and 5.
    assert_eq!(actor.start(), Some(S(0)));
    assert_eq!(actor.accept(), vec![S(2)]);
    assert_eq!(
        actor.labels(),
        vec![(S(0), "label:10"), (S(2), "label:20"), (S(3), "label:5")]
    );

    // The counter counts self-transitions: 0 0 1 1 2 2 read from s0 has four
    // (both 0s, the second 1 and the second 2).
    let run = actor.with_counter().run(S(0), &[0, 0, 1, 1, 2, 2]).unwrap();
    assert_eq!(run.x(), 4);

    // As an acceptor: a word is accepted iff it ends in 2 (δ(q, σ) = s_σ).
    let acc = actor.acceptor().unwrap();
    assert!(acc.accepts(&[2]));
    assert!(acc.accepts(&[0, 1, 3, 2]));
    assert!(!acc.accepts(&[]));
    assert!(!acc.accepts(&[2, 1]));
    let language = acc.language_up_to(3);
    assert_eq!(language.len(), 1 + 4 + 16);
    assert!(language.iter().all(|w| w.last() == Some(&2)));
}

/// Quintuple actor: starts at s0 and accepts at s1, as drawn.
#[test]
fn quintuple_actor() {
    let actor = NTuple::Quintuple;
    assert_eq!(actor.machine().states().len(), 5);
    assert!(actor.machine().is_total());
    let acc = actor.acceptor().unwrap();
    assert_eq!(acc.start(), S(0));
    assert!(acc.accept_states().contains(&S(1)));
    assert!(acc.accepts(&[4, 1]));
    assert!(!acc.accepts(&[1, 4]));
    // An input outside Σ = {0..4} is rejected, not a panic.
    assert!(actor.machine().delta(S(0), 5).is_err());
}

/// Sextuple and septuple actors designate no start or accept state: they are
/// transducers, run from a state the caller names.
#[test]
fn sextuple_and_septuple_actors_are_transducers() {
    for (actor, n) in [(NTuple::Sextuple, 6u8), (NTuple::Septuple, 7)] {
        assert!(actor.acceptor().is_none(), "{actor:?} has no start state");
        assert_eq!(actor.start(), None);
        let m = actor.machine();
        assert_eq!(m.states().len(), usize::from(n));
        assert!(m.is_total());
        // From any state, reading σ leads to s_σ, and the counter counts
        // self-transitions.
        let word: Vec<u8> = (0..n).chain((0..n).rev()).collect();
        let run = actor.with_counter().run(S(n - 1), &word).unwrap();
        assert_eq!(run.run.last(), S(0));
        // The only self-transition is the turn: n-1 read in s(n-1).
        assert_eq!(run.x(), 1);
    }
}
