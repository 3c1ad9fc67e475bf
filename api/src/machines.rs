//! What the API shows of a state machine: its states, events and transitions
//! as JSON, built from the catalog in `candela-actors`.

use candela_actors::fsm::catalog::{self, Kind};
use candela_actors::fsm::diagram::Diagram;
use serde::Serialize;

/// One state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateInfo {
    /// Identifier.
    pub id: String,
    /// Seed name.
    pub name: String,
    /// The start state.
    pub initial: bool,
    /// An accept state.
    pub accepting: bool,
    /// An error state.
    pub error: bool,
}

/// All transitions between two states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransitionInfo {
    /// Source state id.
    pub from: String,
    /// Target state id.
    pub to: String,
    /// The events (or, for the seed's examples, input/action labels).
    pub on: Vec<String>,
}

/// A machine as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineInfo {
    /// Catalog name.
    pub name: String,
    /// Seed title.
    pub title: String,
    /// `actor` or `example`.
    pub kind: &'static str,
    /// States in order.
    pub states: Vec<StateInfo>,
    /// Transitions grouped by (from, to).
    pub transitions: Vec<TransitionInfo>,
    /// How the implementation closes the seed's gaps.
    pub decisions: Vec<String>,
}

impl MachineInfo {
    fn new(entry: catalog::Entry, diagram: Diagram) -> Self {
        Self {
            name: entry.name,
            title: entry.title,
            kind: match entry.kind {
                Kind::Actor => "actor",
                Kind::Example => "example",
            },
            states: diagram
                .nodes
                .into_iter()
                .map(|n| StateInfo {
                    id: n.id,
                    name: n.label,
                    initial: n.initial,
                    accepting: n.accepting,
                    error: n.error,
                })
                .collect(),
            transitions: diagram
                .edges
                .into_iter()
                .map(|e| TransitionInfo {
                    from: e.from,
                    to: e.to,
                    on: e.labels,
                })
                .collect(),
            decisions: entry.decisions,
        }
    }
}

/// Every machine the platform knows.
pub fn all() -> Vec<MachineInfo> {
    catalog::all()
        .into_iter()
        .map(|(e, d)| MachineInfo::new(e, d))
        .collect()
}

/// The machine called `name`.
pub fn get(name: &str) -> Option<MachineInfo> {
    catalog::find(name).map(|(e, d)| MachineInfo::new(e, d))
}

#[cfg(test)]
mod tests {
    #[test]
    fn producer_as_json() {
        let info = super::get("producer").unwrap();
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["kind"], "actor");
        assert_eq!(json["states"][0]["name"], "Idle");
        assert_eq!(json["states"][0]["initial"], true);
        let on: usize = info.transitions.iter().map(|t| t.on.len()).sum();
        assert_eq!(on, 12);
        assert_eq!(super::all().len(), 9);
    }
}
