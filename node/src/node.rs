//! `candela node`, `candela run` and `candela` alone: load the configuration
//! (none for the quick start: the defaults, on embedded backends), start the
//! data plane this node's roles call for (and, for `node`, the cluster layer),
//! and run until SIGINT/SIGTERM (or until the cluster layer fails).

use std::path::Path;

use anyhow::Context;
use candela_node::config::Config;
use candela_node::{cluster, platform};
use tracing_subscriber::EnvFilter;

/// Runs a cluster member until a signal; an error if it cannot start or fails.
pub fn run(path: &Path, log: Option<LogFormat>) -> anyhow::Result<()> {
    init_tracing(log);
    let config = Config::load(path).with_context(|| format!("loading {}", path.display()))?;
    config.backends.check_shared(&config.cluster.peers)?;
    let cookie = config.cluster.cookie(|var| std::env::var(var).ok())?;
    runtime()?.block_on(serve(config, cookie))
}

/// Runs one node on its own, without the cluster layer.
pub fn run_standalone(path: &Path, log: Option<LogFormat>) -> anyhow::Result<()> {
    init_tracing(log);
    let config = Config::load(path).with_context(|| format!("loading {}", path.display()))?;
    standalone(config, false)
}

/// The quick start: no configuration file, the defaults (embedded backends,
/// the imitation as the source), environment overrides still applying. An
/// admin token is made up for the session unless one is set, and printed
/// with the page's address.
pub fn run_quick_start(log: Option<LogFormat>) -> anyhow::Result<()> {
    init_tracing(log);
    let config = Config::parse("", std::env::vars()).context("the default configuration")?;
    let var = &config.admin.token_env;
    let made_up = std::env::var(var).map_or(true, |t| t.is_empty());
    if made_up {
        // Still single-threaded: no runtime yet.
        std::env::set_var(var, session_token()?);
    }
    standalone(config, made_up)
}

/// 128 random bits, hex.
fn session_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the admin token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs the data plane until a signal; `show_token` prints the admin token
/// in the pages' addresses (only a token made up for this session).
fn standalone(config: Config, show_token: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        candela_node::ops::recorder();
        let platform = platform::start(&config).await?;
        let ops = start_ops(&config, &platform, false).await?;
        candela_node::sockets::close_leftovers();
        announce(&config, &platform, show_token);
        let outcome = tokio::select! {
            signal = shutdown_signal() => {
                tracing::info!(signal = signal?, "shutting down");
                Ok(())
            }
            why = platform.stopped() => {
                tracing::error!(%why, "the data plane stopped; exiting");
                Err(anyhow::anyhow!(why))
            }
        };
        // Intake and the data plane first, then the listeners.
        platform.shutdown().await;
        ops.stop().await;
        outcome
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Says where to look (with the admin token in the pages' addresses only
/// when it was made up for this session: a configured secret is not logged).
fn announce(config: &Config, platform: &platform::Platform, show_token: bool) {
    tracing::info!(node = %config.node.name, roles = ?config.node.roles, "node running");
    tracing::info!(
        bus = ?config.backends.bus,
        store = ?config.backends.store,
        cache = ?config.backends.cache,
        data_dir = %config.backends.data_dir,
        "backends"
    );
    if let Some(addr) = platform.api_addr {
        let fragment = std::env::var(&config.admin.token_env)
            .ok()
            .filter(|t| show_token && !t.is_empty())
            .map(|t| format!("#token={t}"))
            .unwrap_or_default();
        let instrument = config
            .ingest
            .instruments
            .first()
            .cloned()
            .unwrap_or_else(|| "Coinbase:BTC-USD".into());
        eprintln!(
            "\ncandela is serving on http://{addr}\n  \
             live chart:   http://{addr}/{fragment}\n  \
             cluster page: http://{addr}/ui/cluster{fragment}\n  \
             API docs:     http://{addr}/docs\n  \
             OHLCV:        http://{addr}/api/v1/ohlcv?instrument={instrument}&interval=1m&from=0\n"
        );
    }
}

async fn serve(config: Config, cookie: String) -> anyhow::Result<()> {
    let mut cluster = cluster::start(&config, cookie).await?;
    candela_node::ops::recorder();
    let platform = platform::start(&config).await?;
    let ops = start_ops(&config, &platform, true).await?;
    announce(&config, &platform, false);
    let mut status = None;
    if let Some(addr) = config.cluster.status_listen {
        let token = std::env::var(&config.admin.token_env)
            .ok()
            .filter(|t| !t.is_empty());
        status = Some(
            cluster::status::serve(addr, config.node.name.clone(), token)
                .await
                .with_context(|| format!("cluster.status_listen: cannot listen on {addr}"))?,
        );
    }
    candela_node::sockets::close_leftovers();
    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal = signal?, "shutting down");
            Ok(())
        }
        why = cluster.stopped() => Err(anyhow::anyhow!(why)),
        why = platform.stopped() => {
            tracing::error!(%why, "the data plane stopped; exiting");
            Err(anyhow::anyhow!(why))
        }
    };
    // Intake and the data plane first, then the listeners, then the
    // cluster layer.
    platform.shutdown().await;
    if let Some(status) = status {
        status.stop().await;
    }
    ops.stop().await;
    cluster.shutdown().await;
    outcome
}

