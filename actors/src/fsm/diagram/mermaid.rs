//! Mermaid `stateDiagram-v2` output.

use std::fmt::Write;

use super::Diagram;

/// Renders `d` as a Mermaid state diagram.
///
/// The start state gets `[*] --> q0`; accept states get `q --> [*]` (Mermaid's
/// final-state notation); error states and the highlighted state get classes.
pub fn render(d: &Diagram) -> String {
    let mut out = String::from("stateDiagram-v2\n  direction LR\n");
    let _ = writeln!(out, "  %% {}", d.title);
    for node in &d.nodes {
        let _ = writeln!(out, "  state \"{}\" as {}", text(&node.label), node.id);
        if let Some(note) = &node.note {
            let _ = writeln!(out, "  note right of {} : {}", node.id, text(note));
        }
    }
    for node in d.nodes.iter().filter(|n| n.initial) {
        let _ = writeln!(out, "  [*] --> {}", node.id);
    }
    for edge in &d.edges {
        let _ = writeln!(
            out,
            "  {} --> {} : {}",
            edge.from,
            edge.to,
            text(&edge.labels.join(", "))
        );
    }
    for node in d.nodes.iter().filter(|n| n.accepting) {
        let _ = writeln!(out, "  {} --> [*]", node.id);
    }
    let _ = writeln!(out, "  classDef state fill:{}", d.fill.1);
    out.push_str("  classDef error fill:#FFCCCC,stroke:#CC0000,color:#CC0000\n");
    out.push_str("  classDef current fill:#FFD700,stroke:#333333,stroke-width:3px\n");
    for node in &d.nodes {
        let class = if d.is_highlighted(&node.id) {
            "current"
        } else if node.error {
            "error"
        } else {
            "state"
        };
        let _ = writeln!(out, "  class {} {class}", node.id);
    }
    out
}

/// Mermaid labels end at a newline and treat `;` and quotes specially.
fn text(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            '\n' | ';' => ' ',
            '"' => '\'',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::fsm::diagram::Diagram;
    use crate::fsm::examples::NTuple;
    use crate::machines::Coordinator;

    #[test]
    fn mermaid_lists_states_and_transitions() {
        let m = super::render(&Diagram::of_spec::<Coordinator>());
        assert!(m.starts_with("stateDiagram-v2\n"));
        assert!(m.contains("  state \"Processing Create Topic\" as ProcessingCreateTopic\n"));
        assert!(m.contains("  [*] --> Active\n"));
        assert!(m.contains("  Error --> Active : RESET\n"));
        assert!(m.contains("  class Error error\n"));
    }

    #[test]
    fn mermaid_marks_accept_states_final() {
        let m = super::render(&Diagram::of_ntuple(NTuple::Quintuple));
        assert!(m.contains("  [*] --> s0\n"));
        assert!(m.contains("  s1 --> [*]\n"));
    }
}
