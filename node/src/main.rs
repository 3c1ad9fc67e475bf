//! `candela`, the node binary.
//!
//! * `candela` (no arguments): the quick start: one node on the embedded
//!   backends (in-process bus, SQLite in `./data`, in-memory cache) with the
//!   CryptoCompare imitation streaming a few instruments; no external service;
//! * `candela fsm`: prints the state machines the platform runs on;
//! * `candela run --config cluster.toml`: one node on its own: the data plane
//!   of its roles (source, producer, consumer, datastore, HTTP API);
//! * `candela node --config cluster.toml`: starts this node's cluster layer
//!   (node server, membership, names) and runs until SIGINT or SIGTERM.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use candela_actors::fsm::catalog::{self, Kind};
use candela_actors::fsm::diagram::Format;
use clap::{Parser, Subcommand};

mod node;

/// The candela market-data platform node.
#[derive(Debug, Parser)]
#[command(name = "candela", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log format: auto (text on a terminal, JSON lines otherwise), text or
    /// json; else `CANDELA_LOG_FORMAT`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<node::LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a state machine's diagram, or list the machines (`candela fsm list`).
    Fsm {
        /// The machine, e.g. `producer`; `list` (or nothing) lists them all.
        name: Option<String>,
        /// Output format: dot, mermaid or tikz.
        #[arg(long, short, default_value = "dot")]
        format: Format,
        /// Highlight this state (its name or id), as the admin endpoint does
        /// for an actor's current state.
        #[arg(long)]
        highlight: Option<String>,
    },
    /// Runs one node on its own (no cluster layer): the data plane of its roles.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "cluster.toml")]
        config: std::path::PathBuf,
    },
    /// Makes a development CA (`ca.pem`, `ca.key`, reused when present) and a
    /// certificate and key per node (`{node}.pem`, `{node}.key`) for the
    /// cluster's TLS (`[cluster.tls]`). For development and tests: a
    /// production CA belongs to your PKI.
    Certs {
        /// Where to write them.
        #[arg(long, default_value = "certs")]
        dir: std::path::PathBuf,
        /// The DNS name every node certificate holds (`cluster.tls.server_name`).
        #[arg(long, default_value = "candela-cluster")]
        server_name: String,
        /// The nodes' names.
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Run a node: its cluster server and membership, until SIGINT/SIGTERM.
    /// The cookie is read from the variable named by `cluster.cookie_env`.
    Node {
        /// The configuration file.
        #[arg(long, short, default_value = "cluster.toml")]
        config: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    // Sockets handed over (socket activation), before any thread starts.
    if let Err(err) = candela_node::sockets::inherit() {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => node::run_quick_start(cli.log_format),
        Some(Command::Fsm {
            name,
            format,
            highlight,
        }) => match name.as_deref() {
            None | Some("list") => list(),
            Some(name) => print_diagram(name, format, highlight.as_deref()),
        },
        Some(Command::Node { config }) => node::run(&config, cli.log_format),
        Some(Command::Run { config }) => node::run_standalone(&config, cli.log_format),
        Some(Command::Certs {
            dir,
            server_name,
            nodes,
        }) => {
            let made = candela_node::cluster::tls::generate(&dir, &nodes, &server_name)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "CA: {}", made.ca.display())?;
            for (node, files) in made.nodes {
                writeln!(
                    out,
                    "{node}: cert = \"{}\", key = \"{}\"",
                    files.cert.display(),
                    files.key.display()
                )?;
            }
            Ok(())
        }
    }
}

fn list() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<18} {:<8} {:>6} {:>11}  title",
        "name", "kind", "states", "transitions"
    )?;
    for (entry, _) in catalog::all() {
        let kind = match entry.kind {
            Kind::Actor => "actor",
            Kind::Example => "example",
        };
        writeln!(
            out,
            "{:<18} {:<8} {:>6} {:>11}  {}",
            entry.name, kind, entry.states, entry.transitions, entry.title
        )?;
    }
    Ok(())
}

fn print_diagram(name: &str, format: Format, highlight: Option<&str>) -> anyhow::Result<()> {
    let (_, mut diagram) = catalog::find(name).with_context(|| {
        format!(
            "no machine named `{name}`; known machines: {}",
            catalog::names().join(", ")
        )
    })?;
    if let Some(state) = highlight {
        diagram = diagram.highlight(state)?;
    }
    std::io::stdout()
        .lock()
        .write_all(diagram.render(format).as_bytes())?;
    Ok(())
}