/// Starts the ops listener (`ops.listen`; absent: the default port, or a
/// free one when several nodes share the host).
async fn start_ops(
    config: &Config,
    platform: &platform::Platform,
    clustered: bool,
) -> anyhow::Result<candela_node::ops::Served> {
    let node = config.node.name.clone();
    let mut checks = platform.ready_checks();
    if clustered && !config.cluster.peers.is_empty() {
        // A node that sees none of its configured peers is cut off; one
        // that sees some serves (a lost peer is the others' business).
        checks.push((
            "cluster".to_owned(),
            std::sync::Arc::new(|| {
                Box::pin(async {
                    let status = candela_node::cluster::status()
                        .await
                        .map_err(|e| e.to_string())?;
                    let peers: Vec<String> = status
                        .peers
                        .iter()
                        .filter(|p| p.configured)
                        .map(|p| format!("{} {:?}", p.name, p.state))
                        .collect();
                    let connected = status
                        .peers
                        .iter()
                        .filter(|p| {
                            p.configured
                                && p.state == candela_node::cluster::peer::PeerState::Connected
                        })
                        .count();
                    if connected == 0 {
                        Err(format!(
                            "no configured peer connected: {}",
                            peers.join(", ")
                        ))
                    } else {
                        Ok(peers.join(", "))
                    }
                })
            }),
        ));
    }
    Ok(match config.ops.listen {
        Some(addr) => candela_node::ops::serve(addr, node, checks)
            .await
            .with_context(|| format!("ops.listen: cannot listen on {addr}"))?,
        None => {
            let default: std::net::SocketAddr = candela_node::config::DEFAULT_OPS_LISTEN
                .parse()
                .context("the default ops address")?;
            match candela_node::ops::serve(default, node.clone(), checks.clone()).await {
                Ok(served) => served,
                Err(error) => {
                    let served = candela_node::ops::serve(([127, 0, 0, 1], 0).into(), node, checks)
                        .await
                        .context("ops listener on a free loopback port")?;
                    tracing::warn!(%error, default = %default, addr = %served.addr, "the default ops port is taken: the ops listener uses a free port (set ops.listen)");
                    served
                }
            }
        }
    })
}

async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// How the node writes its log (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON lines otherwise (a service
    /// manager, a container, a file).
    Auto,
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line: timestamp, level, target, fields, spans.
    Json,
}

/// Installs the log subscriber: `RUST_LOG` filters (default `info`); the
/// format from `--log-format`, else `CANDELA_LOG_FORMAT`, else auto.
pub fn init_tracing(format: Option<LogFormat>) {
    let format = format
        .or_else(|| {
            use clap::ValueEnum;
            let v = std::env::var("CANDELA_LOG_FORMAT").ok()?;
            LogFormat::from_str(&v, true).ok()
        })
        .unwrap_or(LogFormat::Auto);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json = match format {
        LogFormat::Auto => !terminal,
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(candela_node::progress::LogWriter);
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
}
