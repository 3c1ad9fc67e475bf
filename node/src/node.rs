//! `candela node` and `candela run`: load the configuration, start the data
//! plane this node's roles call for (and, for `node`, the cluster layer), and
//! run until SIGINT/SIGTERM (or until the cluster layer fails).

use std::path::Path;

use anyhow::Context;
use candela_node::config::Config;
use candela_node::{cluster, platform};
use tracing_subscriber::EnvFilter;

/// Runs a cluster member until a signal; an error if it cannot start or fails.
pub fn run(path: &Path) -> anyhow::Result<()> {
    init_tracing();
    let config = Config::load(path).with_context(|| format!("loading {}", path.display()))?;
    let cookie = config.cluster.cookie(|var| std::env::var(var).ok())?;
    runtime()?.block_on(serve(config, cookie))
}

/// Runs one node on its own, without the cluster layer.
pub fn run_standalone(path: &Path) -> anyhow::Result<()> {
    init_tracing();
    let config = Config::load(path).with_context(|| format!("loading {}", path.display()))?;
    runtime()?.block_on(async move {
        let platform = platform::start(&config, false).await?;
        announce(&config, &platform);
        let signal = shutdown_signal().await?;
        tracing::info!(signal, "shutting down");
        platform.shutdown().await;
        Ok(())
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Says where to look.
fn announce(config: &Config, platform: &platform::Platform) {
    tracing::info!(node = %config.node.name, roles = ?config.node.roles, "node running");
    if let Some(addr) = platform.api_addr {
        eprintln!("candela: serving http://{addr}  (API docs: http://{addr}/docs, OHLCV: http://{addr}/api/v1/ohlcv?instrument=Coinbase:BTC-USD&from=0)");
    }
}

async fn serve(config: Config, cookie: String) -> anyhow::Result<()> {
    let mut cluster = cluster::start(&config, cookie).await?;
    let platform = platform::start(&config, true).await?;
    announce(&config, &platform);
    if let Some(addr) = config.cluster.status_listen {
        let token = std::env::var(&config.admin.token_env)
            .ok()
            .filter(|t| !t.is_empty());
        cluster::status::serve(addr, config.node.name.clone(), token)
            .await
            .with_context(|| format!("cluster.status_listen: cannot listen on {addr}"))?;
    }
    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal = signal?, "shutting down");
            Ok(())
        }
        why = cluster.stopped() => Err(anyhow::anyhow!(why)),
    };
    platform.shutdown().await;
    cluster.shutdown().await;
    outcome
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

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
