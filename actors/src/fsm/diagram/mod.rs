//! Drawings of machines, generated from the same tables the actors run on.
//!
//! A [`Diagram`] is a format-neutral description (nodes, merged edges, which
//! state is initial, accepting, an error or current); [`dot`], [`mermaid`] and
//! [`tikz`] turn it into text.

pub mod dot;
pub mod mermaid;
pub mod tikz;

use std::fmt;
use std::str::FromStr;

use super::examples::{Counter, NTuple};
use super::spec::{MachineSpec, Named};

/// How states are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Circles named s0 … (the seed's N-tuple actors).
    Circle,
    /// Rounded boxes with the state's name (the seed's platform actors).
    Box,
}

/// A state in a drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// An identifier, unique in the diagram, safe in every format.
    pub id: String,
    /// The text shown.
    pub label: String,
    /// The start state q0 (drawn with an incoming arrow).
    pub initial: bool,
    /// An accept state (drawn with a double border).
    pub accepting: bool,
    /// An error state (drawn in red).
    pub error: bool,
    /// A note drawn beside the state (the quadruple's `label:10`).
    pub note: Option<String>,
}

/// All transitions between two states, merged into one arrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// One label per transition: the event, and for the N-tuple actors the
    /// action (`σ=0/x:=x+1`).
    pub labels: Vec<String>,
}

/// A format-neutral drawing of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagram {
    /// The catalog name, e.g. `producer`.
    pub name: String,
    /// The title, e.g. `Producer Actor`.
    pub title: String,
    /// How states are drawn.
    pub shape: Shape,
    /// Fill colour: `xcolor` svgnames name and hex code.
    pub fill: (&'static str, &'static str),
    /// States, in the machine's order (which is also their place on the polygon).
    pub nodes: Vec<Node>,
    /// Arrows.
    pub edges: Vec<Edge>,
    /// The id of the state to highlight (an actor's current state).
    pub highlight: Option<String>,
}

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Graphviz DOT.
    Dot,
    /// Mermaid `stateDiagram-v2`.
    Mermaid,
    /// A standalone LaTeX document with a TikZ picture in the seed's style.
    Tikz,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [Format::Dot, Format::Mermaid, Format::Tikz];
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Dot => "dot",
            Format::Mermaid => "mermaid",
            Format::Tikz => "tikz",
        })
    }
}

/// The text named no known format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown diagram format `{0}` (expected dot, mermaid or tikz)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "dot" | "graphviz" => Ok(Format::Dot),
            "mermaid" | "mmd" => Ok(Format::Mermaid),
            "tikz" | "latex" | "tex" => Ok(Format::Tikz),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// The state to highlight is not in the machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("machine `{machine}` has no state `{state}` (states: {known})")]
pub struct UnknownState {
    /// The machine.
    pub machine: String,
    /// What was asked for.
    pub state: String,
    /// The states it has, comma-separated.
    pub known: String,
}

impl Diagram {
    /// The drawing of a platform machine.
    pub fn of_spec<M: MachineSpec>() -> Self {
        let nodes = M::states()
            .iter()
            .map(|&q| Node {
                id: q.id().to_owned(),
                label: q.name().to_owned(),
                initial: q == M::initial(),
                accepting: false,
                error: M::is_error(q),
                note: None,
            })
            .collect();
        let transitions = M::transitions()
            .iter()
            .map(|&(from, event, to, _)| (from.id(), to.id(), event.name().to_owned()));
        Self {
            name: M::NAME.to_owned(),
            title: M::TITLE.to_owned(),
            shape: Shape::Box,
            fill: M::COLOUR,
            nodes,
            edges: merge_edges(transitions),
            highlight: None,
        }
    }

