//! How a platform actor declares its machine: states, events, outputs
//! (effects) and the transition table, written once and used by the runtime,
//! the tests and the diagrams.

use super::mealy::{Mealy, Symbol};

/// A symbol with a display name (the seed's spelling) and an identifier.
pub trait Named: Symbol {
    /// The seed's spelling, e.g. `"Fetching Data"` or `"FETCH_DATA"`.
    fn name(self) -> &'static str;
    /// An identifier usable in diagram formats, e.g. `FetchingData`.
    fn id(self) -> &'static str;
}

/// One transition of a platform machine: from `from`, on `event`, go to `to`
/// and perform `effect` (the Mealy output λ).
pub type Transition<Q, E, O> = (Q, E, Q, O);

/// The declaration of a platform actor's machine.
///
/// Implementations hold *exactly* the seed's states, events and transitions,
/// plus the documented closures of the seed's gaps ([`MachineSpec::DECISIONS`]).
pub trait MachineSpec: Send + Sync + 'static {
    /// Q.
    type State: Named;
    /// Σ: the events the actor reacts to.
    type Event: Named;
    /// Γ: what the actor does on a transition.
    type Effect: Named;

    /// The catalog and command-line name, e.g. `producer`.
    const NAME: &'static str;
    /// The seed's title, e.g. `Producer Actor`.
    const TITLE: &'static str;
    /// The state fill colour of the seed's drawing, as an `xcolor` svgnames name
    /// (TikZ) and as a hex code (DOT, Mermaid).
    const COLOUR: (&'static str, &'static str);
    /// Where this implementation closes a gap in the seed, and how.
    const DECISIONS: &'static [&'static str];

    /// Q, in the seed's order.
    fn states() -> &'static [Self::State];
    /// Σ, in the seed's order.
    fn events() -> &'static [Self::Event];
    /// The state a fresh actor starts in.
    fn initial() -> Self::State;
    /// The states drawn in red (failures).
    fn error_states() -> &'static [Self::State];
    /// The transition table.
    fn transitions() -> &'static [Transition<Self::State, Self::Event, Self::Effect>];

    /// The Mealy machine ⟨Σ, Γ, Q, δ, λ⟩ built from the table.
    fn machine() -> Mealy<Self::State, Self::Event, Self::Effect> {
        Mealy::new(
            Self::states().iter().copied(),
            Self::events().iter().copied(),
            Self::transitions().iter().copied(),
        )
        .unwrap_or_else(|e| panic!("the {} table is not a Mealy machine: {e}", Self::NAME))
    }

    /// Whether `state` is an error state.
    fn is_error(state: Self::State) -> bool {
        Self::error_states().contains(&state)
    }
}
