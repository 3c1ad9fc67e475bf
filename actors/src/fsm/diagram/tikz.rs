//! TikZ output in the seed's style: a standalone LaTeX document, states on a
//! regular polygon (the seed's quadruple to septuple templates generalised to
//! any number of states), orange arrows, self-loops labelled
//! `$\sigma=i$/$x:=x+1$`, error states in red.
//!
//! States are placed at polar coordinates on the polygon's corners, starting at
//! the top and going counter-clockwise; self-loops point away from the centre.

use std::fmt::Write;

use super::{Diagram, Shape};

/// Renders `d` as a standalone LaTeX document (compile with `pdflatex`).
pub fn render(d: &Diagram) -> String {
    let n = d.nodes.len().max(1);
    // Keep neighbouring boxes apart: the circumference grows with the count.
    let radius = match d.shape {
        Shape::Circle => 3.0_f64.max(0.6 * n as f64),
        Shape::Box => 3.5_f64.max(0.95 * n as f64),
    };
    let mut out = String::new();
    out.push_str(
        "\\documentclass{standalone}\n\
         \\usepackage[svgnames]{xcolor} % Enables a wide range of color names\n\
         \\usepackage{tikz}\n\
         \\usetikzlibrary{arrows,automata,positioning,shapes}\n\
         \\usepackage{amsmath,amssymb,amsfonts}\n\n\
         \\begin{document}\n",
    );
    let _ = writeln!(out, "% {} ({} states)", d.title, d.nodes.len());
    let state_style = match d.shape {
        Shape::Circle => format!("every state/.append style={{fill={}}}", d.fill.0),
        Shape::Box => format!(
            "every state/.append style={{rectangle, rounded corners, minimum width=2.5cm, \
             minimum height=1cm, fill={}, font=\\tiny}}",
            d.fill.0
        ),
    };
    let _ = writeln!(
        out,
        "\\begin{{tikzpicture}}[>=stealth',\n\
         \x20                   shorten > = 1pt,\n\
         \x20                   el/.style = {{inner sep=2pt, align=left, sloped, color=black, font=\\tiny}},\n\
         \x20                   every label/.append style = {{font=\\tiny}},\n\
         \x20                   every node/.append style ={{font=\\normalsize}},\n\
         \x20                   {state_style},\n\
         \x20                   every edge/.append style={{color=orange}},\n\
         \x20                   error/.style={{color=Red, fill=Red!20}},\n\
         \x20                   current/.style={{fill=Gold, line width=1.5pt}}\n\
         \x20                   ]"
    );
    let angle = |i: usize| 90.0 + 360.0 * i as f64 / n as f64;
    for (i, node) in d.nodes.iter().enumerate() {
        let mut opts = vec!["state".to_owned()];
        if node.initial {
            opts.push(format!("initial {}", initial_side(angle(i))));
        }
        if node.accepting {
            opts.push("accepting".into());
        }
        if node.error {
            opts.push("error".into());
        }
        if d.is_highlighted(&node.id) {
            opts.push("current".into());
        }
        if let Some(note) = &node.note {
            opts.push(format!(
                "label={}:{{{}}}",
                outward_side(angle(i)),
                escape(note)
            ));
        }
        let text = match d.shape {
            Shape::Circle => format!("${}$", subscript(&node.label)),
            Shape::Box => escape(&node.label),
        };
        let _ = writeln!(
            out,
            "\\node[{}] ({}) at ({:.1}:{radius:.1}cm) {{{text}}};",
            opts.join(","),
            node.id,
            angle(i)
        );
    }
    out.push_str("\n\\path[->]\n");
    let index = |id: &str| d.nodes.iter().position(|n| n.id == id).unwrap_or(0);
    for edge in &d.edges {
        let label = edge
            .labels
            .iter()
            .map(|l| edge_label(l, d.shape))
            .collect::<Vec<_>>()
            .join(" / ");
        if edge.from == edge.to {
            let a = angle(index(&edge.from));
            let _ = writeln!(
                out,
                "    ({0}) edge [in={1:.0},out={2:.0},loop] node[el,above] {{{label}}} ({0})",
                edge.from,
                a + 30.0,
                a - 30.0
            );
        } else {
            let _ = writeln!(
                out,
                "    ({}) edge [bend left=10] node[el,above] {{{label}}} ({})",
                edge.from, edge.to
            );
        }
    }
    out.push_str(";\n\\end{tikzpicture}\n\\end{document}\n");
    out
}

/// `s0` → `s_0`, for math mode.
fn subscript(label: &str) -> String {
    match label.strip_prefix('s') {
        Some(digits) if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) => {
            format!("s_{digits}")
        }
        _ => escape(label),
    }
}

/// An edge label: `σ=0/x:=x+1` becomes `$\sigma=0$/$x:=x+1$` as in the seed.
fn edge_label(label: &str, shape: Shape) -> String {
    match shape {
        Shape::Circle => label
            .split('/')
            .map(|part| format!("${}$", part.replace('σ', "\\sigma")))
            .collect::<Vec<_>>()
            .join("/"),
        Shape::Box => escape(label),
    }
}

/// Escapes LaTeX's special characters in text mode.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '_' | '&' | '%' | '$' | '#' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '*' => out.push_str("$\\ast$"),
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            c => out.push(c),
        }
    }
    out
}

/// The compass side facing away from the centre at `angle` degrees.
fn outward_side(angle: f64) -> &'static str {
    let a = angle.rem_euclid(360.0);
    match a {
        a if (45.0..135.0).contains(&a) => "above",
        a if (135.0..225.0).contains(&a) => "left",
        a if (225.0..315.0).contains(&a) => "below",
        _ => "right",
    }
}

/// Where the initial arrow comes from: outside the polygon.
fn initial_side(angle: f64) -> &'static str {
    outward_side(angle)
}

#[cfg(test)]
mod tests {
    use crate::fsm::diagram::Diagram;
    use crate::fsm::examples::NTuple;
    use crate::machines::{Datastore, Producer};

    #[test]
    fn quadruple_in_the_seed_style() {
        let t = super::render(&Diagram::of_ntuple(NTuple::Quadruple));
        assert!(t.starts_with("\\documentclass{standalone}"));
        assert!(t.contains(
            "\\node[state,initial above,label=above:{label:10}] (s0) at (90.0:3.0cm) {$s_0$};"
        ));
        assert!(t.contains("\\node[state,accepting,label=below:{label:20}] (s2)"));
        assert!(t.contains("{$\\sigma=0$/$x:=x+1$} (s0)"));
        assert!(t.contains("(s0) edge [bend left=10] node[el,above] {$\\sigma=1$} (s1)"));
        assert!(t.trim_end().ends_with("\\end{document}"));
    }

    #[test]
    fn platform_machines_escape_and_mark_errors() {
        let t = super::render(&Diagram::of_spec::<Producer>());
        assert!(t.contains("\\node[state,error] (Error)"));
        assert!(t.contains("{FETCH\\_DATA} (FetchingData)"));
        let t = super::render(
            &Diagram::of_spec::<Datastore>()
                .highlight("Querying DB")
                .unwrap(),
        );
        assert!(t.contains("{$\\ast$} (ReturningData)"));
        assert!(t.contains("\\node[state,current] (QueryingDb)"));
    }
}