    /// The drawing of one of the seed's N-tuple actors.
    pub fn of_ntuple(actor: NTuple) -> Self {
        let machine = actor.machine();
        let labels = actor.labels();
        let nodes = machine
            .states()
            .iter()
            .map(|&q| Node {
                id: q.to_string(),
                label: q.to_string(),
                initial: actor.start() == Some(q),
                accepting: actor.accept().contains(&q),
                error: false,
                note: labels
                    .iter()
                    .find(|(s, _)| *s == q)
                    .map(|(_, l)| (*l).to_owned()),
            })
            .collect();
        let ids: Vec<String> = machine.states().iter().map(ToString::to_string).collect();
        let transitions = machine.transitions().map(|(from, sigma, to, out)| {
            let label = match out {
                Counter::Increment => format!("σ={sigma}/{out}"),
                Counter::Keep => format!("σ={sigma}"),
            };
            (
                ids[usize::from(from.0)].as_str(),
                ids[usize::from(to.0)].as_str(),
                label,
            )
        });
        let edges = merge_edges(transitions);
        let title = format!(
            "{}{} actor",
            actor.name()[..1].to_uppercase(),
            &actor.name()[1..]
        );
        Self {
            name: actor.name().to_owned(),
            title,
            shape: Shape::Circle,
            fill: ("LightBlue", "#ADD8E6"),
            nodes,
            edges,
            highlight: None,
        }
    }

    /// Marks `state` (its name or id, in any case) as the current state.
    pub fn highlight(mut self, state: &str) -> Result<Self, UnknownState> {
        let want = super::symbols::normalise(state);
        let found = self.nodes.iter().find(|n| {
            super::symbols::normalise(&n.id) == want || super::symbols::normalise(&n.label) == want
        });
        match found {
            Some(node) => {
                self.highlight = Some(node.id.clone());
                Ok(self)
            }
            None => Err(UnknownState {
                machine: self.name.clone(),
                state: state.to_owned(),
                known: self
                    .nodes
                    .iter()
                    .map(|n| n.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Renders the drawing in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Dot => dot::render(self),
            Format::Mermaid => mermaid::render(self),
            Format::Tikz => tikz::render(self),
        }
    }

    /// Whether node `id` is the highlighted one.
    fn is_highlighted(&self, id: &str) -> bool {
        self.highlight.as_deref() == Some(id)
    }
}

/// Groups transitions by (from, to), keeping first-seen order.
fn merge_edges<'a>(transitions: impl Iterator<Item = (&'a str, &'a str, String)>) -> Vec<Edge> {
    let mut edges: Vec<Edge> = Vec::new();
    for (from, to, label) in transitions {
        match edges.iter_mut().find(|e| e.from == from && e.to == to) {
            Some(edge) => edge.labels.push(label),
            None => edges.push(Edge {
                from: from.to_owned(),
                to: to.to_owned(),
                labels: vec![label],
            }),
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::{Datastore, Producer};

    #[test]
    fn parallel_transitions_share_an_arrow() {
        let d = Diagram::of_spec::<Datastore>();
        let back = d
            .edges
            .iter()
            .find(|e| e.from == "ReturningData" && e.to == "Idle")
            .unwrap();
        assert_eq!(back.labels, ["RETURN_DATA_SUCCESS", "RETURN_DATA_FAILURE"]);
    }

    #[test]
    fn highlight_accepts_names_and_ids() {
        let d = Diagram::of_spec::<Producer>();
        assert_eq!(
            d.clone()
                .highlight("fetching data")
                .unwrap()
                .highlight
                .as_deref(),
            Some("FetchingData")
        );
        assert!(d
            .highlight("Nowhere")
            .unwrap_err()
            .known
            .contains("Fetching Data"));
    }

    #[test]
    fn quadruple_has_sixteen_transitions_and_its_labels() {
        let d = Diagram::of_ntuple(NTuple::Quadruple);
        assert_eq!(d.edges.iter().map(|e| e.labels.len()).sum::<usize>(), 16);
        let loops: Vec<_> = d.edges.iter().filter(|e| e.from == e.to).collect();
        assert_eq!(loops.len(), 4);
        assert!(loops.iter().all(|e| e.labels[0].ends_with("/x:=x+1")));
        let s0 = &d.nodes[0];
        assert!(s0.initial && !s0.accepting);
        assert_eq!(s0.note.as_deref(), Some("label:10"));
        assert!(d.nodes[2].accepting);
    }

    #[test]
    fn formats_parse() {
        assert_eq!("DOT".parse(), Ok(Format::Dot));
        assert_eq!("tikz".parse(), Ok(Format::Tikz));
        assert!("svg".parse::<Format>().is_err());
    }
}
