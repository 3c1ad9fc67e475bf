//! Every machine the platform knows, by name: the five platform actors and the
//! seed's four N-tuple actors.

use super::diagram::Diagram;
use super::examples::NTuple;
use super::spec::MachineSpec;
use crate::machines::{ConsumerDynamic, ConsumerFixed, Coordinator, Datastore, Producer};

/// What a machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One of the platform's actors.
    Actor,
    /// One of the seed's formal examples.
    Example,
}

/// A machine in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name used on the command line and in the admin endpoint.
    pub name: String,
    /// The seed's title.
    pub title: String,
    /// Actor or example.
    pub kind: Kind,
    /// Number of states.
    pub states: usize,
    /// Number of transitions.
    pub transitions: usize,
    /// Where the implementation closes a gap in the seed.
    pub decisions: Vec<String>,
}

fn actor<M: MachineSpec>() -> (Entry, Diagram) {
    let entry = Entry {
        name: M::NAME.to_owned(),
        title: M::TITLE.to_owned(),
        kind: Kind::Actor,
        states: M::states().len(),
        transitions: M::transitions().len(),
        decisions: M::DECISIONS.iter().map(|d| (*d).to_owned()).collect(),
    };
    (entry, Diagram::of_spec::<M>())
}

fn example(actor: NTuple) -> (Entry, Diagram) {
    let machine = actor.machine();
    let diagram = Diagram::of_ntuple(actor);
    let entry = Entry {
        name: actor.name().to_owned(),
        title: diagram.title.clone(),
        kind: Kind::Example,
        states: machine.states().len(),
        transitions: machine.len(),
        decisions: Vec::new(),
    };
    (entry, diagram)
}

/// Every machine with its drawing, platform actors first.
pub fn all() -> Vec<(Entry, Diagram)> {
    let mut out = vec![
        actor::<Producer>(),
        actor::<Coordinator>(),
        actor::<ConsumerFixed>(),
        actor::<ConsumerDynamic>(),
        actor::<Datastore>(),
    ];
    out.extend(NTuple::ALL.into_iter().map(example));
    out
}

/// The names of every machine.
pub fn names() -> Vec<String> {
    all().into_iter().map(|(e, _)| e.name).collect()
}

/// The machine called `name`, with its drawing.
pub fn find(name: &str) -> Option<(Entry, Diagram)> {
    all()
        .into_iter()
        .find(|(e, _)| e.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique_and_found() {
        let names = super::names();
        assert_eq!(names.len(), 9);
        for name in &names {
            assert_eq!(&super::find(name).unwrap().0.name, name);
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1);
        }
        assert!(super::find("nope").is_none());
    }
}
