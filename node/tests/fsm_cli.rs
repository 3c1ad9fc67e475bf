//! The `candela fsm` command: every machine it lists renders through Graphviz
//! (`candela fsm <name> --format dot | dot -Tsvg`), and the other formats and
//! errors behave.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn candela(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_candela"))
        .args(args)
        .output()
        .expect("run candela")
}

fn machine_names() -> Vec<String> {
    let out = candela(&["fsm", "list"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn lists_every_machine() {
    let names = machine_names();
    for expected in [
        "producer",
        "coordinator",
        "consumer-fixed",
        "consumer-dynamic",
        "datastore",
        "quadruple",
        "quintuple",
        "sextuple",
        "septuple",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[test]
fn every_machine_renders_with_graphviz() {
    // Graphviz is a test dependency (Debian package `graphviz`); .ci/run installs it.
    let dot_version = Command::new("dot").arg("-V").output();
    assert!(
        dot_version.is_ok_and(|o| o.status.success()),
        "Graphviz `dot` is required: apt-get install graphviz"
    );
    for name in machine_names() {
        for highlight in [None, Some("Error"), Some("s0")] {
            let mut args = vec!["fsm", name.as_str(), "--format", "dot"];
            // Only highlight states the machine has.
            let has_errors =
                !["quadruple", "quintuple", "sextuple", "septuple"].contains(&name.as_str());
            match highlight {
                Some("Error") if has_errors => args.extend(["--highlight", "Error"]),
                Some("s0") if !has_errors => args.extend(["--highlight", "s0"]),
                Some(_) => continue,
                None => {}
            }
            let dot = candela(&args);
            assert!(
                dot.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&dot.stderr)
            );
            let mut child = Command::new("dot")
                .arg("-Tsvg")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(&dot.stdout).unwrap();
            let svg = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&svg.stderr);
            assert!(svg.status.success(), "{name}: dot failed: {stderr}");
            assert!(stderr.trim().is_empty(), "{name}: dot warned: {stderr}");
            let svg = String::from_utf8(svg.stdout).unwrap();
            assert!(svg.contains("<svg"), "{name}: no svg");
            assert!(svg.contains("</svg>"), "{name}: truncated svg");
        }
    }
}

#[test]
fn other_formats_render() {
    let mermaid = candela(&["fsm", "coordinator", "--format", "mermaid"]);
    assert!(mermaid.status.success());
    assert!(String::from_utf8(mermaid.stdout)
        .unwrap()
        .starts_with("stateDiagram-v2"));
    let tikz = candela(&["fsm", "quadruple", "--format", "tikz"]);
    assert!(tikz.status.success());
    let tikz = String::from_utf8(tikz.stdout).unwrap();
    assert!(tikz.contains("\\begin{tikzpicture}"));
    assert!(tikz.contains("$\\sigma=0$/$x:=x+1$"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = candela(&["fsm", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no machine named `nope`") && err.contains("producer"),
        "{err}"
    );

    let out = candela(&["fsm", "producer", "--highlight", "Sleeping"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("has no state `Sleeping`"));

    let out = candela(&["fsm", "producer", "--format", "svg"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("unknown diagram format"));
}
