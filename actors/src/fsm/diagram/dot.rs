//! Graphviz DOT output.

use std::fmt::Write;

use super::{Diagram, Shape};

/// Renders `d` as a DOT digraph (pipe it to `dot -Tsvg`).
pub fn render(d: &Diagram) -> String {
    let mut out = String::new();
    let (node_shape, style) = match d.shape {
        Shape::Circle => ("circle", "filled"),
        Shape::Box => ("box", "rounded,filled"),
    };
    let _ = writeln!(out, "digraph {} {{", quote(&d.name));
    let _ = writeln!(
        out,
        "  graph [label={}, labelloc=t, fontname=\"Helvetica\", rankdir=LR, nodesep=0.5];",
        quote(&d.title)
    );
    let _ = writeln!(
        out,
        "  node [shape={node_shape}, style=\"{style}\", fillcolor=\"{}\", fontname=\"Helvetica\"];",
        d.fill.1
    );
    let _ = writeln!(
        out,
        "  edge [color=\"#FF8C00\", fontname=\"Helvetica\", fontsize=10];"
    );
    for node in &d.nodes {
        let mut attrs = vec![format!("label={}", quote(&node.label))];
        if node.accepting {
            attrs.push("shape=doublecircle".into());
        }
        if node.error {
            attrs.push("color=\"#CC0000\", fillcolor=\"#FFCCCC\", fontcolor=\"#CC0000\"".into());
        }
        if let Some(note) = &node.note {
            attrs.push(format!("xlabel={}", quote(note)));
        }
        if d.is_highlighted(&node.id) {
            attrs.push("fillcolor=\"#FFD700\", penwidth=3".into());
        }
        let _ = writeln!(out, "  {} [{}];", quote(&node.id), attrs.join(", "));
        if node.initial {
            let start = quote(&format!("__start_{}", node.id));
            let _ = writeln!(out, "  {start} [shape=point, width=0.08, label=\"\"];");
            let _ = writeln!(out, "  {start} -> {};", quote(&node.id));
        }
    }
    for edge in &d.edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(&edge.from),
            quote(&edge.to),
            quote(&edge.labels.join("\n"))
        );
    }
    out.push_str("}\n");
    out
}

/// A DOT string literal.
fn quote(text: &str) -> String {
    let mut q = String::with_capacity(text.len() + 2);
    q.push('"');
    for c in text.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use crate::fsm::diagram::Diagram;
    use crate::machines::Producer;

    #[test]
    fn dot_marks_start_error_and_current() {
        let dot = super::render(&Diagram::of_spec::<Producer>().highlight("Idle").unwrap());
        assert!(dot.starts_with("digraph \"producer\" {"));
        assert!(dot.contains("\"__start_Idle\" -> \"Idle\";"));
        assert!(dot.contains("\"Error\" [label=\"Error\", color=\"#CC0000\""));
        assert!(dot.contains("\"Idle\" [label=\"Idle\", fillcolor=\"#FFD700\", penwidth=3]"));
        assert!(dot.contains("\"Idle\" -> \"FetchingData\" [label=\"FETCH_DATA\"];"));
        assert!(dot.trim_end().ends_with('}'));
    }
}
